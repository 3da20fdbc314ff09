"""Squeeze-and-Excitation (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018).

    s = mean over the spatial axes of x           (squeeze; per channel)
    g = sigmoid(W2 · relu(W1 · s + b1) + b2)     (excitation; W1: C → C/r, W2: C/r → C)
    y = x * g                                      (channel-wise scale)

The bottleneck width is ``max(min_channels, C // ratio)``; the floor (as in timm) keeps narrow layers
from getting a 1- or 2-unit MLP. Where C // r >= min_channels the parameter count is the published
2·C·C/r + C/r + C (two fully connected layers with biases).
"""

from edge_attn._keras import keras, tf
from edge_attn.layers._common import (
    attention_mlp,
    check_int,
    clone_layer,
    global_pool,
    input_channels,
    reduced_channels,
    require_built,
    spatial_axes,
)


@keras.saving.register_keras_serializable(package="edge_attn")
class SqueezeExcite(keras.layers.Layer):
    """SE block for (N, L, C) or (N, H, W, C) inputs; the output has the input's shape.

    Args:
        ratio: reduction ratio r of the excitation MLP (the paper's default is 16).
        min_channels: floor of the MLP's bottleneck width.

    Sublayers (after build): ``fc1`` (Dense, fused ReLU) and ``fc2`` (Dense), both with biases.
    """

    def __init__(self, ratio=16, min_channels=8, **kwargs):
        super().__init__(**kwargs)
        self.ratio = check_int("ratio", ratio)
        self.min_channels = check_int("min_channels", min_channels)

    def build(self, input_shape):
        channels = input_channels(self, input_shape)
        reduced = reduced_channels(channels, self.ratio, self.min_channels)
        self.fc1, self.fc2 = attention_mlp(channels, reduced, ("fc1", "fc2"))
        super().build(input_shape)

    def call(self, x):
        squeezed = tf.reduce_mean(x, axis=spatial_axes(x), keepdims=True)
        return x * tf.sigmoid(self.fc2(self.fc1(squeezed)))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio, "min_channels": self.min_channels}

    def decompose(self, x):
        """Rebuild this block on ``x`` from primitive Keras layers (same weights); return the output.

        Layers: ``{name}_squeeze`` (global average pool), ``{name}_fc1`` (Dense + ReLU),
        ``{name}_fc2`` (Dense), ``{name}_gate`` (sigmoid), ``{name}_scale`` (Multiply).
        """
        require_built(self)
        prefix = self.name
        squeezed = global_pool("avg", x, f"{prefix}_squeeze")
        hidden = clone_layer(self.fc1, f"{prefix}_fc1", squeezed)
        logits = clone_layer(self.fc2, f"{prefix}_fc2", hidden)
        gate = keras.layers.Activation("sigmoid", name=f"{prefix}_gate")(logits)
        return keras.layers.Multiply(name=f"{prefix}_scale")([x, gate])
