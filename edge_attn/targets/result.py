"""One result shape for every target (GPU accelerator, NPU compile, phone, board): what ran where, how much of the
graph the accelerator took, its numerics against a reference run, latency, and the problems found.

``TargetResult.to_dict()`` is what ``--json`` prints and report.json holds; docs/targets.md documents the keys.
Non-finite numbers stay floats here (an exact match has SNR ``inf``); the report writer turns them into ``null``.
"""

import dataclasses
import math

import numpy as np

from edge_attn.evaluate.metrics import snr_db

__all__ = ["Numerics", "TargetResult"]


@dataclasses.dataclass(frozen=True)
class Numerics:
    """A target's outputs against a reference run of the same inputs (``reference``: what produced the reference,
    e.g. ``"cpu"`` for LiteRT's CPU kernels). ``snr_db`` is ``inf`` for identical outputs."""

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

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TargetResult:
    """What one target did with one model.

    ``available`` is False when the target could not be used at all (no adapter, no compiler): ``problems`` then
    says why. ``fully_accelerated`` / ``accelerated_ops`` / ``total_ops`` are what the target itself reported
    (None where it reports nothing). ``problems`` holds one readable line per finding that makes the result
    unusable (wrong numbers, crashes, shader errors); an empty list on an available target means it passed.
    ``details`` holds target-specific extras (log excerpts, set-up time, precision).
    """

    target: str
    available: bool
    device: str | None = None
    runtime_version: str | None = None
    fully_accelerated: bool | None = None
    accelerated_ops: int | None = None
    total_ops: int | None = None
    numerics: Numerics | None = None
    latency_ms: dict | None = None
    problems: tuple = ()
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self):
        return self.available and not self.problems

    def to_dict(self):
        return {
            "target": self.target, "available": self.available, "ok": self.ok, "device": self.device,
            "runtime_version": self.runtime_version, "fully_accelerated": self.fully_accelerated,
            "accelerated_ops": self.accelerated_ops, "total_ops": self.total_ops,
            "numerics": self.numerics.to_dict() if self.numerics else None,
            "latency_ms": self.latency_ms, "problems": list(self.problems), "details": self.details,
        }

