"""The README's commands that no other test ran end to end: ``convert`` with ``int8-ptq``, ``fp16`` and
``dynamic`` through the command line, ``edge-attn demo`` with small settings, and the Python API snippet.

References are independent of edge_attn's own checks: the converted files are run with LiteRT here and
their outputs compared with the Keras model's (numpy SNR formula); tensor types are read from LiteRT's
tensor details; report.json is validated against docs/report.schema.json.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from edge_attn.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUT_SHAPE = (8, 8, 1)


def snr_db(reference, other):
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    return 10 * np.log10(np.sum(reference**2) / np.sum((reference - other) ** 2))


def litert_outputs(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for sample in x:
        value = sample[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"]).astype(np.float64)
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            result = (result - zero) * scale
        rows.append(result[0])
    return np.array(rows), interpreter


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """README: `edge-attn convert my_model.keras --recipe int8-ptq --data my_data.npz --out out/mine`: a small
    trained Keras model of the user's and their data file (digits at 8×8, as stored)."""
    from sklearn.datasets import load_digits

    from edge_attn._keras import keras

    folder = tmp_path_factory.mktemp("mine")
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    np.savez(folder / "my_data.npz", x=x, y=digits.target)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, digits.target, epochs=3, batch_size=64, verbose=0)
    model.save(folder / "my_model.keras")
    return folder, model, x


@pytest.mark.parametrize("recipe, weight_dtype, input_dtype, min_snr", [
    ("int8-ptq", np.int8, np.int8, 15.0),
    ("fp16", np.float16, np.float32, 40.0),
    ("dynamic", np.int8, np.float32, 20.0),
])
def test_convert_recipe_through_the_cli(user_model, recipe, weight_dtype, input_dtype, min_snr, tmp_path, capsys):
    folder, model, x = user_model
    out = tmp_path / "out" / "mine"
    code = main(["convert", str(folder / "my_model.keras"), "--recipe", recipe, "--data", str(folder / "my_data.npz"),
                 "--out", str(out), "--runs", "3", "--no-progress", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"model.tflite", "reference.keras", "report.json", "report.html"}
    with open(out / "report.json") as f:
        report = json.load(f)
    assert report["recipe"] == recipe and printed["model"]["sha256"] == report["model"]["sha256"]

    sample = x[:64]
    outputs, interpreter = litert_outputs(out / "model.tflite", sample)
    tensors = interpreter.get_tensor_details()
    assert interpreter.get_input_details()[0]["dtype"] == input_dtype
    assert any(t["dtype"] == weight_dtype and len(t["shape"]) == 4 for t in tensors)  # conv kernels stored so
    measured = snr_db(model.predict(sample, verbose=0), outputs)
    assert measured > min_snr
    assert report["fully_int8"] == (recipe == "int8-ptq")


def test_demo_with_small_settings(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    with open(os.path.join(REPO, "docs", "report.schema.json")) as f:
        validator = jsonschema.Draft202012Validator(json.load(f))
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--models", "se_resnet20", "--float-epochs", "1", "--epochs", "1",
                 "--no-progress", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert printed["reports"] == [str(out / "se_resnet20" / "report.html")]
    for folder, recipe in ((out / "se_resnet20", "int8-qat"), (out / "se_resnet20" / "int8-ptq", "int8-ptq")):
        with open(folder / "report.json") as f:
            report = json.load(f)
        assert report["recipe"] == recipe and list(validator.iter_errors(report)) == []
        row = next(r for r in printed["rows"] if r["recipe"] == recipe)
        assert row["snr_db"] == pytest.approx(report["accuracy"]["output_snr_db"])
        assert row["kib"] == pytest.approx(os.path.getsize(folder / "model.tflite") / 1024)
    with open(out / "se_resnet20" / "report.json") as f:
        assert [c["recipe"] for c in json.load(f)["comparisons"]] == ["int8-ptq"]


def test_demo_auto_precision_step_is_written_inside_the_demo_and_reported(tmp_path, capsys, monkeypatch):
    """``edge-attn demo --auto-precision``: the fix loop's run lands in OUT/se_resnet20-digits-glare/ and in
    the demo's output. The search itself is measured in tests/test_hard_case.py (minutes); here the budget is
    one plain int8 meets, so the step runs its whole path but raises nothing."""
    from edge_attn import demo

    monkeypatch.setitem(demo.FIX_LOOP, "budget", {"min_snr_db": 0.0, "min_agreement": 0.0, "max_drop": 100.0})
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--models", "se_resnet20", "--float-epochs", "1", "--epochs", "0",
                 "--no-progress", "--auto-precision", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    folder = out / "se_resnet20-digits-glare"
    assert printed["auto_precision"]["folder"] == str(folder) and printed["auto_precision"]["needed"] is False
    with open(folder / "report.json") as f:
        report = json.load(f)
    assert "digits-glare" in report["data"]["source"] and report["auto_precision"]["needed"] is False
    assert not list(tmp_path.glob("**/*.staging-*"))
    demo._print_fix_loop(report, str(folder))  # what the terminal (no --json) shows after the demo's table
    text = capsys.readouterr().out
    assert "precision fix loop: se_resnet20 on digits-glare" in text and "plain int8 meets the budget" in text
    assert f"report: {folder / 'report.html'}" in text


def test_readme_python_api_snippet_runs_as_written(tmp_path):
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Python API"):]
    # the building-blocks snippet (self-contained; edge_attn.convert on a model in memory is tested in
    # tests/test_real_models.py)
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "convert_model(" in block)
    assert "convert_model(" in snippet and "fully_int8" in snippet  # the snippet this test is about
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr[-3000:]
