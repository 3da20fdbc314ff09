"""Put chosen ops of an int8 flatbuffer back into float: DEQUANTIZE in, the op in float, QUANTIZE out.

A quantize-aware model converts with its fake-quant ranges, and TF's converter quantizes every op between
them: the ``denylisted_nodes`` of its MLIR quantizer, which leave an op in float after post-training
calibration, are not honoured there (measured on TF 2.21: the op of a layer QAT kept float still came out
int8, with int8 weights). So a QAT float rule is applied to the converted flatbuffer instead: each chosen op
reads float tensors (a DEQUANTIZE of each int8 activation input, once per tensor; the float output of a
chosen op that feeds it directly), its constant operands become float32 (``weights`` override: the Keras
layer's own float weights where they are what the converter quantized, else the int8 values dequantized),
and it writes a float tensor; a QUANTIZE back to the original int8 tensor (same scale) follows wherever a
non-float op or the graph output reads it (where the int8 tensor was only dequantized, for a float32 model
output, the op writes that DEQUANTIZE's float tensor itself and the DEQUANTIZE goes). The float tensor takes
the op's output name, so name-based matching (per-layer error, precision islands) attributes it to the same
layers; the int8 tensor the QUANTIZE writes is renamed ``<name>/int8``.
"""

import numpy as np

from edge_attn.convert.flatbuffer_pass import builtin, constant_data, new_constant, new_tensor, opcode_index
from edge_attn.convert.flatbuffer_pass import rewrite_subgraphs, tensor_name
from edge_attn.convert.inspect import builtin_name, schema

_TYPES = schema.TensorType
_QUANTIZED = frozenset({_TYPES.INT8, _TYPES.UINT8, _TYPES.INT16})
_BORDER = frozenset({schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE})


def compute_in_float(tflite_bytes, output_names, weights=None):
    """``(flatbuffer, [{"tensor", "op", "weights", "outputs"}])``: the ops writing a tensor named in
    ``output_names`` computed in float; ``outputs`` names the float tensors each now writes (a float32 graph
    output's own name where the op writes it directly). ``weights``: ``{output name: {input position: float32 array in TFLite layout}}`` to use
    instead of dequantizing an int8 constant, each taken only if it rounds to the stored int8 values (else the
    dequantized values are used); the returned ``weights`` says ``"float"``, ``"int8 grid"`` or ``"none"``."""
    names = set(output_names)
    overrides = weights or {}

    def rewrite(model, graph):
        return _rewrite_subgraph(model, graph, names, overrides)

    return rewrite_subgraphs(tflite_bytes, rewrite)


def _scale_and_zero(data, quantization):
    """The quantization's scale and zero point, shaped to broadcast over ``data`` (per-channel on its axis)."""
    scale = np.asarray(quantization.scale, np.float64)
    zero = np.asarray(quantization.zeroPoint if quantization.zeroPoint is not None else [0], np.float64)
    shape = [1] * data.ndim
    if scale.size > 1:
        shape[quantization.quantizedDimension or 0] = scale.size
    return scale.reshape(shape), zero.reshape(shape)


def _dequantized(data, quantization):
    scale, zero = _scale_and_zero(data, quantization)
    return ((data.astype(np.float64) - zero) * scale).astype(np.float32)


def _rounds_to(candidate, data, quantization):
    """Whether quantizing ``candidate`` with ``quantization`` gives ``data`` back (within one step at ties)."""
    if candidate is None or tuple(candidate.shape) != tuple(data.shape):
        return False
    scale, _ = _scale_and_zero(data, quantization)
    return bool(np.all(np.abs(candidate - _dequantized(data, quantization)) <= 0.501 * np.abs(scale) + 1e-12))


def _float_tensor(graph, like, name):
    return new_tensor(graph, name, like.shape, _TYPES.FLOAT32, None)


def _border_op(code, source, target):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, [source], [target]
    return op


def _chosen(model, graph, op, names):
    outputs = [graph.tensors[t] for t in (op.outputs if op.outputs is not None else [])]
    return (builtin(model, op) not in _BORDER and outputs and all(t.type in _QUANTIZED for t in outputs)
            and any(tensor_name(t) in names for t in outputs))


def _rewrite_subgraph(model, graph, names, overrides):
    ops = list(graph.operators or [])
    chosen = {index for index, op in enumerate(ops) if _chosen(model, graph, op, names)}
    if not chosen:
        return []
    readers = {}
    for index, op in enumerate(ops):
        for t in op.inputs if op.inputs is not None else []:
            readers.setdefault(int(t), set()).add(index)
    graph_outputs = {int(t) for t in (graph.outputs if graph.outputs is not None else [])}
    dequantize = opcode_index(model, schema.BuiltinOperator.DEQUANTIZE)
    quantize = opcode_index(model, schema.BuiltinOperator.QUANTIZE)
    as_float, rewritten, done, dropped = {}, [], [], set()
    for index, op in enumerate(ops):
        if index in dropped:
            continue
        if index not in chosen:
            rewritten.append(op)
            continue
        out_name = tensor_name(graph.tensors[int(op.outputs[0])])
        given = overrides.get(out_name, {})
        used = "none"
        inputs = []
        for position, t in enumerate(op.inputs):
            t = int(t)
            tensor = graph.tensors[t] if t >= 0 else None
            if tensor is None or tensor.type not in _QUANTIZED and tensor.type != _TYPES.INT32:
                inputs.append(t)
                continue
            data = constant_data(model, tensor)
            quantized = tensor.quantization is not None and tensor.quantization.scale is not None \
                and len(tensor.quantization.scale) > 0
            if data is None and quantized:  # an int8 activation: its float twin, or a DEQUANTIZE of it
                if t not in as_float:
                    as_float[t] = _float_tensor(graph, tensor, f"{tensor_name(tensor)}/float")
                    rewritten.append(_border_op(dequantize, t, as_float[t]))
                inputs.append(as_float[t])
            elif data is not None and quantized:  # an int8 weight or int32 bias
                candidate = given.get(position)
                exact = _rounds_to(candidate, data, tensor.quantization)
                values = np.asarray(candidate, np.float32) if exact else _dequantized(data, tensor.quantization)
                if tensor.type != _TYPES.INT32:
                    used = "float" if exact else "int8 grid"
                inputs.append(new_constant(model, graph, f"{tensor_name(tensor)}/float", values, _TYPES.FLOAT32, None))
            else:  # an int32 operand that is not quantized (axes, shapes): as it is
                inputs.append(t)
        originals, outputs, requantize = [int(t) for t in op.outputs], [], []
        for t in originals:
            others = readers.get(t, set()) - chosen
            dequantized = [ops[i] for i in others if builtin(model, ops[i]) == schema.BuiltinOperator.DEQUANTIZE]
            if len(others) == 1 and len(dequantized) == 1 and t not in graph_outputs:
                # int8 only to be dequantized (a float32 graph output): write the float tensor directly
                (skip,) = others
                dropped.add(skip)
                as_float[t] = int(dequantized[0].outputs[0])
                graph.tensors[t].name = f"{tensor_name(graph.tensors[t])}/int8"  # no longer computed
            else:
                tensor = graph.tensors[t]
                name = tensor_name(tensor)
                as_float[t] = _float_tensor(graph, tensor, name)
                tensor.name = f"{name}/int8"
                if others or t in graph_outputs:
                    requantize.append(t)
            outputs.append(as_float[t])
        op.inputs, op.outputs = inputs, outputs
        rewritten.append(op)
        rewritten += [_border_op(quantize, as_float[t], t) for t in requantize]
        done.append({"tensor": out_name, "op": builtin_name(builtin(model, op)), "weights": used,
                     "outputs": [tensor_name(graph.tensors[t]) for t in outputs]})
    graph.operators = rewritten
    return done
