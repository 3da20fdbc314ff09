"""Per-layer error of a converted model: each TFLite op output against the float Keras layer it computes.

The idea of TFLite's ``QuantizationDebugger`` (layer-wise RMSE/SNR of a quantized model), but it works for
already-converted models, quantize-aware (tfmot) ones included: the debugger needs the float graph of the
*same* conversion, whereas here the reference is the float Keras model itself. LiteRT runs with
``experimental_preserve_all_tensors``; each matched op output is dequantized with its own scale and zero
point and compared with the float model's output for the matching layer.

How a TFLite tensor is matched to a Keras layer (names as TF 2.21's converter writes them; each rule is
checked numerically in tests/test_evaluate.py, where the matched layer is the one the tensor agrees with):

* Tensor names join the TF op names the converter fused, with ``;``:
  ``tiny/relu1/Relu;tiny/bn1/FusedBatchNormV3;tiny/conv1/BiasAdd;...``. Every ``/``-separated scope of
  every part except the op name itself is a candidate layer name; tfmot wraps layers as ``quant_<name>``
  (``tiny/quant_conv1/Conv2D``), so ``quant_`` is stripped when the exact name is not a layer. A fused op
  outputs the value of the *last* of its layers in the float model's (topological) order: conv→bn→relu
  fused into one CONV_2D is the ReLU's output.
* A fold can drop a layer's name: a bias-free conv followed by a scale-only BatchNorm (beta = mean = 0,
  e.g. at its initial values) becomes ``tiny/conv2/Conv2D1``, whose value is the BatchNorm's output;
  Dropout never appears. So a matched layer hands its tensor on to its successor while that successor is
  a BatchNormalization or Dropout, its only consumer, has no other input, owns no tensor in the graph
  and keeps the shape.
* A layer lowered to several ops (``Conv2D(activation="sigmoid")`` → CONV_2D + LOGISTIC; a custom layer's
  internals such as SE's pool/convs/mul) matches the last of them in graph order: the op that computes
  the layer's output comes after every op it depends on.
* A stand-alone BatchNormalization becomes MUL + ADD; when the ADD carries a fused successor's name
  (the ReLU after it), the BN's own output exists nowhere, and its MUL (the scale half alone) is not
  reported as the BN.
* The graph's output often has no layer name (``StatefulPartitionedCall:0``); for single-output models it
  is the float model's output layer -- unless it is a SOFTMAX/LOGISTIC head and the float model has none
  (a logits reference, :mod:`edge_attn.heads`): then the head's input carries the output layer's name. A trailing DEQUANTIZE (float-output models) is looked through.

Not matched, and so absent from the result: QUANTIZE/DEQUANTIZE ops (type conversions, not layers);
float layers the converter fused into another layer's op (conv and bn in conv→bn→relu); tensors whose
shape differs from their layer's output; layers inside nested sub-models (the sub-model's output is
matched as one layer); shared layers (called more than once); for multi-output models, output tensors
that carry no layer name.
"""

import dataclasses
from typing import Callable

import numpy as np

from edge_attn import _compat
from edge_attn._keras import keras, tf
from edge_attn.errors import BadInput
from edge_attn.evaluate.metrics import snr_db_from_energies
from edge_attn.heads import TFLITE_HEAD_OPS, output_head
from edge_attn.litert import invoke_sample, make_interpreter, read_float

_CONVERSION_OPS = {"QUANTIZE", "DEQUANTIZE"}
PROBE_BYTES = 256 * 1024 * 1024  # float32 layer outputs of one sample computed at once, at most
# Layers a converter can fold into their producer without leaving their name on any tensor. Only these
# can take over a producer's tensor: a conv after a ReLU also has one consumer and the same shape, but it
# always computes a tensor of its own (which may carry the next layer's name when that one is fused in).
_TRACELESS_LAYERS = (keras.layers.BatchNormalization, keras.layers.Dropout, keras.layers.ActivityRegularization)


def layer_errors(float_model, tflite_model, x_samples, probe_bytes=PROBE_BYTES):
    """RMSE and SNR of every matched TFLite op output against the float layer it computes, in graph order.

    Returns a list of ``dict(name, op, rmse, snr_db, local_rmse, local_snr_db, scale, tensor, float_range,
    levels, clipped, clipping_snr_db)``: the Keras
    layer name, the TFLite op type, the cumulative (inherited) RMSE and SNR (dB, see
    :mod:`edge_attn.evaluate.metrics`) and the local ones (that layer alone quantized on the float model's
    inputs, :mod:`edge_attn.evaluate.local_error`; None where it cannot be cut out) over all elements of all
    ``x_samples`` (an array or a lazy :class:`edge_attn.data.Samples`, read one sample at a time), the
    tensor's quantization scale (``None`` for a float tensor) and its TFLite name; ``float_range`` is [min, max]
    of the float layer's values over the samples, ``levels`` how many quantization steps that range spans
    (``None`` for a float tensor; see :func:`low_resolution_layers`); ``clipped`` the share of the float values
    beyond what the tensor can represent (more than half a step past its end points) and ``clipping_snr_db``
    the SNR the layer would have if that clipping were its only error (``None``: no clipping or a float
    tensor; see :func:`clipped_layers`).

    Memory is bounded by design, not by the sample count or the number of layers: samples go one at a
    time; the float layers are computed in groups of consecutive layers whose outputs for one sample fit
    in ``probe_bytes`` (float32), each group compared with the TFLite tensors of the same invoke.
    """
    interpreter = make_interpreter(tflite_model, preserve_all_tensors=True)
    matches = match_layers(float_model, interpreter)
    expected = tuple(float_model.input_shape[1:])
    shape = tuple(getattr(x_samples, "shape", np.shape(x_samples)))
    if len(x_samples) == 0 or shape[1:] != expected:
        raise BadInput("input data", f"expected samples of shape {expected}, got {shape}")
    if not matches:
        return []
    groups = layer_groups([4 * int(np.prod(m["output"].shape[1:])) for m in matches], probe_bytes)
    probes = [keras.Model(float_model.inputs, [matches[k]["output"] for k in group]) for group in groups]
    local = _LocalErrors(tflite_model, interpreter, matches, groups)
    signal = np.zeros(len(matches))
    error = np.zeros(len(matches))
    low, high = np.full(len(matches), np.inf), np.full(len(matches), -np.inf)
    bounds = [_representable(m["detail"]) for m in matches]
    beyond, beyond_energy = np.zeros(len(matches)), np.zeros(len(matches))
    for index in range(len(x_samples)):
        sample = np.asarray(x_samples[index:index + 1], np.float32)
        invoke_sample(interpreter, sample[0])  # the matched tensors stay readable until the next invoke
        local.start_sample(sample)
        for number, (group, probe) in enumerate(zip(groups, probes)):
            float_outputs = probe(sample, training=False)
            float_outputs = float_outputs if len(group) > 1 else [float_outputs]
            for k, output in zip(group, float_outputs):
                reference = np.asarray(output[0], np.float64)
                quantized = read_float(interpreter, matches[k]["detail"])[0].astype(np.float64)
                signal[k] += np.sum(reference**2)
                error[k] += np.sum((reference - quantized) ** 2)
                low[k], high[k] = min(low[k], reference.min()), max(high[k], reference.max())
                if bounds[k] is not None:
                    excess = reference - np.clip(reference, *bounds[k])
                    beyond[k] += np.count_nonzero(excess)
                    beyond_energy[k] += np.sum(excess ** 2)
                local.keep_boundary(k, output)
            local.compare_group(number, group, float_outputs)
            del float_outputs
    results = []
    for k, match in enumerate(matches):
        elements = len(x_samples) * int(np.prod(match["detail"]["shape"]))
        scale = float(match["detail"]["quantization"][0])
        results.append({
            "name": match["name"],
            "op": match["op"],
            "rmse": float(np.sqrt(error[k] / elements)),
            "snr_db": snr_db_from_energies(signal[k], error[k]),
            **local.result(k, elements),
            "scale": scale or None,
            "tensor": match["detail"]["name"],
            "float_range": [float(low[k]), float(high[k])],
            "levels": round(float(high[k] - low[k]) / scale, 1) if scale else None,
            "clipped": float(beyond[k] / elements) if bounds[k] is not None else None,
            "clipping_snr_db": snr_db_from_energies(signal[k], beyond_energy[k]) if beyond[k] else None,
        })
    return results


def _representable(detail):
    """[low, high] of the float values an integer tensor keeps (half a step past its end points rounds onto
    them), or None for a float tensor."""
    scale, zero_point = detail["quantization"]
    if not scale or not np.issubdtype(detail["dtype"], np.integer):
        return None
    info = np.iinfo(detail["dtype"])
    return (info.min - zero_point - 0.5) * scale, (info.max - zero_point + 0.5) * scale


LOW_LEVELS = 16  # below 4 bits' worth of steps an int8 tensor keeps too little of its layer's values


def low_resolution_layers(layers, below=LOW_LEVELS):
    """The rows of :func:`layer_errors` whose float values span fewer than ``below`` steps of their int8
    tensor. The usual cause: values far from 0 in a narrow band (an input Rescaling/Normalization fed data
    in another range than the one it was built for, e.g. [0, 1] images into a layer expecting [0, 255]):
    an int8 range always contains 0, so the band gets a handful of the 256 steps."""
    return [row for row in layers if row.get("levels") is not None and row["levels"] < below]


def _summary_row(label, rows, worst_first, describe, advice, count):
    """[(label, "the ``count`` worst rows described, "and N more": advice")], or [] without rows."""
    if not rows:
        return []
    names = ", ".join(describe(r) for r in sorted(rows, key=worst_first)[:count])
    more = f" and {len(rows) - count} more" if len(rows) > count else ""
    return [(label, f"{names}{more}: {advice}")]


CLIPPING_SNR_DB = 30.0  # clipping alone limiting a layer below this is worth naming (the budget's SNR is 25 dB)


def clipped_layers(layers, below_db=CLIPPING_SNR_DB):
    """The rows of :func:`layer_errors` whose clipping alone limits their SNR below ``below_db``: the
    evaluated data reach values the calibrated range does not cover (too few or unrepresentative
    calibration samples; after QAT, ranges the fine-tune did not see)."""
    return [row for row in layers if row.get("clipping_snr_db") is not None and row["clipping_snr_db"] < below_db]


@dataclasses.dataclass(frozen=True)
class _RangeDiagnostic:
    """One range problem the terminal, check and report.html name: which rows have it, how to order and
    describe them, and what to do about it."""

    label: str
    rows: Callable
    worst_first: Callable
    describe: Callable
    advice: str


_RANGE_DIAGNOSTICS = {
    "levels": _RangeDiagnostic(
        f"few int8 steps (< {LOW_LEVELS})", low_resolution_layers, lambda r: r["levels"],
        lambda r: f"{r['name']} {r['levels']:g} steps (values {r['float_range'][0]:.4g}..{r['float_range'][1]:.4g})",
        "an int8 range always includes 0, so a narrow band far from 0 keeps only these steps; if it is input "
        "preprocessing, feed data in the range the model expects"),
    "clipped": _RangeDiagnostic(
        f"clipped (< {CLIPPING_SNR_DB:g} dB)", clipped_layers, lambda r: r["clipping_snr_db"],
        lambda r: f"{r['name']} {100 * r['clipped']:.2g}% of values (clipping alone: {r['clipping_snr_db']:.1f} dB)",
        "the data reach beyond the range calibrated on the calibration samples; calibrate on more, or more "
        "representative, samples (calibration_samples in the recipe, --data), or fine-tune with int8-qat so the "
        "ranges are learned"),
}


def describe_ranges(layers, count=3, kinds=tuple(_RANGE_DIAGNOSTICS)):
    """The terminal rows naming the layers with each range problem of ``kinds`` ("levels": few int8 steps,
    "clipped": values beyond the int8 range), the ``count`` worst of each: [(label, text)], no row for a
    problem no layer has."""
    rows = []
    for kind in kinds:
        diagnostic = _RANGE_DIAGNOSTICS[kind]
        rows += _summary_row(diagnostic.label, diagnostic.rows(layers), diagnostic.worst_first,
                             diagnostic.describe, diagnostic.advice, count)
    return rows


class _LocalErrors:
    """Accumulates each matched layer's local error (:mod:`edge_attn.evaluate.local_error`) in the same
    sample loop and layer groups as the cumulative error: one segment model per layer group; per sample,
    the boundary values it needs (the float references, already in the tensors' own integer types, so no
    more than the int8 tensors the preserved interpreter holds anyway)."""

    def __init__(self, tflite_model, interpreter, matches, groups):
        from edge_attn.evaluate import local_error

        self._to_tensor_type = local_error.to_tensor_type
        flat = local_error.read_model(_tflite_bytes(tflite_model))
        tensors = [int(m["detail"]["index"]) for m in matches]
        cuts = local_error.segments(flat, tensors)
        self.matches, self.tensors = matches, tensors
        self.inputs = [_compat.tensor_details(interpreter, int(t)) for t in flat.subgraphs[0].inputs]
        self.needed = {b for cut in cuts.values() if cut for b in cut[1]}
        self.runners, self.groups = [], groups
        for group in groups:
            parts = [(tensors[k], *cuts[tensors[k]]) for k in group if cuts[tensors[k]] is not None]
            try:
                self.runners.append(local_error.LocalGroup(flat, parts) if parts else None)
            except (ValueError, RuntimeError, BadInput):  # LiteRT cannot load the cut-out segment
                self.runners.append(None)
                for k in group:
                    cuts[tensors[k]] = None
        self.signal = np.zeros(len(matches))
        self.error = np.zeros(len(matches))
        self.computed = np.array([cuts[t] is not None for t in tensors])
        self.values = {}

    def start_sample(self, sample):
        self.values = {int(d["index"]): self._to_tensor_type(sample, d) for d in self.inputs}

    def keep_boundary(self, k, output):
        if self.tensors[k] in self.needed:
            self.values[self.tensors[k]] = self._to_tensor_type(np.asarray(output), self.matches[k]["detail"])

    def compare_group(self, number, group, float_outputs):
        runner = self.runners[number]
        if runner is None:
            return
        try:
            outputs = dict(zip((part[0] for part in runner.parts), runner.run(self.values)))
        except (ValueError, RuntimeError):
            # LiteRT refuses the cut-out segment (a graph whose shapes disagree with its own tensors, as a
            # corrupted or unusual model can have): its layers get no local error rather than failing `check`.
            self.runners[number] = None
            for k in self.groups[number]:
                self.computed[k] = False
            return
        for k, output in zip(group, float_outputs):
            if self.tensors[k] in outputs:
                reference = np.asarray(output[0], np.float64)
                local = outputs[self.tensors[k]][0].astype(np.float64)
                self.signal[k] += np.sum(reference**2)
                self.error[k] += np.sum((reference - local) ** 2)

    def result(self, k, elements):
        if not self.computed[k]:
            return {"local_rmse": None, "local_snr_db": None}
        return {"local_rmse": float(np.sqrt(self.error[k] / elements)),
                "local_snr_db": snr_db_from_energies(self.signal[k], self.error[k])}


def _tflite_bytes(tflite_model):
    if isinstance(tflite_model, (bytes, bytearray, memoryview)):
        return bytes(tflite_model)
    from edge_attn.convert.verify import verify_tflite

    return verify_tflite(tflite_model)  # the file make_interpreter already verified and probed


def layer_groups(sizes, budget):
    """Consecutive index groups of ``sizes`` whose sums stay within ``budget`` (a larger item alone)."""
    groups, current, total = [], [], 0
    for index, size in enumerate(sizes):
        if current and total + size > budget:
            groups.append(current)
            current, total = [], 0
        current.append(index)
        total += size
    if current:
        groups.append(current)
    return groups


def match_layers(float_model, interpreter):
    """Pair TFLite op outputs with float-model layers (rules in the module docstring), in graph order.

    ``interpreter`` must preserve all tensors and run without delegates (``make_interpreter(...,
    preserve_all_tensors=True)``) so that its nodes are the model's ops. Returns a list of
    ``dict(name, op, detail, output)``: layer name, TFLite op type, the tensor's details and the layer's
    symbolic output in ``float_model``.
    """
    if not _compat.is_functional(float_model):
        raise BadInput("reference model", "per-layer error needs a functional or sequential Keras model")
    graph = _LayerGraph(float_model)
    order = {layer.name: position for position, layer in enumerate(float_model.layers)}
    ops = _compat.interpreter_ops(interpreter)
    producer = {int(t): op for op in ops for t in op["outputs"]}

    # Which layer each op output computes, by name; conversion ops compute none.
    owner = {}
    for op in ops:
        for t in map(int, op["outputs"]):
            name = _compat.tensor_details(interpreter, t)["name"]
            owner[t] = None if op["op_name"] in _CONVERSION_OPS else _layer_from_tensor_name(name, order)
    outputs = interpreter.get_output_details()
    if len(outputs) == 1 and len(float_model.outputs) == 1:
        t = int(outputs[0]["index"])
        if t in producer and producer[t]["op_name"] == "DEQUANTIZE":
            t = int(producer[t]["inputs"][0])
        # ...unless the graph ends in a head the float model does not have: a logits reference (the head's
        # input, see edge_attn.heads) is the SOFTMAX's input, not its output.
        head_op = t in producer and producer[t]["op_name"] in TFLITE_HEAD_OPS.values()
        if owner.get(t) is None and t in producer and (not head_op or output_head(float_model) is not None):
            owner[t] = float_model.output_names[0]

    layers_with_tensor = {name for name in owner.values() if name is not None}
    chosen = {}  # layer name -> (position in graph order, op, tensor index); the layer's last tensor wins
    for position, op in enumerate(ops):
        for t in map(int, op["outputs"]):
            name = owner[t]
            if name is None:
                continue
            # Hand the tensor on through layers folded into this op without a trace (conv -> bn).
            while (nxt := graph.folded_successor(name)) is not None and nxt not in layers_with_tensor:
                name = nxt
            label = op["op_name"]
            if label == "RESHAPE" and name in chosen:
                label = chosen[name][1]  # a row conv's closing reshape (edge_attn.convert.row_conv): still a conv
            chosen[name] = (position, label, t)

    readers = {}
    for op in ops:
        for t in map(int, op["inputs"]):
            readers.setdefault(t, []).append(op["op_name"])
    matches = []
    for name, (position, op_name, t) in sorted(chosen.items(), key=lambda item: item[1][0]):
        if name in graph.batch_norms and op_name == "MUL" and "ADD" in readers.get(t, []):
            continue  # the scale half of a stand-alone BN's MUL+ADD; its ADD went to a fused successor
        detail = _compat.tensor_details(interpreter, t)
        output = graph.outputs.get(name)
        if output is None or tuple(int(d) for d in detail["shape"]) != (1, *output.shape[1:]):
            continue
        matches.append({"name": name, "op": op_name, "detail": detail, "output": output})
    return matches


def _layer_from_tensor_name(tensor_name, order):
    """The latest float-model layer (by ``order``) named among the scopes of a (fused) tensor name."""
    best = None
    for part in tensor_name.split(";"):
        for scope in part.split("/")[:-1]:  # the last component is the TF op name
            if scope not in order:
                scope = _compat.unwrapped_name(scope)
            if scope in order and (best is None or order[scope] > order[best]):
                best = scope
    return best


class _LayerGraph:
    """The layer-level graph of a functional model: each layer's inputs and its output inside the model.

    Reads the model's nodes the way ``keras.utils.plot_model`` does (each layer's calls that belong to the
    model, :func:`edge_attn._compat.calls_in_model`): a layer can have nodes outside the model (a nested
    model's own graph).
    ``outputs`` holds only layers called once in the model with a single output tensor.
    """

    def __init__(self, model):
        self.outputs, self.inputs, consumers = {}, {}, {}
        self._traceless = {layer.name for layer in model.layers if isinstance(layer, _TRACELESS_LAYERS)}
        self.batch_norms = {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
        for layer in model.layers:
            calls = _compat.calls_in_model(model, layer)
            nodes = _compat.inbound_nodes(layer)
            self.inputs[layer.name] = [parent.name for i in calls for parent in tf.nest.flatten(nodes[i].inbound_layers)]
            for parent in self.inputs[layer.name]:
                consumers.setdefault(parent, []).append(layer.name)
            if len(calls) == 1 and tf.is_tensor(output := layer.get_output_at(calls[0])):
                self.outputs[layer.name] = output
        self._consumers = consumers

    def folded_successor(self, name):
        """The layer after ``name`` if a fold could have hidden it: ``name``'s only consumer, a traceless
        layer (BatchNormalization, Dropout) with no other input and the same output shape."""
        consumers = self._consumers.get(name, [])
        if len(consumers) != 1 or consumers[0] not in self._traceless or len(self.inputs[consumers[0]]) != 1:
            return None
        mine, theirs = self.outputs.get(name), self.outputs.get(consumers[0])
        if mine is None or theirs is None or tuple(mine.shape) != tuple(theirs.shape):
            return None
        return consumers[0]
