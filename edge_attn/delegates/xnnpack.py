"""XNNPACK delegate (CPU) rules, from ``docs/delegate-rules.md`` section 3.

Two rule sets, chosen by ``target.xnnpack_rules``:

- ``"readme"`` (default): the limits documented in the delegate's README, which older TF Lite releases also
  implement — MEAN only over [1, 2] or [2] of a 4-D tensor with a 4-D output, no SUM, no REDUCE_MAX,
  CONCATENATION of 2–4 inputs. What any runtime in the field delegates.
- ``"litert"``: current LiteRT code (``xnnpack_delegate.cc``; the ai-edge-litert wheel) — MEAN/SUM over any static
  int32 axes (generic reductions since LiteRT 7d88950, 2024-11-22), REDUCE_MAX since 354d907 (2025-05-08),
  CONCATENATION of 2–5 inputs.

Both take int8 (QS8) and uint8 (QU8) ops, which current builds enable by default; int8 RELU, RELU6, HARD_SWISH,
AVERAGE_POOL_2D and SOFTMAX run in float only, so in an int8 model they stay on the CPU. XNNPACK takes every
supported partition (no limit).
"""

import dataclasses

from edge_attn.delegates.rules import (Check, Delegate, OpRule, describe_types, fused_activation_in, is_float,
                                       is_quant8, judge, max_rank, rule_for, strided_slice_masks)

CODE = "tflite/delegates/xnnpack/xnnpack_delegate.cc"
README = "tflite/delegates/xnnpack/README.md"
RULE_SETS = ("readme", "litert")
MAX_RANK = 6  # XNN_MAX_TENSOR_DIMS in XNNPACK's headers (value not read upstream: unverified)
ACTIVATIONS = frozenset({"NONE", "RELU", "RELU_N1_TO_1", "RELU6"})
ANY = frozenset({"float32", "float16", "int8", "uint8"})
FLOAT = frozenset({"float32", "float16"})
CUSTOM_OPS = ("Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D")


def _types(allowed):
    """The first input and the output must have a dtype in ``allowed``."""
    def test(op, target):
        dtypes = {op.input(0).dtype, op.outputs[0].dtype}
        if dtypes <= allowed:
            return True, f"{describe_types(op)} kernel"
        if allowed == FLOAT:
            return False, f"{describe_types(op)} {op.op} stays on the CPU (XNNPACK runs it in float only)"
        return False, f"{describe_types(op)} not supported"
    return Check(test, CODE)


def _same_io_type(op, target):
    same = op.input(0).dtype == op.outputs[0].dtype
    return same, "input and output share one type" if same else "input and output types differ"


def _same_types(op, target):
    dtypes = {t.dtype for t in op.tensors}
    return len(dtypes) == 1, "inputs and output share one type" if len(dtypes) == 1 else "mixed tensor types"


def _weights(op, target):
    """CONV_2D / DEPTHWISE_CONV_2D: bias required; filter and bias static; 4-D tensors; per-channel filters
    quantized along the output channels (dimension 0 of a CONV_2D filter, 3 of a depthwise one)."""
    x, w, bias, y = op.input(0), op.input(1), op.input(2), op.outputs[0]
    channel_dim = 3 if op.op == "DEPTHWISE_CONV_2D" else 0
    found = [(bias is not None, "bias present" if bias is not None else "no bias (XNNPACK requires one)"),
             (op.is_static(w) and (bias is None or op.is_static(bias)),
              "static filter and bias" if op.is_static(w) and (bias is None or op.is_static(bias))
              else "filter/bias computed at runtime (must be static)"),
             (all(len(t.shape) == 4 for t in (x, w, y)), "4-D input, filter and output")]
    if is_quant8(w) and len(w.scales) > 1:
        ok = w.quantized_dimension == channel_dim
        found.append((ok, f"per-channel filter on dimension {w.quantized_dimension}" +
                      ("" if ok else f" (needs {channel_dim}, the output channels)")))
    return found


def _depth_multiplier(op, target):
    multiplier = op.options.get("depthMultiplier", 1)
    channels = op.outputs[0].shape[-1]
    ok = multiplier > 0 and channels % multiplier == 0
    return ok, f"depth multiplier {multiplier}" + ("" if ok else f" does not divide {channels} output channels")


def _fully_connected(op, target):
    w, bias = op.input(1), op.input(2)
    return [(op.options.get("weightsFormat", 0) == 0, "default weights format"),
            (op.is_static(w) and (bias is None or op.is_static(bias)), "static weights" if op.is_static(w)
             else "weights computed at runtime (need the dynamic fully-connected option)")]


def _binary_quant_ratios(limits):
    """Quantized ADD (per input) / MUL (product of inputs) scale ratios to the output scale."""
    low, high = limits

    def test(op, target):
        a, b, y = op.input(0), op.input(1), op.outputs[0]
        if not (is_quant8(a) and a.scales and b is not None and b.scales and y.scales):
            return None
        if op.op == "MUL":
            ratios = [a.scales[0] * b.scales[0] / y.scales[0]]
        else:
            ratios = [a.scales[0] / y.scales[0], b.scales[0] / y.scales[0]]
        ok = all(low <= r < high for r in ratios)
        return ok, "scale ratios " + ", ".join(f"{r:.3g}" for r in ratios) + (
            "" if ok else f" outside [{low:g}, {high:g})")
    return Check(test, CODE)


def _two_inputs(op, target):
    return len(op.inputs) == 2, "2 inputs" if len(op.inputs) == 2 else f"{len(op.inputs)} inputs (only 2)"


def _reduction(op, target):
    """MEAN (and, under "litert", SUM and REDUCE_MAX): the axes a rule set accepts."""
    axes, x, y = op.input(1), op.input(0), op.outputs[0]
    values = op.ints(axes) if axes is not None and axes.dtype == "int32" else None
    if values is None:
        return False, "axes tensor not a static int32 tensor"
    if target.xnnpack_rules == "litert":
        return True, f"static int32 axes {values}"
    if op.op != "MEAN":
        return None  # the README has no other reduction: _litert_only already rejected it
    normalized = sorted({a % len(x.shape) for a in values}) if x.shape else values
    ok = len(x.shape) == 4 and len(y.shape) == 4 and normalized in ([1, 2], [2])
    if ok:
        return True, f"4-D {op.op} over axes {values}"
    return False, (f"MEAN over axes {values}, {len(x.shape)}-D to {len(y.shape)}-D: README limits take only axes "
                   "[1, 2] or [2], 4-D to 4-D (LiteRT: any static axes since 2024-11)")


def _litert_only(since):
    def test(op, target):
        if target.xnnpack_rules == "litert":
            return True, f"delegated by LiteRT since {since}"
        return False, f"{op.op} not in the README op list (LiteRT delegates it since {since})"
    return Check(test, README)


def _concatenation(op, target):
    inputs = [t for t in op.inputs if t is not None]
    most = 5 if target.xnnpack_rules == "litert" else 4
    axis = op.options.get("axis", 0)
    rank = len(inputs[0].shape)
    found = [(2 <= len(inputs) <= most, f"{len(inputs)} inputs" + ("" if 2 <= len(inputs) <= most
                                                                   else f" (takes 2–{most})")),
             (-rank <= axis < rank, f"axis {axis}")]
    if inputs[0].dtype == "uint8":
        params = {(t.scales[:1], t.zero_points[:1]) for t in inputs + list(op.outputs)}
        found.append((len(params) == 1, "uint8 inputs and output share scale and zero point" if len(params) == 1
                      else "uint8 inputs/output with different scales or zero points"))
    return found


def _reshape(op, target):
    shape, x, y = op.input(1), op.input(0), op.outputs[0]
    found = [(shape is None or op.is_static(shape), "static or absent shape" if shape is None or op.is_static(shape)
              else "shape tensor computed at runtime (must be static)")]
    if is_quant8(x):
        same = x.scales[:1] == y.scales[:1] and x.zero_points[:1] == y.zero_points[:1]
        found.append((same, "input and output share quantization" if same else
                      "quantized input and output differ in scale or zero point"))
    return found


def _pool(op, target):
    kernel = (op.options.get("filterHeight", 1), op.options.get("filterWidth", 1))
    stride = (op.options.get("strideH", 1), op.options.get("strideW", 1))
    ok = min(kernel + stride) > 0 and stride[0] <= kernel[0] and stride[1] <= kernel[1]
    text = f"{kernel[0]}×{kernel[1]} pool, stride {stride[0]}×{stride[1]}"
    return ok, text if ok else f"{text}: the stride must not exceed the pool size"


def _pad(op, target):
    paddings, x = op.input(1), op.input(0)
    if len(op.inputs) != 2:
        return False, "only 2 inputs (PAD without a pad value)"
    values = op.ints(paddings) if paddings is not None and paddings.dtype == "int32" else None
    if values is None:
        return False, "paddings must be a static int32 tensor"
    ok = tuple(paddings.shape) == (len(x.shape), 2) and all(v >= 0 for v in values)
    return ok, "static non-negative paddings" if ok else "paddings of the wrong shape or negative"


def _quantize(op, target):
    x, y = op.input(0), op.outputs[0]
    found = [(x.dtype in ANY and is_quant8(y), f"{describe_types(op)}"),
             (len(y.scales) <= 1, "per-tensor output" if len(y.scales) <= 1 else "per-channel output")]
    if is_quant8(x) and x.scales and y.scales:
        ratio = x.scales[0] / y.scales[0]
        ok = x.dtype == y.dtype and 2 ** -8 <= ratio <= 2 ** 7
        found.append((ok, f"requantize {x.dtype} -> {y.dtype}, scale ratio {ratio:.3g}" + (
            "" if ok else " (same signedness and ratio in [1/256, 128] only)")))
    return found


def _dequantize(op, target):
    x, y = op.input(0), op.outputs[0]
    if x.dtype == "float16" and x.is_constant:
        return True, "static fp16 weights folded into fp32"
    ok = is_quant8(x) and is_float(y) and len(x.scales) <= 1
    return ok, (f"{describe_types(op)}, per-tensor" if ok
                else f"{describe_types(op)} not supported (8-bit per-tensor only)")


def _softmax_beta(op, target):
    beta = op.options.get("beta", 1.0)
    return beta == 1.0, f"beta {beta:g}" + ("" if beta == 1.0 else " (only 1)")


def _strided_slice(op, target):
    masks = strided_slice_masks(op)
    params = [op.input(i) for i in (1, 2, 3)]
    values = [op.ints(t) if t is not None and t.dtype == "int32" else None for t in params]
    static = all(v is not None for v in values)
    found = [(not masks, "no ellipsis/new-axis/shrink-axis masks" if not masks else f"{', '.join(masks)} mask set"),
             (static, "static int32 begin/end/strides" if static else "begin/end/strides must be static int32")]
    if static:
        ones = all(v == 1 for v in values[2])
        found.append((ones, "unit strides" if ones else "strides other than 1"))
    return found


def _transpose(op, target):
    perm = op.input(1)
    values = op.ints(perm) if perm is not None else None
    ok = values is not None and all(v >= 0 for v in values)
    return ok, "static permutation" if ok else "permutation must be static and non-negative"


def _rule(checks):
    return OpRule(CODE, tuple(c if isinstance(c, Check) else Check(c, CODE) for c in checks))


WEIGHTED = (_types(ANY), _weights)
RULES = {
    "CONV_2D": _rule(WEIGHTED + (_same_io_type,)),
    "DEPTHWISE_CONV_2D": _rule(WEIGHTED + (_depth_multiplier,)),
    "FULLY_CONNECTED": _rule((_types(ANY), _fully_connected)),
    "ADD": _rule((_types(ANY), _two_inputs, _same_types, _binary_quant_ratios((1 / 1024, 256)))),
    "MUL": _rule((_types(ANY), _two_inputs, _same_types, _binary_quant_ratios((1 / 65536, 256)))),
    "MEAN": _rule((_types(ANY), _reduction)),
    "SUM": _rule((_litert_only("2024-11, 7d88950"), _types(ANY), _reduction)),
    "REDUCE_MAX": _rule((_litert_only("2025-05, 354d907"), _types(ANY), _reduction)),
    "LOGISTIC": _rule((_types(ANY),)),
    "RELU": _rule((_types(FLOAT),)),
    "RELU6": _rule((_types(FLOAT),)),
    "HARD_SWISH": _rule((_types(FLOAT),)),
    "SOFTMAX": _rule((_types(FLOAT), _softmax_beta)),
    "CONCATENATION": _rule((_types(ANY), _concatenation)),
    "RESHAPE": _rule((_types(ANY), _reshape)),
    "MAX_POOL_2D": _rule((_types(ANY), _pool)),
    "AVERAGE_POOL_2D": _rule((_types(FLOAT), _pool)),
    "PAD": _rule((_types(ANY), _pad)),
    "PADV2": OpRule(CODE, never="PADV2 (PAD with a pad value) is not delegated to XNNPACK"),
    "QUANTIZE": _rule((_quantize,)),
    "DEQUANTIZE": _rule((_dequantize,)),
    "STRIDED_SLICE": _rule((_types(ANY), _strided_slice)),
    "TRANSPOSE": _rule((_types(ANY), _transpose)),
    **{name: OpRule(CODE, never=f"{name} is not delegated to XNNPACK (no case in the delegate)")
       for name in ("SHAPE", "PACK", "TOPK_V2", "GATHER")},
    **{f"CUSTOM:{name}": OpRule(CODE) for name in CUSTOM_OPS},
    "CUSTOM:*": OpRule(CODE, never=f"custom op: XNNPACK only takes {', '.join(CUSTOM_OPS)} (and the ODML SDPA "
                                   "composite)"),
}
CHECKS = (max_rank(MAX_RANK, CODE), fused_activation_in(ACTIVATIONS, CODE))


def candidates(graph, supported):
    return set(supported)


def warnings(graph, verdicts, target):
    if target.xnnpack_rules != "readme":
        return []
    litert = dataclasses.replace(target, xnnpack_rules="litert")
    newer = [f"{v.op} #{v.index}" for v, op in zip(verdicts, graph.ops) if not v.supported
             and judge(op, rule_for(RULES, op.op), CHECKS, litert, "xnnpack").supported]
    if not newer:
        return []
    listed = ", ".join(newer[:6]) + (f" and {len(newer) - 6} more" if len(newer) > 6 else "")
    return [f"README rules: {listed} would be delegated by current LiteRT (e.g. the ai-edge-litert wheel); check "
            f"with xnnpack_rules='litert' [{CODE}]"]


XNNPACK = Delegate(name="xnnpack", rules=RULES, checks=CHECKS, max_partitions=None,
                   partitions_source=f"{CODE} (every supported partition)", candidates=candidates,
                   warnings=warnings)
