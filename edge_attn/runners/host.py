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

What is measured (:mod:`edge_attn.runners.timing`): the cold start (creating the interpreter or
compiled model with its delegate, then the first inference); then, after ``warmup`` untimed invokes,
each of ``runs`` invokes timed alone (as TFLite's ``benchmark_model`` does) on random input of the
model's type set once. Leading runs that are still warming up are detected and left out of the warm
statistics (:mod:`edge_attn.runners.stats`), so p50 is the typical single-inference latency, with a
bootstrap confidence interval. Timing stops early once the profile's ``timeout_s`` has passed since
loading (at least one run is always timed; a single invoke cannot be interrupted). ``peak_memory_mb`` is the growth of this process's peak resident memory (Linux
``VmHWM``, reset through ``/proc/self/clear_refs`` just before the model is loaded) over its resident
memory at that moment: what loading the model, its tensor arena, delegate-packed weights and the runs
added at their peak. It counts the whole process, so other threads' allocations meanwhile add to it, and
it is ``None`` where the kernel does not allow the reset.
"""

import contextlib
import functools
import os
import re
import sys
import tempfile
import time

import numpy as np

import edge_attn._compat as _compat
from edge_attn.convert.inspect import inspect_tflite
from edge_attn.convert.verify import probe_tflite, verify_tflite
from edge_attn.errors import BadInput
from edge_attn.litert import Interpreter, OpResolverType
import edge_attn.runners.machine as machine
from edge_attn.runners.delegation import (NATIVE_ERROR, compiled_model_placement, no_delegate,
                                          xnnpack_placement)
from edge_attn.runners.result import DeviceInfo, LatencyResult, timed
from edge_attn.runners.settings import ENGINES, check_settings
from edge_attn.runners.timing import (fill_compiled_model_inputs, fill_interpreter_inputs, peak_rss_growth_mb,
                                     reset_peak_rss, timed_session)

_PROBE_SET_UP = {"cpu": "builtin", "xnnpack": "default"}  # the Interpreter set-up probe_tflite tries for each
_NO_OP_PROFILE = ("per-op profiles are measured for the Interpreter with XNNPACK (each op cut out and timed "
                  "alone); for {what}, profile on the device with benchmark_model (an adb profile)")
NNAPI_ELSEWHERE = "NNAPI is Android's neural-network API; measure it on an Android device (a kind = \"adb\" profile)"


class _Unavailable(Exception):
    """The delegate or accelerator cannot run on this machine; the message says why."""


@functools.cache
def host_fingerprint():
    """This machine's :func:`~edge_attn.runners.machine.fingerprint` (read once per process)."""
    return machine.fingerprint()


class HostRunner:
    """Measures models on this machine for a ``kind = "host"`` profile."""

    def __init__(self, profile):
        if profile.kind != "host":
            raise BadInput(profile.source or profile.name, f"kind: the host runner needs kind = \"host\", "
                                                           f"not {profile.kind!r}")
        self.profile = profile
        self.name = profile.name

    def device_info(self):
        return DeviceInfo.from_fingerprint(self.name, host_fingerprint(), emulated=self.profile.emulated)

    def benchmark(self, model_path, *, delegate="xnnpack", threads=2, runs=50, warmup=5, op_profile=False,
                  engine=None) -> LatencyResult:
        """Latency of ``model_path`` with ``delegate``; ``engine`` overrides the profile's LiteRT API.

        Raises BadInput for a missing or corrupt model and for bad settings; an absent delegate or
        accelerator is a result with ``available=False`` and the reason.
        """
        check_settings(delegate, threads, runs, warmup)
        engine = engine or self.profile.engine or ENGINES[0]
        if engine not in ENGINES:
            raise BadInput("engine", f"expected one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
        path = os.fspath(model_path)
        model = verify_tflite(path)  # a missing, corrupt or hostile file is BadInput before LiteRT sees it
        settings = dict(device=self.name, model=path, delegate=delegate, threads=threads, target="host",
                        device_info=self.device_info())
        if delegate == "nnapi":
            return LatencyResult.unavailable(**settings, reason=NNAPI_ELSEWHERE)
        use_compiled_model = engine == "compiled_model" or delegate == "gpu"
        # The probe's interpreter set-ups are the Interpreter's; for CompiledModel only a crash or hang counts.
        probe_tflite(model, what=path, config=None if use_compiled_model else _PROBE_SET_UP[delegate])
        total_ops = len(inspect_tflite(model).ops)
        del model  # LiteRT maps the file itself: its pages, touched by the runs, count in peak_memory_mb
        baseline_kib = reset_peak_rss()
        deadline = time.perf_counter() + self.profile.timeout_s
        try:
            if use_compiled_model:
                session, (graph, delegation) = _measure_compiled_model(path, delegate, threads, warmup, runs,
                                                                       deadline, total_ops)
            else:
                session, (graph, delegation) = measure_interpreter(path, delegate, threads, warmup, runs, deadline)
        except _Unavailable as e:
            return LatencyResult.unavailable(**settings, reason=str(e))
        peak_memory_mb = peak_rss_growth_mb(baseline_kib)

        notes, problems = [], []
        if use_compiled_model:
            notes.append("measured with LiteRT CompiledModel")
        times_ms = session["times_ms"]
        if len(times_ms) < runs:
            problems.append(f"stopped after {len(times_ms)} of {runs} runs: timeout_s = "
                            f"{self.profile.timeout_s:g} of profile {self.name!r} passed")
        by_type = []
        if op_profile and (use_compiled_model or delegate != "xnnpack"):
            notes.append(_NO_OP_PROFILE.format(what="CompiledModel" if use_compiled_model else f"delegate {delegate}"))
        elif op_profile:
            by_type = _op_profile(path, threads)
        return LatencyResult(**settings, **timed(times_ms), cold_start_ms=session["cold_start_ms"],
                             graph=graph, peak_memory_mb=peak_memory_mb,
                             delegation=delegation, note="; ".join(notes + problems) or None,
                             problems=tuple(problems), op_profile=by_type)


def _op_profile(path, threads):
    """Per-op-type time, in the adb runner's "Summary by node type" fields ({"op", "count", "avg_ms",
    "percent"}), from every op cut out and timed alone (:mod:`edge_attn.evaluate.op_profile`)."""
    from edge_attn.evaluate.op_profile import profile_ops

    return [{"op": row["op"], "count": row["count"], "avg_ms": row["ms"], "percent": row["percent"]}
            for row in profile_ops(path, threads=threads).by_type]


# ---------------------------------------------------------------- Interpreter


def measure_interpreter(model, delegate, threads, warmup, runs, deadline):
    """:func:`~edge_attn.runners.timing.timed_session` of the LiteRT Interpreter on ``model`` (a path, or the
    flatbuffer bytes edge_attn's converter made) and where the graph ran: ``(session, (graph, delegation))``."""
    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if delegate == "cpu" else OpResolverType.AUTO)
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": model}
    what = "TFLite model" if "model_content" in source else model

    def load():
        try:
            interpreter = Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise BadInput(what, f"cannot be loaded as a TFLite model ({str(e).strip().splitlines()[0]})") from e
        return interpreter

    rng = np.random.default_rng(0)
    try:
        interpreter, session = timed_session(load, lambda interpreter: fill_interpreter_inputs(interpreter, rng),
                                             warmup, runs, deadline)
    except RuntimeError as e:  # a kernel that refuses the model only when it runs
        raise BadInput(what, f"LiteRT failed running it ({str(e).strip().splitlines()[0]})") from e
    nodes = _compat.interpreter_ops(interpreter)
    if delegate == "cpu":
        return session, no_delegate(sum(node["op_name"] != "DELEGATE" for node in nodes))
    return session, xnnpack_placement(nodes)


# ---------------------------------------------------------------- CompiledModel


def _measure_compiled_model(path, delegate, threads, warmup, runs, deadline, total_ops):
    """Time the model with LiteRT's CompiledModel; its native log (environment set-up, accelerator
    registration, GPU probing) is kept off the terminal and mined for the reason when creation fails."""
    with _native_stderr() as native_log:
        try:
            # The model and its LiteRT environment are released when this call returns, still inside the
            # redirect, so their tear-down log lines stay off the terminal too.
            return _run_compiled_model(path, delegate, threads, warmup, runs, deadline, total_ops)
        except (ImportError, RuntimeError) as e:
            reason = _failure_reason(native_log(), e)
    accelerator = "GPU accelerator" if delegate == "gpu" else "CPU accelerator"
    raise _Unavailable(f"LiteRT CompiledModel with the {accelerator} could not be created here: {reason}")


def _run_compiled_model(path, delegate, threads, warmup, runs, deadline, total_ops):
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    accelerators = HardwareAccelerator.CPU
    if delegate == "gpu":  # CPU stays on as the fallback for ops the GPU does not take
        accelerators |= HardwareAccelerator.GPU
    kernel_mode = CpuKernelMode.BUILTIN if delegate == "cpu" else CpuKernelMode.XNNPACK
    options = Options(accelerators, cpu_options=CpuOptions(num_threads=threads, kernel_mode=kernel_mode))

    rng = np.random.default_rng(0)
    model, session = timed_session(lambda: CompiledModel.from_file(path, options=options),
                                   lambda model: fill_compiled_model_inputs(model, rng), warmup, runs, deadline)
    if delegate == "cpu":
        return session, no_delegate(total_ops)
    fully = model.is_fully_accelerated()
    return session, compiled_model_placement(fully, total_ops, "GPU" if delegate == "gpu" else "XNNPACK")


def _failure_reason(native_log, error):
    """The first ERROR line of LiteRT's native log, else the last informative line of the exception."""
    logged = NATIVE_ERROR.findall(native_log)
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
