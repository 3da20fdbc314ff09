"""The one result shape every target shares — host CPU, the GPU accelerator, an NPU compile, an adb phone, an ssh
board: what ran where, how much of the graph the accelerator took, numerics against a reference run, latency, and a
verdict with its symptom. docs/result-shape.md documents every key.

:func:`result_dict` is the only place the dict is assembled: :class:`edge_attn.runners.result.LatencyResult`
(host, adb, ssh), :class:`edge_attn.targets.result.TargetResult` (GPU accelerator) and
:class:`edge_attn.targets.qnn.QnnResult` (NPU compile, Intel partitioning) all call it, so their ``to_dict()``
have exactly :data:`COMMON_KEYS`. Target-specific extras go in ``details``.

``verdict`` is one of :data:`VERDICTS`: ``unavailable`` (the target cannot be used here), ``failed`` (crashed,
did not compile), ``wrong-numbers`` (ran, but its outputs are not the reference's), ``partial`` (part of the graph
stayed on the CPU), ``ok``. ``symptom`` is the one line behind a verdict other than ``ok``.
"""

import dataclasses
import math

import numpy as np

from edge_attn.evaluate.metrics import snr_db

__all__ = ["COMMON_KEYS", "GRAPH_KEYS", "NUMERICS_KEYS", "LATENCY_KEYS", "VERDICTS", "Numerics", "graph_dict",
           "result_dict", "verdict_of"]

VERDICTS = ("ok", "partial", "wrong-numbers", "failed", "unavailable")
FAILURES = ("failed", "wrong-numbers")  # what a producer may set; the others follow from the fields
COMMON_KEYS = ("target", "model", "device", "delegate", "accelerator", "available", "verdict", "symptom", "graph",
               "numerics", "latency_ms", "peak_memory_mb", "delegation", "note", "problems", "op_profile",
               "details", "threads", "runs", "p50_ms", "p90_ms", "p95_ms", "min_ms", "max_ms", "mean_ms")
GRAPH_KEYS = ("accelerated_ops", "total_ops", "partitions", "on_cpu", "fully_accelerated")
NUMERICS_KEYS = ("reference", "samples", "max_abs_diff", "snr_db", "top1_agreement", "agreement_count")
LATENCY_KEYS = ("cold_start", "warm", "threads", "times")
_FLAT = ("p50", "p90", "p95", "min", "max", "mean")
_NOT_ACCELERATORS = (None, "cpu")  # a "partial" graph needs an accelerator that could have taken it


@dataclasses.dataclass(frozen=True)
class Numerics:
    """A target's outputs against a reference run of the same inputs (``reference``: what produced the reference,
    ``"cpu"`` for LiteRT's CPU kernels, ``"float"`` for the float Keras model). ``snr_db`` is ``inf`` for identical
    outputs (``null`` in JSON)."""

    reference: str
    samples: int
    max_abs_diff: float
    snr_db: float
    top1_agreement: float
    agreement_count: int

    @classmethod
    def between(cls, reference_out, target_out, *, reference):
        """Compare two ``(samples, ...)`` output arrays; top-1 is the argmax over each sample's flattened output.
        Non-finite target outputs make ``max_abs_diff`` and ``snr_db`` NaN (and count as disagreeing)."""
        ref = np.asarray(reference_out, np.float64).reshape(len(reference_out), -1)
        out = np.asarray(target_out, np.float64).reshape(len(target_out), -1)
        if ref.shape != out.shape:
            raise ValueError(f"reference outputs {ref.shape} and target outputs {out.shape} differ in shape")
        finite = bool(np.isfinite(out).all())
        agree = int(np.sum((ref.argmax(axis=1) == out.argmax(axis=1)) & np.isfinite(out).all(axis=1)))
        return cls(reference=reference, samples=len(ref),
                   max_abs_diff=float(np.max(np.abs(ref - out))) if finite else math.nan,
                   snr_db=snr_db(ref, out) if finite else math.nan,
                   top1_agreement=agree / len(ref), agreement_count=agree)

    @classmethod
    def from_accuracy(cls, accuracy, *, reference="float"):
        """From ``check``'s accuracy (:func:`edge_attn.evaluate.compare.accuracy_from_outputs`): the quantized
        model's outputs against the float model's."""
        snr = accuracy.get("output_snr_db")
        return cls(reference=reference, samples=int(accuracy["samples"]),
                   max_abs_diff=float(accuracy["output_max_abs_err"]),
                   snr_db=math.inf if snr is None else float(snr),
                   top1_agreement=float(accuracy["top1_agreement"]), agreement_count=int(accuracy["agreement_count"]))

    def to_dict(self):
        return dataclasses.asdict(self)


def graph_dict(accelerated_ops, total_ops, partitions, on_cpu=(), fully_accelerated=None):
    """The ``graph`` block; ``fully_accelerated`` follows from the op counts when the runtime did not say it."""
    if fully_accelerated is None and accelerated_ops is not None and total_ops:
        fully_accelerated = accelerated_ops == total_ops
    return {"accelerated_ops": accelerated_ops, "total_ops": total_ops, "partitions": partitions,
            "on_cpu": list(on_cpu), "fully_accelerated": fully_accelerated}


def verdict_of(*, available, failure, graph, accelerator, problems):
    """``(verdict, symptom)`` (see the module notes). ``failure``: ``"failed"`` / ``"wrong-numbers"`` as the
    producer judged it, else None; its symptom is the first problem."""
    if failure is not None and failure not in FAILURES:
        raise ValueError(f"failure must be one of {FAILURES}, not {failure!r}")
    if not available:
        return "unavailable", problems[0] if problems else "unavailable here"
    if failure:
        return failure, problems[0] if problems else failure
    if graph and graph.get("fully_accelerated") is False and accelerator not in _NOT_ACCELERATORS:
        taken, total = graph.get("accelerated_ops"), graph.get("total_ops")
        count = f"{taken} of {total} ops" if taken is not None and total else "part of the graph"
        rest = f"; on the CPU: {', '.join(graph['on_cpu'])}" if graph.get("on_cpu") else ""
        return "partial", f"{count} on {accelerator}, the rest on the CPU{rest}"
    return "ok", None


def result_dict(*, target, model, device, delegate, accelerator, available, graph=None, numerics=None,
                latency=None, failure=None, peak_memory_mb=None, delegation=None, note=None, problems=(),
                op_profile=(), details=None):
    """The shared result dict. ``device``: a :class:`~edge_attn.runners.result.DeviceInfo` dict; ``graph``: from
    :func:`graph_dict` or None; ``numerics``: a :class:`Numerics` or None; ``latency``: ``{cold_start, warm,
    threads, times}`` (``warm`` as :class:`~edge_attn.runners.result.WarmLatency` dict) or None when not
    measured."""
    problems = list(problems)
    verdict, symptom = verdict_of(available=available, failure=failure, graph=graph, accelerator=accelerator,
                                  problems=problems)
    warm = (latency or {}).get("warm") or {}
    runs = warm.get("runs", 0) + (warm.get("warmup_runs_dropped") or 0) if latency else None
    return {
        "target": target, "model": model, "device": device, "delegate": delegate, "accelerator": accelerator,
        "available": available, "verdict": verdict, "symptom": symptom, "graph": graph,
        "numerics": numerics.to_dict() if numerics is not None else None, "latency_ms": latency,
        "peak_memory_mb": peak_memory_mb, "delegation": delegation, "note": note, "problems": problems,
        "op_profile": list(op_profile), "details": dict(details or {}),
        # the flat keys of earlier versions, from latency_ms
        "threads": (latency or {}).get("threads"), "runs": runs,
        **{f"{key}_ms": warm.get(key) for key in _FLAT},
    }
