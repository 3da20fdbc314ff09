"""Tests of the host runner (LiteRT in this process), make_runner and the bench functions.

Timings on this shared machine are never compared with fixed numbers. The references are: the order
statistics any sample obeys (min <= p50 <= p90 <= max), a wall clock around the whole measurement (the
timed runs cannot add up to more than it), the size of a model's weights (they must be resident while it
runs), XNNPACK's op coverage (it has no CUMSUM kernel, so a CUMSUM op stays on the builtin kernels), and
the call order seen by a spy on the runner (interleaving).
"""

import collections
import dataclasses
import json
import math
import re
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_attn._keras import keras, tf
from edge_attn.bench import combine_rounds, format_bench, run_bench
from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.devices import load_profile
from edge_attn.errors import BadInput
from edge_attn.runners import LatencyResult, make_runner
from edge_attn.runners.result import WarmLatency, timed
from edge_attn.runners.host import HostRunner
from litert_probe import compiled_model_runs

INPUT_SHAPE = (8, 8, 1)
RUNS = 20


def build_tiny(extra_layer=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    if extra_layer is not None:
        x = extra_layer(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Paths of: the tiny model as f32 and int8 (post-training, calibrated), the tiny model with a CUMSUM in
    the middle (f32), and a 1024x1024 Dense layer (4 MiB of float32 weights)."""
    folder = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(1)
    samples = [rng.normal(size=(1, *INPUT_SHAPE)).astype("float32") for _ in range(16)]
    tiny = build_tiny()
    cumsum = build_tiny(keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1)))
    wide = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(1024)])
    built = {
        "f32": convert_model(tiny, load_recipe("f32")),
        "int8": convert_model(tiny, load_recipe("int8-ptq"), samples),
        "cumsum": convert_model(cumsum, load_recipe("f32")),
        "wide": convert_model(wide, load_recipe("f32")),
    }
    paths = {}
    for name, data in built.items():
        paths[name] = str(folder / f"{name}.tflite")
        with open(paths[name], "wb") as f:
            f.write(data)
    return paths


@pytest.fixture(scope="module")
def runner():
    return HostRunner(load_profile("host"))


def assert_valid_stats(result, runs=RUNS):
    assert isinstance(result, LatencyResult) and result.available, result.note
    assert result.runs == runs
    assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms <= result.max_ms
    assert result.min_ms <= result.mean_ms <= result.max_ms


@pytest.mark.parametrize("name", ["f32", "int8"])
@pytest.mark.parametrize("delegate", ["xnnpack", "cpu"])
def test_interpreter_measures_with_xnnpack_and_builtin_kernels(runner, models, name, delegate):
    start = time.perf_counter()
    result = runner.benchmark(models[name], delegate=delegate, threads=1, runs=RUNS, warmup=2)
    elapsed_ms = (time.perf_counter() - start) * 1000
    assert_valid_stats(result)
    assert (result.mean_ms * result.warm.runs + sum(result.times_ms[:result.warm.warmup_runs_dropped])
            + result.cold_start_ms <= elapsed_ms)  # the cold start and timed runs happened inside this call
    assert len(result.times_ms) == RUNS and result.warm.p50_ci[0] <= result.p50_ms <= result.warm.p50_ci[1]
    assert result.device_info.runtime == "ai-edge-litert" and result.device_info.emulated is False
    assert (result.device, result.model, result.delegate, result.threads) == ("host", models[name], delegate, 1)
    assert result.delegation == ("completely executed by XNNPACK (1 partition)" if delegate == "xnnpack"
                                 else "builtin CPU kernels (no delegate)")
    assert result.peak_memory_mb is not None and result.peak_memory_mb >= 0


def test_partial_delegation_names_the_ops_xnnpack_leaves_out(runner, models):
    result = runner.benchmark(models["cumsum"], delegate="xnnpack", runs=3, warmup=0)
    assert result.available
    assert "partially executed by XNNPACK (2 partitions)" in result.delegation  # split around the CUMSUM
    assert result.delegation.endswith("1 of 5 ops on builtin CPU kernels: CUMSUM")
    graph = result.to_dict()["graph"]
    assert graph == {"accelerated_ops": 4, "total_ops": 5, "partitions": 2, "on_cpu": ["CUMSUM"],
                     "fully_accelerated": False}
    d = result.to_dict()  # the shared verdict: XNNPACK took part of the graph
    assert d["verdict"] == "partial" and d["symptom"] == "4 of 5 ops on xnnpack, the rest on the CPU; on the CPU: CUMSUM"


@pytest.mark.parametrize("delegate", ["xnnpack", "cpu"])
def test_compiled_model_measures_on_the_cpu_accelerator(runner, models, delegate):
    """ai-edge-litert's CompiledModel always has its CPU accelerator (no device needed): it must measure, and
    LiteRT's own API, independently of the runner (tests/litert_probe.py), must agree that it runs here."""
    assert compiled_model_runs(models["int8"], "cpu")
    result = runner.benchmark(models["int8"], delegate=delegate, runs=RUNS, warmup=2, engine="compiled_model")
    assert_valid_stats(result)
    assert "CompiledModel" in result.note and result.cold_start_ms > 0
    ops = len(inspect_tflite(models["int8"]).ops)
    if delegate == "xnnpack":  # CompiledModel says only "fully accelerated": ops counted, partitions unknown
        assert (result.graph.accelerated_ops, result.graph.total_ops, result.graph.partitions) == (ops, ops, None)
    else:
        assert (result.graph.accelerated_ops, result.graph.total_ops) == (0, ops)


GPU_PROBE = """
import json, sys
from edge_attn.devices import load_profile
from edge_attn.runners.host import HostRunner
result = HostRunner(load_profile("host")).benchmark(sys.argv[1], delegate="gpu", runs=3)
print(json.dumps(result.to_dict()))
"""


def test_gpu_without_an_adapter_is_unavailable_with_litert_s_reason(models, tmp_path):
    """With the Vulkan loader pointed at no driver there is no GPU adapter, on any machine: the result says
    so instead of raising (a real adapter is the GPU target's tests' business). In a child process, as the
    loader reads its environment once."""
    env = dict(os.environ, VK_ICD_FILENAMES=str(tmp_path / "none.json"), VK_DRIVER_FILES=str(tmp_path / "none.json"))
    child = subprocess.run([sys.executable, "-c", GPU_PROBE, models["f32"]], capture_output=True, text=True,
                           env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    gpu = json.loads(child.stdout.strip().splitlines()[-1])
    assert not gpu["available"] and gpu["runs"] == 0 and gpu["p50_ms"] is None
    assert gpu["note"].startswith("LiteRT CompiledModel with the GPU accelerator could not be created here: ")
    assert "adapter" in gpu["note"].lower() and gpu["problems"] == [gpu["note"]]


def test_gpu_outcome_matches_an_independent_litert_probe(runner, models):
    """On this machine's real environment (an adapter or none): the runner reports the GPU available exactly
    when LiteRT's plain API runs the model on it (tests/litert_probe.py), and measures it when it does."""
    gpu_here = compiled_model_runs(models["f32"], "gpu")
    gpu = runner.benchmark(models["f32"], delegate="gpu", runs=3)
    assert gpu.available == gpu_here, gpu.note
    if gpu_here:
        assert_valid_stats(gpu, runs=3)
        assert "GPU" in gpu.delegation
    else:
        assert "GPU accelerator" in gpu.note and math.isnan(gpu.p50_ms) and gpu.runs == 0


def test_nnapi_is_reported_unavailable_not_raised(runner, models):
    nnapi = runner.benchmark(models["f32"], delegate="nnapi")
    assert not nnapi.available and "Android" in nnapi.note
    assert all(math.isnan(getattr(nnapi, f)) for f in ("p50_ms", "p90_ms", "min_ms", "max_ms", "mean_ms"))


def test_peak_memory_covers_the_weights(runner, models):
    """A 1024x1024 float32 Dense layer has 4 MiB of weights, all read by every inference: they are resident
    at the peak. The measure is net growth of the process's resident memory, so pages the process frees
    meanwhile (or reuses from its heap) can hide a little of it: a quarter of slack, still far from a
    KiB/MiB slip or nothing measured."""
    for delegate in ("cpu", "xnnpack"):
        result = runner.benchmark(models["wide"], delegate=delegate, runs=2, warmup=0)
        assert result.peak_memory_mb >= 0.75 * 4.0, (delegate, result.peak_memory_mb)


def test_timeout_stops_timing_early(models):
    impatient = dataclasses.replace(load_profile("host"), timeout_s=1e-9)
    result = HostRunner(impatient).benchmark(models["f32"], runs=RUNS, warmup=0)
    assert result.available and result.runs == 1
    assert "stopped after 1 of 20 runs" in result.note


def test_op_profile_counts_every_op_of_the_model(runner, models):
    from edge_attn.convert import inspect_tflite

    result = runner.benchmark(models["int8"], runs=2, op_profile=True)
    counts = collections.Counter(op.op for op in inspect_tflite(models["int8"]).ops)
    assert {row["op"]: row["count"] for row in result.op_profile} == dict(counts)
    assert sum(row["percent"] for row in result.op_profile) == pytest.approx(100.0, abs=0.05)
    assert all(row["avg_ms"] > 0 for row in result.op_profile)


def test_op_profile_elsewhere_is_answered_with_a_note(runner, models):
    result = runner.benchmark(models["f32"], delegate="cpu", runs=2, op_profile=True)
    assert result.op_profile == [] and "benchmark_model" in result.note and "delegate cpu" in result.note


def test_bad_models_and_settings_are_bad_input(runner, models, tmp_path):
    missing = tmp_path / "missing.tflite"
    text = tmp_path / "text.tflite"
    text.write_text("not a model at all")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(models["f32"], "rb").read()[:200])
    for path in (missing, text, truncated):
        with pytest.raises(BadInput) as caught:
            runner.benchmark(path, runs=1)
        assert caught.value.what == str(path)
    for settings, what in (({"delegate": "tpu"}, "delegate"), ({"runs": 0}, "runs"), ({"threads": 1.5}, "threads"),
                           ({"warmup": -1}, "warmup"), ({"engine": "onnx"}, "engine")):
        with pytest.raises(BadInput) as caught:
            runner.benchmark(models["f32"], **settings)
        assert caught.value.what == what


def test_make_runner_picks_the_runner_of_the_profile_kind(tmp_path):
    host = make_runner(load_profile("host"))
    assert isinstance(host, HostRunner) and host.name == "host"
    with pytest.raises(BadInput, match="kind"):
        HostRunner(load_profile("android-example"))
    adb = pytest.importorskip("edge_attn.runners.adb")
    (tmp_path / "benchmark_model").write_bytes(b"\x7fELF")  # the runner checks that the binary exists
    phone = tmp_path / "phone.toml"
    phone.write_text('kind = "adb"\nbenchmark_model = "benchmark_model"\n')
    assert isinstance(make_runner(load_profile(phone)), adb.AdbRunner)
    ssh = pytest.importorskip("edge_attn.runners.ssh")
    board = tmp_path / "board.toml"
    board.write_text('kind = "ssh"\nhost = "board.local"\n')
    assert isinstance(make_runner(load_profile(board)), ssh.SshRunner)


# ---------------------------------------------------------------- bench


@pytest.fixture
def benchmark_calls(monkeypatch):
    """Records every HostRunner.benchmark call (path, runs) and its result, calling through."""
    calls = []
    original = HostRunner.benchmark

    def spy(self, model_path, **settings):
        result = original(self, model_path, **settings)
        calls.append((model_path, settings, result))
        return result

    monkeypatch.setattr(HostRunner, "benchmark", spy)
    return calls


def test_bench_interleaves_model_and_reference_and_reports_the_p50_ratio(models, benchmark_calls):
    result = run_bench(models["int8"], delegates=["xnnpack"], runs=RUNS, reference=models["f32"], progress=False)
    order = [path for path, _, _ in benchmark_calls]
    assert order == [models["int8"], models["f32"]] * result["rounds"] and result["rounds"] > 1
    assert sum(settings["runs"] for _, settings, _ in benchmark_calls) == 2 * RUNS

    (entry,) = result["delegates"]
    model, reference = entry["model"], entry["reference"]
    assert model["runs"] == reference["runs"] == RUNS
    assert entry["speedup"] == pytest.approx(reference["p50_ms"] / model["p50_ms"])
    rounds = [r for path, _, r in benchmark_calls if path == models["int8"]]
    # the rounds' warm runs (each round's detected warm-up left out) pooled into one sample
    pooled = np.concatenate([r.times_ms[r.warm.warmup_runs_dropped:] for r in rounds])
    warm = model["latency_ms"]["warm"]
    assert warm["runs"] == len(pooled) and warm["runs"] + warm["warmup_runs_dropped"] == RUNS
    assert model["p50_ms"] == warm["p50"] == pytest.approx(np.median(pooled))
    assert model["p90_ms"] == pytest.approx(np.percentile(pooled, 90))
    assert (model["min_ms"], model["max_ms"]) == (pooled.min(), pooled.max())
    assert model["mean_ms"] == pytest.approx(pooled.mean())
    assert warm["p50_ci"][0] <= warm["p50"] <= warm["p50_ci"][1]
    assert model["latency_ms"]["cold_start"] == rounds[0].cold_start_ms  # the first load, not a cached one
    assert model["latency_ms"]["times"] == [t for r in rounds for t in r.times_ms]

    text = format_bench(result)
    assert f"{entry['speedup']:.2f}x" in text and "xnnpack" in text and "alternating with reference" in text


def test_bench_without_reference_uses_the_profile_and_one_exact_round(models, benchmark_calls):
    result = run_bench(models["f32"], runs=5, progress=False)
    host = load_profile("host")
    assert [e["delegate"] for e in result["delegates"]] == list(host.delegates)
    assert result["rounds"] == 1 and len(benchmark_calls) == len(host.delegates)
    for (_, settings, measured), entry in zip(benchmark_calls, result["delegates"]):
        assert settings["threads"] == host.threads and settings["warmup"] == host.warmup
        assert entry["model"] == measured.to_dict()  # one round: the runner's statistics, unchanged
        assert entry["reference"] is None and entry["speedup"] is None and entry["within_budget"] is None


def test_bench_reports_unavailable_delegates_and_budgets(models, tmp_path):
    profile = tmp_path / "tight.toml"
    profile.write_text('kind = "host"\nruns = 3\nwarmup = 0\n[budgets_ms]\n"int8.tflite" = 1e-9\ndefault = 1e9\n')
    result = run_bench(models["int8"], device=str(profile), delegates=["nnapi", "xnnpack"], reference=models["f32"],
                       progress=False)
    nnapi, xnnpack = result["delegates"]  # NNAPI is Android-only: unavailable on the host, whatever the machine
    assert not nnapi["model"]["available"] and nnapi["speedup"] is None and nnapi["within_budget"] is None
    assert nnapi["model"]["p50_ms"] is None and "Android" in nnapi["model"]["note"]
    assert re.search(r"^nnapi +unavailable$", format_bench(result), re.MULTILINE)
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN
    assert result["budget_ms"] == 1e-9 and xnnpack["within_budget"] is False
    assert "OVER" in format_bench(result)
    generous = run_bench(models["f32"], device=str(profile), delegates="cpu", progress=False)
    assert generous["budget_ms"] == 1e9 and generous["delegates"][0]["within_budget"] is True


def test_bench_rejects_bad_input_before_measuring(models, tmp_path, benchmark_calls):
    cases = [
        (dict(model=models["f32"], delegates=["tpu"]), "delegate"),
        (dict(model=models["f32"], delegates=[]), "delegate"),
        (dict(model=models["f32"], runs=0), "runs"),
        (dict(model=models["f32"], threads=-1), "threads"),
        (dict(model=models["f32"], device="pixel-9"), "pixel-9"),
        (dict(model=str(tmp_path / "missing.tflite")), str(tmp_path / "missing.tflite")),
        (dict(model=models["f32"], reference=str(tmp_path / "ref.tflite")), str(tmp_path / "ref.tflite")),
    ]
    for kwargs, what in cases:
        with pytest.raises(BadInput) as caught:
            run_bench(progress=False, **kwargs)
        assert caught.value.what == what
    assert benchmark_calls == []


def test_combining_one_round_is_the_identity():
    single = LatencyResult(device="d", model="m", delegate="cpu", threads=1, **timed([2.0, 1.0, 4.0]))
    assert combine_rounds([single]) is single


def test_combining_rounds_without_per_run_times_takes_medians_over_rounds():
    """adb rounds carry only benchmark_model's summary: p50 is the median of the rounds' p50s, p90 stays
    unknown, min/max/mean combine exactly."""
    def summary(p50, mean, runs):
        return LatencyResult(device="d", model="m", delegate="cpu", threads=1, target="adb",
                             warm=WarmLatency(p50=p50, p50_ci=None, p90=None, p95=p50 + 1, min=p50 - 1, max=p50 + 2,
                                              mean=mean, runs=runs, warmup_runs_dropped=None))
    combined = combine_rounds([summary(10.0, 10.0, 10), summary(30.0, 30.0, 30), summary(12.0, 12.0, 10)])
    assert combined.warm.p50 == 12.0 and combined.warm.p90 is None and combined.warm.p95 == 13.0
    assert (combined.warm.min, combined.warm.max, combined.runs) == (9.0, 32.0, 50)
    assert combined.warm.mean == pytest.approx((100 + 900 + 120) / 50)
