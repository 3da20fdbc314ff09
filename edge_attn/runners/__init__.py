"""Runners measure a .tflite model's latency on one device; :func:`make_runner` picks one for a profile.

``host`` (LiteRT in this process, :mod:`edge_attn.runners.host`), ``adb`` (an Android phone,
:mod:`edge_attn.runners.adb`) and ``ssh`` (a Linux board, :mod:`edge_attn.runners.ssh`) implement the
protocol of :mod:`edge_attn.runners.base`. Importing this package is cheap: a runner's module (and LiteRT)
is imported when a runner of that kind is made.
"""

from edge_attn.errors import BadInput
from edge_attn.runners.base import DELEGATES, LatencyResult, Runner

__all__ = ["DELEGATES", "LatencyResult", "Runner", "make_runner"]
# The shared core: settings (one validator), command_line (patterns for remote command lines), timing (the
# one timing loop, self-contained), machine (the device fingerprint, self-contained), stats (warm-up,
# intervals, the regression test), result (LatencyResult and its shape), delegation (graph placement),
# baseline (stored per-device baselines).


def make_runner(profile):
    """The runner for a :class:`~edge_attn.devices.DeviceProfile`, chosen by its ``kind``."""
    if profile.kind == "host":
        from edge_attn.runners.host import HostRunner

        return HostRunner(profile)
    if profile.kind == "adb":
        from edge_attn.runners.adb import AdbRunner

        return AdbRunner(profile)
    if profile.kind == "ssh":
        from edge_attn.runners.ssh import SshRunner

        return SshRunner(profile)
    raise BadInput(profile.source or profile.name, f"kind: no runner for {profile.kind!r}")
