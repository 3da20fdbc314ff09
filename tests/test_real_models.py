"""Models written the way tutorials and published code write them, trained on digits, saved as users save
them and converted through the command line: fully int8, and checked on a test split the model never saw.

The agreement and SNR come from ``edge-attn check`` on a held-out ``.npz`` (the float model never trained
on it), computed by LiteRT running the int8 flatbuffer against Keras running the float model.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_attn.cli import main
from user_models import (LAMBDA_CBAM_MODULE, digits_split, train_float, tutorial_cbam_block,
                               tutorial_model, tutorial_se_block)


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    x_train, y_train, x_test, y_test = digits_split()
    np.savez(folder / "train.npz", x=x_train, y=y_train)
    np.savez(folder / "test.npz", x=x_test, y=y_test)
    return folder, (x_train, y_train)


def _convert_and_check(capsys, model_path, folder, extra=()):
    out = model_path.parent / f"{model_path.stem}-out"
    code = main(["convert", str(model_path), "--recipe", "int8-qat", "--data", str(folder / "train.npz"),
                 "--epochs", "1", "--out", str(out), "--runs", "2", "--no-progress", "--json", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    code = main(["check", str(out / "model.tflite"), "--reference", str(out / "reference.keras"),
                 "--data", str(folder / "test.npz"), "--runs", "2", "--json"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    return report, json.loads(captured.out)


@pytest.mark.parametrize("block", [tutorial_se_block, tutorial_cbam_block], ids=["se", "cbam"])
def test_tutorial_block_saved_as_h5_converts_fully_int8(tmp_path, capsys, digits_files, block):
    folder, (x_train, y_train) = digits_files
    model = train_float(tutorial_model(block), x_train, y_train)
    path = tmp_path / f"{model.name}.h5"
    model.save(path)
    report, checked = _convert_and_check(capsys, path, folder)
    assert report["fully_int8"] is True
    kinds = {r["from"] for r in report["rewrites"]}
    assert "TFOpLambda(math.reduce_mean)" in kinds and "Conv2D" in kinds  # raw ops; Conv2D(relu)→BN split
    accuracy = checked["accuracy"]
    assert checked["fully_int8"] is True
    assert accuracy["reference_top1"] > 0.85, "the float model did not learn digits"
    assert accuracy["top1_agreement"] >= 0.98, accuracy
    assert accuracy["output_snr_db"] >= 25, accuracy
    assert report["reference_saved"].startswith("normalized")  # check needed no --trust-model-code
    # The int8 flatbuffer computes what the fake-quant Keras model computed (nothing QAT did not model).
    assert report["qat_parity"]["passed"] and report["qat_parity"]["snr_db"] >= 30, report["qat_parity"]
    # A stand-alone BN (after Conv2D(activation=relu)) is never reported by the scale half of its MUL+ADD.
    assert not [row for row in report["layers"] if row["op"] == "MUL" and row["name"].startswith("batch_norm")]


def test_softmax_head_is_fine_tuned_and_checked_on_logits(tmp_path, capsys, digits_files):
    """A published-style Dense(softmax) head: the SNR is measured on logits, the app still gets probabilities."""
    folder, (x_train, y_train) = digits_files
    model = train_float(tutorial_model(tutorial_se_block, softmax=True), x_train, y_train)
    path = tmp_path / "se_softmax.keras"
    model.save(path)
    report, checked = _convert_and_check(capsys, path, folder)
    assert report["fully_int8"] is True and "SOFTMAX" in report["ops"]
    assert report["accuracy"]["compared_on"] == "logits" and report["accuracy"]["head"] == "softmax"
    accuracy = checked["accuracy"]
    assert accuracy["compared_on"] == "logits"
    assert accuracy["top1_agreement"] >= 0.98 and accuracy["output_snr_db"] >= 25, accuracy


def test_lambda_cbam_from_the_users_module_loads_with_import(tmp_path, capsys, digits_files):
    """Published CBAM code (kobiso/CBAM-keras: a ResNet v1 with CBAM in every block) whose spatial pooling is
    Lambda(lambda t: K.mean(t, axis=3, keepdims=True)) with K from the user's module."""
    folder, (x_train, y_train) = digits_files
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "cbam_user.py").write_text(LAMBDA_CBAM_MODULE)
    sys.path.insert(0, str(code_dir))
    try:
        import cbam_user
    finally:
        sys.path.remove(str(code_dir))
    model = train_float(cbam_user.build(), x_train, y_train)
    path = tmp_path / "lambda_cbam.keras"
    model.save(path)
    del sys.modules["cbam_user"]

    # In a fresh process, without --import, K is unknown: one line that names the cause and the fix.
    base = [sys.executable, "-m", "edge_attn.cli", "convert", str(path), "--recipe", "int8-qat", "--data",
            str(folder / "train.npz"), "--epochs", "0", "--out", str(tmp_path / "refused"), "--trust-model-code"]
    done = subprocess.run(base, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    lines = [line for line in done.stderr.splitlines() if line.startswith("edge-attn")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(lines) == 1 and "NameError" in lines[0] and "--import" in lines[0], lines

    report, checked = _convert_and_check(capsys, path, folder,
                                         ["--trust-model-code", "--import", "cbam_user", "--code-path", str(code_dir)])
    assert report["fully_int8"] is True
    recognised = {r["to"] for r in report["rewrites"] if r["from"] == "Lambda"}
    assert {"ChannelMean", "ChannelMax"} <= recognised, report["rewrites"]
    accuracy = checked["accuracy"]
    assert accuracy["reference_top1"] > 0.85, "the float model did not learn digits"
    assert accuracy["top1_agreement"] >= 0.98 and accuracy["output_snr_db"] >= 25, accuracy


def test_python_api_converts_an_in_memory_model(tmp_path, digits_files):
    """The README's snippet: a model just trained in the user's session, (x, y) arrays, a result object."""
    import edge_attn
    from edge_attn.errors import BadInput

    _, (x_train, y_train) = digits_files
    model = train_float(tutorial_model(tutorial_se_block), x_train, y_train, epochs=6)
    result = edge_attn.convert(model, recipe="int8-ptq", data=(x_train, y_train), out=tmp_path / "api", runs=2)
    assert result.fully_int8 and os.path.isfile(result.model_path) and os.path.isfile(result.html_path)
    with open(result.report_path) as f:
        assert json.load(f)["accuracy"] == result.accuracy
    assert abs(result.accuracy["samples"] - 0.2 * len(y_train)) <= 10  # the stratified 20% eval split
    assert result.accuracy["top1_agreement"] >= 0.98 and result.accuracy["output_snr_db"] >= 25, result.accuracy
    with pytest.raises(BadInput, match="not created by edge_attn"):  # the command line's --out rules hold
        (tmp_path / "theirs").mkdir()
        (tmp_path / "theirs" / "keep.txt").write_text("mine")
        edge_attn.convert(model, recipe="int8-ptq", data=(x_train, y_train), out=tmp_path / "theirs")
    assert (tmp_path / "theirs" / "keep.txt").read_text() == "mine"
