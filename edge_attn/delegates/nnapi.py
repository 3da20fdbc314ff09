"""NNAPI delegate rules by Android API level, from ``docs/delegate-rules.md`` section 2
(``NNAPIDelegateKernel::Validate`` in ``nnapi_delegate.cc``).

Every check reads ``target.android_api``, the device SDK level (27 = NNAPI 1.0 … 30 = NNAPI 1.3). With default
options the delegate counts as "accelerator specified" from API 29 (the NNAPI CPU reference device is excluded),
which lifts MUL's version cap and the quantized AVERAGE_POOL_2D window limit. Relaxations that need NNAPI feature
level 6 (int32 RESHAPE, int32/uint8 PACK) are never assumed: feature levels are NNAPI-module updates, not API
numbers. The verdicts are an upper bound: the vendor driver can still refuse ops.

NNAPI is deprecated from Android 15 (API 35) — developer.android.com/ndk/guides/neuralnetworks. LiteRT's
successor for NPUs is its NPU accelerator running a vendor AOT-compiled model: ``edge-attn compat --delegate qnn
--soc SOC`` asks Qualcomm's real compiler (:mod:`edge_attn.targets.qnn`) and ``edge-attn compile --npu qnn:SOC``
writes the model to ship; the GPU delegate and the CPU path (XNNPACK) remain the portable choices.
"""

from edge_attn.delegates.rules import Check, Delegate, OpRule, is_quant8

SOURCE = "tflite/delegates/nnapi/nnapi_delegate.cc"
DEPRECATION_SOURCE = "developer.android.com/ndk/guides/neuralnetworks"
DEPRECATED_FROM = 35
FIRST_API, LAST_API = 27, 36
API_NAMES = {27: "NNAPI 1.0, Android 8.1", 28: "NNAPI 1.1, Android 9", 29: "NNAPI 1.2, Android 10",
             30: "NNAPI 1.3, Android 11", 31: "Android 12", 32: "Android 12L", 33: "Android 13", 34: "Android 14",
             35: "Android 15", 36: "Android 16"}
QUANT8 = frozenset({"uint8", "int8"})
FLOAT_OR_QUANT8 = QUANT8 | {"float32"}


def api_label(level):
    return f"API {level} ({API_NAMES[level]})"


def _needs(level, what, api):
    """A finding for a feature that exists from ``level`` on."""
    return api >= level, (f"{what} from {api_label(level)}" if api >= level
                          else f"{what} needs {api_label(level)}")


def _min_api(level, what):
    return Check(lambda op, t: _needs(level, what, t.android_api), SOURCE)


def _input_in(allowed_for_api, what="input"):
    """The first input's dtype must be in ``allowed_for_api(api)`` (Validate only looks at input 0)."""
    def test(op, target):
        allowed = allowed_for_api(target.android_api)
        dtype = op.input(0).dtype
        if dtype in allowed:
            return True, f"{what} {dtype}"
        return False, f"{what} {dtype} not supported at API {target.android_api} (takes {', '.join(sorted(allowed))})"
    return Check(test, SOURCE)


FLOAT_OR_QUANT8_INPUT = _input_in(lambda api: FLOAT_OR_QUANT8)


def _ranks_at_most_4(*positions, outputs=False):
    def test(op, target):
        tensors = [op.input(p) for p in positions if op.input(p) is not None]
        tensors += list(op.outputs) if outputs else []
        worst = max(len(t.shape) for t in tensors)
        return worst <= 4, f"rank {worst} ≤ 4" if worst <= 4 else f"rank-{worst} tensor (NNAPI takes rank ≤ 4)"
    return Check(test, SOURCE)


def _elementwise_types(op, target):
    """ADD/MUL: float32 or 8-bit; int32 from API 30, without a fused activation."""
    dtype = op.input(0).dtype
    if dtype == "int32":
        found = [_needs(30, "int32 ADD/MUL", target.android_api)]
        if op.activation not in (None, "NONE"):
            found.append((False, f"int32 with fused activation {op.activation} not supported"))
        return found
    return dtype in FLOAT_OR_QUANT8, f"input {dtype}" + ("" if dtype in FLOAT_OR_QUANT8 else " not supported")


def _mul_version(op, target):
    cap = 3 if target.accelerator_specified else 2
    ok = op.version <= cap
    return ok, (f"op version {op.version} ≤ {cap}" if ok else
                f"op version {op.version} > 2 needs an accelerator-specified delegate (default from API 29)")


def _restricted_scales(op):
    """Before NNAPI 1.2, uint8 conv/FC needs input_scale × filter_scale < output_scale."""
    x, w, y = op.input(0), op.input(1), op.outputs[0]
    if not (x.scales and w.scales and y.scales):
        return None
    ok = x.scales[0] * w.scales[0] < y.scales[0]
    return ok, ("input×filter scale < output scale" if ok
                else "uint8 needs input×filter scale < output scale below API 29")


def _pre_29_weighted_op(op, api, found):
    """Rules CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED share below API 29."""
    x, w = op.input(0), op.input(1)
    if api >= 29:
        found.append((True, f"input {x.dtype}"))
        return
    if x.dtype == "float32" and w is not None and is_quant8(w):
        found.append((False, "hybrid op (float input, 8-bit weights) needs API 29 (NNAPI 1.2, Android 10)"))
    if x.dtype not in ("float32", "uint8"):
        found.append((False, f"{x.dtype} input needs API 29 (NNAPI 1.2, Android 10); below it only float32/uint8"))
    elif x.dtype == "uint8":
        restricted = _restricted_scales(op)
        if restricted is not None:
            found.append(restricted)
    if not any(not ok for ok, _ in found):
        found.append((True, f"{x.dtype} input"))


def _conv(op, target):
    api, x, w = target.android_api, op.input(0), op.input(1)
    found = [(len(op.inputs) == 3, "bias slot present" if len(op.inputs) == 3
              else "Conv2D with omitted bias not supported (node has no bias input)")]
    _pre_29_weighted_op(op, api, found)
    if api < 29 and w is not None and len(w.scales) > 1:
        found.append((False, "per-channel quantized filter needs API 29 (NNAPI 1.2, Android 10)"))
    if (op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)) != (1, 1):
        found.append(_needs(29, "dilated CONV_2D", api))
    if api < 29 and x.shape[-1:] != w.shape[-1:]:
        found.append((False, "grouped convolution needs API 29 (NNAPI 1.2, Android 10)"))
    return found


def _depthwise(op, target):
    api, found = target.android_api, []
    _pre_29_weighted_op(op, api, found)
    dilated = (op.options.get("dilationHFactor", 1), op.options.get("dilationWFactor", 1)) != (1, 1)
    if dilated:
        found.append(_needs(29, "dilated DEPTHWISE_CONV_2D", api))
    return found


def _fully_connected(op, target):
    api, found = target.android_api, []
    if op.outputs[0].dtype == "int16":
        found.append((False, "int16 output not supported"))
    _pre_29_weighted_op(op, api, found)
    if op.options.get("keepNumDims"):
        found.append(_needs(30, "keep_num_dims", api))
    return found


def _mean(op, target):
    api, x, y = target.android_api, op.input(0), op.outputs[0]
    found = [_needs(28, "MEAN", api)]
    if is_quant8(x):
        found.append(_needs(29, "quantized MEAN", api))
    elif x.dtype != "float32":
        found.append((False, f"{x.dtype} input (takes float32, or 8-bit from API 29)"))
    found.append((len(y.shape) > 0, "non-scalar output" if y.shape else "scalar output not supported"))
    found.append((len(x.shape) <= 4, f"input rank {len(x.shape)}" + ("" if len(x.shape) <= 4 else " > 4")))
    return found


def _sum(op, target):
    x, y = op.input(0), op.outputs[0]
    return [_needs(29, "SUM", target.android_api),
            (x.dtype == "float32", "float32 input" if x.dtype == "float32"
             else f"{x.dtype} SUM never delegated (float32 only; use MEAN)"),
            (len(y.shape) > 0, "non-scalar output" if y.shape else "scalar output not supported")]


def _reduce_max(op, target):
    x = op.input(0)
    return [_needs(29, "REDUCE_MAX", target.android_api),
            (x.dtype in FLOAT_OR_QUANT8, f"input {x.dtype}" + ("" if x.dtype in FLOAT_OR_QUANT8 else " not supported")),
            (len(x.shape) > 0, "non-scalar input" if x.shape else "scalar input not supported")]


def _hard_swish(op, target):
    if target.android_api < 30:
        return True, "decomposed into basic NNAPI ops below API 30"
    return None


def _concatenation(op, target):
    x = op.input(0)
    found = [(op.activation in (None, "NONE"), "no fused activation" if op.activation in (None, "NONE")
              else f"fused activation {op.activation} not supported"),
             (len(x.shape) <= 4, f"input rank {len(x.shape)}" + ("" if len(x.shape) <= 4 else " > 4")),
             (x.dtype in FLOAT_OR_QUANT8 | {"float16"}, f"input {x.dtype}")]
    if x.dtype == "uint8" and target.android_api < 29:
        params = {(t.scales[:1], t.zero_points[:1]) for t in op.inputs if t is not None}
        found.append((len(params) == 1, "uint8 inputs share scale and zero point" if len(params) == 1
                      else "uint8 inputs with different scales/zero points need API 29"))
    return found


def _reshape(op, target):
    x, y, shape = op.input(0), op.outputs[0], op.input(1)
    found = [(x.dtype in FLOAT_OR_QUANT8, f"input {x.dtype}" + ("" if x.dtype in FLOAT_OR_QUANT8 else
                                                                 " (int32 needs NNAPI feature level 6)")),
             (len(x.shape) <= 4 and len(y.shape) <= 4, f"ranks {len(x.shape)} -> {len(y.shape)}" +
              ("" if len(x.shape) <= 4 and len(y.shape) <= 4 else " (NNAPI takes rank ≤ 4)"))]
    if shape is not None:
        found.append((shape.is_constant, "constant shape" if shape.is_constant
                      else "shape tensor computed at runtime (must be constant)"))
    else:
        new_shape = op.options.get("newShape")
        found.append((new_shape is not None and len(new_shape) > 0, "new shape from options"))
    return found


def _average_pool(op, target):
    if not is_quant8(op.input(0)) or target.accelerator_specified:
        return None
    area = op.options.get("filterHeight", 1) * op.options.get("filterWidth", 1)
    return area <= 256, f"quantized pool window {area}" + ("" if area <= 256 else " > 256 below API 29")


def _pad(op, target):
    api, x = target.android_api, op.input(0)
    found = [_needs(28, "PAD", api), (0 not in x.shape, "non-empty input" if 0 not in x.shape
                                      else "input with no elements not supported")]
    if len(op.inputs) == 3:
        found.append(_needs(29, "explicit pad value (PADV2)", api))
    elif api < 29:
        found.append((x.dtype == "float32", "float32 input" if x.dtype == "float32"
                      else f"{x.dtype} PAD needs API 29 (NNAPI 1.2, Android 10)"))
    return found


def _quantize(op, target):
    api, x, y = target.android_api, op.input(0), op.outputs[0]
    found = [_needs(29, "QUANTIZE", api),
             (x.dtype in FLOAT_OR_QUANT8, f"input {x.dtype}"),
             (bool(y.scales) and y.scales[0] > 0, "output scale > 0")]
    if y.dtype == "int8":
        found.append(_needs(30, "int8 QUANTIZE output", api))
    elif y.dtype != "uint8":
        found.append((False, f"{y.dtype} output not supported"))
    return found


def _dequantize(op, target):
    api, x = target.android_api, op.input(0)
    if x.dtype == "float16":
        if x.is_constant:
            return True, "constant fp16 weights remapped to fp32 (only when the whole graph is delegated)"
        return _needs(30, "fp16 -> fp32 DEQUANTIZE", api)
    found = [(op.version in (1, 2), f"op version {op.version}" + ("" if op.version in (1, 2) else " (only 1 or 2)"))]
    if x.dtype == "int8":
        found.append(_needs(29, "int8 DEQUANTIZE", api))
        if api == 29:
            zero = all(z == 0 for z in x.zero_points)
            found.append((zero, "zero point 0" if zero else "at API 29 int8 needs zero point 0 (symmetric)"))
    elif x.dtype != "uint8":
        found.append((False, f"{x.dtype} input not supported"))
    return found


def _softmax(op, target):
    x, y = op.input(0), op.outputs[0]
    rank = len(x.shape)
    found = [(y.dtype in FLOAT_OR_QUANT8, f"output {y.dtype}"), (rank <= 4, f"input rank {rank}")]
    if target.android_api < 29:
        found.append((rank in (2, 4), f"rank {rank}" + ("" if rank in (2, 4) else " needs API 29 (only 2-D/4-D)")))
    return found


def _pack(op, target):
    x = op.input(0)
    axis = op.options.get("axis", 0)
    return [_needs(30, "PACK", target.android_api),
            (x.dtype in ("float32", "int8"), f"input {x.dtype}" + ("" if x.dtype in ("float32", "int8") else
                                                                   " (int32/uint8 need NNAPI feature level 6)")),
            (axis not in (-1, len(x.shape)), f"pack axis {axis}" + ("" if axis not in (-1, len(x.shape))
                                                                    else " is the last one (not supported)"))]


def _transpose(op, target):
    perm = op.input(1)
    return [_needs(28, "TRANSPOSE", target.android_api),
            (perm is not None and perm.is_constant, "constant permutation" if perm is not None and perm.is_constant
             else "permutation computed at runtime (must be constant)")]


def _topk(op, target):
    k = op.input(1)
    return [_needs(29, "TOPK_V2", target.android_api),
            (op.input(0).dtype in FLOAT_OR_QUANT8 | {"int32"}, f"input {op.input(0).dtype}"),
            (k.dtype == "int32" and k.is_constant, "constant int32 k" if k.dtype == "int32" and k.is_constant
             else "k must be a constant int32")]


def _gather(op, target):
    positions = op.input(1)
    ok = positions.dtype == "int32" and len(positions.shape) > 0
    return [_needs(29, "GATHER", target.android_api),
            (op.input(0).dtype in FLOAT_OR_QUANT8 | {"int32", "float16"}, f"input {op.input(0).dtype}"),
            (ok, "int32 positions" if ok else "positions must be int32 and not 0-D")]


def _arg_max(op, target):
    axis = op.input(1)
    values = op.ints(axis) if axis.dtype == "int64" else None
    axis_ok = axis.dtype == "int32" or (bool(values) and abs(values[0]) < 2 ** 31)
    return [_needs(29, "ARG_MAX", target.android_api),
            (op.input(0).dtype in FLOAT_OR_QUANT8 | {"int32", "float16"}, f"input {op.input(0).dtype}"),
            (axis_ok, "int32 axis" if axis_ok else "axis must be int32 (or a small constant int64)"),
            (op.outputs[0].dtype == "int32", f"{op.outputs[0].dtype} output" +
             ("" if op.outputs[0].dtype == "int32" else " (NNAPI ARG_MAX outputs int32 only)"))]


def _rule(checks, max_version=None):
    return OpRule(SOURCE, tuple(c if isinstance(c, Check) else Check(c, SOURCE) for c in checks), max_version)


RULES = {
    "CONV_2D": _rule([_conv], 5),
    "DEPTHWISE_CONV_2D": _rule([_depthwise], 3),
    "FULLY_CONNECTED": _rule([_fully_connected], 5),
    "ADD": _rule([_elementwise_types, _ranks_at_most_4(0, 1)], 2),
    "MUL": _rule([_mul_version, _elementwise_types, _ranks_at_most_4(0, 1)]),
    "MEAN": _rule([_mean], 2),
    "SUM": _rule([_sum], 1),
    "REDUCE_MAX": _rule([_reduce_max], 2),
    "LOGISTIC": _rule([FLOAT_OR_QUANT8_INPUT], 2),
    "RELU": _rule([FLOAT_OR_QUANT8_INPUT], 2),
    "RELU6": _rule([FLOAT_OR_QUANT8_INPUT], 2),
    "HARD_SWISH": _rule([FLOAT_OR_QUANT8_INPUT, _hard_swish]),
    "CONCATENATION": _rule([_concatenation], 2),
    "RESHAPE": _rule([_reshape], 1),
    "MAX_POOL_2D": _rule([FLOAT_OR_QUANT8_INPUT], 2),
    "AVERAGE_POOL_2D": _rule([FLOAT_OR_QUANT8_INPUT, _average_pool], 2),
    "PAD": _rule([FLOAT_OR_QUANT8_INPUT, _pad], 2),
    "PADV2": _rule([FLOAT_OR_QUANT8_INPUT, _pad], 2),
    "QUANTIZE": _rule([_quantize], 2),
    "DEQUANTIZE": _rule([_dequantize]),
    "SOFTMAX": _rule([FLOAT_OR_QUANT8_INPUT, _softmax], 2),
    "STRIDED_SLICE": _rule([FLOAT_OR_QUANT8_INPUT, _min_api(28, "STRIDED_SLICE")], 2),
    "PACK": _rule([_pack], 2),
    "TRANSPOSE": _rule([_transpose], 2),
    "TOPK_V2": _rule([_topk], 2),
    "GATHER": _rule([_gather], 2),
    "ARG_MAX": _rule([_arg_max], 2),
    "SHAPE": OpRule(SOURCE, never="SHAPE is not an NNAPI operation (not in Validate)"),
    "CUSTOM:*": OpRule(SOURCE, never="custom ops are not delegated to NNAPI (no vendor plugin)"),
}


def _fp16_weights(graph):
    return any(op.op == "DEQUANTIZE" and op.input(0) is not None and op.input(0).is_constant
               and op.input(0).dtype == "float16" for op in graph.ops)


def candidates(graph, supported):
    """Models with fp16 weights (constant fp16 DEQUANTIZE) are delegated all or nothing."""
    if _fp16_weights(graph) and len(supported) != len(graph.ops):
        return set()
    return set(supported)


def warnings(graph, verdicts, target):
    api = target.android_api
    found = []
    if api >= DEPRECATED_FROM:
        found.append(f"NNAPI is deprecated from Android 15 (API {DEPRECATED_FROM}): use the GPU delegate, or the CPU "
                     f"path (XNNPACK), on API {api}; for a Qualcomm NPU, LiteRT's NPU accelerator with an AOT-compiled "
                     "model (edge-attn compat --delegate qnn --soc SOC; edge-attn compile --npu qnn:SOC) "
                     f"[{DEPRECATION_SOURCE}]")
    if api < 30 and any(t.dtype == "int8" and not t.is_constant for t in graph.info.tensors):
        found.append("below API 30 the delegate shifts int8 tensors to uint8 (zero point + 128); native int8 from "
                     f"API 30 [{SOURCE}]")
    if _fp16_weights(graph) and not all(v.supported for v in verdicts):
        found.append("fp16 weights (constant fp16 DEQUANTIZE) are delegated only with the whole graph: one "
                     f"unsupported op keeps everything on the CPU [{SOURCE}]")
    found.append("upper bound: from API 29 the NNAPI CPU reference device is excluded by default and the vendor "
                 "driver can still refuse ops")
    return found


NNAPI = Delegate(name="nnapi", rules=RULES, checks=(), max_partitions=3,
                 partitions_source=f"{SOURCE} (max_number_delegated_partitions = 3)",
                 candidates=candidates, warnings=warnings)
