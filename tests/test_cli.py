"""The ``edge-attn`` command line: exit codes, one-line errors, outputs of train/convert/check.

One end-to-end convert runs per module (se_resnet20 on digits at 8x8, brief training); its outputs are
then checked against the report contract of docs/report-json.md and re-checked by ``edge-attn check``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_attn.cli import main

CONTRACT = {
    "recipe": None, "model": ("path", "bytes", "sha256"), "ops": None, "fully_int8": None,
    "accuracy": ("samples", "reference_top1", "quantized_top1", "top1_drop_pt", "top1_agreement", "output_snr_db"),
    "latency_ms": ("threads", "reference", "quantized"), "layers": None,
}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "se"
    code = main(["convert", "se_resnet20", "--recipe", "int8-qat", "--data", "digits", "--input-shape", "8,8,1",
                 "--float-epochs", "4", "--epochs", "1", "--runs", "5", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("edge-attn ")
    for command in ("models", "train", "convert", "check", "demo"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "usage: edge-attn" in capsys.readouterr().out


def test_models_json_lists_the_zoo(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0
    assert sum(r["dims"] == 2 for r in rows) >= 18 and sum(r["dims"] == 1 for r in rows) >= 3
    assert {"se_resnet50", "cbam_resnet20", "se_resnet1d_18"} <= {r["name"] for r in rows}


def test_convert_writes_the_contract_outputs(converted):
    # .edge_attn: the marker saying edge_attn created the folder (so a re-run needs no --force)
    assert sorted(os.listdir(converted)) == [".edge_attn", "model.tflite", "reference.keras", "report.html",
                                             "report.json"]
    report = json.loads((converted / "report.json").read_text())
    for key, sub in CONTRACT.items():
        assert key in report
        for name in sub or ():
            assert name in report[key], f"{key}.{name}"
    assert report["recipe"] == "int8-qat" and report["fully_int8"] is True
    data = (converted / "model.tflite").read_bytes()
    import hashlib

    assert report["model"]["bytes"] == len(data)
    assert report["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    acc = report["accuracy"]
    assert acc["samples"] == 359
    assert 0 <= acc["quantized_top1"] <= 1 and 0 <= acc["top1_agreement"] <= 1
    assert acc["top1_drop_pt"] == pytest.approx(100 * (acc["reference_top1"] - acc["quantized_top1"]), abs=1e-6)
    assert report["layers"] and all({"name", "op", "rmse", "snr_db"} <= set(l) for l in report["layers"])
    assert {"stage2_block1_se_gate", "logits"} <= {l["name"] for l in report["layers"]}
    assert report["latency_ms"]["quantized"]["p50"] > 0
    assert "<img" in (converted / "report.html").read_text()


def test_check_passes_and_fails_budgets(converted, capsys):
    args = ["check", str(converted / "model.tflite"), "--reference", str(converted / "reference.keras"),
            "--data", "digits", "--runs", "3"]
    code, out, _ = run_cli(capsys, *args, "--json", "--min-agreement", "0.5", "--max-drop", "50")
    result = json.loads(out)
    assert code == 0 and result["budget"]["passed"] is True
    assert result["accuracy"]["samples"] == 359
    code, out, _ = run_cli(capsys, *args, "--min-agreement", "1.01")
    assert code == 1
    assert "FAILED" in out and "agreement" in out
    code, out, _ = run_cli(capsys, *args, "--min-agreement", "0", "--max-drop", "100", "--min-snr-db", "200")
    assert code == 1
    assert "SNR" in out


def test_bad_inputs_exit_2_with_one_line_and_no_outputs(tmp_path, capsys, converted):
    corrupt = tmp_path / "broken.keras"
    corrupt.write_bytes(b"not a zip archive")
    npz = tmp_path / "wrong.npz"
    np.savez(npz, x=np.zeros((20, 5, 5, 1), "float32"), y=np.arange(20) % 10)
    cases = [
        (["convert", "se_resnt20", "--recipe", "int8-qat", "--data", "digits"], "se_resnet20"),
        (["convert", "se_resnet20", "--recipe", "int9", "--data", "digits"], "int9"),
        (["convert", str(corrupt), "--recipe", "int8-qat", "--data", "digits"], "broken.keras"),
        (["convert", str(converted / "model.tflite"), "--recipe", "int8-qat", "--data", "digits"], "TFLite"),
        (["convert", str(converted / "reference.keras"), "--recipe", "int8-ptq", "--data", str(npz)], "wrong.npz"),
        (["convert", "se_resnet20", "--recipe", "int8-qat", "--data", str(tmp_path / "missing.npz")], "missing.npz"),
        (["check", str(corrupt), "--reference", str(converted / "reference.keras"), "--data", "digits"], "broken.keras"),
    ]
    for argv, named in cases:
        out_dir = tmp_path / "out"
        extra = [] if argv[0] == "check" else ["--out", str(out_dir), "--float-epochs", "0", "--no-progress"]
        code, out, err = run_cli(capsys, *argv, *extra)
        assert code == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], err
        assert "Traceback" not in err
        assert not out_dir.exists(), argv
    assert not [p for p in os.listdir(tmp_path) if "staging" in p]


def test_usage_error_and_real_process_exit_code(tmp_path):
    """Through the installed console script: exit 2, one line, no traceback; --debug shows it."""
    script = [sys.executable, "-m", "edge_attn.cli"]
    done = subprocess.run([*script, "convert", "resnet20", "--recipe", "int8-qat", "--data",
                           str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "nope" in done.stderr
    done = subprocess.run([*script, "models", "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2
    done = subprocess.run([*script, "convert", "resnet20", "--recipe", "int8-qat", "--data", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "o"), "--debug"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" in done.stderr  # --debug adds the traceback, keeps the exit code
    assert not (tmp_path / "o").exists()


def test_a_model_that_would_keep_a_float_op_fails_naming_it(tmp_path, capsys):
    """tf.math.floor (a TFOpLambda, loadable without trusting code) has no int8 kernel in TFLite."""
    from edge_attn._keras import keras, tf

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = tf.math.floor(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "floor.keras"
    keras.Model(inputs, outputs).save(path)
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "convert", str(path), "--recipe", "int8-ptq", "--data", "digits",
                           "--out", str(out_dir), "--no-progress")
    assert code == 2
    assert "FLOOR" in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_train_writes_a_loadable_float_model(tmp_path, capsys):
    from edge_attn.modelio import load_keras_model

    code, out, _ = run_cli(capsys, "train", "cbam_resnet20", "--data", "digits", "--input-shape", "8,8,1",
                           "--epochs", "1", "--out", str(tmp_path), "--no-progress", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["training"]["epochs_run"] == 1
    model = load_keras_model(tmp_path / "model.keras")
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)


def test_bench_measures_int8_against_float_in_one_run(converted, tmp_path, capsys):
    from edge_attn.convert import convert_model, load_recipe
    from edge_attn.modelio import load_keras_model

    float_path = tmp_path / "float.tflite"
    float_path.write_bytes(convert_model(load_keras_model(converted / "reference.keras"), load_recipe("f32")))
    code, out, _ = run_cli(capsys, "bench", str(converted / "model.tflite"), "--reference", str(float_path),
                           "--delegate", "xnnpack", "--runs", "10", "--no-progress", "--json")
    assert code == 0
    entry = json.loads(out)["delegates"][0]
    assert entry["delegate"] == "xnnpack"
    assert entry["speedup"] == pytest.approx(entry["reference"]["p50_ms"] / entry["model"]["p50_ms"])
    code, _, err = run_cli(capsys, "bench", str(converted / "model.tflite"), "--device", "no-such-phone")
    assert code == 2 and "no-such-phone" in err
    code, out, _ = run_cli(capsys, "bench", str(converted / "model.tflite"), "--delegate", "xnnpack", "--runs", "3",
                           "--op-profile", "--no-progress")
    assert code == 0 and "op profile xnnpack" in out and "CONV_2D" in out


def test_compat_gives_a_verdict_with_reasons_for_every_op(converted, capsys):
    from edge_attn.convert import inspect_tflite

    model = str(converted / "model.tflite")
    op_count = len(inspect_tflite(model).ops)
    for delegate in ("gpu", "nnapi", "xnnpack"):
        code, out, _ = run_cli(capsys, "compat", model, "--delegate", delegate, "--android-api", "30", "--json")
        report = json.loads(out)
        assert code == 0
        assert len(report["ops"]) == op_count
        assert all(op["reasons"] for op in report["ops"])
        assert report["summary"].startswith(delegate)
    code, _, err = run_cli(capsys, "compat", model, "--delegate", "nnapi", "--android-api", "12")
    assert code == 2 and "--android-api" in err


def test_bundle_and_verify_bundle(converted, tmp_path, capsys):
    out = tmp_path / "android"
    code, _, _ = run_cli(capsys, "bundle", str(converted / "model.tflite"), "--target", "android", "--out", str(out))
    assert code == 0
    assert (out / "assets" / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    code, out_text, _ = run_cli(capsys, "verify-bundle", str(out))
    assert code == 0 and "ok" in out_text
    model = out / "assets" / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    code, out_text, _ = run_cli(capsys, "verify-bundle", str(out))
    assert code == 1 and "model.tflite" in out_text
    # iOS bundle of the same converted se_resnet20: labels packed inside the model (TFLite metadata's
    # associated file is a zip appended to the flatbuffer) and outputs identical to the source model
    import zipfile

    from edge_attn.data import load_data
    from edge_attn.litert import make_interpreter, run

    code, _, _ = run_cli(capsys, "bundle", str(converted / "model.tflite"), "--target", "ios",
                         "--out", str(tmp_path / "ios_ok"))
    assert code == 0
    bundled = tmp_path / "ios_ok" / "Resources" / "model.tflite"
    with zipfile.ZipFile(bundled) as packed:
        assert packed.read("labels.txt").decode().split() == [str(i) for i in range(10)]
    x = load_data("digits", input_shape=(8, 8, 1)).x_eval[:16]
    np.testing.assert_array_equal(run(make_interpreter(str(bundled)), x),
                                  run(make_interpreter(str(converted / "model.tflite")), x))
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    code, _, err = run_cli(capsys, "bundle", str(converted / "model.tflite"), "--target", "ios",
                           "--labels", str(labels), "--out", str(tmp_path / "ios"))
    assert code == 2 and "labels.txt" in err and not (tmp_path / "ios").exists()


def test_lambda_models_need_trust_model_code(tmp_path, capsys):
    """A Lambda holds Python code: refused (exit 2, saying why) unless --trust-model-code; then the
    plain-reshape Lambda is normalized and the model converts to fully int8, with the rewrite reported."""
    from edge_attn._keras import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # Self-contained on purpose: a Lambda's globals (``K``, ``tf``) are not there when it is loaded back.
    x = keras.layers.Lambda(lambda t: t[:, None, None, :], name="to_4d")(x)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    out_dir = tmp_path / "out"
    argv = ["convert", str(path), "--recipe", "int8-qat", "--data", "digits", "--epochs", "0", "--runs", "3",
            "--out", str(out_dir), "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--trust-model-code" in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()
    code, _, err = run_cli(capsys, *argv, "--trust-model-code")
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["fully_int8"] is True
    assert any(r["from"] == "Lambda" and "to_4d" in r["layers"] for r in report["rewrites"])
