"""Regressions found by the random-model generator (tests/model_generator.py), each checked with real LiteRT.

Seed 3 (conv → hard-swish → residual + BN → SE with a Dense pair and tf.reshape → GAP → softmax): LiteRT's
XNNPACK delegate aborts the process (SIGABRT, a double free) in ``allocate_tensors`` of the converted model,
while builtin kernels run it. ``convert`` used to die with it; now it probes the model in a child process, checks
and times it on builtin kernels, and says in the report (host accelerator verdict, xnnpack target warning) that
an app loading it the default way would fail too.

The trigger was a range of [0, 0] (an SE bottleneck dead on every calibration sample, scale ~0): since
calibration gives such tensors a unit range (edge_attn.qat.calibrate.DEAD_RANGE) XNNPACK runs seed 3. The
crash handling is still needed for models that reach edge_attn with degenerate scales, so this test restores
the old [0, 0] range — and undoes edge_attn.convert.collapsed_ranges, which since widens such a scale after
conversion — to make the model XNNPACK kills; the next test checks that the widening alone makes the [0, 0]
model run on XNNPACK, and the last that the model calibrated as shipped does.
"""

import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from model_generator import random_data, random_model, train_briefly  # noqa: E402

from edge_attn._keras import keras  # noqa: E402

_BARE_LITERT = r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
builtin = sys.argv[2] == "builtin"
kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if builtin else {}
interpreter = Interpreter(model_path=sys.argv[1], **kwargs)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
print("ran")
"""


def _bare_litert_runs(path, set_up):
    done = subprocess.run([sys.executable, "-c", _BARE_LITERT, str(path), set_up], capture_output=True, text=True,
                          timeout=120)
    return done.returncode == 0 and done.stdout.strip() == "ran"


def _convert_seed_3(tmp_path):
    from edge_attn.cli import main

    keras.backend.clear_session()
    model = random_model(3, classes=3)
    x, y = random_data(model, 3, classes=3)
    train_briefly(model, x, y, seed=3)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    code = main(["convert", str(tmp_path / "model.keras"), "--recipe", "int8-qat", "--data", str(tmp_path / "data.npz"),
                 "--epochs", "0", "--runs", "1", "--no-progress", "--json", "--out", str(tmp_path / "out")])
    return code, tmp_path / "out" / "model.tflite"


def test_a_model_xnnpack_kills_is_checked_on_builtin_kernels_and_reported(tmp_path, capsys, monkeypatch):
    import edge_attn.qat.calibrate as calibrate

    import edge_attn.convert.converter as converter

    monkeypatch.setattr(calibrate, "DEAD_RANGE", (0.0, 0.0))  # the degenerate scale that made XNNPACK abort
    # ...which edge_attn.convert.collapsed_ranges now widens; undone here to have a model XNNPACK refuses
    monkeypatch.setattr(converter, "widen_collapsed_ranges", lambda data: (data, []))
    code, tflite = _convert_seed_3(tmp_path)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # independent of edge_attn: a bare LiteRT process dies on the default set-up and runs on builtin kernels
    assert not _bare_litert_runs(tflite, "default")
    assert _bare_litert_runs(tflite, "builtin")
    report = json.loads(captured.out)
    assert report["fully_int8"]
    assert report["accelerator"]["verdict"] == "failed"
    assert "XNNPACK delegate" in report["accelerator"]["symptom"]
    xnnpack = next(t for t in report["targets"] if t["delegate"] == "xnnpack")
    assert any("XNNPACK delegate" in w and "builtin kernels" in w for w in xnnpack["warnings"])
    assert "warning: LiteRT's XNNPACK delegate" in captured.err
    assert report["latency_ms"]["quantized"]["xnnpack_problem"]


def test_the_degenerate_ranges_are_widened_so_xnnpack_runs_the_model(tmp_path, capsys, monkeypatch):
    import edge_attn.qat.calibrate as calibrate

    monkeypatch.setattr(calibrate, "DEAD_RANGE", (0.0, 0.0))
    code, tflite = _convert_seed_3(tmp_path)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _bare_litert_runs(tflite, "default") and "XNNPACK" not in captured.err


def test_the_same_model_calibrated_as_shipped_runs_on_xnnpack(tmp_path, capsys):
    code, tflite = _convert_seed_3(tmp_path)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _bare_litert_runs(tflite, "default") and "XNNPACK" not in captured.err
