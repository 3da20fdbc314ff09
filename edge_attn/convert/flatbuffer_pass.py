"""The frame of edge_attn's post-conversion rewrites of a .tflite (requantize, collapsed ranges, row convs).

Each pass reads the flatbuffer into LiteRT's object API (``ModelT``), rewrites every subgraph and writes the
bytes back only when it changed something, so a model a pass does not apply to comes back byte-identical.
"""

from edge_attn.convert.inspect import flatbuffer_utils


def builtin(model, op):
    """The op's builtin code (schema v3 keeps codes above 127 in ``builtinCode`` only)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def tensor_name(tensor):
    """A ``TensorT``'s name as str (the object API keeps it as bytes)."""
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name or "")


def read(tflite_bytes):
    """The flatbuffer as a ``ModelT``."""
    return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))


def rewrite_subgraphs(tflite_bytes, rewrite):
    """``(bytes, [what rewrite(model, subgraph) returned, concatenated])``; the input bytes when that is empty."""
    model = read(tflite_bytes)
    changes = []
    for subgraph in model.subgraphs:
        changes += rewrite(model, subgraph)
    if not changes:
        return tflite_bytes, []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changes
