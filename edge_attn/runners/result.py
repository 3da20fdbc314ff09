"""The one result every runner returns: latency of one model on one device with one delegate, in the
shape every target shares (host CPU, GPU accelerator, NPU compile, adb phone, ssh board).

:meth:`LatencyResult.to_dict` is the contract, documented key by key in ``docs/result-shape.md``::

    {"target", "model", "device": {name, cpu, soc, governor, runtime, runtime_version, emulated, ...},
     "delegate", "accelerator", "available", "verdict", "symptom",
     "graph": {accelerated_ops, total_ops, partitions, on_cpu, fully_accelerated} | null,
     "numerics": {...} | null, "latency_ms": {cold_start, warm: {p50, p50_ci, p90, p95, min, max, mean, runs,
     warmup_runs_dropped}, threads, times}, "problems": [...], ...}

assembled by :func:`edge_attn.result_shape.result_dict`, the same for every target, plus the flat keys of
earlier versions (``p50_ms``, ``p90_ms``, ``min_ms``, ``max_ms``, ``mean_ms``, ``runs``), kept for scripts
that read them. Timings that were not measured are ``None`` in the dict and NaN through the float properties.
"""

import dataclasses
import math

import edge_attn.runners.stats as stats
from edge_attn.result_shape import Numerics, graph_dict, result_dict


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What the model ran on (:func:`edge_attn.runners.machine.fingerprint` on Linux; getprop on Android)."""

    name: str  # the profile name
    cpu: str | None = None
    soc: str | None = None
    governor: str | None = None  # CPU frequency governor(s), where readable
    runtime: str | None = None  # e.g. "ai-edge-litert", "TFLite benchmark_model"
    runtime_version: str | None = None
    emulated: bool = False  # True: latency is not a device figure (qemu-user)
    arch: str | None = None  # what the runtime runs as (aarch64 under qemu-user on an x86_64 kernel)
    kernel_arch: str | None = None  # the kernel's own architecture, where readable
    cores: int | None = None
    isa: tuple = ()  # int8-relevant ISA features (avx512_vnni, asimddp, i8mm, ...)
    emulated_cpu: str | None = None  # QEMU_CPU under emulation

    @classmethod
    def from_fingerprint(cls, name, fingerprint, emulated=False):
        """From :func:`~edge_attn.runners.machine.fingerprint` data; ``emulated`` (the profile's word) wins
        when True."""
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        values = {key: value for key, value in fingerprint.items() if key in known}
        values["isa"] = tuple(values.get("isa") or ())
        values["emulated"] = bool(emulated or values.get("emulated"))
        return cls(name=name, **values)

    def to_dict(self):
        return dataclasses.asdict(self) | {"isa": list(self.isa)}


@dataclasses.dataclass(frozen=True)
class GraphPlacement:
    """How much of the graph the delegate (accelerator) took; None where the runtime does not say."""

    accelerated_ops: int | None
    total_ops: int | None
    partitions: int | None
    on_cpu: tuple = ()  # op types left to the CPU's builtin kernels, where known
    fully_accelerated: bool | None = None  # as the runtime says it; None: from the op counts where known

    def to_dict(self):
        return graph_dict(self.accelerated_ops, self.total_ops, self.partitions, self.on_cpu, self.fully_accelerated)


@dataclasses.dataclass(frozen=True)
class WarmLatency:
    """Statistics of the warm runs in ms, after the detected warm-up runs were dropped."""

    p50: float | None
    p50_ci: tuple | None  # 95% bootstrap interval of p50; None without per-run times
    p90: float | None  # None where the runtime reports no p90 (benchmark_model)
    p95: float | None
    min: float | None
    max: float | None
    mean: float | None
    runs: int  # runs the statistics are over
    warmup_runs_dropped: int | None  # None where no per-run times were seen (the runtime's own warm-up only)

    @classmethod
    def from_times(cls, times_ms):
        """From every timed run: drop the warm-up (:func:`~edge_attn.runners.stats.warmup_runs`), then summarise."""
        dropped = stats.warmup_runs(times_ms)
        return cls.from_steady(list(times_ms)[dropped:], dropped)

    @classmethod
    def from_steady(cls, steady, dropped):
        """From the runs after the warm-up; ``dropped``: how many were left out before them."""
        ci = stats.bootstrap_ci(steady) if len(steady) >= stats.MIN_RUNS_TO_COMPARE else None
        return cls(p50=stats.percentile(steady, 50), p50_ci=ci, p90=stats.percentile(steady, 90),
                   p95=stats.percentile(steady, 95), min=float(min(steady)), max=float(max(steady)),
                   mean=float(sum(steady) / len(steady)), runs=len(steady), warmup_runs_dropped=dropped)

    @classmethod
    def nothing(cls):
        """No measurement (an unavailable delegate)."""
        return cls(p50=None, p50_ci=None, p90=None, p95=None, min=None, max=None, mean=None, runs=0,
                   warmup_runs_dropped=None)

    def to_dict(self):
        return dataclasses.asdict(self) | {"p50_ci": list(self.p50_ci) if self.p50_ci else None}


def timed(times_ms):
    """The LatencyResult fields for runs timed one by one: ``warm``, ``times_ms``, ``steady_times_ms``."""
    warm = WarmLatency.from_times(times_ms)
    return {"warm": warm, "times_ms": tuple(times_ms), "steady_times_ms": tuple(times_ms[warm.warmup_runs_dropped:])}


def _nan(value):
    return math.nan if value is None else value


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """Latency of one model on one device/delegate (see the module notes for its dict shape)."""

    device: str  # the profile name (device_info.name)
    model: str  # the model's path as given
    delegate: str  # one of runners.settings.DELEGATES
    threads: int
    warm: WarmLatency
    target: str = "host"  # the runner: "host" | "adb" | "ssh"
    cold_start_ms: float | None = None  # load + first inference; None where not measured
    device_info: DeviceInfo | None = None
    graph: GraphPlacement | None = None
    times_ms: tuple = ()  # every timed run in order, the dropped warm-up included; () where not reported
    steady_times_ms: tuple = ()  # the runs the warm statistics are over (what a baseline stores and compares)
    peak_memory_mb: float | None = None  # None where the runner cannot measure it
    delegation: str | None = None  # e.g. "completely executed by XNNPACK (1 partition)"
    available: bool = True  # False: the delegate/accelerator is absent; nothing was timed
    note: str | None = None  # anything the user should know (how numbers were obtained)
    problems: tuple = ()  # what went wrong or limits the numbers (unavailable, stopped early, ...)
    op_profile: list = dataclasses.field(default_factory=list)  # [{"op", "count", "avg_ms", "percent"}]
    numerics: Numerics | None = None  # outputs against the float model, where they were computed (check --device)

    @classmethod
    def unavailable(cls, *, device, model, delegate, threads, target, reason, device_info=None):
        """The result for a delegate or accelerator that cannot run there: nothing timed, ``reason`` said."""
        return cls(device=device, model=model, delegate=delegate, threads=threads, warm=WarmLatency.nothing(),
                   target=target, device_info=device_info, available=False, note=reason, problems=(reason,))

    # Flat float views of earlier versions (NaN where not measured).
    p50_ms = property(lambda self: _nan(self.warm.p50))
    p90_ms = property(lambda self: _nan(self.warm.p90))
    p95_ms = property(lambda self: _nan(self.warm.p95))
    min_ms = property(lambda self: _nan(self.warm.min))
    max_ms = property(lambda self: _nan(self.warm.max))
    mean_ms = property(lambda self: _nan(self.warm.mean))

    @property
    def runs(self):
        """Timed runs, the detected warm-up included."""
        return self.warm.runs + (self.warm.warmup_runs_dropped or 0)

    def to_dict(self):
        """The shared result shape (``docs/result-shape.md``), JSON-ready."""
        info = self.device_info or DeviceInfo(name=self.device)
        latency = {"cold_start": self.cold_start_ms, "warm": self.warm.to_dict(), "threads": self.threads,
                   "times": list(self.times_ms)}
        return result_dict(target=self.target, model=self.model, device=info.to_dict(), delegate=self.delegate,
                           accelerator=self.delegate, available=self.available,
                           graph=self.graph.to_dict() if self.graph else None, numerics=self.numerics,
                           latency=latency, peak_memory_mb=self.peak_memory_mb, delegation=self.delegation,
                           note=self.note, problems=self.problems, op_profile=self.op_profile)
