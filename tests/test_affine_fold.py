"""A stand-alone per-channel affine (BatchNormalization, a linear 1x1 depthwise conv) read only by a linear layer
that never reads padding is folded into that layer (``normalize.affine_fold``).

References: the user's model itself, executed by Keras with its BatchNormalization (outputs within 1e-5 of the
normalized model), and the real converter's flatbuffer (the BN's MUL/ADD or depthwise op gone, a better int8
output than the converter gives the model as written). Generated models mix what users write around a BN:
its producer (conv with a fused activation, Add, pooling, ReLU), 1D and 2D, BN with or without scale/center
and with negative gammas, a user's own 1x1 depthwise conv, the layers between it and its reader (global and
windowed average pooling, max pooling, Flatten, a ``tf.pad`` on channels, none) and the reader (Dense, Conv1D /
Conv2D 1x1 with any padding or wider with ``valid``, DepthwiseConv2D, with or without bias, any activation).
Cases that must stay as written: a ``same`` conv wider than 1, a BN read twice or that is a model output, max
pooling over a negative scale, a BN that folds into the linear conv before it.
"""

import numpy as np
import pytest

from edge_attn._keras import keras, tf
from edge_attn.convert import convert_model, load_recipe
from edge_attn.normalize import normalize
from litert_reference import run_on_float_samples, snr_db
from model_generator import normal_samples, randomize_weights

L = keras.layers
ACTIVATIONS = [None, "relu", "relu6", "sigmoid", "swish", "tanh"]


def _producer(x, rng, rank):
    conv = L.Conv2D if rank == 4 else L.Conv1D
    kind = rng.integers(4)
    if kind == 0:
        return conv(6, 3, padding="same", activation=str(rng.choice(["relu", "swish", "tanh", "relu6"])))(x)
    y = conv(6, 3, padding="same")(x)
    if kind == 1:
        return L.Add()([y, conv(6, 1)(x)])
    if kind == 2:
        return (L.MaxPooling2D if rank == 4 else L.MaxPooling1D)(2, padding="same")(y)
    return L.ReLU()(y)


def _affine(x, rng, rank, positive):
    """A BN (random statistics, maybe no scale/center, maybe negative gammas) or a user's linear 1x1 depthwise."""
    channels = x.shape[-1]
    if rank == 4 and rng.integers(4) == 0:
        layer = L.DepthwiseConv2D(1, use_bias=bool(rng.integers(2)), name="affine")
        y = layer(x)
        kernel = rng.uniform(0.1, 3.0, (1, 1, channels, 1)) * (1 if positive else rng.choice([-1, 1], (1, 1, channels, 1)))
        layer.set_weights([kernel.astype("float32")] + ([rng.normal(0, 0.5, channels).astype("float32")]
                                                         if layer.use_bias else []))
        return y
    layer = L.BatchNormalization(name="affine", scale=bool(rng.integers(4)), center=bool(rng.integers(4)),
                                 axis=-1 if rng.integers(2) else rank - 1)
    y = layer(x)
    weights = []
    if layer.scale:
        gamma = rng.uniform(0.05, 3.0, channels)
        weights.append(gamma if positive else gamma * rng.choice([-1, 1], channels))
    if layer.center:
        weights.append(rng.normal(0, 0.5, channels))
    weights += [rng.normal(0, 0.5, channels), rng.uniform(0.2, 3.0, channels)]
    layer.set_weights([w.astype("float32") for w in weights])
    return y


def _between(x, rng, rank, positive):
    """Zero to two layers that commute with a per-channel affine; returns (tensor, rank after them)."""
    steps = list(rng.permutation(["pad", "avg_pool", "max_pool", "none"]))[:int(rng.integers(0, 3))]
    for step in steps:
        if step == "pad":
            x = tf.pad(x, [[0, 0]] * (rank - 1) + [[int(rng.integers(0, 2)), int(rng.integers(1, 3))]])
        elif step == "avg_pool":
            x = (L.AveragePooling2D if rank == 4 else L.AveragePooling1D)(2, padding=str(rng.choice(["same", "valid"])))(x)
        elif step == "max_pool" and positive:
            x = (L.MaxPooling2D if rank == 4 else L.MaxPooling1D)(2, padding="same")(x)
    ending = rng.integers(3)
    if ending == 0:
        return (L.GlobalAveragePooling2D if rank == 4 else L.GlobalAveragePooling1D)(keepdims=bool(rng.integers(2)))(x), None
    if ending == 1 and positive:
        return (L.GlobalMaxPooling2D if rank == 4 else L.GlobalMaxPooling1D)()(x), 2
    if ending == 1:
        return L.Flatten()(x), 2
    return x, rank


def _reader(x, rng, rank):
    activation = ACTIVATIONS[rng.integers(len(ACTIVATIONS))]
    use_bias = bool(rng.integers(2))
    if rank is None or x.shape.rank == 2 or rng.integers(3) == 0:
        return L.Dense(4, activation=activation, use_bias=use_bias, name="reader")(x)
    wide = rng.integers(2) and min(x.shape[1:-1]) >= 3
    kernel, padding = (3, "valid") if wide else (1, str(rng.choice(["same", "valid"])))
    if x.shape.rank == 4 and rng.integers(3) == 0:
        return L.DepthwiseConv2D(kernel, padding=padding, depth_multiplier=int(rng.integers(1, 3)),
                                 activation=activation, use_bias=use_bias, name="reader")(x)
    conv = L.Conv2D if x.shape.rank == 4 else L.Conv1D
    return conv(5, kernel, strides=int(rng.integers(1, 3)), padding=padding, activation=activation,
                use_bias=use_bias, name="reader")(x)


def generated_model(seed):
    rng = np.random.default_rng(seed)
    rank = 4 if seed % 3 else 3
    positive = bool(rng.integers(2))
    inputs = keras.Input((9, 9, 3) if rank == 4 else (14, 3))
    x = _affine(_producer(inputs, rng, rank), rng, rank, positive)
    x, after = _between(x, rng, rank, positive)
    y = _reader(x, rng, after)
    if y.shape.rank > 2:
        y = L.Flatten()(y)
    model = keras.Model(inputs, L.Dense(3)(y), name=f"affine_fold_{seed}")
    randomize_weights(model, rng, keep=("affine",))
    return model


def _folds(rewrites):
    return [r for r in rewrites if r["to"].startswith("folded into the next")]


SEEDS = range(18)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_affine_is_folded_into_its_reader_float_identically(seed):
    model = generated_model(seed)
    normalized, rewrites = normalize(model)
    x = normal_samples(model)
    np.testing.assert_allclose(normalized(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    assert "affine" not in [layer.name for layer in normalized.layers], [layer.name for layer in normalized.layers]
    (fold,) = _folds(rewrites)
    assert fold["layers"] == ["affine"], rewrites
    # the reader's own layer (named ``reader_linear`` where normalize split off an activation) now has a bias
    (reader,) = [layer for layer in normalized.layers if layer.name.startswith("reader") and hasattr(layer, "use_bias")]
    assert reader.use_bias


def _kept_model(case):
    inputs = keras.Input((9, 9, 3))
    linear = case == "folds-backward"
    x = L.Conv2D(6, 3, padding="same", activation=None if linear else "swish")(inputs)
    bn = L.BatchNormalization(name="affine")
    y = bn(x)
    gamma = np.linspace(0.2, 2.0, 6) * (np.array([1, -1, 1, 1, -1, 1]) if case == "negative-max-pool" else 1)
    bn.set_weights([gamma, np.full(6, 0.3), np.full(6, 0.1), np.full(6, 1.5)])
    if case == "same-3x3":
        z = L.Conv2D(4, 3, padding="same")(y)
    elif case == "read-twice":
        z = L.Add()([L.Conv2D(6, 1)(y), y])
    elif case == "negative-max-pool":
        z = L.Dense(4)(L.GlobalMaxPooling2D()(y))
    else:
        z = L.Conv2D(4, 1)(y)
    outputs = [L.Dense(3)(L.Flatten()(z))] + ([y] if case == "model-output" else [])
    model = keras.Model(inputs, outputs, name="kept")
    randomize_weights(model, np.random.default_rng(3), keep=("affine",))
    return model


@pytest.mark.parametrize("case", ["same-3x3", "read-twice", "model-output", "negative-max-pool", "folds-backward"])
def test_affines_that_cannot_be_folded_exactly_are_kept(case):
    model = _kept_model(case)
    normalized, rewrites = normalize(model)
    assert not _folds(rewrites), rewrites
    assert "affine" in [layer.name for layer in normalized.layers]
    x = normal_samples(model, n=4)
    for got, want in zip(tf.nest.flatten(normalized(x)), tf.nest.flatten(model(x))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def _int8_ops(tflite):
    from ai_edge_litert.interpreter import Interpreter

    return [op["op_name"] for op in Interpreter(model_content=tflite)._get_ops_details()]


def test_folded_bn_has_no_int8_tensor_of_its_own_and_a_better_int8_output(monkeypatch):
    """The point: a BN after a swish conv, its channels scaled 0.05..3 (a nearly dead channel's tiny variance
    gives a large scale), read by a 1x1 conv. Unfolded (normalize without this step), the BN is a per-channel
    1x1 DEPTHWISE_CONV_2D with one per-tensor int8 output over unequal channels; folded, that op and its
    output tensor are gone and the int8 logits track float better (45.0 vs 24.7 dB when written)."""
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", activation="swish")(inputs)
    bn = L.BatchNormalization(name="affine")
    y = bn(x)
    rng = np.random.default_rng(5)
    bn.set_weights([np.geomspace(0.05, 3.0, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.2, 8), np.ones(8)])
    reader = L.Conv2D(6, 1, name="reader")
    y = reader(y)
    model = keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(y)), name="bn_after_swish")
    randomize_weights(model, rng, keep=("affine",))
    kernel, bias = reader.get_weights()
    # a reader that leans on the small channels as much as on the large ones (as training would make it)
    reader.set_weights([kernel / bn.get_weights()[0][:, None], bias])
    normalized, rewrites = normalize(model)
    assert _folds(rewrites)
    monkeypatch.setattr("edge_attn.normalize.rewrite.fold_affines_forward", lambda model: (model, None))
    without_fold, rewrites = normalize(model)
    assert not _folds(rewrites)
    x = normal_samples(model, n=64, seed=3)
    held_out = normal_samples(model, n=64, seed=4)
    reference = model(held_out).numpy()
    recipe = load_recipe("int8-ptq")
    folded = convert_model(normalized, recipe, [s[None] for s in x])
    unfolded = convert_model(without_fold, recipe, [s[None] for s in x])
    assert "DEPTHWISE_CONV_2D" in _int8_ops(unfolded)
    # swish is LOGISTIC + MUL; nothing else is left of the BN
    assert _int8_ops(folded) == ["CONV_2D", "LOGISTIC", "MUL", "CONV_2D", "MEAN", "FULLY_CONNECTED"], _int8_ops(folded)
    folded_snr = snr_db(reference, run_on_float_samples(folded, held_out))
    unfolded_snr = snr_db(reference, run_on_float_samples(unfolded, held_out))
    assert folded_snr > unfolded_snr + 1, (folded_snr, unfolded_snr)
