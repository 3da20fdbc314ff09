"""A conv or Dense over a channel concatenation is split into one per input (``normalize.concat_split``).

References: the user's model itself, executed by Keras with its Concatenate (outputs within 1e-5 of the
normalized model), and the real converter's flatbuffer (no CONCATENATION left, each former concat input
quantized at its own scale, a better int8 output than the converter gives the concatenated form).
Generated models mix the variants a user writes: Conv2D / Conv1D / Dense consumers, kernel sizes, strides,
dilations, padding, bias or not, fused activations (linear, relu, relu6, sigmoid, swish), two or three
inputs of different widths, ``Concatenate`` / ``concatenate`` / ``tf.concat`` (raw op) / a ``Lambda`` on axis -1 or the
positive channel axis. Cases that must stay as written: a concat read by a second layer, a concat over a
spatial axis, grouped / depthwise / separable / transposed convs.
"""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edge_attn._keras import keras, tf
from edge_attn.convert import convert_model, load_recipe
from edge_attn.normalize import normalize
from litert_reference import run_on_float_samples, snr_db
from model_generator import normal_samples, randomize_weights

L = keras.layers
ACTIVATIONS = [None, "relu", "relu6", "sigmoid", "swish"]


def _concat(parts, rng, rank):
    form = rng.integers(4)
    axis = -1 if rng.integers(2) else rank - 1
    if form == 0:
        return L.Concatenate(axis=axis)(parts)
    if form == 1:
        return L.concatenate(parts, axis=axis)
    if form == 2:
        return tf.concat(parts, axis)
    return L.Lambda(lambda tensors: keras.backend.concatenate(tensors, axis=axis))(parts)


def _parts(x, rng, rank):
    """Two or three tensors of different widths and magnitudes from ``x`` (channel max/mean, small convs)."""
    conv = L.Conv2D if rank == 4 else L.Conv1D
    parts = [tf.reduce_max(x, axis=-1, keepdims=True), tf.reduce_mean(x, axis=-1, keepdims=True)]
    if rng.integers(2):
        parts.append(conv(int(rng.integers(1, 4)), 1, activation="relu")(x))
    order = rng.permutation(len(parts))
    return [parts[i] for i in order]


def generated_model(seed):
    """A seeded model whose one conv/Dense reads a channel concatenation; returns (model, consumer name)."""
    rng = np.random.default_rng(seed)
    kind = ["conv2d", "conv1d", "dense", "dense_on_vectors"][seed % 4]
    rank = 3 if kind == "conv1d" else 4
    shape = (12, 4) if rank == 3 else (10, 9, 4)
    inputs = keras.Input(shape)
    x = (L.Conv2D if rank == 4 else L.Conv1D)(6, 3, padding="same")(inputs)
    parts = _parts(x, rng, rank)
    if kind == "dense_on_vectors":
        parts = [L.GlobalAveragePooling2D()(p) for p in parts]
    joined = _concat(parts, rng, 2 if kind == "dense_on_vectors" else rank)
    activation = ACTIVATIONS[rng.integers(len(ACTIVATIONS))]
    use_bias = bool(rng.integers(2))
    filters = int(rng.integers(1, 4))
    if kind in ("dense", "dense_on_vectors"):
        consumer = L.Dense(filters, activation=activation, use_bias=use_bias, name="consumer")
    else:
        strides = int(rng.integers(1, 3))
        dilation = 1 if strides > 1 else int(rng.integers(1, 3))
        consumer = (L.Conv2D if rank == 4 else L.Conv1D)(
            filters, int(rng.choice([1, 3, 7])), strides=strides, dilation_rate=dilation,
            padding=str(rng.choice(["same", "valid"])), activation=activation, use_bias=use_bias, name="consumer")
    y = consumer(joined)
    if kind != "dense_on_vectors":
        y = (L.GlobalAveragePooling2D() if rank == 4 else L.GlobalAveragePooling1D())(y)
    model = keras.Model(inputs, L.Dense(3)(y), name=f"concat_{kind}_{seed}")
    randomize_weights(model, rng)
    return model


def _concats(model):
    return [layer for layer in model.layers if isinstance(layer, L.Concatenate)]


SEEDS = range(16)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_concat_consumer_is_split_float_identically(seed):
    model = generated_model(seed)
    normalized, rewrites = normalize(model, trust_model_code=True)
    x = normal_samples(model)
    np.testing.assert_allclose(normalized(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    assert not _concats(normalized), [layer.name for layer in normalized.layers]
    split = [r for r in rewrites if r["to"] == "split per input+Add"]
    assert len(split) == 1 and len(split[0]["layers"]) == 1, rewrites
    parts = [layer for layer in normalized.layers if "_part" in layer.name]
    assert len(parts) in (2, 3) and sum(bool(p.use_bias) for p in parts) <= 1


def _spatial_attention_model(read_twice=False, concat_axis=-1, consumer="conv"):
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled = L.Concatenate(axis=concat_axis)([tf.reduce_max(x, axis=-1, keepdims=True),
                                              tf.reduce_mean(x, axis=-1, keepdims=True)])
    if consumer == "conv":
        gate = L.Conv2D(1, 7, padding="same", activation="sigmoid")(pooled)
    elif consumer == "grouped":
        gate = L.Conv2D(2, 3, padding="same", groups=2, activation="sigmoid")(pooled)
    elif consumer == "depthwise":
        gate = L.DepthwiseConv2D(3, padding="same", activation="sigmoid")(pooled)
    elif consumer == "separable":
        gate = L.SeparableConv2D(1, 3, padding="same", activation="sigmoid")(pooled)
    else:
        gate = L.Conv2DTranspose(1, 3, padding="same", activation="sigmoid")(pooled)
    if gate.shape[-1] != 1:
        gate = L.Conv2D(1, 1)(gate)
    if concat_axis != -1:
        gate = L.Cropping2D(((0, 12), (0, 0)))(gate)  # back to 12×12 after concatenating rows
    y = x * gate
    if read_twice:
        y = L.Concatenate()([y, pooled])
    y = L.GlobalAveragePooling2D()(y)
    model = keras.Model(inputs, L.Dense(3)(y), name="spatial_attention")
    randomize_weights(model, np.random.default_rng(7))
    return model


@pytest.mark.parametrize("case", [dict(read_twice=True), dict(concat_axis=1), dict(consumer="grouped"),
                                  dict(consumer="depthwise"), dict(consumer="separable"),
                                  dict(consumer="transposed")],
                         ids=["read-twice", "spatial-axis", "grouped", "depthwise", "separable", "transposed"])
def test_concats_that_cannot_be_split_are_kept(case):
    model = _spatial_attention_model(**case)
    normalized, rewrites = normalize(model)
    assert len(_concats(normalized)) == len(_concats(model)), rewrites
    assert not [r for r in rewrites if r["to"] == "split per input+Add"]
    x = normal_samples(model, n=4)
    np.testing.assert_allclose(normalized(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def _int8(model, x):
    """(flatbuffer, {op name: [ops]}, {tensor index: details}) of ``model`` converted int8 post-training."""
    tflite = convert_model(model, load_recipe("int8-ptq"), [s[None] for s in x])
    interpreter = Interpreter(model_content=tflite)
    ops = {}
    for op in interpreter._get_ops_details():
        ops.setdefault(op["op_name"], []).append(op)
    return tflite, ops, {t["index"]: t for t in interpreter.get_tensor_details()}


def _scale(tensors, index):
    return tensors[index]["quantization_parameters"]["scales"][0]


def test_split_gives_each_input_its_own_int8_scale_and_a_better_output():
    """The premise and the point: the converter makes the channel mean share the channel max's scale when they
    are concatenated; split, the mean keeps its own (finer) scale and the int8 spatial-attention logits (the
    model's output here) track float better."""
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled = L.Concatenate()([tf.reduce_max(x, axis=-1, keepdims=True), tf.reduce_mean(x, axis=-1, keepdims=True)])
    model = keras.Model(inputs, L.Conv2D(1, 7, padding="same")(pooled), name="spatial_attention_logits")
    randomize_weights(model, np.random.default_rng(7))
    spatial = model.layers[-1]
    kernel, bias = spatial.get_weights()
    # A conv that leans on the mean (trained CBAMs can). With the random kernel as it is (both inputs weighted
    # alike) the split measured 33.4 vs 33.6 dB: the mean's coarser step is then lost in the other errors;
    # weighted x4 / x8 / x16 it measured +1.5 / +3.5 / +3.3 dB.
    kernel[:, :, 1] *= 8
    spatial.set_weights([kernel, bias])
    normalized, _ = normalize(model)
    x = normal_samples(model, n=64, seed=3)
    held_out = normal_samples(model, n=64, seed=4)
    reference = model(held_out).numpy()

    as_written, ops, tensors = _int8(model, x)
    shared_scale = _scale(tensors, ops["CONCATENATION"][0]["outputs"][0])
    split, ops, tensors = _int8(normalized, x)
    assert "CONCATENATION" not in ops
    (channel_mean,) = [op["outputs"][0] for op in ops["MEAN"]]
    own_scale = _scale(tensors, channel_mean)
    assert own_scale < 0.5 * shared_scale, (own_scale, shared_scale)
    split_snr = snr_db(reference, run_on_float_samples(split, held_out))
    written_snr = snr_db(reference, run_on_float_samples(as_written, held_out))
    assert split_snr > written_snr + 2, (split_snr, written_snr)
