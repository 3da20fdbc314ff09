"""Conv1D → BatchNormalization → ReLU chains are folded into the Conv1D before QAT (edge_attn.qat.conv1d_fold).

References: the user's own Keras model (the folded model must compute what it computes, with non-trivial BN
statistics), TFLite's op list of the converted int8 model (no MUL for a BN, no separate RELU), and the real
int8 model's logits against the fake-quant model's (the simulation QAT trains must be the model deployed).
Chains are written the ways users write them and mixed by a seeded generator, with the shapes that must not
fold (a conv output read twice, a ReLU6, a BN over another axis).
"""

import collections
import random

import numpy as np
import pytest

from edge_attn._keras import keras
from edge_attn.convert.converter import convert_model
from edge_attn.convert.inspect import inspect_tflite
from edge_attn.convert.recipe import load_recipe
from edge_attn.qat.calibrate import calibrate_ranges
from edge_attn.qat.conv1d_fold import fold_into_conv1d
from edge_attn.qat.wrap import quantize_aware
from litert_reference import run_on_float_samples, snr_db

L = keras.layers


def _batch_norm(x, rng, name, **kwargs):
    layer = L.BatchNormalization(name=name, **kwargs)
    y = layer(x)
    channels = x.shape[-1]
    values = {"gamma": rng.uniform(0.5, 2.0, channels), "beta": rng.normal(0, 0.5, channels),
              "moving_mean": rng.normal(0, 0.3, channels), "moving_variance": rng.uniform(0.2, 3.0, channels)}
    layer.set_weights([values[w.name.rsplit("/", 1)[-1].split(":")[0]] for w in layer.weights])
    return y


# name -> (builder(x, rng, name) -> y, BN layers it leaves, ReLU/Activation layers it leaves)
CHAINS = {
    "conv-bn-relu": (lambda x, r, n: L.ReLU(name=f"{n}_relu")(_batch_norm(L.Conv1D(8, 3, padding="same",
                                                                                  name=n)(x), r, f"{n}_bn")), 0, 0),
    "conv-relu": (lambda x, r, n: L.ReLU(name=f"{n}_relu")(L.Conv1D(8, 3, padding="same", name=n)(x)), 0, 0),
    "conv-bn": (lambda x, r, n: _batch_norm(L.Conv1D(8, 5, padding="same", name=n)(x), r, f"{n}_bn"), 0, 0),
    "conv-bn-activation": (lambda x, r, n: L.Activation("relu", name=f"{n}_act")(
        _batch_norm(L.Conv1D(8, 3, padding="same", use_bias=False, name=n)(x), r, f"{n}_bn")), 0, 0),
    "causal-dilated-bn-relu": (lambda x, r, n: L.ReLU(name=f"{n}_relu")(_batch_norm(
        L.Conv1D(8, 3, padding="causal", dilation_rate=2, name=n)(x), r, f"{n}_bn")), 0, 0),
    "conv-bn-plain-no-affine": (lambda x, r, n: L.ReLU(name=f"{n}_relu")(_batch_norm(
        L.Conv1D(8, 3, padding="same", name=n)(x), r, f"{n}_bn", center=False, scale=False)), 0, 0),
    # must not fold: ReLU6 (not the conv's relu) and a conv output read twice
    "conv-bn-relu6": (lambda x, r, n: L.ReLU(6.0, name=f"{n}_relu6")(_batch_norm(
        L.Conv1D(8, 3, padding="same", name=n)(x), r, f"{n}_bn")), 0, 1),
    "conv-read-twice": (lambda x, r, n: (lambda c: L.Add(name=f"{n}_add")([L.ReLU(name=f"{n}_relu")(
        _batch_norm(c, r, f"{n}_bn")), c]))(L.Conv1D(8, 3, padding="same", name=n)(x)), 1, 1),
}


FOLDING = sorted(set(CHAINS) - {"conv-read-twice"})  # every BN folds (a ReLU6 stays a layer of its own)


def _generated_model(seed, chains=tuple(sorted(CHAINS))):
    picker, rng = random.Random(seed), np.random.default_rng(seed)
    names = [picker.choice(chains) for _ in range(3)]
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((24, 3))
    for index, name in enumerate(names):
        x = CHAINS[name][0](x, rng, f"block{index}")
    x = L.GlobalAveragePooling1D(name="pool")(x)
    model = keras.Model(inputs, L.Dense(4, name="logits")(x))
    left = (sum(CHAINS[n][1] for n in names), sum(CHAINS[n][2] for n in names))
    return model, names, left


def _count(model, classes):
    return sum(type(layer) in classes for layer in model.layers)


@pytest.mark.parametrize("seed", range(6))
def test_folded_model_computes_what_the_users_model_computes(seed):
    model, names, (batch_norms_left, relus_left) = _generated_model(seed)
    x = np.random.default_rng(seed).normal(0, 1, (16, 24, 3)).astype(np.float32)
    folded = fold_into_conv1d(model)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(folded.predict(x, verbose=0), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max(), err_msg=str(names))
    assert _count(folded, (L.BatchNormalization,)) == batch_norms_left, names
    assert _count(folded, (L.ReLU, L.Activation)) == relus_left, names


@pytest.mark.parametrize("seed", range(3))
def test_int8_qat_model_has_no_batch_norm_mul_and_is_simulated_closely(seed):
    model, names, (_, relus_left) = _generated_model(seed, FOLDING)
    x = np.random.default_rng(seed).normal(0, 1, (24, 24, 3)).astype(np.float32)
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, x)
    tflite = convert_model(qat.deployable(), load_recipe("int8-qat"), [sample[None] for sample in x])
    ops = collections.Counter(op.op for op in inspect_tflite(tflite).ops)
    assert ops["MUL"] == 0 and ops["RELU"] == 0 and ops["CONV_2D"] == 3, (names, ops)
    assert ops["RELU6"] == relus_left, (names, ops)
    # measured: 48-60 dB folded; 35-42 dB unfolded (the BN's int8 MUL requantizes what QAT did not model)
    assert snr_db(qat.model.predict(x, verbose=0), run_on_float_samples(tflite, x)) >= 45, names


def test_zoo_resnet1d_int8_qat_has_the_op_list_of_post_training_int8():
    """Measured before the fold: 20 MUL (one per BN) and 39 RESHAPE; post-training int8 has no MUL."""
    from edge_attn.models import create_model

    model = create_model("resnet1d_18", input_shape=(64, 2), classes=4)
    x = np.random.default_rng(0).uniform(0, 1, (8, 64, 2)).astype(np.float32)
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, x)
    ops = collections.Counter(op.op for op in inspect_tflite(
        convert_model(qat.deployable(), load_recipe("int8-qat"), [sample[None] for sample in x])).ops)
    assert ops["MUL"] == 0 and ops["RELU"] == 0 and ops["CONV_2D"] == 20, ops
