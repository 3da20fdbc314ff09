"""The runner protocol: measure a .tflite model's latency on one device with one delegate.

Every runner (``host``: LiteRT in this process; ``adb``: an Android phone through TFLite's
``benchmark_model``; ``ssh``: a Linux board running LiteRT in its own Python) validates its settings
with :mod:`edge_attn.runners.settings`, times with :mod:`edge_attn.runners.timing` (or, on a phone,
``benchmark_model``'s own loop) and returns the same :class:`~edge_attn.runners.result.LatencyResult`,
so reports, ``edge-attn bench`` and the pytest plugin treat devices alike.
"""

from typing import Protocol

from edge_attn.runners.result import LatencyResult
from edge_attn.runners.settings import DELEGATES

__all__ = ["DELEGATES", "LatencyResult", "Runner"]


class Runner(Protocol):
    """Measures models on one device described by a profile."""

    name: str

    def benchmark(self, model_path, *, delegate="xnnpack", threads=2, runs=50, warmup=5,
                  op_profile=False) -> LatencyResult:
        """Latency of ``model_path`` on this device with ``delegate``; raises BadInput for unusable input
        (missing model, unreachable device, missing binary) with a one-line message."""
        ...
