"""The adb runner against a stand-in adb (tests/fixtures/fake_adb.py) that answers with recorded outputs.

The expected numbers are read off the recorded ``benchmark_model`` outputs in
tests/fixtures/benchmark_model (see SOURCES.md there), converted from microseconds by hand.
"""

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import types

import pytest

from edge_attn.devices import parse_profile
from edge_attn.errors import BadInput
from edge_attn.runners.adb import AdbRunner, parse_benchmark_output, parse_inference_diff

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
RECORDED = os.path.join(FIXTURES, "benchmark_model")
SERIAL = "R58M41ABCDE"


def recorded(name):
    return os.path.join(RECORDED, name)


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A fake phone: returns ``configure(**config)`` and the state dir; the adb executable is a wrapper script."""
    state = tmp_path / "adb-state"
    state.mkdir()
    adb = tmp_path / "adb"
    adb.write_text(f"#!/bin/sh\nexec {sys.executable} {os.path.join(FIXTURES, 'fake_adb.py')} \"$@\"\n")
    adb.chmod(0o755)
    monkeypatch.setenv("FAKE_ADB_STATE", str(state))

    def configure(**config):
        config.setdefault("devices", [SERIAL])
        config.setdefault("benchmark_output", recorded("ti_am62x_xnnpack.txt"))
        config.setdefault("run_eval_output", recorded("inference_diff_readme.txt"))
        (state / "config.json").write_text(json.dumps(config))

    configure()
    return types.SimpleNamespace(adb=str(adb), state=state, configure=configure)


@pytest.fixture
def tools(tmp_path):
    """Local stand-ins for the binaries the runner pushes, and a model file."""
    benchmark_model = tmp_path / "android_aarch64_benchmark_model"
    benchmark_model.write_bytes(b"\x7fELF benchmark_model stand-in")
    run_eval = tmp_path / "run_eval"
    run_eval.write_bytes(b"\x7fELF run_eval stand-in")
    model = tmp_path / "se_resnet20.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)))
    return types.SimpleNamespace(benchmark_model=str(benchmark_model), run_eval=str(run_eval), model=str(model))


def make_profile(tools, **overrides):
    """A profile as edge_attn.devices loads it; ``overrides`` are set afterwards, past the loader's checks."""
    table = {"name": "pixel", "kind": "adb", "serial": SERIAL, "remote_dir": "/data/local/tmp/edge_attn",
             "benchmark_model": tools.benchmark_model, "threads": 4, "timeout_s": 20.0}
    return dataclasses.replace(parse_profile(table, "pixel.toml"), **overrides)


def calls(phone):
    with open(phone.state / "calls.jsonl") as f:
        return [json.loads(line) for line in f]


def shell_words(phone):
    return [call["words"] for call in calls(phone) if "words" in call]


# --- parsing recorded outputs -------------------------------------------------------------------------

def test_parse_reads_the_timed_runs_percentiles_memory_and_partial_delegation():
    output = parse_benchmark_output(open(recorded("ti_am62x_xnnpack.txt")).read())
    # the warm-up's "count=1 curr=905463 ..." line comes first and must not win
    assert output.run_stats == {"count": 50, "first": 900416, "curr": 898333, "min": 898007, "max": 906121,
                                "avg": 899641, "std": 1549, "p5": 898333, "median": 899281, "p95": 904305}
    assert (output.init_us, output.first_inference_us, output.warmup_avg_us, output.inference_avg_us) == \
        (614333, 905463, 905463, 899641)
    assert output.model_size_mb == 67.3128
    assert (output.memory_init_mb, output.memory_overall_mb) == (146.363, 150.141)
    assert output.delegation == {"XNNPACK": "partially executed by the delegate (1 delegate kernels)"}
    assert output.failed_delegates == ()


def test_parse_scientific_notation_and_complete_delegation():
    cpu = parse_benchmark_output(open(recorded("ti_am62x_cpu.txt")).read())
    assert cpu.run_stats["avg"] == 1_240_270 and cpu.inference_avg_us == 1_240_270
    assert cpu.delegation == {}
    nnapi = parse_benchmark_output(open(recorded("synaptics_nnapi.txt")).read())
    assert nnapi.run_stats["count"] == 520 and "median" not in nnapi.run_stats
    assert nnapi.delegation == {"NNAPI": "completely executed by the delegate"}


def test_parse_op_profile_takes_the_regular_runs_summary_not_the_initialisation_one():
    output = parse_benchmark_output(open(recorded("meta_tflite_riscv_op_profiling.txt")).read())
    assert [row["op"] for row in output.op_profile] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "SQUEEZE"]
    assert output.op_profile[0] == {"op": "CONV_2D", "count": 15, "avg_ms": 2651.853, "percent": 89.897,
                                    "cdf_percent": 89.897}
    assert sum(row["count"] for row in output.op_profile) == 31  # "Number of nodes executed: 31"
    assert sum(row["percent"] for row in output.op_profile) == pytest.approx(100, abs=0.01)
    # "Timings (microseconds): count=50 ..." of the profiler is not the benchmark's count line
    assert output.run_stats["max"] == 3_189_954


def test_parse_inference_diff():
    diff = parse_inference_diff(open(recorded("inference_diff_readme.txt")).read())
    assert diff.runs == 50
    assert diff.reference_latency_us == (84364.2, 12525) and diff.test_latency_us == (7281.64, 2089)
    assert diff.output_errors == ((1.96277e-05, 6.95767e-06),)


def test_parse_logcat_lines():
    logcat = ("05-31 10:38:42.589 22206 22206 I tflite  : Explicitly applied GPU delegate, and the model graph "
              "will be completely executed by the delegate.\n"
              "05-31 10:38:43.001 22206 22206 I tflite  : count=50 first=10 curr=11 min=9 max=14 avg=11.5 std=1\n")
    output = parse_benchmark_output(logcat)
    assert output.delegation == {"GPU": "completely executed by the delegate"}
    assert output.run_stats["avg"] == 11.5


# --- the runner against the fake phone ---------------------------------------------------------------

def test_benchmark_maps_percentiles_and_says_so(phone, tools):
    result = AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model, delegate="xnnpack", threads=4)
    assert (result.device, result.model, result.delegate, result.threads, result.runs) == \
        ("pixel", tools.model, "xnnpack", 4, 50)
    assert result.p50_ms == pytest.approx(899.281)  # median
    assert result.p95_ms == pytest.approx(904.305)  # the tool's p95, called p95 (it prints no p90)
    assert math.isnan(result.p90_ms) and result.warm.p90 is None and result.to_dict()["latency_ms"]["warm"]["p90"] is None
    assert (result.min_ms, result.max_ms, result.mean_ms) == pytest.approx((898.007, 906.121, 899.641))
    assert result.min_ms <= result.p50_ms <= result.p95_ms <= result.max_ms
    assert result.cold_start_ms == pytest.approx(614.333 + 905.463)  # Init + First inference
    # no per-run times: no interval, no warm-up detection, and the result says so
    assert result.warm.p50_ci is None and result.warm.warmup_runs_dropped is None and result.times_ms == ()
    assert "no per-run times" in result.problems[0]
    assert result.peak_memory_mb == pytest.approx(150.141)
    assert result.delegation == "partially executed by the delegate (1 delegate kernels)"
    assert result.available
    assert "median" in result.note and "p95" in result.note and "init 614.3 ms" in result.note


def test_benchmark_without_percentiles_uses_mean_and_max(phone, tools):
    phone.configure(benchmark_output=recorded("meta_tflite_riscv_op_profiling.txt"))
    result = AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model, delegate="cpu", op_profile=True)
    assert result.p50_ms == pytest.approx(2950.34) == result.mean_ms
    assert result.max_ms == pytest.approx(3189.954)
    assert math.isnan(result.p90_ms) and math.isnan(result.p95_ms)  # no percentiles printed: none made up
    assert "mean" in result.note and "no p90/p95" in result.note
    assert result.delegation is None
    assert result.graph.accelerated_ops == 0 and result.graph.partitions == 0  # cpu: the builtin kernels
    assert result.op_profile[1]["op"] == "DEPTHWISE_CONV_2D" and result.op_profile[1]["avg_ms"] == 296.919


def test_command_lines_pushes_and_pinning(phone, tools):
    runner = AdbRunner(make_profile(tools, taskset_mask="f0"), adb=phone.adb)
    runner.benchmark(tools.model, delegate="gpu", threads=1, runs=30, warmup=3, op_profile=True)
    runner.benchmark(tools.model, delegate="nnapi")
    for call in calls(phone):
        assert call["argv"][:2] == ["-s", SERIAL]
    pushes = [call["argv"][2:] for call in calls(phone) if call["argv"][2] == "push"]
    digest = hashlib.sha256(open(tools.model, "rb").read()).hexdigest()[:16]
    remote_model = f"/data/local/tmp/edge_attn/model-{digest}.tflite"
    remote_binary = "/data/local/tmp/edge_attn/android_aarch64_benchmark_model"
    assert pushes.count(["push", tools.benchmark_model, remote_binary]) == 1  # once per session
    assert pushes.count(["push", tools.model, remote_model]) == 1
    on_phone = phone.state / "phone" / remote_model.lstrip("/")
    assert on_phone.read_bytes() == open(tools.model, "rb").read()
    words = shell_words(phone)
    assert ["chmod", "+x", remote_binary] in words
    runs = [w for w in words if remote_binary in w and w[0] != "chmod"]
    assert runs[0] == ["taskset", "f0", remote_binary, f"--graph={remote_model}", "--num_threads=1",
                       "--num_runs=30", "--warmup_runs=3", "--use_gpu=true", "--enable_op_profiling=true"]
    assert runs[1] == ["taskset", "f0", remote_binary, f"--graph={remote_model}", "--num_threads=2",
                       "--num_runs=50", "--warmup_runs=5", "--use_nnapi=true"]  # the protocol's defaults

    with open(tools.model, "ab") as f:  # a changed model is pushed again, under its new content's name
        f.write(b"\0")
    runner.benchmark(tools.model, delegate="cpu")
    new_digest = hashlib.sha256(open(tools.model, "rb").read()).hexdigest()[:16]
    assert calls(phone)[-2]["argv"][2:] == ["push", tools.model, f"/data/local/tmp/edge_attn/model-{new_digest}.tflite"]


GETPROP = """[ro.build.version.release]: [14]
[ro.soc.manufacturer]: [QTI]
[ro.soc.model]: [SM8650]
[ro.board.platform]: [pineapple]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.hardware]: [qcom]
"""
# Two cores of a big.LITTLE phone, as its /proc/cpuinfo lists them (implementer 0x41: Arm Ltd).
CPUINFO = """processor\t: 0
BogoMIPS\t: 38.40
Features\t: fp asimd asimddp i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd46

processor\t: 1
CPU implementer\t: 0x41
CPU part\t: 0xd46

processor\t: 7
CPU implementer\t: 0x41
CPU part\t: 0xd82
"""


def test_device_fingerprint_from_getprop_cpuinfo_and_governor(phone, tools):
    phone.configure(getprop=GETPROP)
    files = phone.state / "phone"
    (files / "proc").mkdir(parents=True)
    (files / "proc" / "cpuinfo").write_text(CPUINFO)
    governor = files / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    governor.parent.mkdir(parents=True)
    governor.write_text("schedutil\n")
    runner = AdbRunner(make_profile(tools), adb=phone.adb)
    result = runner.benchmark(tools.model, delegate="xnnpack")
    info = result.to_dict()["device"]
    assert info["name"] == "pixel" and info["soc"] == "QTI SM8650" and info["governor"] == "schedutil"
    assert info["cpu"] == "Cortex-A510 x2 + Cortex-X4 x1"  # 0xd46, 0xd82 in Arm's MIDR part numbers
    assert info["arch"] == "arm64-v8a" and info["emulated"] is False
    digest = hashlib.sha256(open(tools.benchmark_model, "rb").read()).hexdigest()[:16]
    assert info["runtime"] == "TFLite benchmark_model" and info["runtime_version"] == f"binary sha256 {digest}"
    before = len(calls(phone))
    runner.benchmark(tools.model, delegate="xnnpack")
    assert not any(w[:1] == ["getprop"] for w in shell_words(phone)[before:])  # read once per session


def test_unreadable_governor_and_cpuinfo_are_none_not_errors(phone, tools):
    result = AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model, delegate="xnnpack")
    assert (result.device_info.cpu, result.device_info.governor, result.device_info.soc) == (None, None, None)


def test_without_a_serial_adb_picks_the_only_phone(phone, tools):
    AdbRunner(make_profile(tools, serial=None), adb=phone.adb).benchmark(tools.model, delegate="cpu")
    assert all("-s" not in call["argv"] for call in calls(phone))
    assert shell_words(phone)[-1][-1] == "--use_xnnpack=false"


def test_failed_gpu_delegate_is_unavailable_not_an_error(phone, tools):
    phone.configure(benchmark_output=recorded("composed_gpu_failed.txt"), exit_code=1)
    result = AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model, delegate="gpu")
    assert not result.available
    assert all(math.isnan(v) for v in (result.p50_ms, result.p90_ms, result.min_ms, result.max_ms, result.mean_ms))
    assert "GPU" in result.note and "No shader implementation for transpose" in result.note


def test_delegate_the_tool_silently_skipped_is_unavailable(phone, tools):
    # A build without the GPU delegate runs on the CPU and prints no GPU line: not a GPU timing.
    phone.configure(benchmark_output=recorded("ti_am62x_cpu.txt"))
    result = AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model, delegate="gpu")
    assert not result.available and math.isnan(result.p50_ms)
    assert "did not apply the GPU delegate" in result.note


def test_inference_diff_runs_with_the_delegate_and_lands_in_the_note(phone, tools):
    runner = AdbRunner(make_profile(tools, inference_diff=tools.run_eval), adb=phone.adb)
    result = runner.benchmark(tools.model, delegate="xnnpack", threads=2, runs=20)
    assert "output 0 |diff| mean 1.96e-05 (std 6.96e-06)" in result.note
    runner.inference_diff(tools.model, delegate="cpu", threads=2, runs=20)
    diff_runs = [w for w in shell_words(phone) if w[0].endswith("/run_eval")]
    assert diff_runs[0][1:] == [diff_runs[0][1], "--num_runs=20", "--num_interpreter_threads=2", "--delegate=xnnpack"]
    assert diff_runs[0][1].startswith("--model_file=/data/local/tmp/edge_attn/model-")
    assert not any(word.startswith("--delegate") for word in diff_runs[1])  # cpu: the test interpreter is the CPU one


def test_benchmark_failure_without_timings_is_bad_input(phone, tools, tmp_path):
    broken = tmp_path / "broken.txt"
    broken.write_text("INFO: STARTING!\nERROR: Failed to allocate tensors!\nERROR: Benchmarking failed.\n")
    phone.configure(benchmark_output=str(broken), exit_code=1)
    with pytest.raises(BadInput, match="Benchmarking failed"):
        AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model, delegate="cpu")


@pytest.mark.parametrize("devices, message", [(["emulator-5554"], f"device '{SERIAL}' not found"),
                                              ([], "no devices/emulators found")])
def test_vanished_phone_is_a_one_line_bad_input_naming_the_serial(phone, tools, devices, message):
    phone.configure(devices=devices)
    with pytest.raises(BadInput) as caught:
        AdbRunner(make_profile(tools), adb=phone.adb).benchmark(tools.model)
    assert caught.value.what == f"adb device {SERIAL}" and message in caught.value.problem
    assert "\n" not in str(caught.value)


def test_phone_that_stops_answering_times_out(phone, tools):
    phone.configure(hang_s=30)
    start = time.monotonic()
    with pytest.raises(BadInput, match="no answer within 1 s"):
        AdbRunner(make_profile(tools, timeout_s=1), adb=phone.adb).benchmark(tools.model)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("field, value", [
    ("serial", "-d"), ("serial", "R58M; reboot"), ("serial", "a b"),
    ("remote_dir", "data/local/tmp"), ("remote_dir", "/data/local/tmp; reboot"), ("remote_dir", "/data/../system"),
    ("remote_dir", "/data/$(reboot)"), ("taskset_mask", "f0; reboot"), ("taskset_mask", "-1"),
])
def test_unsafe_profile_values_are_refused_before_anything_runs(phone, tools, field, value):
    with pytest.raises(BadInput, match=field):
        AdbRunner(make_profile(tools, **{field: value}), adb=phone.adb)
    assert not (phone.state / "calls.jsonl").exists()


def test_missing_files_and_tools_are_bad_input(phone, tools, tmp_path):
    with pytest.raises(BadInput, match="kind"):
        AdbRunner(make_profile(tools, kind="ssh"), adb=phone.adb)
    with pytest.raises(BadInput, match="benchmark_model"):
        AdbRunner(make_profile(tools, benchmark_model=str(tmp_path / "nope")), adb=phone.adb)
    runner = AdbRunner(make_profile(tools), adb=phone.adb)
    with pytest.raises(BadInput, match="no such file"):
        runner.benchmark(str(tmp_path / "missing.tflite"))
    with pytest.raises(BadInput, match="delegate"):
        runner.benchmark(tools.model, delegate="hexagon")
    with pytest.raises(BadInput, match="adb"):
        AdbRunner(make_profile(tools), adb=str(tmp_path / "no-adb-here")).benchmark(tools.model)
