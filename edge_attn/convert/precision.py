"""Per-layer precision rules: parse them, decide each op's precision, convert, and name the islands.

A calibrated recipe (``int8``, ``int16x8``) may hold an ordered list of ``[[precision]]`` tables::

    [[precision]]
    match = "^stage3_"      # a regular expression searched in Keras layer names (re.search)
    precision = "float"     # "int8" | "int16x8" | "float"

Every op of the converted graph belongs to the layers named in its output tensor's name (TF's converter
joins the names of the ops it fused: ``model/stage1_conv/BiasAdd;model/stage1_bn/...``; the graph output,
often unnamed, belongs to the model's output layer). An op takes the precision of the **first** rule that
matches any of its layers; ops no rule matches keep the recipe's own precision (the *base*).

TF's converter cannot mix activation widths in one model (16-bit activations go through its older
quantizer, which has no per-op choice, and its MLIR quantizer's ``denylisted_nodes`` only leaves ops in
float), so a recipe with rules is converted by Google's AI Edge Quantizer (``ai-edge-quantizer``), which
quantizes a float .tflite op by op from a regex-scoped recipe and puts QUANTIZE/DEQUANTIZE (or int8↔int16
requantize) ops at the borders of each island: the float model is converted to f32 TFLite, each op whose
precision differs from the base gets its own exactly-anchored scope, and the quantizer calibrates on the
recipe's representative samples. Its recipes are "last match wins"; the base rule comes first and the
per-op scopes after it, which gives edge_attn's "first matching rule wins" on layer names. Inputs and
outputs stay float32: the quantizer would quantize them in place at the base precision, so they get entries
of their own (:func:`_graph_edge_entries`) and a QUANTIZE/DEQUANTIZE beside the first and last ops.

:func:`describe_islands` reads the result: each island (connected ops computing at a precision other than
the base), its layers and ops, which rule put it there, and what it costs: bytes against the same
conversion without rules, and each delegate's partitions and delegated ops against it
(:func:`edge_attn.delegates.check_compat`).
"""

import re

from edge_attn.convert.float_gate import refuse_float_ops
from edge_attn.convert.float_islands import compute_in_float
from edge_attn.convert.recipe import PRECISIONS, PrecisionRule, parse_precision_rules  # noqa: F401 (re-exported)
from edge_attn.convert.tracing import is_quantize_aware, new_converter, trace
from edge_attn.errors import BadInput

SIGNATURE = "serving_default"  # the signature the quantizer runs (added to the float model: see _with_signature)
_BORDER_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_FLOAT = frozenset({"float32", "float16"})


def base_precision(recipe):
    """The precision of ops no rule matches: the recipe's own quantization."""
    return "int16x8" if recipe.quantization == "int16x8" else "int8"


def op_layers(tensor_name, layer_names):
    """The Keras layers named among the scopes of a (fused) TFLite tensor name, in the order they appear.
    tfmot's ``quant_`` wrapper prefix is looked through."""
    from edge_attn._compat import unwrapped_name

    found = []
    for part in tensor_name.split(";"):
        for scope in part.split("/")[:-1]:  # the last component is the TF op name
            name = scope if scope in layer_names else unwrapped_name(scope)
            if name in layer_names and name not in found:
                found.append(name)
    return found


def assign_precisions(info, rules, base, layer_names, output_layers=()):
    """Per op of ``info`` (a :class:`~edge_attn.convert.TFLiteInfo`): ``dict(index, op, layers, precision,
    rule)`` — ``rule`` the 1-based position of the rule that decided (None: the base)."""
    graph_outputs = {t.index for t in info.outputs}
    # a float32 model output is a DEQUANTIZE (or QUANTIZE) of the last layer's tensor: that tensor is the output too
    graph_outputs |= {t for op in info.ops if op.op in _BORDER_OPS and set(op.outputs) & graph_outputs
                      for t in op.inputs}
    result = []
    for op in info.ops:
        layers = []
        for t in op.outputs:
            layers += [n for n in op_layers(info.tensors[t].name, layer_names) if n not in layers]
        if not layers and set(op.outputs) & graph_outputs:
            layers = list(output_layers)
        precision, decided_by = base, None
        for position, rule in enumerate(rules, 1):
            if any(rule.matches(name) for name in layers):
                precision, decided_by = rule.precision, position
                break
        result.append({"index": op.index, "op": op.op, "layers": layers, "precision": precision,
                       "rule": decided_by, "scope": _scope(info, op)})
    return result


def rules_matching_nothing(rules, layer_names):
    """1-based positions of rules that match no layer of the model (almost always a typo)."""
    return [i for i, rule in enumerate(rules, 1) if not any(rule.matches(n) for n in layer_names)]


def convert_mixed(model, recipe, samples, what, *, rules=None):
    """Convert ``model`` (float Keras) per ``recipe`` and its precision rules (``rules`` overrides them; ``()``
    converts everything at the base precision through the same quantizer). Returns the .tflite bytes."""
    from edge_attn.convert.inspect import inspect_tflite

    rules = recipe.precision if rules is None else rules
    layer_names = _layer_names_every_rule_matches(model, recipe, rules, what)
    float_tflite = _with_signature(_float_tflite(model, what))
    info = inspect_tflite(float_tflite)
    base = base_precision(recipe)
    assigned = assign_precisions(info, rules, base, layer_names, model.output_names)
    entries = [_aeq_entry(".*", base)]
    for op in assigned:
        if op["precision"] != base and op["scope"]:
            entries.append(_aeq_entry("^" + re.escape(op["scope"]) + "$", op["precision"]))
    entries += _graph_edge_entries(info)
    # every op float: nothing to calibrate (the quantizer refuses an empty calibration), the float model it is
    data = float_tflite if all(a["precision"] == "float" for a in assigned) else \
        _quantize(float_tflite, entries, samples, what)
    result = inspect_tflite(data)
    asked_float = {a["scope"] for a in assigned if a["precision"] == "float" and a["scope"]}
    # the QUANTIZE/DEQUANTIZE at a requested float island's borders convert types, they are not float layers
    skip = {op.index for op in result.ops if _scope(result, op) in asked_float
            or (asked_float and op.op in _BORDER_OPS)}
    refuse_float_ops(data, recipe, what, "the mixed-precision quantizer has no kernel for them at "
                                         f"{base}; ", skip=skip)
    return data


def _graph_edge_entries(info):
    """Quantizer entries that keep the graph's input and output tensors float32. The quantizer treats them as
    ops of their own (``INPUT``/``OUTPUT``) that the base ``.*`` entry matches, and would quantize them in
    place: the model would then take int8 (or int16) inputs at the base's scale even when its first layer is
    float or int16x8 (measured on digits-glare: strokes in [0, 1] beside a highlight of 64 kept 4 of 256
    steps, and raising every layer to float gained 5 of the 27 dB it lacked). Kept float, each border gets a
    QUANTIZE/DEQUANTIZE at the precision of the op beside it."""
    return [{**_aeq_entry("^" + re.escape(tensor.name) + ";?$", "float"), "operation": role}
            for role, tensors in (("INPUT", info.inputs), ("OUTPUT", info.outputs))
            for tensor in tensors if tensor.name]


def _float_tflite(model, what):
    """``model`` as a plain float32 .tflite (batch 1), the quantizer's input."""
    import dataclasses as _dataclasses

    from edge_attn.convert.recipe import load_recipe

    recipe = _dataclasses.replace(load_recipe("f32"), batch_size=1)
    try:
        return bytes(new_converter(trace(model, recipe, what)).convert())
    except BadInput:
        raise
    except Exception as e:
        raise BadInput(what, f"float conversion before mixed-precision quantization failed: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e


def _layer_names_every_rule_matches(model, recipe, rules, what):
    """The model's layer names (:func:`model_layer_names`); a rule matching none of them is a typo: refused."""
    layer_names = model_layer_names(model)
    unmatched = rules_matching_nothing(rules, layer_names)
    if unmatched:
        position = unmatched[0]
        raise BadInput(recipe.source or recipe.name, f"precision[{position}].match: {rules[position - 1].match!r} "
                                                     f"matches no layer of {what}")
    return layer_names


def model_layer_names(model):
    """Layer names as rules see them: tfmot's ``quant_`` wrapper prefix looked through."""
    from edge_attn._compat import unwrapped_name

    return {unwrapped_name(layer.name) for layer in model.layers}


def convert_qat_with_float_layers(function, model, recipe, samples, what, *, rules=None):
    """Convert a quantize-aware ``model`` (traced as ``function``) leaving the ops of float-rule layers in float.

    Quantization-aware training put no fake-quant on those layers (:func:`edge_attn.qat.quantize_aware`'s
    ``keep_float``), but TF's converter would still calibrate them into int8 from the samples. So, as
    ``tf.lite.experimental.QuantizationDebugger`` does, the converter stops after calibration and TF's MLIR
    quantizer runs with those ops' output tensors denylisted; the fake-quant ranges are kept for the rest.
    Between fake-quant ranges the quantizer makes the denylisted ops int8 all the same (TF 2.21), so
    :func:`~edge_attn.convert.float_islands.compute_in_float` then puts them into float, with the Keras
    layers' float weights where those are what was quantized.
    Only ``float`` and ``int8`` rules apply (the recipe parser refuses ``int16x8`` ones under QAT).
    """
    from edge_attn import _compat
    from edge_attn._keras import tf
    from edge_attn.convert.inspect import inspect_tflite

    rules = recipe.precision if rules is None else rules
    layer_names = _layer_names_every_rule_matches(model, recipe, rules, what)
    if samples is None:
        raise BadInput(what, "precision rules on a quantize-aware model need representative samples (the float "
                             "layers' neighbours are calibrated)")
    converter = new_converter(function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample] for sample in samples)
    try:
        calibrated = bytes(_compat.calibrate_only(converter).convert())
        info = inspect_tflite(calibrated)
        assigned = assign_precisions(info, rules, "int8", layer_names, model.output_names)
        denylist = [info.tensors[t].name for a in assigned if a["precision"] == "float"
                    for t in info.ops[a["index"]].outputs]
        data = bytes(_compat.mlir_quantize(calibrated, denylist))
        # The MLIR quantizer leaves the denylisted ops int8 between fake-quant ranges: put them into float here.
        data, floated = compute_in_float(data, denylist, _keras_float_weights(model, info, assigned))
    except BadInput:
        raise
    except Exception as e:
        raise BadInput(what, f"conversion with precision rules failed: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e
    result = inspect_tflite(data)
    # the float ops asked for: denylisted by name, or written float by compute_in_float (under the graph
    # output's name when it writes a float32 output directly)
    denied = set(denylist) | {name for entry in floated for name in entry["outputs"]}
    skip = {op.index for op in result.ops if op.op in _BORDER_OPS
            or any(result.tensors[t].name in denied for t in op.outputs)} if denied else set()
    refuse_float_ops(data, recipe, what, "no int8 kernel or no quantization range; ", skip=skip)
    return data


def _tflite_layout(layer, op):
    """``{input position: array}``: ``layer``'s float kernel (and bias) laid out as TFLite ``op`` holds them."""
    from edge_attn._keras import keras

    kernel = layer.kernel.numpy()
    if op == "FULLY_CONNECTED":
        kernel = kernel.T
    elif op == "DEPTHWISE_CONV_2D" and kernel.ndim == 4:
        kernel = kernel.reshape(*kernel.shape[:2], -1)[None]
    elif op == "CONV_2D" and isinstance(layer, keras.layers.Conv1D):
        kernel = kernel.transpose(2, 0, 1)[:, None]
    elif op == "CONV_2D" and kernel.ndim == 4:
        kernel = kernel.transpose(3, 0, 1, 2)
    else:
        return {}
    bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
    return {1: kernel, **({2: bias.numpy()} if bias is not None else {})}


def _keras_float_weights(model, info, assigned):
    """For the float ops of a quantize-aware conversion: the Keras layer's own float weights, by the op's output
    name (:func:`edge_attn.convert.float_islands.compute_in_float` takes them where they are what was quantized;
    a BatchNormalization folded into the op, for one, makes them differ and the int8 values are used)."""
    from edge_attn._compat import unwrapped_name

    by_name = {unwrapped_name(layer.name): getattr(layer, "layer", layer)  # a QuantizeWrapper holds the layer
               for layer in model.layers}
    weights = {}
    for entry in assigned:
        if entry["precision"] != "float":
            continue
        op = info.ops[entry["index"]]
        layer = next((by_name[n] for n in entry["layers"] if getattr(by_name.get(n), "kernel", None) is not None), None)
        if layer is not None:
            weights[info.tensors[op.outputs[0]].name] = _tflite_layout(layer, entry["op"])
    return weights


def _aeq_entry(regex, precision):
    """One AI Edge Quantizer recipe entry (its JSON recipe format, ``recipes/default_a8w8_recipe.json``)."""
    if precision == "float":
        return {"regex": regex, "operation": "*", "algorithm_key": "no_quantize"}
    activation_bits = 16 if precision == "int16x8" else 8
    return {
        "regex": regex, "operation": "*", "algorithm_key": "min_max_uniform_quantize",
        "op_config": {
            # int16 activations are symmetric (zero point 0), as TFLite's 16x8 kernels require
            "activation_tensor_config": {"num_bits": activation_bits, "symmetric": activation_bits == 16,
                                         "granularity": "TENSORWISE", "dtype": "INT"},
            "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE",
                                     "dtype": "INT"},
            "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
            "min_weight_elements": 0,
        },
    }


def _calibrate_min_max(float_tflite, entries, calibration):
    """Each tensor's range over all calibration samples, as TF's converter calibrates.

    ``Quantizer.calibrate`` merges the samples' ranges by a moving average (``qsv_utils.moving_average_update``,
    smoothing 0.95 per sample): the ranges end near the last samples' own, narrower than the data. Measured on
    ``se_resnet20`` trained on digits-glare (16×16), every layer int16x8: 19.1 dB against the float model,
    with 8% of one SE layer's held-out values clipped, where TF's own int16x8 conversion (global min/max) gives
    41 dB. Its ``Calibrator`` takes the update function: ``min_max_update`` keeps the extremes."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(entries)
    calibration_run = calibrator.Calibrator(bytes(float_tflite), num_threads=1,
                                            qsv_update_func=qsv_utils.min_max_update)
    calibration_run.calibrate(calibration, manager)
    return calibration_run.get_model_qsvs()


def _quantize(float_tflite, entries, samples, what):
    import contextlib
    import io
    import logging

    import numpy as np

    try:
        from ai_edge_quantizer import quantizer
    except ImportError as e:
        raise BadInput("precision", "per-layer precision rules need the AI Edge Quantizer: "
                                    "pip install 'edge-attn[mixed]' (ai-edge-quantizer)") from e
    calibration = {SIGNATURE: [{"input": np.asarray(sample, np.float32)} for sample in samples]}
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    try:
        absl_logger.setLevel(logging.ERROR)  # "Overwrite operation ... config" lines per op
        # its progress report (stdout) and calibration progress bar (tqdm, stderr): the CLI prints its own lines
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            qt = quantizer.Quantizer(bytearray(float_tflite), entries)
            result = qt.quantize(_calibrate_min_max(float_tflite, entries, calibration), enable_progress_report=False)
    except BadInput:
        raise
    except Exception as e:
        raise BadInput(what, f"mixed-precision quantization failed: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e
    finally:
        absl_logger.setLevel(level)
    return bytes(result.quantized_model)


def _scope(info, op):
    """The quantizer's name for an op: its output tensor names joined by ``;``, with a trailing ``;``."""
    names = [info.tensors[t].name for t in op.outputs if info.tensors[t].name]
    return ";".join(names) + ";" if names else ""


def _with_signature(tflite):
    """``tflite`` with a ``serving_default`` signature (input ``input``, output ``output``) when it has none:
    edge_attn converts from a concrete function (no SignatureDef, see :mod:`edge_attn.convert.converter`),
    and the quantizer addresses a model's inputs through its signature."""
    from edge_attn.convert.inspect import flatbuffer_utils, schema

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    if model.signatureDefs:
        return tflite
    subgraph = model.subgraphs[0]
    signature = schema.SignatureDefT()
    signature.signatureKey = SIGNATURE
    signature.subgraphIndex = 0
    signature.inputs, signature.outputs = [], []
    for names, indices in ((signature.inputs, subgraph.inputs), (signature.outputs, subgraph.outputs)):
        for position, index in enumerate(indices):
            entry = schema.TensorMapT()
            stem = "input" if names is signature.inputs else "output"
            entry.name = stem if len(indices) == 1 else f"{stem}_{position}"
            entry.tensorIndex = int(index)
            names.append(entry)
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ---------------------------------------------------------------- what the result holds


def op_precision(info, op):
    """What ``op`` computes in: ``"float"``, ``"int16x8"``, ``"int8"``, ``"border"`` (QUANTIZE/DEQUANTIZE: a
    type conversion at an island's edge) or None (no activation tensor, e.g. int32 shape arithmetic)."""
    if op.op in _BORDER_OPS:
        return "border"
    dtypes = {info.tensors[i].dtype for i in op.inputs + op.outputs if i >= 0 and not info.tensors[i].is_constant}
    if dtypes & _FLOAT or any(info.tensors[i].dtype in _FLOAT for i in op.inputs if i >= 0):
        return "float"
    if "int16" in dtypes:
        return "int16x8"
    if dtypes & {"int8", "uint8"}:
        return "int8"
    return None


def describe_islands(model, recipe, tflite, base_tflite=None):
    """The precision section of report.json for ``tflite`` converted from ``model`` per ``recipe``.

    ``base_tflite``: the same conversion without rules (:func:`convert_mixed` with ``rules=()``), for what
    the islands cost; None leaves the cost out. See docs/report-json.md ("precision")."""
    from edge_attn.convert.inspect import inspect_tflite

    info = inspect_tflite(tflite)
    base = base_precision(recipe)
    layer_names = model_layer_names(model)
    assigned = {a["index"]: a for a in assign_precisions(info, recipe.precision, base, layer_names,
                                                          model.output_names)}
    computed = {op.index: op_precision(info, op) for op in info.ops}
    order = {unwrapped: position for position, unwrapped in enumerate(_unwrapped_names_in_order(model))}
    off_base = {i for i, p in computed.items() if p not in (None, "border", base)}
    islands = []
    for group in _connected(info, off_base, computed):
        ops = [info.ops[i] for i in group]
        precision = computed[group[0]]
        rules = sorted({assigned[i]["rule"] for i in group if assigned[i]["rule"] is not None
                        and assigned[i]["precision"] == precision})
        layers = sorted({n for i in group for n in assigned[i]["layers"]}, key=order.get)
        islands.append({
            "precision": precision,
            "layers": layers,
            "ops": [f"{op.op} #{op.index}" for op in ops],
            "rules": rules,
            "why": (f"precision rule {', '.join(str(r) for r in rules)}" if rules else
                    f"not requested: the quantizer has no {base} kernel for {', '.join(sorted({o.op for o in ops}))}"),
        })
    requested = [a for a in assigned.values() if a["rule"] is not None and computed[a["index"]] not in
                 (a["precision"], "border", None)]
    section = {
        "base": base,
        "rules": [rule.to_dict() for rule in recipe.precision],
        "islands": islands,
        "border_ops": sum(1 for p in computed.values() if p == "border"),
        "not_honoured": [f"{a['op']} #{a['index']} ({', '.join(a['layers'])}): rule {a['rule']} asked "
                         f"{a['precision']}, computes in {computed[a['index']]}" for a in requested],
    }
    if base_tflite is not None:
        section["cost"] = _cost(tflite, base_tflite)
    return section


def _unwrapped_names_in_order(model):
    from edge_attn._compat import unwrapped_name

    return [unwrapped_name(layer.name) for layer in model.layers]


def _connected(info, members, computed):
    """Groups of ``members`` (op indices) connected through tensors to an op of the same precision."""
    producer = {t: op.index for op in info.ops for t in op.outputs}
    parent = {i: i for i in members}

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in members:
        for t in info.ops[i].inputs:
            j = producer.get(t)
            if j in parent and computed[j] == computed[i]:
                parent[find(i)] = find(j)
    groups = {}
    for i in sorted(members):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())


def _cost(tflite, base_tflite):
    """Bytes and, per delegate, partitions and delegated ops with the islands against without them."""
    from edge_attn.delegates import check_compat
    from edge_attn.evaluate.results import TARGET_DELEGATES

    delegates = []
    for name in TARGET_DELEGATES:
        with_islands, without = check_compat(tflite, name), check_compat(base_tflite, name)
        delegated = sum(1 for v in with_islands.ops if v.delegated)
        delegated_base = sum(1 for v in without.ops if v.delegated)
        delegates.append({
            "delegate": name,
            "partitions": with_islands.partitions, "partitions_without_rules": without.partitions,
            "delegated_ops": delegated, "op_count": len(with_islands.ops),
            "delegated_ops_without_rules": delegated_base, "op_count_without_rules": len(without.ops),
            "splits": with_islands.partitions > without.partitions,
        })
    return {"bytes": len(tflite), "bytes_without_rules": len(base_tflite),
            "bytes_added": len(tflite) - len(base_tflite),
            "delegates_split": [d["delegate"] for d in delegates if d["splits"]], "delegates": delegates}


def precision_report(model, recipe, tflite, representative, *, name=None):
    """:func:`describe_islands` with the cost measured: ``model`` is converted once more at the base precision
    through the same quantizer (same calibration samples), the baseline the islands are priced against."""
    import itertools

    import numpy as np

    what = name or f"model {model.name!r}"
    samples = [np.asarray(s, np.float32) for s in itertools.islice(representative, recipe.calibration_samples)]
    if is_quantize_aware(model, recipe):  # the same QAT model, its float-rule layers calibrated into int8
        base_tflite = convert_qat_with_float_layers(trace(model, recipe, what), model, recipe, samples, what,
                                                    rules=())
    else:
        base_tflite = convert_mixed(model, recipe, samples, what, rules=())
    return describe_islands(model, recipe, tflite, base_tflite)


def float_rule_layers(recipe):
    """``keep_float(layer_name)`` for :func:`edge_attn.qat.quantize_aware`: whether the first rule matching the
    layer says ``float`` (None when the recipe has no float rule)."""
    if not any(rule.precision == "float" for rule in recipe.precision):
        return None

    def keep_float(name):
        return next((rule.precision for rule in recipe.precision if rule.matches(name)), None) == "float"

    return keep_float
