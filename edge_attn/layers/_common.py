"""Helpers shared by the attention layers: argument checks, input-rank checks, and the choice of
the rank-matching Keras primitive (rank 3 = (N, L, C) sequences, rank 4 = (N, H, W, C) images).

Argument errors follow keras-hub: they say what was expected and what was received.
"""

import numbers

from edge_attn._keras import keras, tf


def check_int(name, value, *, minimum=1, odd=False):
    """Return ``value`` if it is an integer >= ``minimum`` (and odd, if asked); else ValueError."""
    valid = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
    if not valid or (odd and value % 2 == 0):
        need = f"an {'odd ' if odd else ''}integer >= {minimum}"
        raise ValueError(f"`{name}` must be {need}. Received: {name}={value!r}")
    return int(value)


def check_bool(name, value):
    """Return ``value`` if it is a bool; else ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value


def input_channels(layer, input_shape):
    """Channel count of a rank-3 or rank-4 channels-last input; ValueError for any other shape."""
    shape = tf.TensorShape(input_shape)
    if shape.rank not in (3, 4) or shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} expects a rank-3 (N, L, C) or rank-4 (N, H, W, C) input with a "
            f"known channel count. Received: input_shape={shape}"
        )
    return int(shape[-1])


def spatial_axes(x):
    """The axes between batch and channels: (1,) for (N, L, C), (1, 2) for (N, H, W, C)."""
    return tuple(range(1, x.shape.rank - 1))


def reduced_channels(channels, ratio, min_channels):
    """Width of the attention MLP's bottleneck: C // ratio, floored at ``min_channels``."""
    return max(min_channels, channels // ratio)


def attention_mlp(channels, reduced, names):
    """The excitation MLP Dense(reduced, ReLU) → Dense(channels), both with biases, built for C inputs.

    The ReLU is fused into the first Dense: float-identical to a separate ReLU layer, and under
    quantization the fake-quant then sits after the ReLU (TFLite fuses it the same way).
    """
    fc1 = keras.layers.Dense(reduced, activation="relu", name=names[0])
    fc2 = keras.layers.Dense(channels, name=names[1])
    build_sublayer(fc1, [None, channels])
    build_sublayer(fc2, [None, reduced])
    return fc1, fc2


def build_sublayer(sublayer, input_shape):
    """Build ``sublayer`` under its own name scope, as ``__call__`` would, so that its weights are
    named "<parent>/<sublayer>/kernel:0" (unique names, which the .h5 format needs)."""
    with tf.name_scope(sublayer.name):
        sublayer.build(tf.TensorShape(input_shape))


def require_built(layer):
    """``decompose`` copies weights, so the layer must have them already."""
    if not layer.built:
        raise ValueError(
            f"{layer.name}: call or build the layer before decompose(); it copies the layer's weights"
        )


def clone_layer(source, name, x):
    """Apply a copy of ``source`` (same config and weights, new ``name``) to ``x``."""
    copy = type(source).from_config({**source.get_config(), "name": name})
    out = copy(x)
    copy.set_weights(source.get_weights())
    return out


def global_pool(kind, x, name):
    """Global average (``kind="avg"``) or max pooling over the spatial axes, keeping them as size 1."""
    rank = x.shape.rank
    layer_class = {
        ("avg", 3): keras.layers.GlobalAveragePooling1D,
        ("avg", 4): keras.layers.GlobalAveragePooling2D,
        ("max", 3): keras.layers.GlobalMaxPooling1D,
        ("max", 4): keras.layers.GlobalMaxPooling2D,
    }[kind, rank]
    return layer_class(keepdims=True, name=name)(x)


def single_filter_conv(rank, kernel_size, use_bias, name):
    """A 'same'-padded one-filter convolution: Conv1D(k) for rank 3, Conv2D(k×k) for rank 4."""
    conv_class = keras.layers.Conv1D if rank == 3 else keras.layers.Conv2D
    return conv_class(1, kernel_size, padding="same", use_bias=use_bias, name=name)


def gated_scale(x, terms, prefix):
    """``x * sigmoid(sum(terms))`` from primitive layers ``{prefix}_sum``, ``{prefix}_gate``, ``{prefix}_scale``."""
    summed = keras.layers.Add(name=f"{prefix}_sum")(terms)
    gate = keras.layers.Activation("sigmoid", name=f"{prefix}_gate")(summed)
    return keras.layers.Multiply(name=f"{prefix}_scale")([x, gate])
