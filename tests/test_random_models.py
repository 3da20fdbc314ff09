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
- **refused**: exit 2 with exactly one line on stderr, and that line is a *refusal*: edge_attn says which
  layer cannot be made quantization-aware and why ("cannot be made quantization-aware"). A one-line
  error made from a library crash (:func:`edge_attn.failures.model_failure`: "... failed at layer ...
  please report this model") is edge_attn's failure, not a refusal; so is a conversion that leaves ops
  in float (the int8-qat promise is full int8 for what QAT accepted), and any other exit code.

Default run: :data:`DEFAULT_COUNT` seeds (fits the suite budget). ``EDGE_ATTN_RANDOM_MODELS=300`` runs
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
MIN_SNR_DB = 25.0
MIN_VARYING_SHARE = 0.05  # the input-dependent share of the float logits' energy needed to judge SNR
REFUSAL = "cannot be made quantization-aware"


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
    x, y = random_data(model, seed, classes=CLASSES)
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
            record["outcome"] = "failure: SNR below 25 dB"
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


# Opt-in (``-m random_models``) until the bugs it found are fixed: seeds 1/4/5 (an input DEQUANTIZE+QUANTIZE
# pair left in float after a preprocessing layer/BN on the input), seeds 26/152 (LiteRT aborts the process in
# allocate_tensors of the logits model in evaluate/compare.py), and converted models below 25 dB.
@pytest.mark.random_models
@pytest.mark.parametrize("seed", SEEDS)
def test_random_model_converts_or_is_refused_in_one_line(seed, tmp_path):
    record = run_one(seed, str(tmp_path))
    assert record["outcome"] in ("converted", "converted, logits constant", "refused"), record


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
