"""The bundle's delegate order uses measured verdicts (docs/result-shape.md) from the report.json beside the model:
a GPU the accelerator measured giving wrong numbers is left out, a partial one is not first, a whole-model one is;
on Android an NPU the model compiled for goes first. The verdicts come from the real producers (LiteRT's GPU
accelerator on software Vulkan, Qualcomm's compiler, `edge-attn check --npu`), except the partial GPU, which LiteRT
on lavapipe did not produce for any small model tried (TOPK_V2, CUMSUM: reported fully accelerated)."""

import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest

from edge_attn._keras import keras
from edge_attn.bundle import bundle
from edge_attn.cli import main
from edge_attn.convert import convert_model, load_recipe
from edge_attn.runners.result import DeviceInfo, GraphPlacement
from edge_attn.targets.gpu import verify_gpu
from edge_attn.targets.result import TargetResult

INPUT_SHAPE, CLASSES = (8, 8, 1), 10  # the digits data set's


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny int8 digits classifier, its float Keras reference, and a folder to put a report.json beside it."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    samples = np.random.default_rng(0).uniform(0, 1, size=(16, *INPUT_SHAPE)).astype("float32")
    folder = tmp_path_factory.mktemp("model")
    (folder / "model.tflite").write_bytes(convert_model(model, load_recipe("int8-ptq"), [s[None] for s in samples]))
    model.save(folder / "reference.keras")
    return folder


def bundled_with(folder, tmp_path, report_extra, target="android"):
    """Bundle the model with a report.json beside it holding ``report_extra`` (accelerator, accelerators)."""
    data = (folder / "model.tflite").read_bytes()
    report = {"model": {"path": "model.tflite", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
              **report_extra}
    (folder / "report.json").write_text(json.dumps(report))
    try:
        return bundle(folder / "model.tflite", target=target, out=tmp_path / "bundle")["delegates"]
    finally:
        (folder / "report.json").unlink()


def real_gpu(path, **floors):
    result, _ = verify_gpu(path, **floors)
    if not result.available:
        message = f"LiteRT's GPU accelerator is unavailable: {result.details.get('error')}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return result


def require_qnn():
    if importlib.util.find_spec("onnxruntime_qnn") is None and not os.environ.get("QNN_SDK_ROOT"):
        if os.environ.get("CI"):
            pytest.fail("the onnxruntime-qnn wheel is not installed; CI must run the Qualcomm compiler")
        pytest.skip('the onnxruntime-qnn wheel is not installed (pip install -e ".[npu]")')


def test_without_measurements_the_rules_decide(converted, tmp_path):
    delegates = bundled_with(converted, tmp_path, {})
    assert "excluded" in delegates and delegates["excluded"] == []
    assert not any("measured" in d for d in delegates["checked"]) and "npu" not in delegates["order"]
    # the rules take this graph whole on the GPU, so it comes first (candidate order gpu, nnapi, xnnpack)
    assert delegates["order"][0] == "gpu" and delegates["order"][-1] == "cpu"


def test_a_gpu_measured_ok_stays_first(converted, tmp_path):
    measured = real_gpu(converted / "model.tflite")
    assert measured.verdict == "ok", measured.problems
    delegates = bundled_with(converted, tmp_path, {"accelerator": measured.to_dict()})
    gpu = next(d for d in delegates["checked"] if d["delegate"] == "gpu")
    assert delegates["order"][0] == "gpu" and gpu["measured"]["verdict"] == "ok" and gpu["takes_whole_model"]


def test_a_gpu_measured_giving_wrong_numbers_is_left_out(converted, tmp_path):
    # the real run, judged against a floor no int8 model reaches: LiteRT's GPU agrees with its CPU to ~30-60 dB
    measured = real_gpu(converted / "model.tflite", min_snr_db=500.0)
    assert measured.verdict == "wrong-numbers", measured.problems
    for target in ("android", "ios"):
        delegates = bundled_with(converted, tmp_path / target, {"accelerator": measured.to_dict()}, target=target)
        assert "gpu" not in delegates["order"] and delegates["order"][-1] == "cpu"
        assert delegates["excluded"] == [{"delegate": "gpu", "verdict": "wrong-numbers",
                                          "symptom": measured.problems[0]}]
        assert "wrong numbers" in delegates["excluded"][0]["symptom"]


def test_a_gpu_measured_partial_is_not_first(converted, tmp_path):
    partial = TargetResult(target="gpu", available=True, accelerator="gpu", device=DeviceInfo(name="some adapter"),
                           graph=GraphPlacement(accelerated_ops=None, total_ops=3, partitions=None,
                                                fully_accelerated=False))
    assert partial.verdict == "partial"
    delegates = bundled_with(converted, tmp_path, {"accelerator": partial.to_dict()})
    assert delegates["order"][0] != "gpu" and "gpu" in delegates["order"]
    gpu = next(d for d in delegates["checked"] if d["delegate"] == "gpu")
    assert gpu["measured"]["verdict"] == "partial" and not gpu["takes_whole_model"]


def test_an_npu_compiled_model_lists_the_npu_first_on_android(converted, tmp_path, capsys):
    """The whole flow: `check --npu` runs Qualcomm's compiler and its JSON, saved as report.json, orders the bundle."""
    require_qnn()
    code = main(["check", str(converted / "model.tflite"), "--reference", str(converted / "reference.keras"),
                 "--data", "digits", "--runs", "3", "--npu", "qnn:SM8650", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)  # random weights may miss the accuracy budget; the compile is what matters here
    npu = report["accelerators"][1]
    assert report["accelerators"][0] == report["accelerator"] and report["accelerator"]["target"] == "host"
    assert npu["target"] == "qnn:SM8650" and npu["verdict"] == "ok" and npu["details"]["compiled"]
    (converted / "report.json").write_text(json.dumps(report))
    try:
        android = bundle(converted / "model.tflite", target="android", out=tmp_path / "android")["delegates"]
        ios = bundle(converted / "model.tflite", target="ios", out=tmp_path / "ios")["delegates"]
    finally:
        (converted / "report.json").unlink()
    assert android["order"][0] == "npu" and android["checked"][0]["target"] == "qnn:SM8650"
    assert android["checked"][0]["soc"] == "SM8650" and android["checked"][0]["takes_whole_model"]
    assert "npu" not in ios["order"]  # Qualcomm's NPU is an Android target
