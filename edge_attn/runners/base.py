"""The runner protocol: measure a .tflite model's latency on one device with one delegate.

Every runner (``host``: LiteRT in this process; ``adb``: an Android phone through TFLite's
``benchmark_model``; ``ssh``: a Linux board running LiteRT in its own Python) returns the same
:class:`LatencyResult`, so reports, ``edge-attn bench`` and the pytest plugin treat devices alike.
"""

from dataclasses import asdict, dataclass, field
from typing import Protocol

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")


@dataclass(frozen=True)
class LatencyResult:
    """Latency statistics of one model on one device/delegate, in milliseconds."""

    device: str  # the profile name
    model: str  # the model's path as given
    delegate: str  # one of DELEGATES
    threads: int
    runs: int
    p50_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    peak_memory_mb: float | None = None  # None where the runner cannot measure it
    delegation: str | None = None  # e.g. "completely executed by the delegate" / "partially (3 kernels)"
    available: bool = True  # False: the delegate/accelerator is absent; the timings are then NaN
    note: str | None = None  # why unavailable, or anything the user should know
    op_profile: list = field(default_factory=list)  # [{"op", "count", "avg_ms", "percent"}] when profiled

    def to_dict(self):
        return asdict(self)


class Runner(Protocol):
    """Measures models on one device described by a profile."""

    name: str

    def benchmark(self, model_path, *, delegate="xnnpack", threads=2, runs=50, warmup=5,
                  op_profile=False) -> LatencyResult:
        """Latency of ``model_path`` on this device with ``delegate``; raises BadInput for unusable input
        (missing model, unreachable device, missing binary) with a one-line message."""
        ...
