"""The tensor types an app sees at a bundled model's input and output: uint8 or float32 around an int8 graph.

The tflite-support Task Library (``ImageClassifier``, what Android apps call) and Android Studio's ML Model
Binding image path take only uint8 or float32 image inputs and outputs; an int8 model's int8 I/O is refused
("Type mismatch for input tensor x. Requested one of these types: kTfLiteUint8/kTfLiteFloat32, got INT8").
:func:`with_interface` wraps the unchanged int8 graph in standard TFLite ops:

``uint8``
    a uint8 input tensor quantized as ``scale = 1/std, zero point = mean`` — so its real value is exactly the
    metadata's ``(pixel - mean) / std`` when an app (the Task Library does) feeds raw 0..255 pixels — then a
    ``QUANTIZE`` (uint8 → int8) requantizing to the graph's own input parameters; at the output a ``QUANTIZE``
    (int8 → uint8) with the same scale and zero point + 128, which is exact. Needs one mean and one std for all
    channels, with an integral mean in 0..255 (a zero point is an integer).
``float32``
    ``QUANTIZE`` (float32 → int8) at the input, ``DEQUANTIZE`` at the output: the app normalizes the pixels
    itself (the Task Library does, from the metadata) and reads float logits. Works with any normalization.
``keep``
    the model's own tensors (the LiteRT Interpreter takes any type).

``auto`` (the default) is float32 for int8 image models: both uint8 and float32 work with the Task Library,
but XNNPACK requantizes only within one signedness, so a uint8 → int8 QUANTIZE is left to the CPU kernels
(two extra partitions), while float32 QUANTIZE/DEQUANTIZE edges are delegated with the graph.

LiteRT's ``modify_model_interface`` (``_pywrap_modify_model_interface``, the only part of
``tensorflow/lite/tools/optimize`` the TF 2.21 / ai-edge-litert wheels ship) goes the other way — it strips the
float QUANTIZE/DEQUANTIZE edges of a float-interface model — and gives a uint8 input the int8 input's scale,
not the app's normalization, so it does not apply to edge_attn's int8-I/O models; the few tensors and ops are
added here with LiteRT's public ``flatbuffer_utils`` object API instead.
"""

import numpy as np

from edge_attn.convert.inspect import flatbuffer_utils, schema
from edge_attn.errors import BadInput

INTERFACES = ("auto", "uint8", "float32", "keep")
_TYPE_CODES = {"int8": schema.TensorType.INT8, "uint8": schema.TensorType.UINT8,
               "float32": schema.TensorType.FLOAT32}


def uint8_input_quantization(mean, std):
    """``(scale, zero_point)`` of a uint8 input whose raw 0..255 values mean ``(pixel - mean) / std``, or
    ``(None, reason)`` when no uint8 quantization expresses that normalization exactly."""
    if len(set(mean)) != 1 or len(set(std)) != 1:
        return None, "the normalization differs per channel and a uint8 input has one scale and zero point"
    m, s = mean[0], std[0]
    if s <= 0:
        return None, f"std {s!r} is not positive"
    if m != round(m) or not 0 <= m <= 255:
        return None, f"mean {m!r} is not an integer in 0..255 (a uint8 zero point)"
    return (float(np.float32(1.0 / s)), int(m)), None


def choose_interface(requested, input_dtype, output_dtype, image, mean, std):
    """The interface to give the bundled model and why: ``(interface, reason)``.

    ``auto`` makes int8 image models work with the Task Library with float32 edges: XNNPACK (the CPU default)
    takes float32 QUANTIZE/DEQUANTIZE but not a uint8 → int8 requantization (it requantizes only within one
    signedness), so uint8 edges cost it two partitions; other models keep their tensors. An explicit choice
    that cannot be made is a BadInput.
    """
    int8_io = input_dtype == "int8" and output_dtype == "int8"
    if requested not in INTERFACES:
        raise BadInput("--interface", f"unknown interface {requested!r}; expected one of {', '.join(INTERFACES)}")
    if requested == "keep":
        return "keep", "requested: the model's own tensors"
    if requested == "auto":
        if not int8_io:
            return "keep", f"the model's tensors are already {input_dtype} in, {output_dtype} out"
        if not image:
            return "keep", "not an image input (the Task Library's image classifier does not apply)"
        return "float32", ("float32 around the int8 graph, for the Task Library and ML Model Binding "
                           "(XNNPACK takes float32 edges; uint8 ones it leaves to the CPU kernels)")
    if input_dtype == requested and output_dtype == requested:
        return "keep", f"the model's tensors are already {requested}"
    if not int8_io:
        raise BadInput("--interface", f"{requested} I/O is added around an int8 graph, but this model has "
                                      f"{input_dtype} input and {output_dtype} output; use --interface keep")
    if requested == "uint8":
        quantization, why_not = uint8_input_quantization(mean, std)
        if quantization is None:
            raise BadInput("--interface", f"uint8 input impossible: {why_not}; use --interface float32")
    return requested, "requested"


def with_interface(model_bytes, interface, mean=None, std=None):
    """``model_bytes`` with ``interface`` (``uint8`` / ``float32``) tensors around its int8 input and output.

    The int8 graph itself is untouched: the old int8 input and output tensors become internal, renamed
    ``<name>_int8``; the new ones take their names (and their places in the signature), so a caller that
    looks tensors up by name or signature finds the new ones.
    """
    if interface == "keep":
        return model_bytes
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    if len(model.subgraphs) != 1:
        raise BadInput("--interface", f"the model has {len(model.subgraphs)} subgraphs; a new interface is added "
                                      "to single-subgraph models only (use --interface keep)")
    graph = model.subgraphs[0]
    for which, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        q = graph.tensors[index].quantization
        if graph.tensors[index].type != schema.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != 1:
            raise BadInput("--interface", f"the model's {which} is not a per-tensor quantized int8 tensor; "
                                          "use --interface keep")
        if not (np.isfinite(q.scale[0]) and q.scale[0] > 0):  # a requantizing QUANTIZE divides by it
            raise BadInput("--interface", f"the model's {which} has quantization scale {q.scale[0]!r} (not a "
                                          "positive number): the model is damaged")
    input_quant = (_quantization(*uint8_input_quantization(tuple(mean), tuple(std))[0])
                   if interface == "uint8" else None)
    input_op = _opcode(model, schema.BuiltinOperator.QUANTIZE, version=2)  # version 2: int8 output
    old_in = graph.inputs[0]
    new_in = _add_tensor(graph, old_in, _TYPE_CODES[interface], input_quant)
    graph.operators.insert(0, _operator(input_op, new_in, old_in))

    old_out = graph.outputs[0]
    if interface == "uint8":
        q = graph.tensors[old_out].quantization
        output_quant = _quantization(float(q.scale[0]), int(q.zeroPoint[0]) + 128)
        output_op = _opcode(model, schema.BuiltinOperator.QUANTIZE, version=1)  # version 1: uint8 output
    else:
        output_quant = None
        output_op = _opcode(model, schema.BuiltinOperator.DEQUANTIZE, version=2)  # version 2: int8 input
    new_out = _add_tensor(graph, old_out, _TYPE_CODES[interface], output_quant)
    graph.operators.append(_operator(output_op, old_out, new_out))

    graph.inputs = np.array([new_in], dtype=np.int32)
    graph.outputs = np.array([new_out], dtype=np.int32)
    for signature in model.signatureDefs or []:
        for entry, old, new in [(e, old_in, new_in) for e in signature.inputs or []] + \
                               [(e, old_out, new_out) for e in signature.outputs or []]:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _quantization(scale, zero_point):
    q = schema.QuantizationParametersT()
    q.scale = [scale]
    q.zeroPoint = [zero_point]
    return q


def _add_tensor(graph, like, type_code, quantization):
    """A new non-constant tensor shaped like tensor ``like``, which is renamed ``<name>_int8``."""
    old = graph.tensors[like]
    tensor = schema.TensorT()
    tensor.name = old.name
    tensor.shape = None if old.shape is None else np.array(old.shape, dtype=np.int32)
    tensor.shapeSignature = None if old.shapeSignature is None else np.array(old.shapeSignature, dtype=np.int32)
    tensor.type = type_code
    tensor.buffer = 0  # buffer 0 is the empty sentinel: no data, an activation
    tensor.quantization = quantization
    old.name = (old.name.decode("utf-8") if isinstance(old.name, bytes) else old.name) + "_int8"
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _opcode(model, builtin, version):
    """The index of ``builtin`` at ``version`` in the model's operator codes, added when missing."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == version:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)  # the int8 field holds codes below 128 (PLACEHOLDER beyond)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _operator(opcode_index, source, target):
    op = schema.OperatorT()
    op.opcodeIndex = opcode_index
    op.inputs = np.array([source], dtype=np.int32)
    op.outputs = np.array([target], dtype=np.int32)
    return op
