"""LiteRT's real GPU accelerator (``CompiledModel`` with ``HardwareAccelerator.GPU``: WebGPU/Dawn over Vulkan, Metal
or D3D), run on a real GPU where there is one and on Mesa's software Vulkan (lavapipe) otherwise, and checked
against LiteRT's CPU kernels on the same inputs.

Why the numbers are checked and not only "it ran": measured with ai-edge-litert 2.3 on lavapipe, an int8 model can
report ``is_fully_accelerated() == True``, raise nothing and return wrong numbers (a WGSL type error in the log and
a constant output). So every run compares the accelerator's outputs with the CPU's and names the symptom: constant
output, non-finite values, SNR or top-1 agreement under a floor, shader errors in the log.

The accelerator runs in a child process (``python -c``, importing only numpy and LiteRT) with a timeout: native
GPU code can crash or hang, and its log lines (C++ ``stderr``) are captured there, searched for the adapter and for
shader errors, and kept out of the user's terminal. Software Vulkan comes from ``scripts/setup_vulkan.sh``: when
``VK_DRIVER_FILES``/``VK_ICD_FILENAMES`` are not set, the child is pointed at that script's cache if it exists.
"""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from edge_attn.convert import inspect_tflite
from edge_attn.convert.verify import probe_tflite, verify_tflite
from edge_attn.errors import BadInput
from edge_attn.litert import dequantize, make_interpreter, quantize, run
from edge_attn.runners.result import DeviceInfo, GraphPlacement, WarmLatency
from edge_attn.targets.result import Numerics, TargetResult

__all__ = ["MIN_SNR_DB", "MIN_AGREEMENT", "RANDOM_SAMPLES", "run_on_gpu", "verify_gpu", "gpu_accuracy",
           "format_target", "vulkan_env"]

MIN_SNR_DB = 20.0  # GPU vs CPU output SNR floor. Measured on lavapipe: f32/fp16 SE/CBAM models 40-60 dB
# (the GPU computes in fp16 by default); a model this far from the CPU computes something else.
MIN_AGREEMENT = 0.95  # top-1 agreement floor with the CPU (allows near-ties to flip under fp16 arithmetic)
RANDOM_SAMPLES = 32  # seeded random inputs when no data is given
MAX_SAMPLES = 1024  # inputs run on the accelerator at most (the first ones), to bound time and memory
SETUP_TIMEOUT_S = 120.0  # child start, LiteRT + Dawn set-up, shader compilation (seconds on software Vulkan)
RUN_TIMEOUT_S = 1.0  # per sample, on top: a 16x16 ResNet-20 takes ~10-30 ms on lavapipe with 2 cores
LOG_LINES_KEPT = 20

# Run as ``python -c CHILD model inputs.npy outputs.npy``; prints one JSON line per stage on stdout.
_CHILD = r"""
import json, sys, time
import numpy as np
def say(**kw):
    print(json.dumps(kw), flush=True)
try:
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
except ImportError as e:
    say(stage="import", error=str(e)); sys.exit(0)
model_path, inputs_path, outputs_path = sys.argv[1:4]
stage = "create"
try:
    start = time.perf_counter()
    model = CompiledModel.from_file(model_path, hardware_accel=HardwareAccelerator.GPU | HardwareAccelerator.CPU)
    say(stage="created", setup_s=time.perf_counter() - start, fully_accelerated=model.is_fully_accelerated())
    stage = "run"
    signature = list(model.get_signature_list())[0]
    out_detail, = model.get_output_tensor_details(signature).values()
    inputs = model.create_input_buffers(0)
    outputs = model.create_output_buffers(0)
    count = int(np.prod(out_detail["shape"]))
    x = np.load(inputs_path)
    results, times = [], []
    for sample in x:
        inputs[0].write(np.ascontiguousarray(sample[None]))
        t = time.perf_counter()
        model.run_by_index(0, inputs, outputs)
        results.append(outputs[0].read(count, np.dtype(out_detail["dtype"])).reshape(out_detail["shape"])[0])
        times.append((time.perf_counter() - t) * 1000.0)
    np.save(outputs_path, np.stack(results))
    say(stage="ran", times_ms=times, output_dtype=str(out_detail["dtype"]))
except Exception as e:
    say(stage=stage, error=(str(e).strip().splitlines() or [type(e).__name__])[-1][:300])
"""

_ADAPTER = re.compile(r"Selected adapter: (.+)")
# Tint (Dawn's WGSL compiler) reports "<file>:<line>:<col> error: ..."; Dawn wraps it in "Error while parsing WGSL"
# / "Tint WGSL reader failure" / "shader module" messages.
_SHADER_ERROR = re.compile(r"(?i)(\d+:\d+ error: |wgsl|tint |shader ?module|pipeline.*(error|invalid))")
_GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ")  # "E0000 00:00:17.5  123 file.cc:105] "
_NO_ADAPTER = re.compile(r"(?i)no adapters found|failed to initialize webgpu environment")
_VULKAN_LOAD = re.compile(r"Couldn't load Vulkan: (.+)")


def vulkan_cache_dir():
    """Where scripts/setup_vulkan.sh keeps Mesa (same rule as the script)."""
    if os.environ.get("EDGE_ATTN_VULKAN_CACHE"):
        return os.environ["EDGE_ATTN_VULKAN_CACHE"]
    if os.geteuid() == 0:
        return "/var/cache/edge-attn/vulkan"
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-attn", "vulkan")


def vulkan_env(environ=None):
    """``(env, source)``: the child's environment, and where its Vulkan driver comes from — ``"environment"`` when
    the caller chose one (``VK_DRIVER_FILES``/``VK_ICD_FILENAMES``), ``"edge-attn cache <dir>"`` when
    scripts/setup_vulkan.sh's cache exists, else ``"system"`` (whatever the loader finds: a real GPU's driver)."""
    env = dict(os.environ if environ is None else environ)
    if env.get("VK_DRIVER_FILES") or env.get("VK_ICD_FILENAMES"):
        return env, "environment"
    cache = vulkan_cache_dir()
    icd = os.path.join(cache, "lvp_icd.json")
    if not os.path.isfile(icd):
        return env, "system"
    triplet = f"{os.uname().machine}-linux-gnu"
    libs = [os.path.join(cache, "mesa", sub, triplet) for sub in ("usr/lib", "lib")]
    env["VK_DRIVER_FILES"] = icd
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
    if not env.get("XDG_RUNTIME_DIR"):
        env["XDG_RUNTIME_DIR"] = tempfile.gettempdir()
    return env, f"edge-attn cache {cache}"


_SOFTWARE_ADAPTER = re.compile(r"(?i)cpu / software|llvmpipe|lavapipe|swiftshader")


def _device(adapter):
    """The GPU target's device: the adapter Dawn selected, on this machine's fingerprint (CPU, arch, LiteRT);
    ``emulated`` when the adapter is a software rasterizer (its latency is the CPU's, not a GPU's)."""
    from edge_attn.runners.machine import fingerprint

    software = bool(adapter and _SOFTWARE_ADAPTER.search(adapter))
    return DeviceInfo.from_fingerprint(adapter or "gpu (no adapter)", fingerprint(), emulated=software)


class GpuRun:
    """What the child reported: ``outputs`` (raw, the model's output dtype) or ``error``; the log's findings."""

    def __init__(self):
        self.outputs = None
        self.error = None  # one line: why the accelerator could not be used, or crashed
        self.unavailable = False  # the error means "no GPU accelerator here", not "this model breaks it"
        self.fully_accelerated = None
        self.setup_s = None
        self.times_ms = []
        self.adapter = None
        self.shader_errors = []
        self.log_tail = []
        self.log_text = ""
        self.vulkan = None


def run_on_gpu(model_bytes, inputs, *, timeout_s=None):
    """Run ``inputs`` (``(N, ...)`` in the model's input dtype, already quantized) through ``model_bytes`` on LiteRT's
    GPU accelerator (CPU fallback for ops it refuses) in a child process. Returns a :class:`GpuRun`."""
    result = GpuRun()
    env, result.vulkan = vulkan_env()
    timeout_s = SETUP_TIMEOUT_S + RUN_TIMEOUT_S * len(inputs) if timeout_s is None else timeout_s
    with tempfile.TemporaryDirectory(prefix="edge-attn-gpu-") as tmp:
        model_path, inputs_path, outputs_path = (os.path.join(tmp, n) for n in ("model.tflite", "x.npy", "y.npy"))
        with open(model_path, "wb") as f:
            f.write(model_bytes)
        np.save(inputs_path, inputs)
        try:
            child = subprocess.run([sys.executable, "-c", _CHILD, model_path, inputs_path, outputs_path],
                                   capture_output=True, timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired as e:
            _read_log(result, e.stderr or b"")
            result.error = f"the GPU accelerator did not finish within {timeout_s:g} s (hung or far too slow)"
            return result
        _read_log(result, child.stderr)
        stages = [json.loads(line) for line in child.stdout.decode("utf-8", "replace").splitlines()
                  if line.startswith("{")]
        for stage in stages:
            if stage["stage"] == "created":
                result.setup_s, result.fully_accelerated = stage["setup_s"], stage["fully_accelerated"]
            elif stage["stage"] == "ran":
                result.times_ms = stage["times_ms"]
                result.outputs = np.load(outputs_path)
            if "error" in stage:
                result.error = _error_line(stage, result)
        if child.returncode < 0:
            where = "while running" if result.setup_s is not None else "while setting up"
            result.error = f"the GPU accelerator crashed {where} (signal {signal.Signals(-child.returncode).name})"
        elif child.returncode != 0 and result.error is None:
            result.error = f"the GPU accelerator's process failed (exit status {child.returncode})"
        elif result.outputs is None and result.error is None:
            result.error = "the GPU accelerator's process ended without a result"
    return result


def _read_log(result, stderr):
    lines = [l.strip() for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    for line in lines:
        found = _ADAPTER.search(line)
        if found:
            result.adapter = found.group(1).strip()
        if _SHADER_ERROR.search(line) and "Failed to load plugin" not in line:
            result.shader_errors.append(_GLOG_PREFIX.sub("", line)[:300])
    result.shader_errors = result.shader_errors[:LOG_LINES_KEPT]
    result.log_tail = lines[-LOG_LINES_KEPT:]
    result.log_text = "\n".join(lines)


def _error_line(stage, result):
    error = stage["error"]
    if stage["stage"] == "import":
        result.unavailable = True
        return f"ai_edge_litert's CompiledModel cannot be imported ({error})"
    if stage["stage"] == "create" and _NO_ADAPTER.search(result.log_text):
        result.unavailable = True
        why = _VULKAN_LOAD.search(result.log_text)
        cause = f"Vulkan: {why.group(1).strip()}" if why else "no Vulkan device with the features Dawn needs"
        return (f"no WebGPU adapter ({cause}); without a GPU, run scripts/setup_vulkan.sh for software Vulkan "
                "(Mesa >= 25 lavapipe; Debian 12's Mesa 22.3 lacks features Dawn needs)")
    return f"LiteRT's GPU accelerator failed at {stage['stage']}: {error}"


def _float_inputs(detail, x, seed):
    """Float inputs: ``x`` as given, or seeded random ones spanning the input's range (a quantized input's
    representable range, else standard normal)."""
    if x is not None:
        return np.asarray(x, np.float32)[:MAX_SAMPLES]
    rng = np.random.default_rng(seed)
    shape = (RANDOM_SAMPLES, *(int(d) for d in detail["shape"][1:]))
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        return rng.uniform(scale * (info.min - zero_point), scale * (info.max - zero_point), shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _model_inputs(detail, x_float):
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return x_float.astype(dtype)
    scale, zero_point = detail["quantization"]
    return quantize(x_float, scale, zero_point, dtype)


def _read_outputs(detail, raw):
    if np.issubdtype(raw.dtype, np.floating):
        return raw.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return dequantize(raw, scale, zero_point) if scale else raw.astype(np.float32)


def verify_gpu(model, x=None, *, seed=0, min_snr_db=MIN_SNR_DB, min_agreement=MIN_AGREEMENT):
    """Run ``model`` (a .tflite path or bytes) on the GPU accelerator and on LiteRT's CPU kernels with the same inputs
    (float samples ``x``, else :data:`RANDOM_SAMPLES` seeded random ones); return ``(TargetResult, gpu_outputs)``,
    outputs as float ``(N, ...)`` (None when it did not run). A bad model file raises BadInput (verified and probed
    on the CPU first)."""
    data = _model_bytes(model)  # read once: the bytes verified are the bytes both runtimes get
    interpreter = make_interpreter(data)
    if len(interpreter.get_input_details()) != 1 or len(interpreter.get_output_details()) != 1:
        raise BadInput(_what(model), "the GPU check runs single-input, single-output models")
    in_detail, = interpreter.get_input_details()
    out_detail, = interpreter.get_output_details()
    x_float = _float_inputs(in_detail, x, seed)
    cpu_out = run(interpreter, x_float)
    started = time.perf_counter()
    gpu = run_on_gpu(data, _model_inputs(in_detail, x_float))
    details = {"vulkan": gpu.vulkan, "inputs": "data" if x is not None else f"seeded random (seed {seed})",
               "accelerators": "GPU, CPU fallback for ops the GPU refuses", "setup_s": gpu.setup_s,
               "wall_s": round(time.perf_counter() - started, 2), "shader_errors": gpu.shader_errors,
               "thresholds": {"min_snr_db": min_snr_db, "min_agreement": min_agreement}}
    details["adapter"] = gpu.adapter
    total_ops = len(inspect_tflite(data).ops)  # the main graph's
    graph = None if gpu.fully_accelerated is None else GraphPlacement(
        accelerated_ops=total_ops if gpu.fully_accelerated else None, total_ops=total_ops, partitions=None,
        fully_accelerated=gpu.fully_accelerated)
    path = None if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
    common = dict(target="gpu", accelerator="gpu", model=path, device=_device(gpu.adapter), graph=graph)
    if gpu.error:
        details["log_tail"], details["error"] = gpu.log_tail, gpu.error
        if gpu.unavailable:
            return TargetResult(available=False, problems=(f"GPU accelerator unavailable: {gpu.error}",),
                                details=details, **common), None
        return TargetResult(available=True, failure="failed", problems=(gpu.error, *_shader_problems(gpu)),
                            details=details, **common), None
    gpu_out = _read_outputs(out_detail, gpu.outputs)
    numerics = Numerics.between(cpu_out, gpu_out, reference="cpu")
    wrong = _numeric_problems(cpu_out, gpu_out, numerics, min_snr_db, min_agreement)
    problems = wrong + _shader_problems(gpu)
    failure = "wrong-numbers" if wrong else "failed" if problems else None
    latency, note = _latency(gpu)
    return TargetResult(available=True, numerics=numerics, latency_ms=latency, failure=failure, note=note,
                        problems=tuple(problems), details=details, **common), gpu_out


def _numeric_problems(cpu_out, gpu_out, numerics, min_snr_db, min_agreement):
    problems = []
    flat_gpu, flat_cpu = gpu_out.reshape(len(gpu_out), -1), cpu_out.reshape(len(cpu_out), -1)
    bad = int(np.sum(~np.isfinite(flat_gpu).all(axis=1)))
    if bad:
        problems.append(f"non-finite outputs (NaN/inf) in {bad} of {len(flat_gpu)} samples")
    if len(flat_gpu) > 1 and np.all(flat_gpu == flat_gpu[0]) and not np.all(flat_cpu == flat_cpu[0]):
        shown = np.array2string(flat_gpu[0][:6], precision=4, separator=", ")
        problems.append(f"constant output: all {len(flat_gpu)} samples give the same output {shown[:-1]}"
                        f"{', ...]' if flat_gpu.shape[1] > 6 else ']'} on the GPU, while the CPU's differ")
    if not bad and numerics.snr_db < min_snr_db:
        problems.append(f"wrong numbers: output SNR vs the CPU is {numerics.snr_db:.1f} dB, below {min_snr_db:g} dB "
                        f"(max |diff| {numerics.max_abs_diff:.4g})")
    if numerics.top1_agreement < min_agreement:
        problems.append(f"top-1 agrees with the CPU on {numerics.agreement_count}/{numerics.samples} samples "
                        f"({100 * numerics.top1_agreement:.1f}%), below {100 * min_agreement:g}%")
    return problems


def _shader_problems(gpu):
    if not gpu.shader_errors:
        return []
    more = f" (+{len(gpu.shader_errors) - 1} more)" if len(gpu.shader_errors) > 1 else ""
    return [f"shader error in LiteRT's log: {gpu.shader_errors[0]}{more}"]


def _latency(gpu):
    """``(latency_ms block, note)``: cold start is the compiled model's creation (shaders included) plus the first
    run; the warm statistics are over the single-sample runs after the detected warm-up."""
    if not gpu.times_ms:
        return None, None
    software = bool(gpu.adapter and _SOFTWARE_ADAPTER.search(gpu.adapter))
    cold = gpu.setup_s * 1000.0 + gpu.times_ms[0] if gpu.setup_s is not None else None
    times = gpu.times_ms
    if len(times) > 1:  # the first run is part of the cold start (it compiles shaders): never a warm run
        warm = WarmLatency.from_times(times[1:])
        warm = dataclasses.replace(warm, warmup_runs_dropped=warm.warmup_runs_dropped + 1)
    else:
        warm = WarmLatency.from_times(times)
    block = {"cold_start": cold, "warm": warm.to_dict(), "threads": None,
             "times": list(gpu.times_ms)}
    note = ("EMULATED: software rasterizer on the CPU, not a GPU device figure; single-sample runs" if software
            else "single-sample runs, host round trips included")
    return block, note


def gpu_accuracy(reference_model, tflite, x, y):
    """``check --accelerator gpu``: the float Keras ``reference_model`` vs ``tflite`` run on the GPU accelerator, on
    labelled ``(x, y)``. Returns ``(accuracy, TargetResult)``; ``accuracy`` has the keys of
    :func:`edge_attn.evaluate.compare.accuracy_from_outputs`, or is None when the accelerator produced no outputs
    (``TargetResult.problems`` says why)."""
    from edge_attn.evaluate.compare import accuracy_from_outputs

    x = np.asarray(x)[:MAX_SAMPLES]
    target, gpu_out = verify_gpu(tflite, x)
    if gpu_out is None:
        return None, target
    reference_out = reference_model.predict(x, batch_size=64, verbose=0)
    return accuracy_from_outputs(reference_out, gpu_out.reshape(len(gpu_out), -1), np.asarray(y)[:len(x)]), target


def _model_bytes(model):
    """A user's file is verified and probed on the CPU in a child first (bad input: exit 2); bytes are our own."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    what = os.fspath(model)
    data = verify_tflite(what)
    probe_tflite(data, what=what, config="default")
    return data


def _what(model):
    return "TFLite model" if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)


def format_target(result):
    """Human-readable lines for a :class:`TargetResult` of the GPU accelerator."""
    if not result.available:
        return f"gpu accelerator unavailable: {result.details.get('error') or '; '.join(result.problems)}"
    device = result.device
    runtime = f"{device.runtime} {device.runtime_version}" if device and device.runtime else "unknown"
    rows = [("adapter", result.details.get("adapter") or "unknown"), ("runtime", runtime),
            ("fully accelerated", {True: "yes", False: "no (some ops on CPU)", None: "unknown"}[result.fully_accelerated])]
    n = result.numerics
    if n:
        rows += [("vs CPU", f"max |diff| {n.max_abs_diff:.3g}, SNR {n.snr_db:.1f} dB, top-1 agreement "
                            f"{n.agreement_count}/{n.samples} ({result.details.get('inputs')})")]
    if result.latency_ms:
        lat = result.latency_ms
        cold = f"cold start {lat['cold_start']:.1f} ms, " if lat["cold_start"] is not None else ""
        rows += [("latency", f"{cold}p50 {lat['warm']['p50']:.2f} ms ({result.note})")]
    width = max(len(k) for k, _ in rows)
    lines = ["gpu accelerator (real LiteRT run):"] + [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append(f"result: {result.verdict}" if result.ok else
                 f"result: {result.verdict}, FAILED: " + "; ".join(result.problems))
    return "\n".join(lines)


def verify_compat(report, model, delegate, data_spec, *, verify):
    """``compat MODEL --delegate gpu --verify [--data D]``: the static rules' ``report`` beside a real run.

    Returns ``(json_dict, text)``: the rules' report with ``accelerator`` (a :class:`TargetResult` dict) and
    ``rules_agree`` (whether the rules' "whole graph in one GPU partition" matches ``is_fully_accelerated()``)."""
    if not verify:
        raise BadInput("--data", "is only used with --verify")
    if delegate != "gpu":
        raise BadInput("--verify", f"runs the real GPU accelerator; --delegate {delegate} has no runnable "
                                   "accelerator here (use --delegate gpu)")
    x = None
    if data_spec:
        from edge_attn.data import load_data

        shape = tuple(int(d) for d in make_interpreter(model).get_input_details()[0]["shape"][1:])
        x = load_data(data_spec, input_shape=shape).x_eval
    target, _ = verify_gpu(model, x)
    rules_whole = report.supported_count == len(report.ops) and report.partitions == 1
    agree = None if target.fully_accelerated is None else rules_whole == target.fully_accelerated
    result = {**report.to_dict(), "accelerator": target.to_dict(), "rules_agree": agree}
    text = format_target(target)
    if agree is False:
        text += (f"\nnote: the rules predict {'the whole graph' if rules_whole else 'a partial graph'} on the GPU, "
                 f"the accelerator reports {'full' if target.fully_accelerated else 'partial'} acceleration")
    return result, text
