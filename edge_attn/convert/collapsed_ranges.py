"""Widen the output scale of int8 convs and fully-connected ops whose calibrated range collapsed to ~0.

A ReLU that no calibration sample turns on (a dead unit, or a whole dead layer: seen in the demo's trained
``cbam_resnet20``, whose channel-attention max-path ``fc1`` gave 0 on all 200 PTQ samples) gets the range
[0, ~1e-6] from the converter, an output scale of 7.8e-9. XNNPACK refuses any int8 conv or fully-connected
op whose requantization scale ``input_scale * kernel_scale[c] / output_scale`` is 256 or more
(``src/operators/convolution-nhwc.c`` and ``fully-connected-nc.c``: "requantization scale ... is greater or
equal to 256.0"), and the delegate then fails the *whole* model ("failed to create XNNPACK runtime") — an app
loading it the default way fails, and the CPU fallback was 30x slower (cbam_resnet20 int8-ptq: 4.55 ms
instead of 0.14).

Here such an op's output scale becomes ``input_scale * max(kernel_scale) / TARGET_REQUANTIZATION``. Its
int8 output then still represents everything it did (the range only grows; it spans about one accumulator
step, so a dead unit stays at zero), and the consumers read the new scale from the tensor. Only done where
every consumer takes any input scale: a conv or fully-connected op (its int32 bias is rescaled to the new
``input_scale * weight_scale``, the TFLite spec's bias scale) or an op that requantizes its input anyway
(LOGISTIC, TANH, QUANTIZE, DEQUANTIZE). Ops are visited in graph order, so a consumer pushed over the
limit by its wider input is fixed in turn.
"""

import numpy as np

from edge_attn.convert.flatbuffer_pass import builtin as _builtin, rewrite_subgraphs, tensor_name
from edge_attn.convert.inspect import schema

XNNPACK_MAX_REQUANTIZATION = 256.0  # exclusive
TARGET_REQUANTIZATION = 128.0  # a factor of 2 below the limit, clear of float32 rounding

_OPS = schema.BuiltinOperator
_WEIGHTED = {_OPS.CONV_2D, _OPS.DEPTHWISE_CONV_2D, _OPS.FULLY_CONNECTED}
# Consumers whose int8 kernels requantize from whatever input scale the tensor carries.
# (Not ADD, MUL, MEAN: XNNPACK bounds their input-to-output scale ratios too, and a wider input could cross them.)
_ANY_INPUT_SCALE = _WEIGHTED | {_OPS.LOGISTIC, _OPS.TANH, _OPS.QUANTIZE, _OPS.DEQUANTIZE}


def widen_collapsed_ranges(tflite_bytes):
    """``(flatbuffer bytes, [output tensor names widened])``; the input bytes unchanged when none is needed."""
    return rewrite_subgraphs(tflite_bytes, _widen_subgraph)


def _scales(tensor):
    q = tensor.quantization
    return None if q is None or q.scale is None or len(q.scale) == 0 else np.asarray(q.scale, np.float64)


def _widen_subgraph(model, graph):
    ops = list(graph.operators or [])
    readers = {}
    for op in ops:
        for t in op.inputs if op.inputs is not None else []:
            if t >= 0:
                readers.setdefault(int(t), []).append(op)
    widened = []
    for op in ops:
        if _builtin(model, op) not in _WEIGHTED or len(op.inputs) < 2 or len(op.outputs) != 1:
            continue
        x, w, out = (graph.tensors[int(t)] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        if not all(t.type == schema.TensorType.INT8 for t in (x, w, out)):
            continue
        s_in, s_w, s_out = _scales(x), _scales(w), _scales(out)
        if s_in is None or s_w is None or s_out is None or s_in.size != 1 or s_out.size != 1:
            continue
        if float(s_in[0] * s_w.max() / s_out[0]) < XNNPACK_MAX_REQUANTIZATION:
            continue
        consumers = readers.get(int(op.outputs[0]), [])
        if any(_builtin(model, c) not in _ANY_INPUT_SCALE for c in consumers):
            continue
        new_scale = float(s_in[0] * s_w.max() / TARGET_REQUANTIZATION)
        for consumer in consumers:
            if _builtin(model, consumer) in _WEIGHTED and int(consumer.inputs[0]) == int(op.outputs[0]):
                _rescale_bias(model, graph, consumer, float(s_out[0]), new_scale)
        out.quantization.scale = np.asarray([new_scale], np.float32)
        widened.append(tensor_name(out))
    return widened


def _rescale_bias(model, graph, op, old_input_scale, new_input_scale):
    """Keep ``bias_scale == input_scale * weight_scale`` for ``op`` after its input's scale changed."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return
    bias = graph.tensors[int(op.inputs[2])]
    if bias.type != schema.TensorType.INT32 or not bias.buffer:
        return
    values = np.frombuffer(np.asarray(model.buffers[bias.buffer].data, np.uint8).tobytes(), np.int32)
    factor = old_input_scale / new_input_scale
    rescaled = np.clip(np.round(values.astype(np.float64) * factor), -2**31, 2**31 - 1).astype(np.int32)
    buffer = schema.BufferT()  # a buffer of its own: another op may share the old one
    buffer.data = np.frombuffer(rescaled.tobytes(), np.uint8)
    model.buffers.append(buffer)
    bias.buffer = len(model.buffers) - 1
    bias.quantization.scale = (np.asarray(bias.quantization.scale, np.float64) / factor).astype(np.float32)
