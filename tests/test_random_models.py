"""Never a traceback: random small user models through ``edge-attn convert --recipe int8-qat --epochs 0``.

Each model comes from the seeded generator in ``tests/model_generator.py`` (1D/2D, ≥ 30 layer/op kinds:
convs with and without fused activations, BatchNormalization placements, SE/CBAM variants in layers,
raw ops and operators, constants, reshapes, preprocessing, heads), is saved as ``.keras`` or ``.h5`` and
goes through the real command line (``edge_attn.cli.main``, in-process) with a random ``.npz`` of its
input shape. The outcome of every model must be exactly one of:

- **converted**: exit 0, ``fully_int8`` true, and the report's logit SNR ≥ 25 dB against the float
  model. The SNR is only meaningful when the float logits depend on the input: an untrained model can
  collapse to (nearly) the same logits for every sample, and then an uncentred SNR measures a constant.
  So the SNR floor applies when the float logits' variation across samples carries at least
  :data:`MIN_VARYING_SHARE` of their energy (computed here from the float model, independently of
  edge_attn); collapsed models are counted as ``converted, logits constant`` and only fully_int8 is
  required. Each model is first trained in float for 20 short epochs on its data (``train_briefly``), as a
  user's model is trained, which makes that rarer.
- **converted, held-out values beyond the calibrated range (named)**: exit 0, fully int8, the held-out SNR
  below 25 dB *because* held-out samples reach values the calibration samples never did (int8 clips them
  whatever the converter does) -- accepted only when ``convert``'s report names the clipped layers itself and
  the same model scored on its calibration samples (``check --split train``) meets 25 dB
  (:func:`_below_the_snr_floor`).
- **refused**: exit 2 with exactly one line on stderr, and that line is a *refusal*: edge_attn says which
  layer cannot be made quantization-aware and why ("cannot be made quantization-aware"). A one-line
  error made from a library crash (:func:`edge_attn.failures.model_failure`: "... failed at layer ...
  please report this model") is edge_attn's failure, not a refusal; so is a conversion that leaves ops
  in float (the int8-qat promise is full int8 for what QAT accepted), and any other exit code.

Default run (in the default test suite): :data:`DEFAULT_COUNT` seeds, the known misses in
:data:`KNOWN_BELOW_FLOOR` as non-strict xfails. ``EDGE_ATTN_RANDOM_MODELS=300`` runs
seeds 0..299 instead (``150:300``: seeds 150..299); ``EDGE_ATTN_RANDOM_MODELS_LOG=file.jsonl`` appends one line per model (seed,
kinds, outcome, message, seconds) for counting.
"""

import io
import json
import os
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from model_generator import random_data, random_model, train_briefly  # noqa: E402

from edge_attn._keras import keras  # noqa: E402
from edge_attn import cli  # noqa: E402

DEFAULT_COUNT = 24

def _seeds(spec):
    """``"300"``: seeds 0..299; ``"150:300"``: seeds 150..299 (to split a long run over processes)."""
    start, _, stop = spec.rpartition(":")
    return range(int(start or 0), int(stop))


SEEDS = _seeds(os.environ.get("EDGE_ATTN_RANDOM_MODELS", str(DEFAULT_COUNT)))
CLASSES = 3
# Samples per class: 80% calibrate, 20% are held out for the SNR. With 12 per class (29 calibration samples)
# the held-out samples of seeds 3, 10, 14, 21 reached logits beyond the calibrated range (clipping alone
# 16.9-21 dB, per-layer `clipping_snr_db`): a property of the tiny data set, not of the conversion.
PER_CLASS = 40
MIN_SNR_DB = 25.0
MIN_VARYING_SHARE = 0.05  # the input-dependent share of the float logits' energy needed to judge SNR
REFUSAL = "cannot be made quantization-aware"
OUTCOMES_ACCEPTED = ("converted", "converted, logits constant",
                     "converted, held-out values beyond the calibrated range (named)", "refused")


def _float_logits(model, x):
    """The float model's logits on ``x``: the input of a softmax head (layer or fused), else the output."""
    last = model.outputs[0]._keras_history.layer
    if isinstance(last, keras.layers.Softmax) or getattr(last, "symbol", None) == "nn.softmax":
        return keras.Model(model.inputs, last.input).predict(x, verbose=0)
    if getattr(getattr(last, "activation", None), "__name__", None) == "softmax":
        features = keras.Model(model.inputs, last.input).predict(x, verbose=0)
        kernel, bias = last.get_weights()
        return features @ kernel + bias
    return model.predict(x, verbose=0)


def _varying_share(logits):
    logits = np.asarray(logits, np.float64)
    total = float(np.sum(logits ** 2))
    return 0.0 if total == 0 else float(np.sum((logits - logits.mean(axis=0)) ** 2)) / total


def run_one(seed, folder):
    """Generate, save and convert model ``seed``; returns its outcome record (see the module docstring)."""
    keras.backend.clear_session()
    model = random_model(seed, classes=CLASSES)
    x, y = random_data(model, seed, classes=CLASSES, per_class=PER_CLASS)
    train_briefly(model, x, y, seed=seed)
    share = _varying_share(_float_logits(model, x))
    path = os.path.join(folder, f"model_{seed}" + (".h5" if seed % 2 else ".keras"))
    model.save(path)
    data = os.path.join(folder, "data.npz")
    np.savez(data, x=x, y=y)
    argv = ["convert", path, "--recipe", "int8-qat", "--data", data, "--epochs", "0", "--out",
            os.path.join(folder, "out"), "--runs", "1", "--no-progress", "--json"]
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    record = {"seed": seed, "kinds": model.generated_kinds, "varying_share": round(share, 4)}
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = cli.main(argv)
    except BaseException as error:  # noqa: BLE001 — an escaped exception IS the finding
        record.update(outcome="traceback", message=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
                      if str(error) else type(error).__name__)
        code = None
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["exit"] = code
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    if code == 0:
        report = json.loads(stdout.getvalue())
        snr = report["accuracy"]["output_snr_db"]
        record.update(fully_int8=report["fully_int8"], snr_db=snr, compared_on=report["accuracy"].get("compared_on"))
        if not report["fully_int8"]:
            record["outcome"] = "failure: not fully int8"
        elif share < MIN_VARYING_SHARE:
            record["outcome"] = "converted, logits constant"
        elif snr is None or snr < MIN_SNR_DB:
            record["outcome"] = _below_the_snr_floor(report, folder, data, record)
        else:
            record["outcome"] = "converted"
    elif code is not None:
        record["message"] = " | ".join(lines)[:600]
        errors = [line for line in lines if line.startswith("edge-attn convert: error:")]
        if code != 2:
            record["outcome"] = f"failure: exit {code}"
        elif "Traceback" in stderr.getvalue():
            record["outcome"] = "traceback"
        elif len(errors) != 1 or lines[-1] != errors[0]:
            record["outcome"] = "failure: not one error line"
        elif REFUSAL in errors[0]:
            record["outcome"] = "refused"
        else:
            record["outcome"] = "failure: error that is not a refusal"
    log = os.environ.get("EDGE_ATTN_RANDOM_MODELS_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
    return record


def _below_the_snr_floor(report, folder, data, record):
    """The outcome of a converted model whose held-out SNR is below the floor. The held-out samples can
    reach values the calibration samples never did (one sample of seed 44 drives a ReLU to 2.05 where the
    96 calibration samples stop at 1.13: 7 dB): int8 clips them whatever the converter does. That is
    accepted only when edge_attn says so itself -- ``convert`` names the clipped layers (per-layer
    ``clipping_snr_db``) -- and the same model scored on its calibration samples (``check --split train``)
    meets the floor, so the conversion's own numerics are sound."""
    from edge_attn.evaluate.per_layer import clipped_layers

    named = [row["name"] for row in clipped_layers(report.get("layers") or [])]
    out = os.path.join(folder, "out")
    argv = ["check", os.path.join(out, "model.tflite"), "--reference", os.path.join(out, "reference.keras"),
            "--data", data, "--split", "train", "--runs", "1", "--json"]
    stdout = io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(io.StringIO()):
        code = cli.main(argv)
    calibration_snr = json.loads(stdout.getvalue())["accuracy"]["output_snr_db"] if code in (0, 1) else None
    record.update(clipped_layers=named, calibration_snr_db=calibration_snr)
    if named and calibration_snr is not None and calibration_snr >= MIN_SNR_DB:
        return "converted, held-out values beyond the calibrated range (named)"
    return "failure: SNR below 25 dB"


# Seeds of the default range known to miss the SNR floor, with what was measured; not strict, so a fix shows
# as XPASS. Nothing else may fail: no traceback, no converter failure, no float op.
KNOWN_BELOW_FLOOR = {
    6: "measured 2026-12-02: 23.2 dB held out, 24.9 dB on the calibration samples, nothing clipped -- a "
       "stand-alone BN after swish (lowered to a depthwise conv, range [-1.1, 7.3]) loses small channels to one "
       "per-tensor int8 range and the loss accumulates (29.7 -> 23.7 dB) with --epochs 0; 2026-12-03, with that BN "
       "folded into the Dense after the mean (normalize.affine_fold): 24.6 dB held out, 26.2 dB on calibration",
}


def _seed_params(seeds):
    return [pytest.param(seed, marks=pytest.mark.xfail(reason=KNOWN_BELOW_FLOOR[seed], strict=False))
            if seed in KNOWN_BELOW_FLOOR else seed for seed in seeds]


@pytest.mark.parametrize("seed", _seed_params(SEEDS))
def test_random_model_converts_or_is_refused_in_one_line(seed, tmp_path):
    record = run_one(seed, str(tmp_path))
    assert record["outcome"] in OUTCOMES_ACCEPTED, record


def test_generator_is_seeded_and_covers_the_vocabulary():
    """Same seed, same model (architecture and weights); ≥ 30 kinds over the default seeds."""
    keras.backend.clear_session()
    first = random_model(7)
    keras.backend.clear_session()  # raw-op layer names (tf.math.add_1 ...) are numbered per session
    again = random_model(7)
    assert first.to_json() == again.to_json()
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights()))
    kinds = set()
    for seed in range(DEFAULT_COUNT):
        kinds.update(random_model(seed).generated_kinds)
    assert len(kinds) >= 30, sorted(kinds)


def test_relu6_fused_or_as_activation_is_made_quantization_aware():
    """Found by the generator (seed 3): tfmot's QuantizeAwareActivation refuses a fused or Activation relu6."""
    from edge_attn.qat import quantize_aware

    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu6")(inputs)
    x = keras.layers.Activation("relu6")(keras.layers.Conv2D(4, 1)(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    qat = quantize_aware(model)
    samples = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(qat.float_model.predict(samples, verbose=0), model.predict(samples, verbose=0),
                               rtol=1e-5, atol=1e-5)
