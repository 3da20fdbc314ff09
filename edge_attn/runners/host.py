"""The host runner: latency of a .tflite model on this machine, with LiteRT in this process.

Two LiteRT APIs (the profile's ``engine``, or ``benchmark(engine=...)``):

- ``interpreter``: the TFLite ``Interpreter`` of ``ai_edge_litert``. ``xnnpack`` is its default path (the
  XNNPACK delegate applied at load); ``cpu`` uses ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, LiteRT's own
  kernels with no delegate.
- ``compiled_model``: LiteRT's ``CompiledModel`` with the CPU accelerator, whose kernel mode is XNNPACK
  (``xnnpack``) or the builtin kernels (``cpu``).

``gpu`` always goes through ``CompiledModel``'s GPU accelerator (the wheel ships no GPU delegate for the
Interpreter); where no GPU adapter exists the result says ``available=False`` with LiteRT's reason, as it
does for ``nnapi``, which only exists on Android.

What is measured: the input is random data of the model's input type, set once; after ``warmup``
untimed invokes, each of ``runs`` invokes is timed alone (as TFLite's ``benchmark_model`` does), so p50
is the typical single-inference latency, excluding input conversion. Timing stops early once the
profile's ``timeout_s`` has passed since loading (at least one run is always timed; a single invoke
cannot be interrupted). ``peak_memory_mb`` is the growth of this process's peak resident memory (Linux
``VmHWM``, reset through ``/proc/self/clear_refs`` just before the model is loaded) over its resident
memory at that moment: what loading the model, its tensor arena, delegate-packed weights and the runs
added at their peak. It counts the whole process, so other threads' allocations meanwhile add to it, and
it is ``None`` where the kernel does not allow the reset.
"""

import contextlib
import math
import os
import re
import sys
import tempfile
import time

import numpy as np

from edge_attn.convert.verify import probe_tflite, verify_tflite
from edge_attn.devices import ENGINES
from edge_attn.errors import BadInput
from edge_attn.litert import Interpreter, OpResolverType
from edge_attn.runners.base import DELEGATES, LatencyResult
# The board script is self-contained; its peak-memory helpers serve the host runner as well.
from edge_attn.runners.remote_bench import peak_rss_growth_mb, random_input, reset_peak_rss, time_runs

_NO_DELEGATE = "builtin CPU kernels (no delegate)"
_PROBE_SET_UP = {"cpu": "builtin", "xnnpack": "default"}  # the Interpreter set-up probe_tflite tries for each
_NO_OP_PROFILE = ("per-op profiles are measured for the Interpreter with XNNPACK (each op cut out and timed "
                  "alone); for {what}, profile on the device with benchmark_model (an adb profile)")
# LiteRT's native log lines look like "ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU ...".
_NATIVE_ERROR = re.compile(r"^ERROR: \[[^\]]*\]\s*(\S.*)$", re.MULTILINE)


class _Unavailable(Exception):
    """The delegate or accelerator cannot run on this machine; the message says why."""


class HostRunner:
    """Measures models on this machine for a ``kind = "host"`` profile."""

    def __init__(self, profile):
        if profile.kind != "host":
            raise BadInput(profile.source or profile.name, f"kind: the host runner needs kind = \"host\", "
                                                           f"not {profile.kind!r}")
        self.profile = profile
        self.name = profile.name

    def benchmark(self, model_path, *, delegate="xnnpack", threads=2, runs=50, warmup=5, op_profile=False,
                  engine=None) -> LatencyResult:
        """Latency of ``model_path`` with ``delegate``; ``engine`` overrides the profile's LiteRT API.

        Raises BadInput for a missing or corrupt model and for bad settings; an absent delegate or
        accelerator is a result with ``available=False`` and a note.
        """
        _check_settings(delegate, threads, runs, warmup)
        engine = engine or self.profile.engine or ENGINES[0]
        if engine not in ENGINES:
            raise BadInput("engine", f"expected one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        path = os.fspath(model_path)
        model = verify_tflite(path)  # a missing, corrupt or hostile file is BadInput before LiteRT sees it
        settings = dict(device=self.name, model=path, delegate=delegate, threads=threads)
        if delegate == "nnapi":
            return _unavailable(settings, "NNAPI is Android's neural-network API; measure it on an Android "
                                          "device (a kind = \"adb\" profile)")
        use_compiled_model = engine == "compiled_model" or delegate == "gpu"
        # The probe's interpreter set-ups are the Interpreter's; for CompiledModel only a crash or hang counts.
        probe_tflite(model, what=path, config=None if use_compiled_model else _PROBE_SET_UP[delegate])
        del model  # LiteRT maps the file itself: its pages, touched by the runs, count in peak_memory_mb
        baseline_kib = reset_peak_rss()
        deadline = time.perf_counter() + self.profile.timeout_s
        try:
            if use_compiled_model:
                times_ms, delegation = _measure_compiled_model(path, delegate, threads, warmup, runs, deadline)
            else:
                times_ms, delegation = _measure_interpreter(path, delegate, threads, warmup, runs, deadline)
        except _Unavailable as e:
            return _unavailable(settings, str(e))
        peak_memory_mb = peak_rss_growth_mb(baseline_kib)

        notes = []
        if use_compiled_model:
            notes.append("measured with LiteRT CompiledModel")
        if len(times_ms) < runs:
            notes.append(f"stopped after {len(times_ms)} of {runs} runs: timeout_s = {self.profile.timeout_s:g} "
                         f"of profile {self.name!r} passed")
        by_type = []
        if op_profile and (use_compiled_model or delegate != "xnnpack"):
            notes.append(_NO_OP_PROFILE.format(what="CompiledModel" if use_compiled_model else f"delegate {delegate}"))
        elif op_profile:
            by_type = _op_profile(path, threads)
        return LatencyResult(**settings, runs=len(times_ms), **latency_stats(times_ms),
                             peak_memory_mb=peak_memory_mb, delegation=delegation, note="; ".join(notes) or None,
                             op_profile=by_type)


def _op_profile(path, threads):
    """Per-op-type time, in the adb runner's "Summary by node type" fields ({"op", "count", "avg_ms",
    "percent"}), from every op cut out and timed alone (:mod:`edge_attn.evaluate.op_profile`)."""
    from edge_attn.evaluate.op_profile import profile_ops

    return [{"op": row["op"], "count": row["count"], "avg_ms": row["ms"], "percent": row["percent"]}
            for row in profile_ops(path, threads=threads).by_type]


def latency_stats(times_ms):
    """p50/p90 (numpy's linear interpolation), min, max and mean of run times in ms, as LatencyResult fields."""
    times_ms = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(times_ms, 50)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "min_ms": float(times_ms.min()),
        "max_ms": float(times_ms.max()),
        "mean_ms": float(times_ms.mean()),
    }


def _check_settings(delegate, threads, runs, warmup):
    if delegate not in DELEGATES:
        raise BadInput("delegate", f"expected one of {', '.join(map(repr, DELEGATES))}, got {delegate!r}")
    for name, value, least in (("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise BadInput(name, f"expected an integer >= {least}, got {value!r}")


def _unavailable(settings, note):
    nan = math.nan
    return LatencyResult(**settings, runs=0, p50_ms=nan, p90_ms=nan, min_ms=nan, max_ms=nan, mean_ms=nan,
                         available=False, note=note)


# ---------------------------------------------------------------- Interpreter


def _measure_interpreter(path, delegate, threads, warmup, runs, deadline):
    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if delegate == "cpu" else OpResolverType.AUTO)
    try:
        interpreter = Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BadInput(path, f"cannot be loaded as a TFLite model ({str(e).strip().splitlines()[0]})") from e
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(rng, detail["dtype"], tuple(detail["shape"])))
    delegation = _NO_DELEGATE if delegate == "cpu" else _xnnpack_delegation(interpreter._get_ops_details())
    try:
        return time_runs(interpreter.invoke, warmup, runs, deadline), delegation
    except RuntimeError as e:  # a kernel that refuses the model only when it runs
        raise BadInput(path, f"LiteRT failed running it ({str(e).strip().splitlines()[0]})") from e


def _xnnpack_delegation(nodes):
    """How much of the graph XNNPACK took, from the interpreter's node list.

    The list holds the model's ops followed by one DELEGATE node per partition; replaced ops stay listed.
    A partition's ops are found by walking back from its outputs through the ops' producers until its
    inputs: every op reached runs inside the delegate, the rest run on builtin kernels.
    """
    ops = [node for node in nodes if node["op_name"] != "DELEGATE"]
    partitions = [node for node in nodes if node["op_name"] == "DELEGATE"]
    if not partitions:
        return f"not delegated: all {len(ops)} ops on builtin CPU kernels"
    producer = {int(t): i for i, op in enumerate(ops) for t in op["outputs"]}
    delegated = set()
    for partition in partitions:
        boundary = {int(t) for t in partition["inputs"]}
        pending = [int(t) for t in partition["outputs"]]
        while pending:
            tensor = pending.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in delegated:
                continue
            delegated.add(producer[tensor])
            pending.extend(int(t) for t in ops[producer[tensor]]["inputs"] if t >= 0)
    count = f"{len(partitions)} partition{'s' if len(partitions) > 1 else ''}"
    on_cpu = [op["op_name"] for i, op in enumerate(ops) if i not in delegated]
    if not on_cpu:
        return f"completely executed by XNNPACK ({count})"
    return (f"partially executed by XNNPACK ({count}); {len(on_cpu)} of {len(ops)} ops on builtin CPU kernels: "
            f"{', '.join(sorted(set(on_cpu)))}")


# ---------------------------------------------------------------- CompiledModel


def _measure_compiled_model(path, delegate, threads, warmup, runs, deadline):
    """Time the model with LiteRT's CompiledModel; its native log (environment set-up, accelerator
    registration, GPU probing) is kept off the terminal and mined for the reason when creation fails."""
    with _native_stderr() as native_log:
        try:
            # The model and its LiteRT environment are released when this call returns, still inside the
            # redirect, so their tear-down log lines stay off the terminal too.
            return _run_compiled_model(path, delegate, threads, warmup, runs, deadline)
        except (ImportError, RuntimeError) as e:
            reason = _failure_reason(native_log(), e)
    accelerator = "GPU accelerator" if delegate == "gpu" else "CPU accelerator"
    raise _Unavailable(f"LiteRT CompiledModel with the {accelerator} could not be created here: {reason}")


def _run_compiled_model(path, delegate, threads, warmup, runs, deadline):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    accelerators = HardwareAccelerator.CPU
    if delegate == "gpu":  # CPU stays on as the fallback for ops the GPU does not take
        accelerators |= HardwareAccelerator.GPU
    kernel_mode = CpuKernelMode.BUILTIN if delegate == "cpu" else CpuKernelMode.XNNPACK
    options = Options(accelerators, cpu_options=CpuOptions(num_threads=threads, kernel_mode=kernel_mode))
    model = CompiledModel.from_file(path, options=options)
    signature = next(iter(model.get_signature_list()))  # the first signature, as benchmark_litert_model runs
    rng = np.random.default_rng(0)
    inputs = {}
    for name, detail in model.get_input_tensor_details(signature).items():
        inputs[name] = model.create_input_buffer_by_name(signature, name)
        inputs[name].write(random_input(rng, detail["dtype"], tuple(detail["shape"])))
    outputs = {name: model.create_output_buffer_by_name(signature, name)
               for name in model.get_output_tensor_details(signature)}

    fully = model.is_fully_accelerated()
    if delegate == "cpu":
        delegation = _NO_DELEGATE
    elif delegate == "gpu":
        delegation = "completely executed by the GPU" if fully else "partially executed by the GPU (the rest on CPU)"
    else:
        delegation = ("completely executed by XNNPACK" if fully
                      else "partially executed by XNNPACK (the rest on builtin CPU kernels)")
    times_ms = time_runs(lambda: model.run_by_name(signature, inputs, outputs), warmup, runs, deadline)
    return times_ms, delegation


def _failure_reason(native_log, error):
    """The first ERROR line of LiteRT's native log, else the last informative line of the exception."""
    logged = _NATIVE_ERROR.findall(native_log)
    if logged:
        return logged[0].strip()
    lines = [re.sub(r"^[└\s]*(ERROR: \[[^\]]*\])?\s*", "", line) for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else type(error).__name__


@contextlib.contextmanager
def _native_stderr():
    """Send file descriptor 2 (where LiteRT's C++ code logs) to a temporary file; yields a function that
    returns what was written so far. The redirect is process-wide: other threads' stderr lands there too."""
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)

            def read():
                log.seek(0)
                return log.read().decode("utf-8", "replace")

            yield read
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
