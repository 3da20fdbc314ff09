"""The result of a delegate compatibility check: per-op verdicts, partitions, warnings — and its text form."""

import dataclasses

from edge_attn.delegates.rules import UPSTREAM

_MAX_LISTED_REJECTIONS = 5


@dataclasses.dataclass(frozen=True)
class OpVerdict:
    """One op's verdict.

    ``supported``: the delegate's rules accept the op. ``reasons``: the unmet requirements of a rejected op, or what
    was checked and found fine for an accepted one. ``sources``: the upstream files the verdict rests on.
    ``partition``: 1-based number of the delegate partition the op falls in (None: stays on the CPU);
    ``delegated``: that partition is one the delegate takes by default (GPU takes 1, NNAPI 3, XNNPACK all).
    ``min_api``: NNAPI only — the lowest Android API level (27–36) whose rules accept the op (None: none does).
    """

    index: int
    op: str
    supported: bool
    reasons: tuple
    outputs: tuple
    sources: tuple = ()
    partition: int | None = None
    delegated: bool = False
    min_api: int | None = None

    def to_dict(self):
        return dataclasses.asdict(self) | {"reasons": list(self.reasons), "outputs": list(self.outputs),
                                           "sources": list(self.sources)}


@dataclasses.dataclass(frozen=True)
class CompatReport:
    """What one delegate would do with one model.

    ``partitions``: how many partitions the supported ops form (TFLite's partitioner, see
    :mod:`edge_attn.delegates.partition`); ``delegated_partitions``: how many of them the delegate takes with its
    default ``max_partitions`` (None: no limit). ``android_api``: the API level the NNAPI rules were applied at
    (None for the other delegates); ``xnnpack_rules``: the XNNPACK rule set (None for the other delegates).
    """

    delegate: str
    android_api: int | None
    ops: tuple
    partitions: int
    delegated_partitions: int
    supported_count: int
    warnings: tuple
    summary: str
    max_partitions: int | None = None
    xnnpack_rules: str | None = None

    def to_dict(self):
        return {
            "delegate": self.delegate,
            "android_api": self.android_api,
            "xnnpack_rules": self.xnnpack_rules,
            "ops": [v.to_dict() for v in self.ops],
            "partitions": self.partitions,
            "delegated_partitions": self.delegated_partitions,
            "max_partitions": self.max_partitions,
            "supported_count": self.supported_count,
            "op_count": len(self.ops),
            "warnings": list(self.warnings),
            "summary": self.summary,
            "rules_from": f"{UPSTREAM} (docs/delegate-rules.md)",
        }


def summarize(delegate, android_api, verdicts, partitions):
    """The one-line summary: ``gpu: 41/43 ops supported, 2 partitions; rejected: MEAN #12 (axis ...), ...``."""
    rejected = [v for v in verdicts if not v.supported]
    where = f" at API {android_api}" if android_api is not None else ""
    line = (f"{delegate}{where}: {len(verdicts) - len(rejected)}/{len(verdicts)} ops supported, "
            f"{partitions} partition{'' if partitions == 1 else 's'}")
    if rejected:
        listed = ", ".join(f"{v.op} #{v.index} ({v.reasons[0]})" for v in rejected[:_MAX_LISTED_REJECTIONS])
        more = len(rejected) - _MAX_LISTED_REJECTIONS
        line += f"; rejected: {listed}" + (f" and {more} more" if more > 0 else "")
    return line


def format_compat(report):
    """The per-op table (verdict, partition, reasons), the warnings, and the summary line, for the CLI.

    The partition column shows the partition number, with ``*`` when the delegate does not take that partition by
    default; ``-`` means the op stays on the CPU. NNAPI tables add a ``from`` column: the lowest API level that
    accepts the op.
    """
    nnapi = report.delegate == "nnapi"
    width = max([len("op")] + [len(v.op) for v in report.ops])
    header = f"{'#':>4}  {'op':<{width}}  {'ok':<3}  {'part':<4}" + ("  from" if nnapi else "") + "  reasons"
    lines = [header]
    for v in report.ops:
        part = "-" if v.partition is None else f"{v.partition}{'' if v.delegated else '*'}"
        since = f"  {'-' if v.min_api is None else v.min_api:>4}" if nnapi else ""
        lines.append(f"{v.index:>4}  {v.op:<{width}}  {'yes' if v.supported else 'NO':<3}  {part:<4}{since}  "
                     + "; ".join(v.reasons))
    if report.warnings:
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in report.warnings)
    lines.append(report.summary)
    return "\n".join(lines)
