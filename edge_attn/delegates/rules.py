"""The shape of a delegate's rules — data plus small predicates — and how one op is judged against them.

A delegate module (``gpu``, ``nnapi``, ``xnnpack``) holds a table ``op name -> OpRule``. An :class:`OpRule` is a
version cap and a tuple of :class:`Check` objects; each check is a small predicate that looks at one
:class:`~edge_attn.delegates.graph.OpView` under a :class:`Target` and returns a finding ``(met, what was
found)`` (or a list of them), or None when it does not apply to this op. Every check and every rule names the
upstream file it transcribes (paths in google-ai-edge/LiteRT at the commit ``UPSTREAM``, as summarised in
``docs/delegate-rules.md``), so each verdict can cite where it comes from.

Verdict reasons: a rejected op lists every unmet requirement (upstream NNAPI does the same; the GPU check stops at
the first, but all of them help the user); an accepted op lists what was checked and found fine.
"""

import dataclasses
from typing import Callable

from edge_attn.delegates.graph import FLOAT_DTYPES, QUANT8_DTYPES

UPSTREAM = "google-ai-edge/LiteRT@f67457790c9c"  # the snapshot docs/delegate-rules.md was written from


@dataclasses.dataclass(frozen=True)
class Target:
    """What the verdicts depend on besides the model.

    ``android_api``: device SDK level (NNAPI only). ``xnnpack_rules``: ``"readme"`` (the limits in the XNNPACK
    delegate README, which older TF Lite releases also implement) or ``"litert"`` (current LiteRT code).
    """

    android_api: int | None = None
    xnnpack_rules: str = "readme"

    @property
    def accelerator_specified(self):
        """NNAPI's ``is_accelerator_specified`` with default options: true from API 29, where the NNAPI CPU
        reference device is excluded (``disallow_nnapi_cpu`` defaults to true)."""
        return self.android_api is not None and self.android_api >= 29


@dataclasses.dataclass(frozen=True)
class Check:
    """One requirement: ``test(op, target)`` returns a finding ``(met, description)``, a list of findings, or
    None when it does not apply to the op."""

    test: Callable
    source: str


@dataclasses.dataclass(frozen=True)
class OpRule:
    """What one delegate requires of one builtin op.

    ``never``: the delegate has no kernel or parser for the op at all (the text says so). ``note``: said of every
    accepted op of this type (a backend caveat, how the op is executed).
    """

    source: str
    checks: tuple = ()
    max_version: int | None = None
    never: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Delegate:
    """One delegate's rules and defaults, as data.

    ``rules``: op name -> :class:`OpRule`. ``checks``: delegate-wide checks run after an op's own (tensor
    types, ranks). ``max_partitions``: how many partitions the delegate takes by default (largest first; None =
    all). ``candidates(graph, supported)``: the op indices handed to the partitioner, given the indices judged
    supported (a hook for special cases such as fp16 weight DEQUANTIZE nodes). ``warnings(graph, verdicts,
    target)``: model-level remarks.
    """

    name: str
    rules: dict
    checks: tuple
    max_partitions: int | None
    partitions_source: str
    candidates: Callable
    warnings: Callable


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One op judged by one delegate: the verdict, its reasons, and the upstream files they come from."""

    supported: bool
    reasons: tuple
    sources: tuple


def rule_for(rules, op_name):
    """The rule for ``op_name``; custom ops without their own entry fall back to ``"CUSTOM:*"``."""
    rule = rules.get(op_name)
    if rule is None and op_name.startswith("CUSTOM:"):
        rule = rules.get("CUSTOM:*")
    return rule


# Operand counts of the ops that have rules: (fewest inputs, most inputs, fewest outputs, most outputs), as each
# LiteRT kernel's Prepare checks them (tflite/kernels/<op>.cc: NumInputs/NumOutputs; conv.cc and
# fully_connected.cc allow the bias slot to be absent, pad.cc serves PAD and PADV2, a shuffled-weights
# FULLY_CONNECTED has a second output). Inputs below the fewest are required: present, not the omitted index -1.
# A node with other counts fails to prepare, and each delegate's node check refuses it before its op rules, so
# the rules below may read the operands they name.
OPERAND_COUNTS = {
    "ADD": (2, 2, 1, 1), "MUL": (2, 2, 1, 1), "CONV_2D": (2, 3, 1, 1), "DEPTHWISE_CONV_2D": (2, 3, 1, 1),
    "FULLY_CONNECTED": (2, 3, 1, 2), "AVERAGE_POOL_2D": (1, 1, 1, 1), "MAX_POOL_2D": (1, 1, 1, 1),
    "MEAN": (2, 2, 1, 1), "SUM": (2, 2, 1, 1), "REDUCE_MAX": (2, 2, 1, 1), "ARG_MAX": (2, 2, 1, 1),
    "LOGISTIC": (1, 1, 1, 1), "RELU": (1, 1, 1, 1), "RELU6": (1, 1, 1, 1), "HARD_SWISH": (1, 1, 1, 1),
    "SOFTMAX": (1, 1, 1, 1), "QUANTIZE": (1, 1, 1, 1), "DEQUANTIZE": (1, 1, 1, 1), "SHAPE": (1, 1, 1, 1),
    "RESHAPE": (1, 2, 1, 1), "PAD": (2, 3, 1, 1), "PADV2": (2, 3, 1, 1), "STRIDED_SLICE": (4, 4, 1, 1),
    "TRANSPOSE": (2, 2, 1, 1), "GATHER": (2, 2, 1, 1), "TOPK_V2": (2, 2, 2, 2),
    "CONCATENATION": (1, None, 1, 1), "PACK": (1, None, 1, 1),
    # the GPU/XNNPACK custom kernels (tflite/delegates/gpu/common/custom_parsers and XNNPACK's delegate)
    "CUSTOM:Convolution2DTransposeBias": (3, 3, 1, 1), "CUSTOM:MaxPoolingWithArgmax2D": (1, 1, 2, 2),
    "CUSTOM:MaxUnpooling2D": (2, 2, 1, 1), "CUSTOM:Resampler": (2, 2, 1, 1),
}


def operand_problem(op):
    """Why ``op``'s operands do not fit its kernel (see ``OPERAND_COUNTS``), or None when they do."""
    counts = OPERAND_COUNTS.get(op.op)
    if counts is None:
        return None
    fewest, most, fewest_out, most_out = counts
    inputs, outputs = len(op.inputs), len(op.outputs)
    if not fewest <= inputs <= (most if most is not None else inputs) or not fewest_out <= outputs <= most_out:
        expects = f"{fewest}" if fewest == most else f"{fewest}+" if most is None else f"{fewest}-{most}"
        outs = f"{fewest_out}" if fewest_out == most_out else f"{fewest_out}-{most_out}"
        return (f"malformed node: {inputs} input(s) and {outputs} output(s), the {op.op} kernel takes {expects} "
                f"input(s) and {outs} output(s)")
    missing = [i for i in range(fewest) if op.inputs[i] is None]
    if missing:
        return f"malformed node: required input {missing[0]} is omitted"
    return None


def judge(op, rule, delegate_checks, target, delegate_name):
    """Judge ``op`` against its ``rule`` (None: no rule), then the delegate-wide checks."""
    if rule is None:
        return Judgement(False, (f"no {delegate_name} rule for {op.op}: not in edge_attn's rule table "
                                 "(docs/delegate-rules.md), so not known to be delegated",), ())
    if rule.never:
        return Judgement(False, (rule.never,), (rule.source,))
    malformed = operand_problem(op)
    if malformed:
        return Judgement(False, (malformed,), (rule.source,))
    findings, sources = [], [rule.source]
    if rule.max_version is not None:
        findings.append((op.version <= rule.max_version,
                         f"op version {op.version} {'≤' if op.version <= rule.max_version else '>'} "
                         f"{rule.max_version}"))
    for check in tuple(rule.checks) + tuple(delegate_checks):  # the op's own first: its reasons say most
        finding = check.test(op, target)
        if finding is None:
            continue
        findings.extend(finding if isinstance(finding, list) else [finding])
        if check.source not in sources:
            sources.append(check.source)
    unmet = tuple(text for met, text in findings if not met)
    if unmet:
        return Judgement(False, unmet, tuple(sources))
    met = tuple(text for _, text in findings) + ((rule.note,) if rule.note else ())
    return Judgement(True, met or (f"{op.op} is accepted without further conditions",), tuple(sources))


# ---- predicates shared by several delegates -------------------------------------------------------------------

def fused_activation_in(allowed, source):
    """The op's fused activation must be one of ``allowed`` (names such as ``"RELU6"``)."""
    def test(op, target):
        if op.activation is None:
            return None
        return (op.activation in allowed,
                f"fused activation {op.activation} " + ("is supported" if op.activation in allowed
                                                        else f"is not supported (only {', '.join(sorted(allowed))})"))
    return Check(test, source)


def constant_int32_input(position, what, source):
    """Input ``position`` (axes, permutation, shape, ...) must be a constant int32 tensor."""
    def test(op, target):
        tensor = op.input(position)
        if tensor is None:
            return False, f"{what} tensor is missing"
        if not tensor.is_constant:
            return False, f"{what} tensor not constant (computed at runtime)"
        if tensor.dtype != "int32":
            return False, f"{what} tensor is {tensor.dtype}, needs int32"
        values = op.ints(tensor)
        if values is None:
            return False, f"{what} tensor is sparse-encoded, needs plain int32 data"
        return True, f"{what} {values} constant int32"
    return Check(test, source)


def max_rank(limit, source, inputs_only=False):
    """Every present input (and output, unless ``inputs_only``) tensor has rank ≤ ``limit``."""
    def test(op, target):
        tensors = [t for t in op.inputs if t is not None] + ([] if inputs_only else list(op.outputs))
        worst = max((len(t.shape) for t in tensors), default=0)
        return worst <= limit, (f"tensor ranks ≤ {limit}" if worst <= limit
                                else f"rank-{worst} tensor (the delegate takes rank ≤ {limit})")
    return Check(test, source)


def strided_slice_masks(op):
    """Names of the STRIDED_SLICE masks set on ``op`` that neither GPU nor XNNPACK supports."""
    return [name for name, key in (("ellipsis", "ellipsisMask"), ("new_axis", "newAxisMask"),
                                   ("shrink_axis", "shrinkAxisMask")) if op.options.get(key, 0)]


def describe_types(op):
    """``"int8"`` or ``"float32 -> int8"``: the dtypes of the first input and output, for messages."""
    first = op.input(0)
    src = first.dtype if first is not None else "none"
    dst = op.outputs[0].dtype if op.outputs else "none"
    return src if src == dst else f"{src} -> {dst}"


def is_float(tensor):
    return tensor is not None and tensor.dtype in FLOAT_DTYPES


def is_quant8(tensor):
    return tensor is not None and tensor.dtype in QUANT8_DTYPES
