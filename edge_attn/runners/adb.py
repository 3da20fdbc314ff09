"""Latency of a .tflite model on an Android phone over adb, measured by TFLite's ``benchmark_model``.

The runner pushes the model and the profile's ``benchmark_model`` binary to the phone, runs it there with
the requested delegate and thread count, and parses what the tool prints (the format of
``tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc``): the timed runs' ``count=... min=...
max=... avg=... std=...`` line (``p5=... median=... p95=...`` in newer builds), "Inference timings in us:
Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ...", the memory footprint and model
size lines, the delegate application line ("Explicitly applied GPU delegate, and the model graph will be
completely executed by the delegate." / "... partially executed by the delegate w/ N delegate kernels.")
and, with ``op_profile=True``, the "Summary by node type" table of the regular (not initialisation) runs.

What the numbers mean:

- ``benchmark_model`` does not print per-run timings, only the summary line. p50 is its ``median`` when
  the build prints one, else its mean (the ``note`` says which); p95 is its ``p95`` where printed; p90 is
  not reported (None: the tool has none, and no number is made up). Without per-run times there is no
  confidence interval of p50, no warm-up detection beyond the tool's own ``--warmup_runs`` and no
  statistical comparison with a baseline; the result's ``problems`` say so.
- The cold start is the tool's "Init" plus "First inference".
- ``runs`` is the tool's own count: ``--num_runs`` is a minimum (it also runs for at least one second).
- The device fingerprint comes from ``getprop`` (SoC, Android version, emulator), ``/proc/cpuinfo`` (the
  distinct CPU cores) and the cpufreq governor where the phone lets the shell read it; the runtime
  version is the ``benchmark_model`` binary's SHA-256 prefix (the tool prints no version).
- ``peak_memory_mb`` is the tool's "overall" memory footprint delta (or the periodic-monitoring peak
  when the build prints it): approximate, as the tool itself warns.
- A requested delegate the tool could not apply ("Failed to apply GPU delegate.", or a build/phone
  without it, where the tool silently runs on the CPU) gives ``available=False`` with NaN timings and
  the reason in ``note`` instead of CPU timings labelled as GPU.

Delegates map to flags as ``cpu`` → ``--use_xnnpack=false`` (TFLite's built-in kernels),
``xnnpack`` → ``--use_xnnpack=true``, ``gpu`` → ``--use_gpu=true``, ``nnapi`` → ``--use_nnapi=true``.
When the profile names an ``inference_diff`` binary (TFLite's
``tensorflow/lite/tools/evaluation/tasks/inference_diff:run_eval``), it is run with the same delegate
and its output error statistics (mean and std of |delegate output - single-threaded CPU output|) are
added to the note; :meth:`AdbRunner.inference_diff` returns them as numbers.

Getting ``benchmark_model`` for a phone: the TFLite/LiteRT docs' "Performance measurement" page links
prebuilt nightly binaries (``android_aarch64_benchmark_model``, ``android_arm_benchmark_model`` for 32-bit phones), or
build it with ``bazel build -c opt --config=android_arm64
//tensorflow/lite/tools/benchmark:benchmark_model`` (and ``...inference_diff:run_eval`` the same way).
Put its local path in the device profile; the runner pushes it once per session. Pin the big cores with
the profile's ``taskset_mask`` (e.g. ``f0``) to reduce run-to-run variance.

Every command is an argument list (never a shell string); the serial, remote directory and taskset mask
are checked against strict patterns before use, and every adb call has a timeout. A phone that is gone
("device 'X' not found", no devices, no answer in time) is reported as a one-line :class:`BadInput`
naming the serial.
"""

import hashlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field

from edge_attn.convert import inspect_tflite
from edge_attn.errors import BadInput
import edge_attn.runners.machine as machine
from edge_attn.runners.command_line import ABSOLUTE_PATH, CPU_MASK, SERIAL, checked, checked_remote_dir
from edge_attn.runners.delegation import delegate_kernels_placement
from edge_attn.runners.result import DeviceInfo, LatencyResult, WarmLatency
from edge_attn.runners.settings import check_settings

SERIAL_PATTERN, REMOTE_PATH_PATTERN, TASKSET_PATTERN = SERIAL, ABSOLUTE_PATH, CPU_MASK  # earlier names
GOVERNOR_FILE = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"

DELEGATE_FLAGS = {
    "cpu": "--use_xnnpack=false",  # explicit false: the tool then skips TFLite's default XNNPACK delegate
    "xnnpack": "--use_xnnpack=true",
    "gpu": "--use_gpu=true",
    "nnapi": "--use_nnapi=true",
}
# How benchmark_model's delegate providers name themselves in "Explicitly applied <NAME> delegate ...".
DELEGATE_NAMES = {"xnnpack": "XNNPACK", "gpu": "GPU", "nnapi": "NNAPI"}

_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_LOG_PREFIX = re.compile(r"^\s*(?:\S+\s+\S+\s+\d+\s+\d+\s+[VDIWEF]\s+tflite\s*:\s*)?(?:[A-Z]+:\s+)?")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: ({_NUMBER}), First inference: ({_NUMBER}), "
    rf"Warmup \(avg\): ({_NUMBER}), Inference \(avg\): ({_NUMBER})")
_KEY_VALUE = re.compile(rf"(\w+)=({_NUMBER})")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUMBER})")
_FOOTPRINT = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                        rf"init=({_NUMBER}) overall=({_NUMBER})")
_MONITORED_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})")
_APPLIED_COMPLETELY = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely")
_APPLIED_PARTIALLY = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially "
                                r"executed by the delegate w/ (\d+) delegate kernels")
_NOT_EXECUTED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_FAILED_TO_APPLY = re.compile(r"Failed to apply (\S+) delegate")


@dataclass(frozen=True)
class BenchmarkOutput:
    """What one ``benchmark_model`` run printed; times in microseconds as the tool prints them."""

    run_stats: dict  # the timed runs' count/first/curr/min/max/avg/std (+ p5/median/p95 in newer builds)
    init_us: float | None
    first_inference_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float | None
    model_size_mb: float | None
    memory_init_mb: float | None
    memory_overall_mb: float | None
    monitored_peak_mb: float | None  # only with --report_peak_memory_footprint=true
    delegation: dict  # delegate name as printed ("GPU") -> "completely executed by the delegate" etc.
    failed_delegates: tuple  # names in "Failed to apply <NAME> delegate."
    op_profile: list = field(default_factory=list)  # "Summary by node type" of the regular runs


@dataclass(frozen=True)
class InferenceDiff:
    """``inference_diff`` (run_eval) statistics: |test - reference| per output, latencies in microseconds.

    The reference is a single-threaded CPU interpreter; the test one uses the delegate and thread count
    asked for.
    """

    runs: int | None
    reference_latency_us: tuple | None  # (avg, std)
    test_latency_us: tuple | None  # (avg, std)
    output_errors: tuple  # ((avg_error, std_dev), ...) one per output tensor

    def summary(self):
        """One line for a result note, e.g. ``output 0 |diff| mean 1.96e-05 (std 6.96e-06)``."""
        parts = [f"output {i} |diff| mean {avg:.3g} (std {std:.3g})" for i, (avg, std) in enumerate(self.output_errors)]
        return ", ".join(parts)


def parse_benchmark_output(text):
    """Parse ``benchmark_model``'s output (stdout and stderr together, logcat or plain) into a BenchmarkOutput."""
    lines = [_LOG_PREFIX.sub("", line, count=1).rstrip() for line in text.splitlines()]
    # The warm-up phase prints its own count= line first; the timed runs' line is the last one.
    count_lines = [line for line in lines if line.startswith("count=")]
    run_stats = {k: float(v) for k, v in _KEY_VALUE.findall(count_lines[-1])} if count_lines else {}
    timings = _search(_TIMINGS, lines)
    footprint = _search(_FOOTPRINT, lines)
    delegation = {}
    for line in lines:
        if m := _APPLIED_COMPLETELY.search(line):
            delegation[m[1]] = "completely executed by the delegate"
        elif m := _APPLIED_PARTIALLY.search(line):
            delegation[m[1]] = f"partially executed by the delegate ({m[2]} delegate kernels)"
        elif m := _NOT_EXECUTED.search(line):
            delegation[m[1]] = "not executed by the delegate (it supports none of the ops)"
    return BenchmarkOutput(
        run_stats=run_stats,
        init_us=_group_float(timings, 1), first_inference_us=_group_float(timings, 2),
        warmup_avg_us=_group_float(timings, 3), inference_avg_us=_group_float(timings, 4),
        model_size_mb=_group_float(_search(_MODEL_SIZE, lines), 1),
        memory_init_mb=_group_float(footprint, 1), memory_overall_mb=_group_float(footprint, 2),
        monitored_peak_mb=_group_float(_search(_MONITORED_PEAK, lines), 1),
        delegation=delegation,
        failed_delegates=tuple(m[1] for line in lines if (m := _FAILED_TO_APPLY.search(line))),
        op_profile=_parse_op_summary(lines),
    )


_OUTPUT_DIFF = re.compile(rf"OutputDiff\[(\d+)\]: avg_error=({_NUMBER}), std_dev=({_NUMBER})")
_DIFF_LATENCY = re.compile(rf"(Reference|Test) run latency: avg=({_NUMBER})\(us\), std_dev=({_NUMBER})\(us\)")


def parse_inference_diff(text):
    """Parse the final lines ``inference_diff`` (run_eval) logs into an InferenceDiff."""
    lines = [_LOG_PREFIX.sub("", line, count=1) for line in text.splitlines()]
    runs = _search(re.compile(r"Num evaluation runs: (\d+)"), lines)
    latencies = {m[1]: (float(m[2]), float(m[3])) for line in lines if (m := _DIFF_LATENCY.search(line))}
    errors = sorted((int(m[1]), float(m[2]), float(m[3])) for line in lines if (m := _OUTPUT_DIFF.search(line)))
    return InferenceDiff(
        runs=int(runs[1]) if runs else None,
        reference_latency_us=latencies.get("Reference"),
        test_latency_us=latencies.get("Test"),
        output_errors=tuple((avg, std) for _, avg, std in errors),
    )


def _search(pattern, lines):
    for line in lines:
        if m := pattern.search(line):
            return m
    return None


def _group_float(match, group):
    return float(match[group]) if match else None


# One row of benchmark_model's "Summary by node type" table.
_PROFILE_SUMMARY_ROW = re.compile(
    rf"^\s*(?P<op>\S.*?)\s+(?P<count>\d+)\s+(?P<avg_ms>{_NUMBER})\s+(?P<percent>{_NUMBER})%"
    rf"\s+(?P<cdf_percent>{_NUMBER})%(?:\s+{_NUMBER}\s+\d+)?\s*$")


def _parse_op_summary(lines):
    """Rows of the "Summary by node type" table that follows "Operator-wise Profiling Info for Regular
    Benchmark Runs" (the table printed before it profiles the initialisation, not inference).

    ``avg_ms`` is the time per inference spent in all nodes of that type; ``percent`` its share.
    """
    start = next((i for i, line in enumerate(lines) if "Profiling Info for Regular Benchmark Runs" in line), None)
    if start is None:
        return []
    summary = next((i for i in range(start, len(lines)) if "Summary by node type" in lines[i]), None)
    if summary is None:
        return []
    rows = []
    for line in lines[summary + 1:]:
        if "[Node type]" in line:
            continue
        m = _PROFILE_SUMMARY_ROW.match(line)
        if not m:
            break
        rows.append({"op": m["op"], "count": int(m["count"]), "avg_ms": float(m["avg_ms"]),
                     "percent": float(m["percent"]), "cdf_percent": float(m["cdf_percent"])})
    return rows


# What adb prints on stderr when the device it was asked for is not there to talk to.
_DEVICE_GONE = re.compile(r"device '[^']*' not found|no devices/emulators found|device offline|"
                          r"device unauthorized|device still authorizing")


class AdbRunner:
    """Runs ``benchmark_model`` on the Android phone named by an adb device profile.

    ``adb`` is the adb executable (a name on PATH or a path). Profile settings used
    (:class:`edge_attn.devices.DeviceProfile`): ``name``, ``serial`` (None: the only attached phone),
    ``remote_dir``, ``benchmark_model`` (local path), optional ``inference_diff`` (local path) and
    ``taskset_mask``, and ``timeout_s`` (limit of each adb call, the benchmark run included).
    """

    def __init__(self, profile, *, adb="adb"):
        if profile.kind != "adb":
            raise BadInput(profile.source or profile.name,
                           f"kind: the adb runner needs kind = \"adb\", not {profile.kind!r}")
        self.name = profile.name
        self._adb = adb
        self._serial = checked(profile.serial, SERIAL, f"{profile.name}: serial") if profile.serial else None
        self._device = f"adb device {self._serial or '(the only attached one)'}"
        self._remote_dir = checked_remote_dir(profile.remote_dir, f"{profile.name}: remote_dir")
        mask = profile.taskset_mask
        self._taskset = checked(mask, CPU_MASK, f"{profile.name}: taskset_mask") if mask else None
        self._benchmark_binary = _local_file(profile.benchmark_model, f"{profile.name}: benchmark_model")
        diff_tool = profile.inference_diff
        self._diff_binary = _local_file(diff_tool, f"{profile.name}: inference_diff") if diff_tool else None
        self._timeout_s = float(profile.timeout_s)
        self._on_phone = {}  # remote path -> (size, mtime) of the local file pushed there this session
        self._diff_notes = {}  # (model digest, delegate, threads, runs) -> note: bench calls in rounds
        self._device_info = None  # read from the phone once per session

    def benchmark(self, model_path, *, delegate="xnnpack", threads=2, runs=50, warmup=5,
                  op_profile=False) -> LatencyResult:
        """Latency of ``model_path`` on the phone with ``delegate``; see the module notes for the mapping."""
        check_settings(delegate, threads, runs, warmup)
        remote_model = self._push_model(model_path)
        binary = self._push_binary(self._benchmark_binary)
        command = [binary, f"--graph={remote_model}", f"--num_threads={threads}", f"--num_runs={runs}",
                   f"--warmup_runs={warmup}", DELEGATE_FLAGS[delegate]]
        if op_profile:
            command.append("--enable_op_profiling=true")
        device_info = self.device_info()  # read before the run, once per session
        completed = self._shell(command, pinned=True)
        text = completed.stdout + completed.stderr
        output = parse_benchmark_output(text)
        unavailable = self._unavailable_reason(delegate, output, text)
        if unavailable:
            return LatencyResult.unavailable(device=self.name, model=os.fspath(model_path), delegate=delegate,
                                             threads=threads, target="adb", reason=unavailable,
                                             device_info=device_info)
        if not {"count", "min", "max", "avg"} <= output.run_stats.keys():
            raise BadInput(f"benchmark_model on {self._device}",
                           f"printed no timings (exit {completed.returncode}): {_last_line(text)}")
        notes = [_describe_mapping(output)]
        if self._diff_binary:
            notes.append(self._inference_diff_note(model_path, delegate, threads, runs))
        return _latency_result(self.name, model_path, delegate, threads, output, "; ".join(notes), device_info)

    def device_info(self):
        """The phone's :class:`~edge_attn.runners.result.DeviceInfo` (read once per session; fields the
        phone does not let the shell read are None)."""
        if self._device_info is None:
            props = _parse_getprop(self._shell(["getprop"]).stdout)
            cpuinfo = self._shell(["cat", "/proc/cpuinfo"])
            governor = self._shell(["cat", GOVERNOR_FILE])
            soc = " ".join(filter(None, (props.get("ro.soc.manufacturer"), props.get("ro.soc.model"))))
            self._device_info = DeviceInfo(
                name=self.name,
                cpu=machine.cpu_name(cpuinfo.stdout) if cpuinfo.returncode == 0 else None,
                soc=soc or props.get("ro.board.platform") or props.get("ro.hardware") or None,
                governor=(governor.stdout.strip() or None) if governor.returncode == 0 else None,
                runtime="TFLite benchmark_model", runtime_version=f"binary sha256 {_digest(self._benchmark_binary)}",
                emulated=props.get("ro.kernel.qemu") == "1" or props.get("ro.hardware") in ("ranchu", "goldfish"),
                arch=props.get("ro.product.cpu.abi"),
            )
        return self._device_info

    def inference_diff(self, model_path, *, delegate="xnnpack", threads=2, runs=50) -> InferenceDiff:
        """Run the profile's ``inference_diff`` tool: ``delegate`` (``threads`` threads) against 1-thread CPU."""
        if not self._diff_binary:
            raise BadInput(f"{self.name}: inference_diff", "the profile names no inference_diff binary")
        check_settings(delegate, threads, runs, 0)
        remote_model = self._push_model(model_path)
        binary = self._push_binary(self._diff_binary)
        command = [binary, f"--model_file={remote_model}", f"--num_runs={runs}", f"--num_interpreter_threads={threads}"]
        if delegate != "cpu":  # without --delegate the test interpreter is the CPU one with `threads` threads
            command.append(f"--delegate={delegate}")
        completed = self._shell(command, pinned=True)
        diff = parse_inference_diff(completed.stdout + completed.stderr)
        if completed.returncode != 0 or not diff.output_errors:
            raise BadInput(f"inference_diff on {self._device}",
                           f"failed (exit {completed.returncode}): {_last_line(completed.stdout + completed.stderr)}")
        return diff

    def _inference_diff_note(self, model_path, delegate, threads, runs):
        key = (_digest(model_path), delegate, threads, runs)
        if key not in self._diff_notes:  # `edge-attn bench` calls benchmark once per round: diff once
            try:
                diff = self.inference_diff(model_path, delegate=delegate, threads=threads, runs=runs)
                self._diff_notes[key] = f"inference_diff vs 1-thread CPU: {diff.summary()}"
            except BadInput as e:
                self._diff_notes[key] = f"inference_diff: {e.problem}"
        return self._diff_notes[key]

    def _unavailable_reason(self, delegate, output, text):
        name = DELEGATE_NAMES.get(delegate)
        if name is None:
            return None
        if name in output.failed_delegates:
            cause = _first_error(text, besides=f"Failed to apply {name} delegate")
            return f"benchmark_model could not apply the {name} delegate" + (f" ({cause})" if cause else "")
        if name not in output.delegation:
            # e.g. "GPU acceleration is unsupported on this platform." and the run silently used the CPU
            reason = _line_with(text, name) or "no delegate line in its output"
            return f"benchmark_model did not apply the {name} delegate ({reason})"
        return None

    def _push_model(self, model_path):
        local = _local_file(model_path, model_path)
        return self._push(local, f"model-{_digest(local)}.tflite")

    def _push_binary(self, local):
        return self._push(local, os.path.basename(local), executable=True)

    def _push(self, local, name, executable=False):
        """Copy ``local`` to ``remote_dir/name`` unless this session already did; return the remote path."""
        remote = checked(f"{self._remote_dir}/{name}", ABSOLUTE_PATH, f"{self.name}: remote path of {local}")
        stat = os.stat(local)
        if self._on_phone.get(remote) != (stat.st_size, stat.st_mtime_ns):
            if not self._on_phone:
                self._shell(["mkdir", "-p", self._remote_dir], check=True)
            self._adb_call(["push", local, remote])
            if executable:
                self._shell(["chmod", "+x", remote], check=True)
            self._on_phone[remote] = (stat.st_size, stat.st_mtime_ns)
        return remote

    def _shell(self, command, check=False, pinned=False):
        """Run ``command`` (a list) on the phone, on the profile's cores when ``pinned``.

        adb joins the words with spaces and the phone's shell splits them again, hence the quoting.
        """
        prefix = ["taskset", self._taskset] if pinned and self._taskset else []
        return self._adb_call(["shell", *(shlex.quote(word) for word in prefix + command)], check=check)

    def _adb_call(self, args, check=True):
        argv = [self._adb, *(["-s", self._serial] if self._serial else []), *args]
        try:
            completed = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                       timeout=self._timeout_s, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise BadInput("adb", f"{self._adb!r} not found (install Android platform-tools, e.g. "
                                  "apt-get install adb)") from None
        except subprocess.TimeoutExpired:
            raise BadInput(self._device,
                           f"no answer within {self._timeout_s:g} s (unplugged, asleep or hung?)") from None
        if _DEVICE_GONE.search(completed.stderr):
            raise BadInput(self._device, f"not reachable: {_last_line(completed.stderr)}")
        if check and completed.returncode != 0:
            raise BadInput(self._device,
                           f"'{' '.join(args[:2])}' failed (exit {completed.returncode}): "
                           f"{_last_line(completed.stdout + completed.stderr)}")
        return completed


def _latency_result(device, model_path, delegate, threads, output, note, device_info):
    stats = output.run_stats
    ms = {key: value / 1000.0 for key, value in stats.items() if key != "count"}
    peak = output.monitored_peak_mb if output.monitored_peak_mb is not None else output.memory_overall_mb
    warm = WarmLatency(p50=ms.get("median", ms["avg"]), p50_ci=None, p90=None, p95=ms.get("p95"), min=ms["min"],
                       max=ms["max"], mean=ms["avg"], runs=int(stats["count"]), warmup_runs_dropped=None)
    cold = None
    if output.init_us is not None and output.first_inference_us is not None:
        cold = (output.init_us + output.first_inference_us) / 1000.0
    delegation = output.delegation.get(DELEGATE_NAMES.get(delegate))
    total_ops = _op_count(model_path)
    if delegate == "cpu":
        graph = delegate_kernels_placement("not executed", total_ops)
    else:
        graph = delegate_kernels_placement(delegation, total_ops)
    return LatencyResult(
        device=device, model=os.fspath(model_path), delegate=delegate, threads=threads, warm=warm, target="adb",
        cold_start_ms=cold, device_info=device_info, graph=graph, peak_memory_mb=peak, delegation=delegation,
        note=note, problems=("benchmark_model prints no per-run times: no p50 interval, no warm-up detection "
                             "and no statistical baseline comparison",),
        op_profile=output.op_profile,
    )


def _op_count(model_path):
    """Ops in the model's main graph, or None where the file cannot be read as one."""
    try:
        return len(inspect_tflite(model_path).ops)
    except BadInput:
        return None


def _parse_getprop(text):
    """``getprop``'s ``[key]: [value]`` lines as a dict."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[([^\]]*)\]", text, re.MULTILINE))


def _describe_mapping(output):
    stats = output.run_stats
    if "median" in stats and "p95" in stats:
        mapping = "p50 is benchmark_model's median and p95 its p95 (it reports no p90)"
    else:
        mapping = "p50 is benchmark_model's mean (this build prints no percentiles: no p90/p95; max is its max)"
    extras = []
    if output.init_us is not None:
        extras.append(f"init {output.init_us / 1000:.1f} ms, first inference {output.first_inference_us / 1000:.1f} ms")
    if output.model_size_mb is not None:
        extras.append(f"model {output.model_size_mb:.3g} MB")
    return "; ".join([mapping, *extras])


def _digest(path):
    """First 16 hex digits of the file's SHA-256: the model's name on the device (plain characters, no clashes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def _local_file(path, what):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInput(what, f"no such file: {path}")
    return path


def _first_error(text, besides):
    """The first "ERROR: ..." line of the output, without its prefix, that is not ``besides``."""
    for line in text.splitlines():
        if "ERROR:" in line and besides not in line:
            return line.split("ERROR:", 1)[1].strip()
    return None


def _line_with(text, word):
    """The first output line mentioning ``word`` that is not one of the tool's parameter echoes ("Use gpu: [1]")."""
    for line in text.splitlines():
        stripped = _LOG_PREFIX.sub("", line, count=1).strip()
        if word in stripped and not stripped.endswith("]"):
            return stripped
    return None


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
