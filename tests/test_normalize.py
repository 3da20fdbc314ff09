"""Bring-your-own SE/CBAM models written with raw TF ops: normalization, int8 conversion, safe loading.

The models are written here the way tutorials write them (``tf.reduce_mean``, ``x * s``, ``tf.pad``,
``Lambda(K.reshape)``). References are independent of the rewrite: the original model, executed by
TensorFlow through its ``TFOpLambda`` layers (outputs must match within 1e-5), numpy formulas for the
new ``ChannelPad`` layer, tfmot's refusal of the raw model, and the TFLite flatbuffer's tensor types.
"""

import json

import numpy as np
import pytest

from edge_attn._keras import keras, tf
from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.errors import BadInput
from edge_attn.modelio import load_keras_model
from edge_attn.normalize import ChannelPad, normalize
from edge_attn.qat import calibrate_ranges, quantize_aware

import tensorflow_model_optimization as tfmot

K = keras.backend


def _se_raw(x, ratio=2, keepdims=False):
    """Tutorial SE (Hu et al. 2018): squeeze with tf.reduce_mean, excite with Dense, scale with x * s."""
    channels = x.shape[-1]
    s = tf.reduce_mean(x, [1, 2], keepdims=keepdims)
    s = keras.layers.Dense(channels // ratio, activation="relu")(s)
    s = keras.layers.Dense(channels)(s)
    if not keepdims:
        s = tf.reshape(s, [-1, 1, 1, channels])
    return x * tf.nn.sigmoid(s)


def se_model(keepdims):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    y = tf.nn.relu(x)
    y = keras.layers.Conv2D(8, 3, padding="same")(y)
    y = _se_raw(y, keepdims=keepdims)
    x = tf.nn.relu(tf.add(x, y))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=f"se_raw_keepdims_{keepdims}")


def cbam_model():
    """Tutorial CBAM (Woo et al. 2018): separate MLPs per branch, nested reduce_max, 3×3 spatial conv, residual."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    avg = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    mx = tf.reduce_max(tf.reduce_max(x, axis=1, keepdims=True), axis=2, keepdims=True)
    avg = keras.layers.Dense(8)(keras.layers.Dense(4, activation="relu")(avg))
    mx = keras.layers.Dense(8)(keras.layers.Dense(4, activation="relu")(mx))
    refined = tf.multiply(x, tf.sigmoid(avg + mx))
    pooled = tf.concat([tf.reduce_max(refined, axis=3, keepdims=True), tf.reduce_mean(refined, axis=-1, keepdims=True)], -1)
    attention = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(pooled)
    x = tf.identity(refined * attention + x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="cbam_raw")


def pad_shortcut_model():
    """CIFAR ResNet "option A" shortcut: strided subsampling and zero channels via tf.pad."""
    inputs = keras.Input((8, 8, 1))
    # Wide enough to learn digits well (4 -> 8 channels reached ~84% top-1, too close to its decision
    # boundaries for an agreement test to say anything about quantization).
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    shortcut = tf.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [3, 5]])  # asymmetric: order matters
    x = tf.nn.relu(y + shortcut)
    x = tf.reduce_mean(x, axis=[1, 2])
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="pad_shortcut")


def se_resnet1d_model():
    """1D SE-ResNet block: Conv1D, GlobalAveragePooling1D, Dense, Lambda(K.reshape), Multiply, Concatenate."""
    inputs = keras.Input((16, 2))
    x = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Conv1D(16, 3, padding="same")(x)
    s = keras.layers.GlobalAveragePooling1D()(y)
    s = keras.layers.Dense(4, activation="relu")(s)
    s = keras.layers.Dense(16, activation="sigmoid")(s)
    s = keras.layers.Lambda(lambda t: K.reshape(t, (-1, 1, 16)))(s)
    y = keras.layers.Multiply()([y, s])
    x = keras.layers.Activation("relu")(keras.layers.Add()([x, y]))
    x = keras.layers.Concatenate()([x, keras.layers.Conv1D(4, 1)(inputs)])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x), name="se_resnet1d_raw")


BUILDERS = {"se": lambda: se_model(False), "se_keepdims": lambda: se_model(True), "cbam": cbam_model,
            "pad_shortcut": pad_shortcut_model, "se_resnet1d": se_resnet1d_model}


def _randomize(model, seed=0):
    """Non-trivial weights and BN statistics, so a wrong rewrite cannot hide behind zeros or identities."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
        elif weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in weights])


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    built = {}
    for key, build in BUILDERS.items():
        model = build()
        _randomize(model)
        built[key] = model
    return built


def _inputs(model, n=8, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *model.input_shape[1:])).astype("float32")


def _raw_layers(model):
    return [layer.name for layer in model.layers if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda", "Lambda")]


def test_tfmot_alone_refuses_raw_op_models(models):
    """The premise: tfmot cannot quantize these models as written."""
    # tfmot clones the model layer by layer and the raw ops (TFOpLambda) do not survive it: the rebuilt
    # graph feeds a 7-D tensor to the pooling layer (what tfmot 0.8.1 does on TF 2.21).
    with pytest.raises(ValueError, match=r'layer "global_average_pooling2d(_\d+)?" is incompatible with the layer'):
        tfmot.quantization.keras.quantize_model(models["se"])


@pytest.mark.parametrize("key", list(BUILDERS))
def test_normalize_preserves_outputs_and_removes_raw_ops(models, key):
    model = models[key]
    normalized, rewrites = normalize(model, trust_model_code=True)
    x = _inputs(model)
    assert np.max(np.abs(normalized(x).numpy() - model(x).numpy())) <= 1e-5
    assert _raw_layers(normalized) == []
    rewritten = sorted(name for r in rewrites if r["from"].startswith(("TFOpLambda", "SlicingOpLambda", "Lambda")) for name in r["layers"])
    assert rewritten == sorted(_raw_layers(model))
    # Keras layers that were there stay there with their weights (same names).
    for layer in model.layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), normalized.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_rewrites_are_grouped_by_kind(models):
    _, rewrites = normalize(models["cbam"])
    by_kind = {(r["from"], r["to"]): r["layers"] for r in rewrites}
    assert len(by_kind[("TFOpLambda(math.reduce_mean)", "GlobalAveragePooling2D")]) == 1
    assert len(by_kind[("TFOpLambda(math.reduce_mean)", "ChannelMean")]) == 1
    assert len(by_kind[("TFOpLambda(math.reduce_max)", "ChannelMax")]) == 1
    assert len(by_kind[("TFOpLambda(math.reduce_max)", "MaxPooling2D")]) == 2  # nested reduce over H, then W
    assert len(by_kind[("TFOpLambda(math.multiply)", "Multiply")]) == 2
    assert len(by_kind[("TFOpLambda(identity)", "(removed)")]) == 1
    assert ("TFOpLambda(concat)", "Concatenate") in by_kind


def test_channel_pad_matches_numpy():
    x = np.random.default_rng(2).normal(size=(2, 3, 3, 4)).astype("float32")
    out = ChannelPad(1, 3)(x).numpy()
    np.testing.assert_array_equal(out, np.pad(x, [(0, 0), (0, 0), (0, 0), (1, 3)]))
    assert ChannelPad.from_config(ChannelPad(1, 3).get_config()).after == 3


def test_unsupported_ops_are_listed_with_advice():
    inputs = keras.Input((8, 8, 2))
    x = tf.math.floor(inputs)
    y = tf.reduce_mean(x, axis=[1, 3])
    model = keras.Model(inputs, [x / inputs, y], name="odd")
    with pytest.raises(BadInput) as error:
        normalize(model)
    message = str(error.value)
    assert "TFOpLambda(math.floor)" in message and "TFOpLambda(math.reduce_mean)" in message
    assert "division by a tensor" in message and "\n" not in message
    # Non-strict: the unsupported layers are kept, the model still computes the same.
    kept, _ = normalize(model, strict=False)
    x = _inputs(model)
    for a, b in zip(kept(x), model(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_refusals_are_grouped_with_a_count_and_a_few_names():
    """56 refused layers of one kind are one short clause, not 56 (MobileNetV3's old 10,700-character line)."""
    inputs = keras.Input((4, 4, 2))
    x = inputs
    for _ in range(20):
        x = tf.math.floor(x) + keras.layers.Conv2D(2, 1)(x)
    with pytest.raises(BadInput) as error:
        normalize(keras.Model(inputs, x, name="many"))
    message = str(error.value)
    assert "20 x TFOpLambda(math.floor)" in message and "and 17 more" in message
    assert len(message) < 400, message


def test_lambda_is_only_rewritten_when_trusted(models):
    with pytest.raises(BadInput, match="--trust-model-code"):
        normalize(models["se_resnet1d"])
    lambda_name = next(layer.name for layer in models["se_resnet1d"].layers if isinstance(layer, keras.layers.Lambda))
    _, rewrites = normalize(models["se_resnet1d"], trust_model_code=True)
    assert {"from": "Lambda", "to": "Reshape", "layers": [lambda_name]} in rewrites


def test_lambda_that_is_not_plain_is_refused():
    inputs = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: K.reshape(tf.sort(t), (-1, 2, 2)))(inputs)
    with pytest.raises(BadInput, match="not a plain reshape"):
        normalize(keras.Model(inputs, out), trust_model_code=True)


def test_zoo_models_pass_through_unchanged():
    from edge_attn.models import create_model

    model = create_model("se_resnet20", input_shape=(8, 8, 1), classes=10)
    same, rewrites = normalize(model)
    assert same is model and rewrites == []


@pytest.mark.parametrize("key", ["se", "cbam", "pad_shortcut", "se_resnet1d"])
def test_int8_qat_conversion_is_fully_int8(models, key):
    model = models[key]
    qat = quantize_aware(model, trust_model_code=True)
    assert qat.rewrites
    samples = _inputs(model, n=32, seed=3)
    calibrate_ranges(qat.model, qat.float_model, samples)
    tflite = convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples])
    assert inspect_tflite(tflite).fully_int8


def _save(model, path):
    model.save(path)
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_raw_op_models_load_back_safely(models, tmp_path, suffix):
    path = _save(models["cbam"], tmp_path / f"cbam{suffix}")
    loaded = load_keras_model(path)
    x = _inputs(loaded)
    np.testing.assert_allclose(loaded(x).numpy(), models["cbam"](x).numpy(), atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_models_need_trust_to_load(models, tmp_path, suffix):
    path = _save(models["se_resnet1d"], tmp_path / f"se1d{suffix}")
    with pytest.raises(BadInput, match="Lambda layers hold Python code"):
        load_keras_model(path)
    loaded = load_keras_model(path, trust_model_code=True)
    normalized, _ = normalize(loaded, trust_model_code=True)
    x = _inputs(loaded)
    assert np.max(np.abs(normalized(x).numpy() - models["se_resnet1d"](x).numpy())) <= 1e-5


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_unknown_custom_layer_is_named(tmp_path, suffix):
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    path = _save(keras.Model(inputs, Mystery(name="mystery_layer")(inputs)), tmp_path / f"m{suffix}")
    with pytest.raises(BadInput, match="Mystery"):
        load_keras_model(path)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["cbam", "se"])
def test_trained_raw_op_model_keeps_its_decisions_in_int8(key):
    """The issue's end goal: a tutorial-style model trained on digits, normalized, QAT-calibrated and
    converted, agrees with its float self on >= 98% of the eval split (the float model is the reference)."""
    from edge_attn.data import load_data
    from edge_attn.evaluate.compare import compare
    from edge_attn.qat import qat_finetune
    from edge_attn.training import fit

    data = load_data("digits", input_shape=(8, 8, 1))
    keras.utils.set_random_seed(0)
    model = BUILDERS[key]()
    fit(model, data, epochs=40, learning_rate=1e-2, progress=False)
    qat = quantize_aware(model)
    qat_finetune(qat, data, epochs=1, learning_rate=1e-4, progress=False)
    tflite = convert_model(qat.model, load_recipe("int8-qat"), data.representative(200))
    assert inspect_tflite(tflite).fully_int8
    result = compare(model, tflite, data.x_eval, data.y_eval)
    assert result["reference_top1"] >= 0.9
    assert result["top1_agreement"] >= 0.98
    assert result["output_snr_db"] >= 25


def _digits_as_sequences(path):
    """Real data for the 5-class 1D model: digits 0-4, rows 0, 2, 4, 6 (4×8 pixels) as 16 steps × 2
    channels, in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < 5
    x = (digits.images[keep, ::2, :] / 16.0).reshape(-1, 16, 2).astype("float32")
    np.savez(path, x=x, y=digits.target[keep])
    return str(path)


@pytest.mark.parametrize("key,suffix", [("se", ".h5"), ("cbam", ".keras"), ("pad_shortcut", ".h5"),
                                        ("se_resnet1d", ".keras")])
def test_cli_converts_trained_raw_op_models_to_int8(key, suffix, tmp_path):
    """The issue's acceptance path: a tutorial-style model trained on real data, saved, then
    `edge-attn convert --recipe int8-qat` gives a fully int8 model agreeing with the float one on >= 98%."""
    from edge_attn.cli import main
    from edge_attn.data import load_data
    from edge_attn.training import fit

    keras.utils.set_random_seed(0)
    model = BUILDERS[key]()
    spec = _digits_as_sequences(tmp_path / "seq.npz") if key == "se_resnet1d" else "digits"
    fit(model, load_data(spec, input_shape=tuple(model.input_shape[1:])), epochs=40, learning_rate=1e-2,
        progress=False)
    path = str(_save(model, tmp_path / f"model{suffix}"))
    out = tmp_path / "out"
    argv = ["convert", path, "--recipe", "int8-qat", "--data", spec, "--epochs", "1", "--runs", "3",
            "--out", str(out), "--no-progress"]
    trust = ["--trust-model-code"] if key == "se_resnet1d" else []  # its reshape is a Lambda
    assert main(argv + trust) == 0
    report = json.loads((out / "report.json").read_text())
    acc = report["accuracy"]
    print(f"{key}{suffix}: float {acc['reference_top1']:.4f}, int8 {acc['quantized_top1']:.4f}, agreement "
          f"{acc['agreement_count']}/{acc['samples']}, {acc['output_snr_db']:.1f} dB")
    assert report["fully_int8"] is True
    assert report["rewrites"]
    # it learned (chance is 0.1-0.2), so agreement is not trivially met by a constant prediction
    assert report["accuracy"]["reference_top1"] >= 0.5, report["accuracy"]
    assert report["accuracy"]["top1_agreement"] >= 0.98, report["accuracy"]
