"""``check_compat``: judge every op of a .tflite model against one delegate's rules and partition the graph."""

import dataclasses

from edge_attn.delegates.gpu import GPU
from edge_attn.delegates.graph import load_graph
from edge_attn.delegates.nnapi import FIRST_API, LAST_API, NNAPI
from edge_attn.delegates.partition import largest, partitions
from edge_attn.delegates.report import CompatReport, OpVerdict, summarize
from edge_attn.delegates.rules import Target, judge, rule_for
from edge_attn.delegates.xnnpack import RULE_SETS, XNNPACK
from edge_attn.errors import BadInput

DELEGATES = {"gpu": GPU, "nnapi": NNAPI, "xnnpack": XNNPACK}
# Where each delegate's "8-bit quantized only" comes from (docs/delegate-rules.md, "int16 activations"); measured
# here with ai-edge-litert 2.3: the default XNNPACK delegate takes no node of an int16x8 model.
INT16_SOURCES = {"xnnpack": "tflite/delegates/xnnpack/README.md (quantized operators: int8/uint8)",
                 "gpu": "tflite/tools/versioning/gpu_compatibility.cc (quantized models: int8/uint8)",
                 "nnapi": "tflite/delegates/nnapi/nnapi_delegate.cc (Validate: 8-bit quantized types)"}


def check_compat(model, delegate, android_api=None, *, xnnpack_rules="readme"):
    """What ``delegate`` (``"gpu"``, ``"nnapi"`` or ``"xnnpack"``) would take of ``model`` (a .tflite path, the
    flatbuffer bytes, or a :class:`~edge_attn.convert.TFLiteInfo` read from a file). Returns a
    :class:`~edge_attn.delegates.report.CompatReport`.

    ``android_api`` (27–36) is the device's SDK level for NNAPI; without it NNAPI is judged at the newest level
    (36) and every op still reports the lowest level that accepts it (``min_api``). The other delegates ignore
    ``android_api`` and say so in the warnings. ``xnnpack_rules``: ``"readme"`` (the documented limits, which
    older runtimes implement) or ``"litert"`` (current LiteRT); see :mod:`edge_attn.delegates.xnnpack`.

    Bad arguments raise :class:`~edge_attn.errors.BadInput` naming the option (``--delegate``, ``--android-api``,
    ``--xnnpack-rules``) or the model file.
    """
    spec = DELEGATES.get(delegate) if isinstance(delegate, str) else None
    if spec is None:
        raise BadInput("--delegate", f"unknown delegate {delegate!r}; expected one of {', '.join(DELEGATES)}")
    if android_api is not None and (isinstance(android_api, bool) or not isinstance(android_api, int)
                                    or not FIRST_API <= android_api <= LAST_API):
        raise BadInput("--android-api", f"{android_api!r} is not an Android API level from {FIRST_API} (Android 8.1, "
                                        f"NNAPI 1.0) to {LAST_API}")
    if xnnpack_rules not in RULE_SETS:
        raise BadInput("--xnnpack-rules", f"unknown rule set {xnnpack_rules!r}; expected one of {', '.join(RULE_SETS)}")
    graph = load_graph(model)

    notes = []
    if spec is NNAPI:
        api = LAST_API if android_api is None else android_api
        if android_api is None:
            notes.append(f"no Android API level given: judged at API {LAST_API}; the 'from' column gives the lowest "
                         "level that accepts each op")
    else:
        api = None
        if android_api is not None:
            notes.append(f"--android-api {android_api} applies to NNAPI only; ignored for {spec.name}")
    target = Target(android_api=api, xnnpack_rules=xnnpack_rules)

    judgements = [judge(op, rule_for(spec.rules, op.op), spec.checks, target, spec.name) for op in graph.ops]
    if spec is NNAPI:
        min_apis = [_lowest_accepting_api(spec, op, target) for op in graph.ops]
    else:
        min_apis = [None] * len(graph.ops)
    supported = {i for i, j in enumerate(judgements) if j.supported}
    parts = partitions(graph.ops, spec.candidates(graph, supported))
    kept = set(largest(parts, spec.max_partitions))
    partition_of = {i: n for n, part in enumerate(parts, 1) for i in part}

    verdicts = []
    for op, judgement, min_api in zip(graph.ops, judgements, min_apis):
        number = partition_of.get(op.index)
        verdicts.append(OpVerdict(
            index=op.index, op=op.op, supported=judgement.supported, reasons=judgement.reasons,
            outputs=tuple(t.name for t in op.outputs), sources=judgement.sources, partition=number,
            delegated=number is not None and parts[number - 1] in kept, min_api=min_api))

    warnings = (notes + spec.warnings(graph, verdicts, target) + _limit_warning(spec, parts, kept)
                + _int16_warning(spec, graph, verdicts, delegate))
    unknown = sorted({op.op for op in graph.ops if rule_for(spec.rules, op.op) is None})
    if unknown:
        warnings.append(f"no {spec.name} rule for {', '.join(unknown)}: counted as not delegated")
    return CompatReport(
        delegate=spec.name, android_api=api, ops=tuple(verdicts), partitions=len(parts),
        delegated_partitions=len(kept), supported_count=len(supported), warnings=tuple(warnings),
        summary=summarize(spec.name, api, verdicts, len(parts)), max_partitions=spec.max_partitions,
        xnnpack_rules=xnnpack_rules if spec is XNNPACK else None)


def _lowest_accepting_api(spec, op, target):
    rule = rule_for(spec.rules, op.op)
    for level in range(FIRST_API, LAST_API + 1):
        if judge(op, rule, spec.checks, dataclasses.replace(target, android_api=level), spec.name).supported:
            return level
    return None


def _int16_warning(spec, graph, verdicts, delegate):
    """One line when the model has int16 activations (16x8 quantization): how many such ops stay on the CPU."""
    int16 = [op.index for op in graph.ops
             if any(t is not None and t.dtype == "int16" and not op.is_static(t) for t in op.tensors)]
    if not int16:
        return []
    kept = sum(1 for v in verdicts if v.index in set(int16) and not v.delegated)
    return [f"int16 activations (16x8 quantization) in {len(int16)} op(s): {spec.name} takes 8-bit quantized ops "
            f"only, {kept} of them stay on LiteRT's CPU reference kernels [{INT16_SOURCES[delegate]}]"]


def _limit_warning(spec, parts, kept):
    if len(parts) <= len(kept):
        return []
    left = sum(len(p) for p in parts if p not in kept)
    return [f"{spec.name} takes only the {spec.max_partitions} largest partition(s) by default "
            f"[{spec.partitions_source}]: {left} supported op(s) in {len(parts) - len(kept)} smaller partition(s) "
            "stay on the CPU"]
