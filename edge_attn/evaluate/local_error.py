"""Local error of a converted model: each matched layer run quantized on its own, fed the float model's inputs.

The per-layer error of :mod:`edge_attn.evaluate.per_layer` is *cumulative* (inherited): the int8 model runs
from the input, so a layer's tensor carries the error of everything before it, and one bad layer makes
every later one look bad. The *local* error separates a layer's own damage from what it inherits, the way
ONNX Runtime's ``qdq_loss_debug``, Sony MCT and TFLite's ``QuantizationDebugger`` do:

* For every matched tensor (a layer's output in the TFLite graph) the **segment** is the ops that compute it
  from its **boundary**: the nearest tensors that are either another matched layer's tensor or a graph
  input (constants are weights). Unmatched ops in between (QUANTIZE requantizations, the halves of a fused
  layer) belong to the segment, so a segment is "this layer as the converter lowered it".
* Each segment is cut out of the flatbuffer (its ops copied, constants kept with their buffers and
  quantization parameters, every other tensor copied per segment so segments do not share state), and all
  the segments of a layer group go into one small model whose inputs are the boundary copies.
* A boundary is fed the *float* model's value of that tensor (the float layer's output, or the sample for
  a graph input), quantized with the quantized model's own scale and zero point for that tensor (float
  tensors get the float value); the segment's output is dequantized and compared with the float layer's
  output (RMSE, SNR as in :mod:`edge_attn.evaluate.metrics`).

So the local error of a layer is what its own quantization costs: rounding its inputs to the int8 grid
the model chose, its int8 weights and arithmetic, and its output scale (clipping included). TFLite's
``QuantizationDebugger`` (``tensorflow/lite/tools/optimize/debugging/python/debugger.py``) measures a
neighbour of this: its NumericVerify ops compare each quantized op's dequantized output with a float copy
of the op run on the *quantized model's* dequantized inputs, so input rounding falls outside its layer
error and the comparison needs a float graph of the same conversion; here the inputs come from the float
Keras model itself, which is what makes it work on already-converted (QAT) models too. A layer that only
inherits error has a high local SNR and a low cumulative one; the culprit has a low local SNR.

Not computed (``local_snr_db`` None): a segment with an op that calls another subgraph or carries
intermediate tensors (the same ops :mod:`edge_attn.evaluate.op_profile` cannot cut out), or whose
boundary is a tensor with no float counterpart (a variable, an unmatched graph input).
"""

import math

import numpy as np

from edge_attn.litert import quantize

_NOT_ISOLABLE = ("WHILE", "IF", "CALL_ONCE", "CALL")


def read_model(tflite_bytes):
    """The flatbuffer of ``tflite_bytes`` as LiteRT's object API (``ModelT``)."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))


def segments(model, matched_tensors):
    """For each matched tensor index, ``(op indices in graph order, boundary tensor indices)`` or None.

    ``model`` is the quantized model as a flatbuffer ``ModelT`` (subgraph 0, whose operator order is the
    interpreter's execution order without delegates); ``matched_tensors`` the matched layers' tensors.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    names = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in graph.operators]
    producer = {int(t): position for position, op in enumerate(graph.operators) for t in op.outputs}
    constants = {index for index, tensor in enumerate(graph.tensors) if _has_data(model, tensor)}
    stops = set(map(int, matched_tensors)) | set(map(int, graph.inputs))
    result = {}
    for tensor in map(int, matched_tensors):
        members, boundary, pending, ok = set(), [], [producer[tensor]], True
        while pending:
            position = pending.pop()
            if position in members:
                continue
            members.add(position)
            op = graph.operators[position]
            if names[position] in _NOT_ISOLABLE or (op.intermediates is not None and len(op.intermediates)):
                ok = False
            for t in map(int, op.inputs):
                if t < 0 or t in constants:
                    continue
                if t in stops:
                    if t not in boundary:
                        boundary.append(t)
                elif t in producer:
                    pending.append(producer[t])
                else:
                    ok = False  # a tensor nothing computes and the float model does not know (a variable)
        result[tensor] = (sorted(members), boundary) if ok else None
    return result


def _has_data(model, tensor):
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    return data is not None and len(data) > 0


def segment_model(model, parts):
    """One .tflite (bytes) computing every segment of ``parts`` on its own.

    ``model`` is the quantized model as a flatbuffer ``ModelT``; ``parts`` a list of ``(output tensor,
    op indices, boundary tensors)``. The new model's inputs are the boundary copies, segment after segment
    in ``parts`` order; its outputs the segments' outputs, one per part.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    local = schema.ModelT()
    local.version = model.version
    local.description = "edge_attn local-error segments"
    local.operatorCodes = model.operatorCodes
    local.buffers = [schema.BufferT()]
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = [], [], [], []
    shared_constants = {}

    def constant_copy(index):
        if index not in shared_constants:
            tensor = graph.tensors[index]
            copy = tensor_copy(tensor)
            buffer = schema.BufferT()
            buffer.data = model.buffers[tensor.buffer].data
            copy.buffer = len(local.buffers)
            local.buffers.append(buffer)
            shared_constants[index] = len(sub.tensors)
            sub.tensors.append(copy)
        return shared_constants[index]

    for output, op_indices, boundary in parts:
        remap = {}

        def own_copy(index):
            if index not in remap:
                tensor = graph.tensors[index]
                if _has_data(model, tensor):
                    return constant_copy(index)
                copy = tensor_copy(tensor)
                copy.buffer = 0
                remap[index] = len(sub.tensors)
                sub.tensors.append(copy)
            return remap[index]

        sub.inputs += [own_copy(t) for t in boundary]
        for position in op_indices:
            op = graph.operators[position]
            new_op = schema.OperatorT()
            new_op.opcodeIndex = op.opcodeIndex
            new_op.inputs = [own_copy(i) if i >= 0 else -1 for i in op.inputs]
            new_op.outputs = [own_copy(i) for i in op.outputs]
            new_op.builtinOptionsType, new_op.builtinOptions = op.builtinOptionsType, op.builtinOptions
            new_op.builtinOptions2Type = getattr(op, "builtinOptions2Type", 0)
            new_op.builtinOptions2 = getattr(op, "builtinOptions2", None)
            new_op.customOptions = op.customOptions
            sub.operators.append(new_op)
        sub.outputs.append(own_copy(output))
    local.subgraphs = [sub]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(local))


def tensor_copy(tensor):
    """A new ``TensorT`` with ``tensor``'s shape, type, name and quantization (the buffer is set by the caller)."""
    from ai_edge_litert import schema_py_generated as schema

    copy = schema.TensorT()
    for key in ("shape", "type", "name", "quantization", "isVariable", "sparsity", "shapeSignature"):
        setattr(copy, key, getattr(tensor, key))
    return copy


class LocalGroup:
    """The segments of one layer group in one interpreter: feed boundaries, invoke, read each output."""

    def __init__(self, model, parts):
        from edge_attn.litert import make_interpreter

        self.parts = parts
        # The same kernels as the whole model's per-layer run (LiteRT's builtin ones, no XNNPACK), so that
        # local and cumulative differ only in their inputs.
        self.interpreter = make_interpreter(segment_model(model, parts), preserve_all_tensors=True)
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    def run(self, boundary_values):
        """Dequantized output of every part (a list, ``parts`` order) from ``boundary_values``: original
        tensor index -> the value (batch of 1) for that boundary, already in the tensor's own type
        (:func:`to_tensor_type` with the original tensor's details)."""
        from edge_attn.litert import read_float

        slot = 0
        for _, _, boundary in self.parts:
            for tensor in boundary:
                detail = self.inputs[slot]
                self.interpreter.set_tensor(detail["index"], boundary_values[tensor])
                slot += 1
        self.interpreter.invoke()
        return [read_float(self.interpreter, detail) for detail in self.outputs]


def to_tensor_type(value, detail):
    """A float value as the tensor described by ``detail`` holds it: quantized with the tensor's own
    scale and zero point for an integer tensor, cast for a float one."""
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return np.asarray(value, dtype)
    scale, zero_point = detail["quantization"]
    return quantize(value, scale, zero_point, dtype)


def local_snr(layer):
    """A ``layers`` entry's local SNR in dB: ``inf`` for a bit-exact one (written as null in report.json,
    with ``local_rmse`` 0), None where it was not computed."""
    value = layer.get("local_snr_db")
    if value is None and layer.get("local_rmse") == 0:
        return math.inf
    return value


def rank_by_local_error(layers):
    """The ``layers`` entries (from :func:`edge_attn.evaluate.per_layer.layer_errors`, or report.json's
    ``layers``) worst local error first: lowest local SNR first, bit-exact ones after every finite one,
    layers without a local figure last; ties by cumulative SNR (lowest first).

    This is the ranking a precision search starts from: the first entries are the layers whose own
    quantization costs the most, not the ones that only inherit it.
    """
    def key(layer):
        local = local_snr(layer)
        cumulative = layer.get("snr_db")
        return (local is None, math.inf if local is None else local,
                math.inf if cumulative is None else cumulative)
    return sorted(layers, key=key)


def describe_worst_layers(layers, count=3):
    """``check``'s terminal rows: the worst layers by local error, each with its cumulative SNR beside it,
    then the weakest by cumulative SNR (where the error shows up). [(label, text)]."""
    def db(value):
        return "-" if value is None else ("inf" if math.isinf(value) else f"{value:.1f}")

    culprits = [l for l in rank_by_local_error(layers) if local_snr(l) is not None][:count]
    weakest = sorted((l for l in layers if l["snr_db"] is not None), key=lambda l: l["snr_db"])[:count]
    return [("worst local SNR (own error)", ", ".join(f"{l['name']} {db(local_snr(l))} dB (cumulative "
                                                      f"{db(l['snr_db'])} dB)" for l in culprits) or "-"),
            ("weakest cumulative SNR", ", ".join(f"{l['name']} {db(l['snr_db'])} dB (local "
                                                 f"{db(local_snr(l))} dB)" for l in weakest) or "-")]
