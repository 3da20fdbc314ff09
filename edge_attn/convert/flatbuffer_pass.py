"""The frame of edge_attn's post-conversion rewrites of a .tflite (requantize, collapsed ranges, row convs).

Each pass reads the flatbuffer into LiteRT's object API (``ModelT``), rewrites every subgraph and writes the
bytes back only when it changed something, so a model a pass does not apply to comes back byte-identical.
"""

import numpy as np

from edge_attn.convert.inspect import flatbuffer_utils, schema


def builtin(model, op):
    """The op's builtin code (schema v3 keeps codes above 127 in ``builtinCode`` only)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def tensor_name(tensor):
    """A ``TensorT``'s name as str (the object API keeps it as bytes)."""
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name or "")


_NUMPY_TYPES = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
                schema.TensorType.INT16: np.int16, schema.TensorType.INT32: np.int32,
                schema.TensorType.INT64: np.int64, schema.TensorType.FLOAT32: np.float32,
                schema.TensorType.FLOAT16: np.float16}


def constant_data(model, tensor):
    """A constant tensor's data as a numpy array shaped like the tensor; None for an activation (no data)."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer else None
    dtype = _NUMPY_TYPES.get(tensor.type)
    if buffer is None or buffer.data is None or len(buffer.data) == 0 or dtype is None:
        return None
    return np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), dtype).reshape(tuple(tensor.shape))


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


def opcode_index(model, builtin):
    """The index of ``builtin``'s operator code in ``model``, added (version 1) if the model has none."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def new_tensor(graph, name, shape, dtype, quantization, buffer=0):
    """Append a tensor to ``graph``; its index."""
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name, np.asarray(shape, np.int32), dtype
    tensor.quantization, tensor.buffer = quantization, buffer
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def new_constant(model, graph, name, data, dtype, quantization):
    """Append a constant tensor holding ``data`` (a buffer of its own); its index."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    model.buffers.append(buffer)
    return new_tensor(graph, name, data.shape, dtype, quantization, len(model.buffers) - 1)
