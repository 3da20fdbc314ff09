"""Tests of edge_attn.layers against hand-written numpy versions of the paper formulas
(SE: Hu et al. 2018; CBAM: Woo et al. 2018), plus serialization, the registry, argument checks and
the primitive-layer decomposition used for quantization-aware training."""

import functools
import itertools

import numpy as np
import pytest

from edge_attn._keras import keras
from edge_attn.errors import BadInput
from edge_attn.layers import (
    CBAM,
    ChannelAttention,
    ChannelMax,
    ChannelMean,
    SpatialAttention,
    SqueezeExcite,
    create_attn,
    list_attn,
)

CHANNELS = 12
SHAPES = {3: (2, 9, CHANNELS), 4: (2, 5, 6, CHANNELS)}  # (N, L, C) and (N, H, W, C)
SMALL_MLP = {"ratio": 4, "min_channels": 2}  # bottleneck 12 // 4 = 3
CASES = {  # registry key → non-default arguments, so that the tests see them take effect
    "se": SMALL_MLP,
    "ca": SMALL_MLP,
    "sa": {"kernel_size": 5},
    "cbam": SMALL_MLP,
    "cbam_tutorial": SMALL_MLP,
}
PARAMS = [(key, rank) for key in CASES for rank in SHAPES]
PRIMITIVES = (
    keras.layers.InputLayer,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Dense,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    ChannelMean,
    ChannelMax,
)


# ---- numpy reference (the paper formulas, written independently of the layers) ----


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def mlp(v, fc1, fc2):
    """Dense → ReLU → Dense with biases, from the Keras layers' weights."""
    (w1, b1), (w2, b2) = fc1.get_weights(), fc2.get_weights()
    return np.maximum(v @ w1 + b1, 0.0) @ w2 + b2


def conv_same(x, kernel, bias):
    """Direct 'same'-padded, stride-1 cross-correlation (what Keras calls convolution), any rank."""
    size = kernel.shape[0]
    pad = size // 2
    spatial = x.shape[1:-1]
    padded = np.pad(x, [(0, 0)] + [(pad, pad)] * len(spatial) + [(0, 0)])
    out = np.zeros(x.shape[:-1] + (kernel.shape[-1],))
    for offset in itertools.product(range(size), repeat=len(spatial)):
        window = padded[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, spatial))]
        out += window @ kernel[offset]
    return out + bias


def se_reference(x, layer):
    squeezed = x.mean(axis=tuple(range(1, x.ndim - 1)), keepdims=True)
    return x * sigmoid(mlp(squeezed, layer.fc1, layer.fc2))


def channel_attention_reference(x, layer):
    axes = tuple(range(1, x.ndim - 1))
    avg = mlp(x.mean(axis=axes, keepdims=True), layer.avg_fc1, layer.avg_fc2)
    peak = mlp(x.max(axis=axes, keepdims=True), layer.max_fc1, layer.max_fc2)
    return x * sigmoid(avg + peak)


def spatial_attention_reference(x, layer):
    pooled = np.concatenate([x.max(axis=-1, keepdims=True), x.mean(axis=-1, keepdims=True)], axis=-1)
    kernel, bias = layer.conv.get_weights()
    return x * sigmoid(conv_same(pooled, kernel, bias))


def cbam_reference(x, layer):
    attended = channel_attention_reference(x, layer.channel_attention)
    attended = spatial_attention_reference(attended, layer.spatial_attention)
    return x + attended if layer.residual else attended


def reference(x, layer):
    kinds = {
        SqueezeExcite: se_reference,
        ChannelAttention: channel_attention_reference,
        SpatialAttention: spatial_attention_reference,
        CBAM: cbam_reference,
    }
    return kinds[type(layer)](x.astype(np.float64), layer)


# ---- fixtures: one built layer with random weights per (key, rank), made once ----


def random_input(rank, seed=0):
    return np.random.default_rng(seed).normal(size=SHAPES[rank]).astype(np.float32)


@functools.cache
def built_layer(key, rank):
    layer = create_attn(key, CHANNELS, name=f"{key}_{rank}d", **CASES[key])
    layer.build(SHAPES[rank])
    rng = np.random.default_rng(rank)
    for weight in layer.weights:  # random biases too, so that the bias terms are checked
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    return layer


def functional(layer, rank):
    inputs = keras.Input(SHAPES[rank][1:])
    return keras.Model(inputs, layer(inputs))


# ---- the reference itself ----


def test_numpy_conv_reference_on_a_hand_computed_case():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    kernel = np.array([1.0, 0.0, -1.0]).reshape(3, 1, 1)
    # out[i] = x[i-1] - x[i+1] with zero padding
    np.testing.assert_allclose(conv_same(x, kernel, 0.5).ravel(), [-1.5, -1.5, 2.5])


# ---- layers vs. the paper formulas ----


@pytest.mark.parametrize("key, rank", PARAMS)
def test_layer_matches_numpy_formula(key, rank):
    layer = built_layer(key, rank)
    x = random_input(rank)
    out = layer(x).numpy()
    assert out.shape == x.shape
    np.testing.assert_allclose(out, reference(x, layer), atol=1e-5)


def test_channel_pooling_layers():
    x = random_input(4)
    np.testing.assert_allclose(ChannelMean()(x).numpy(), x.mean(axis=-1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(ChannelMax()(x).numpy(), x.max(axis=-1, keepdims=True))


def test_se_parameter_count_matches_published_formula():
    layer = SqueezeExcite(ratio=16)
    layer.build((None, 8, 8, 256))
    assert layer.count_params() == 2 * 256 * 16 + 16 + 256


def test_cbam_parameter_count_shared_and_tutorial():
    channels, reduced = 256, 16
    mlp_params = 2 * channels * reduced + reduced + channels
    paper = CBAM()
    paper.build((None, 8, 8, channels))
    assert paper.count_params() == mlp_params + 2 * 7 * 7 + 1  # one shared MLP, 7×7 conv over 2 maps
    tutorial = create_attn("cbam_tutorial", channels)
    tutorial.build((None, 8, 8, channels))
    assert tutorial.count_params() == 2 * mlp_params + 2 * 3 * 3 + 1  # two MLPs, 3×3 conv
    sequence = CBAM()
    sequence.build((None, 32, channels))
    assert sequence.count_params() == mlp_params + 2 * 7 + 1  # Conv1D, kernel 7


def test_min_channels_floors_the_bottleneck():
    layer = SqueezeExcite(ratio=16, min_channels=8)
    layer.build((None, 4, 4, 32))
    assert layer.fc1.units == 8  # 32 // 16 = 2 is floored at 8


def test_tutorial_preset_has_separate_mlps_and_residual():
    layer = built_layer("cbam_tutorial", 4)
    channel = layer.channel_attention
    assert channel.avg_fc1 is not channel.max_fc1
    assert layer.spatial_attention.kernel_size == 3 and layer.residual
    shared = built_layer("cbam", 4).channel_attention
    assert shared.avg_fc1 is shared.max_fc1


# ---- serialization ----


@pytest.mark.parametrize("key, rank", PARAMS)
def test_get_config_round_trip(key, rank):
    layer = built_layer(key, rank)
    copy = type(layer).from_config(layer.get_config())
    copy.build(SHAPES[rank])
    copy.set_weights(layer.get_weights())
    assert copy.get_config() == layer.get_config()
    x = random_input(rank, seed=1)
    np.testing.assert_array_equal(copy(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("key, rank", PARAMS)
def test_keras_file_round_trip(key, rank, tmp_path):
    model = functional(built_layer(key, rank), rank)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the layers are registered
    assert type(loaded.layers[1]) is type(model.layers[1])
    x = random_input(rank, seed=2)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_h5_round_trip(tmp_path):
    model = functional(built_layer("cbam_tutorial", 4), 4)
    path = tmp_path / "m.h5"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = random_input(4, seed=3)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


# ---- registry ----


def test_list_attn():
    assert set(list_attn()) == {"se", "cbam", "cbam_tutorial", "ca", "sa"}


def test_create_attn():
    assert create_attn(None, 64) is None
    layer = create_attn("se", 64, name="block1_se", ratio=8)
    assert isinstance(layer, SqueezeExcite) and layer.name == "block1_se" and layer.ratio == 8
    assert isinstance(create_attn(CBAM, 64, kernel_size=5), CBAM)
    tutorial = create_attn("cbam_tutorial", 64, kernel_size=5).get_config()  # kwargs override the preset
    assert (tutorial["kernel_size"], tutorial["shared_mlp"], tutorial["residual"]) == (5, False, True)
    paper = create_attn("cbam", 64).get_config()
    assert [paper[k] for k in ("ratio", "kernel_size", "shared_mlp", "residual")] == [16, 7, True, False]


@pytest.mark.parametrize("key", ["nope", "SE", 3])
def test_create_attn_unknown_key(key):
    with pytest.raises(BadInput) as caught:
        create_attn(key, 64)
    assert caught.value.what == "attn"
    assert f"unknown attention {key!r}" in caught.value.problem and "cbam_tutorial" in caught.value.problem


# ---- argument checks ----


@pytest.mark.parametrize(
    "make, received",
    [
        (lambda: SqueezeExcite(ratio=0), "ratio=0"),
        (lambda: SqueezeExcite(ratio=2.5), "ratio=2.5"),
        (lambda: SqueezeExcite(min_channels=0), "min_channels=0"),
        (lambda: ChannelAttention(ratio=-1), "ratio=-1"),
        (lambda: ChannelAttention(shared_mlp="yes"), "shared_mlp='yes'"),
        (lambda: SpatialAttention(kernel_size=4), "kernel_size=4"),
        (lambda: SpatialAttention(kernel_size=0), "kernel_size=0"),
        (lambda: CBAM(kernel_size=2), "kernel_size=2"),
        (lambda: CBAM(residual=1), "residual=1"),
        (lambda: create_attn("se", 0), "channels=0"),
    ],
)
def test_bad_arguments(make, received):
    with pytest.raises(ValueError, match=f"Received: {received}"):
        make()


@pytest.mark.parametrize("layer_class", [SqueezeExcite, ChannelAttention, SpatialAttention, CBAM])
def test_bad_input_rank(layer_class):
    with pytest.raises(ValueError, match="rank-3"):
        layer_class().build((None, 16))


# ---- decomposition into primitive layers (for quantization-aware training) ----


@functools.cache
def decomposed(key, rank):
    layer = built_layer(key, rank)
    inputs = keras.Input(SHAPES[rank][1:])
    return keras.Model(inputs, layer.decompose(inputs))


@pytest.mark.parametrize("key, rank", PARAMS)
def test_decompose_is_equivalent_and_primitive(key, rank):
    layer = built_layer(key, rank)
    model = decomposed(key, rank)
    x = random_input(rank, seed=4)
    assert np.abs(model(x).numpy() - layer(x).numpy()).max() <= 1e-5
    for sublayer in model.layers[1:]:
        assert isinstance(sublayer, PRIMITIVES), sublayer
        assert sublayer.name.startswith(layer.name + "_") and "/" not in sublayer.name


@pytest.mark.parametrize("rank", SHAPES)
def test_decompose_unshares_the_mlp(rank):
    model = decomposed("cbam", rank)
    for fc in ("fc1", "fc2"):
        avg = model.get_layer(f"cbam_{rank}d_ca_avg_{fc}")
        peak = model.get_layer(f"cbam_{rank}d_ca_max_{fc}")
        assert avg is not peak
        for a, b in zip(avg.get_weights(), peak.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rank", SHAPES)
def test_decompose_splits_the_spatial_conv(rank):
    model = decomposed("sa", rank)
    assert not any(isinstance(sublayer, keras.layers.Concatenate) for sublayer in model.layers)
    kernel, bias = built_layer("sa", rank).conv.get_weights()
    conv_max = model.get_layer(f"sa_{rank}d_conv_max")
    conv_mean = model.get_layer(f"sa_{rank}d_conv_mean")
    np.testing.assert_array_equal(conv_max.kernel.numpy(), kernel[..., :1, :])
    np.testing.assert_array_equal(conv_mean.kernel.numpy(), kernel[..., 1:, :])
    assert conv_max.bias.numpy() == bias and conv_mean.bias is None


def test_decompose_needs_a_built_layer():
    with pytest.raises(ValueError, match="build"):
        SqueezeExcite().decompose(keras.Input((4, 4, 16)))
