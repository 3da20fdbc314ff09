"""Tests of edge_attn.targets.gpu: zoo models run on LiteRT's real GPU accelerator (software Vulkan here, set up by
scripts/setup_vulkan.sh) and compared with LiteRT's CPU interpreter, called here directly, not through edge_attn.

The static GPU rules (edge_attn.delegates.gpu) are cross-checked against the accelerator over SE/CBAM models in f32,
fp16 and int8; the disagreements found are documented in docs/delegate-rules-gpu.md.

Without a usable adapter the accelerator tests skip — except under CI (``CI=true``), where .ci/run set up software
Vulkan and a missing adapter is a failure, not a silent skip.
"""

import json
import math
import os
import subprocess
import time

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from litert_reference import run_on_float_samples

from edge_attn._keras import keras
from edge_attn.cli import main
from edge_attn.convert import convert_model, load_recipe
from edge_attn.delegates import check_compat
from edge_attn.models import create_model
from edge_attn.qat import calibrate_ranges, quantize_aware
from edge_attn.targets import gpu as gpu_target
from edge_attn.targets.gpu import verify_gpu
from edge_attn.targets.result import Numerics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"se_resnet20": (16, 16, 1), "cbam_resnet20": (16, 16, 1), "se_resnet1d_18": (32, 2)}


def cpu_outputs(data, x_float):
    """LiteRT's CPU interpreter on float samples, (de)quantizing per the model's own parameters, independently of
    edge_attn.litert (tests/litert_reference.py)."""
    return run_on_float_samples(data, x_float).astype(np.float32)


class Zoo(dict):
    """(name, kind) → .tflite bytes, built on first use: SE/CBAM ResNets with small inputs in f32, fp16 and int8 (the
    project's QAT path, ranges calibrated on seeded normal samples; random weights are enough to compare two
    runtimes)."""

    def __missing__(self, key):
        name, kind = key
        shape = SHAPES[name]
        # Weights seeded per model: unseeded, they depended on which tests ran before in this worker.
        keras.utils.set_random_seed(sorted(SHAPES).index(name))
        if kind == "int8":
            samples = np.random.default_rng(0).normal(size=(16, *shape)).astype("float32")
            qat = quantize_aware(create_model(name, input_shape=shape, classes=10))
            calibrate_ranges(qat.model, qat.float_model, samples)
            self[key] = convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples[:8]])
        else:
            self[key] = convert_model(create_model(name, input_shape=shape, classes=10), load_recipe(kind))
        return self[key]


@pytest.fixture(scope="module")
def zoo():
    return Zoo()


@pytest.fixture(scope="module")
def accelerator(zoo):
    """The f32 se_resnet20 on the GPU accelerator, or a skip (a failure under CI) naming why it is unavailable."""
    result, out = verify_gpu(zoo["se_resnet20", "f32"])
    if not result.available:
        message = f"LiteRT's GPU accelerator is unavailable: {result.details.get('error')}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI: .ci/run sets up software Vulkan with scripts/setup_vulkan.sh)")
        pytest.skip(message)
    return result, out


def test_f32_zoo_model_on_the_gpu_accelerator_agrees_with_the_cpu(zoo, accelerator):
    result, gpu_out = accelerator
    assert result.ok, result.problems
    assert result.fully_accelerated is True and result.device
    x = gpu_target._float_inputs({"shape": [1, *SHAPES["se_resnet20"]], "dtype": np.float32,
                                  "quantization": (0.0, 0)}, None, 0)
    cpu = cpu_outputs(zoo["se_resnet20", "f32"], x)
    agreement = np.mean(cpu.argmax(1) == gpu_out.argmax(1))
    assert agreement >= 0.99 and result.numerics.top1_agreement == agreement
    # The GPU computes in fp16 by default: close to the CPU, not bit-exact.
    snr = 10 * np.log10(np.sum(cpu.astype(np.float64) ** 2) / np.sum((cpu - gpu_out).astype(np.float64) ** 2))
    assert snr > 40 and math.isclose(result.numerics.snr_db, snr, rel_tol=1e-6)
    assert 0 < result.numerics.max_abs_diff == pytest.approx(np.abs(cpu - gpu_out).max())
    d = result.to_dict()
    assert d["runs"] == len(d["latency_ms"]["times"]) == gpu_target.RANDOM_SAMPLES
    assert d["numerics"]["samples"] == gpu_target.RANDOM_SAMPLES
    # the common keys (docs/result-shape.md): what ran where, how much of the graph, numerics, the verdict
    assert d["verdict"] == "ok" and d["symptom"] is None and d["graph"]["fully_accelerated"] is True
    assert d["graph"]["total_ops"] == len(Interpreter(model_content=zoo["se_resnet20", "f32"])._get_ops_details())
    assert d["device"]["name"] == d["details"]["adapter"] and d["device"]["runtime"] == "ai-edge-litert"
    assert d["numerics"]["snr_db"] == result.numerics.snr_db and d["numerics"]["reference"] == "cpu"


def test_int8_constant_output_is_detected_and_reported(zoo, accelerator):
    data = zoo["cbam_resnet20", "int8"]
    result, gpu_out = verify_gpu(data)
    x = gpu_target._float_inputs({"shape": [1, 16, 16, 1], "dtype": np.float32, "quantization": (0.0, 0)}, None, 0)
    cpu = cpu_outputs(data, x)
    assert np.ptp(cpu, axis=0).max() > 0  # the CPU's outputs depend on the input ...
    assert np.ptp(gpu_out, axis=0).max() == 0  # ... the accelerator's do not (measured, ai-edge-litert 2.3)
    assert result.fully_accelerated is True  # what LiteRT claims regardless
    assert not result.ok
    assert any(p.startswith("constant output: all 32 samples") for p in result.problems), result.problems
    assert any("shader error" in p and "WGSL" in p for p in result.problems), result.problems
    d = result.to_dict()
    assert d["verdict"] == "wrong-numbers" and d["symptom"] == result.problems[0]
    # The numbers, not the argmax, are the check: a random-init model may put every sample in one class on the CPU
    # too, so top-1 can agree 32/32 with a constant output (seen in CI, 2026-12-02).
    assert d["graph"]["fully_accelerated"] is True and d["numerics"]["snr_db"] < gpu_target.MIN_SNR_DB


@pytest.mark.parametrize("name,kind", [("se_resnet20", "f32"), ("se_resnet20", "fp16"), ("se_resnet20", "int8"),
                                       ("cbam_resnet20", "f32"), ("cbam_resnet20", "fp16"),
                                       ("cbam_resnet20", "int8"), ("se_resnet1d_18", "f32"),
                                       ("se_resnet1d_18", "int8")])
def test_static_gpu_rules_against_the_real_accelerator(zoo, accelerator, name, kind):
    """Placement: the rules put each graph whole on the GPU and the accelerator reports full acceleration. Numerics:
    float models match the CPU; int8 ones do not (the documented disagreement: the rules judge placement, and warn)."""
    data = zoo[name, kind]
    rules = check_compat(data, "gpu")
    result, _ = verify_gpu(data)
    assert rules.supported_count == len(rules.ops) and rules.partitions == 1
    assert result.fully_accelerated is True
    warned = any("WebGPU accelerator" in w and "--verify" in w for w in rules.warnings)
    if kind == "int8":
        assert warned and not result.ok, result.problems
    else:
        assert not warned and result.ok, result.problems
        # Random-init weights give near-tied logits, where fp16 rounding may flip an argmax (seen: 31/32 at
        # 57 dB): the numbers themselves are the check here; the f32 agreement test above uses real ties-free data.
        assert result.numerics.snr_db >= 40, result.numerics


def test_cli_compat_verify_exit_codes_and_json(zoo, accelerator, tmp_path, capsys):
    good, bad = tmp_path / "f32.tflite", tmp_path / "int8.tflite"
    good.write_bytes(zoo["se_resnet20", "f32"])
    bad.write_bytes(zoo["cbam_resnet20", "int8"])
    assert main(["compat", str(good), "--delegate", "gpu", "--verify", "--data", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    acc = report["accelerator"]
    assert acc["verdict"] == "ok" and report["rules_agree"] is True and report["delegate"] == "gpu"
    assert acc["details"]["inputs"] == "data" and acc["numerics"]["samples"] > 300  # digits' eval split
    assert main(["compat", str(bad), "--delegate", "gpu", "--verify"]) == 1
    assert "FAILED: constant output" in capsys.readouterr().out
    assert main(["compat", str(good), "--delegate", "xnnpack", "--verify"]) == 2
    assert "--verify" in capsys.readouterr().err
    assert main(["compat", str(good), "--delegate", "gpu", "--data", "digits"]) == 2  # --data without --verify
    assert "--data" in capsys.readouterr().err
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(zoo["se_resnet20", "f32"][:1000])
    assert main(["compat", str(truncated), "--delegate", "gpu", "--verify"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_check_accuracy_on_the_gpu_accelerator(zoo, accelerator, tmp_path, capsys):
    keras_path = tmp_path / "reference.keras"
    model = create_model("se_resnet20", input_shape=(16, 16, 1), classes=10)
    model.save(keras_path)
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(convert_model(model, load_recipe("f32")))
    args = ["check", str(tflite), "--reference", str(keras_path), "--data", "digits", "--runs", "2", "--json",
            "--min-snr-db", "30", "--max-drop", "5", "--min-agreement", "0.9"]
    assert main(args + ["--accelerator", "gpu"]) == 0
    gpu = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    cpu = json.loads(capsys.readouterr().out)
    assert gpu["accelerator"]["target"] == "gpu" and gpu["accelerator"]["details"]["adapter"]
    assert gpu["accelerator"]["verdict"] == "ok"
    host = cpu["accelerator"]  # where the outputs were computed without --accelerator: this machine's LiteRT
    assert host["target"] == "host" and host["numerics"]["reference"] == "float"
    assert host["numerics"]["samples"] == cpu["accuracy"]["samples"]
    assert host["numerics"]["agreement_count"] == cpu["accuracy"]["agreement_count"]
    assert list(host) == list(gpu["accelerator"])  # the same keys
    # Same samples; the float reference vs an f32 model on two runtimes: both near-exact, not identical.
    assert gpu["accuracy"]["samples"] == cpu["accuracy"]["samples"]
    assert gpu["accuracy"]["output_snr_db"] > 40 and gpu["accuracy"]["output_snr_db"] != cpu["accuracy"]["output_snr_db"]


def test_no_adapter_is_a_one_line_unavailable_result(zoo, monkeypatch, capsys, tmp_path):
    # An ICD file that names no driver: the Vulkan loader finds no device, Dawn no adapter.
    icd = tmp_path / "none.json"
    icd.write_text(json.dumps({"ICD": {"api_version": "1.3.0", "library_path": str(tmp_path / "missing.so")},
                               "file_format_version": "1.0.0"}))
    monkeypatch.setenv("VK_DRIVER_FILES", str(icd))
    model = tmp_path / "m.tflite"
    model.write_bytes(zoo["se_resnet20", "f32"])
    assert main(["compat", str(model), "--delegate", "gpu", "--verify"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("gpu accelerator unavailable: ") and "adapter" in last


def test_a_crashing_or_hanging_accelerator_costs_a_child_not_the_command(monkeypatch):
    monkeypatch.setattr(gpu_target, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert "crashed while setting up (signal SIGSEGV)" in gpu_target.run_on_gpu(b"x", np.zeros((1, 2))).error
    monkeypatch.setattr(gpu_target, "_CHILD", "import time; time.sleep(30)")
    assert "did not finish within 0.5 s" in gpu_target.run_on_gpu(b"x", np.zeros((1, 2)), timeout_s=0.5).error


def test_numerics_between_follows_the_formulas():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    out = np.array([[1.0, 2.5, 3.0], [0.0, 1.0, 3.0]])
    n = Numerics.between(ref, out, reference="cpu")
    assert n.samples == 2 and n.agreement_count == 1 and n.top1_agreement == 0.5 and n.max_abs_diff == 3.0
    assert n.snr_db == pytest.approx(10 * math.log10(24 / 18.25))
    assert Numerics.between(ref, ref, reference="cpu").snr_db == math.inf
    nan = Numerics.between(ref, np.where(ref > 2, np.nan, ref), reference="cpu")
    assert math.isnan(nan.snr_db) and nan.agreement_count == 0


def test_setup_vulkan_second_run_is_a_cache_hit():
    """Runs the script only when its cache exists (CI ran it before the tests): a second run must not download."""
    cache = gpu_target.vulkan_cache_dir()
    if not os.path.isfile(os.path.join(cache, "env")):
        if os.environ.get("CI") == "true":
            pytest.fail(f"no software Vulkan cache in {cache}: .ci/run should have run scripts/setup_vulkan.sh")
        pytest.skip(f"scripts/setup_vulkan.sh has not run here ({cache})")
    start = time.perf_counter()
    out = subprocess.run([os.path.join(REPO, "scripts", "setup_vulkan.sh")], capture_output=True, text=True,
                         check=True)
    assert time.perf_counter() - start < 5 and out.stderr == ""  # no "fetching ..." lines: nothing fetched
    env_file = out.stdout.strip()
    env = subprocess.run(["bash", "-c", f'. "{env_file}" && echo "$VK_DRIVER_FILES"'], capture_output=True,
                         text=True, check=True).stdout.strip()
    icd = json.load(open(env))
    assert os.path.isfile(icd["ICD"]["library_path"]) and icd["ICD"]["library_path"].endswith("libvulkan_lvp.so")
