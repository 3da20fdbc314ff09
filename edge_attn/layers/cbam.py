"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), for (N, L, C) and (N, H, W, C).

    channel attention   Mc = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))        x' = x * Mc
    spatial attention   Ms = sigmoid(conv_k([max_c(x'); mean_c(x')]))          y  = x' * Ms

The pools in Mc are over the spatial axes, those in Ms over the channel axis. The MLP is
Dense(max(min_channels, C // ratio), ReLU) → Dense(C), with biases, shared by both descriptors.
Ms concatenates in the order [max, mean]; the paper writes [AvgPool; MaxPool]. The order only
permutes the conv kernel's two input channels. The conv is k×k (Conv2D) for images and k (Conv1D)
for sequences, 'same' padding, one filter, with bias.

``decompose`` rebuilds each layer from primitive Keras layers for quantization-aware training
(tfmot can only put fake-quant between real layers). Its graph is float-identical to the layer.
"""

from edge_attn._keras import keras, tf
from edge_attn.layers._common import (
    attention_mlp,
    build_sublayer,
    check_bool,
    check_int,
    clone_layer,
    gated_scale,
    global_pool,
    input_channels,
    reduced_channels,
    require_built,
    single_filter_conv,
    spatial_axes,
)
from edge_attn.layers.channel_ops import ChannelMax, ChannelMean


@keras.saving.register_keras_serializable(package="edge_attn")
class ChannelAttention(keras.layers.Layer):
    """CBAM's channel attention: ``x * sigmoid(MLP_avg(avgpool(x)) + MLP_max(maxpool(x)))``.

    Args:
        ratio: reduction ratio r of the MLP (the paper's default is 16).
        min_channels: floor of the MLP's bottleneck width.
        shared_mlp: True (the paper): one MLP for both descriptors, so MLP_avg is MLP_max.
            False: two MLPs with their own weights.

    Sublayers (after build): ``avg_fc1``/``avg_fc2`` and ``max_fc1``/``max_fc2`` (Dense; fc1 has a
    fused ReLU). With a shared MLP the ``max_*`` attributes are the same layers as the ``avg_*`` ones.
    """

    def __init__(self, ratio=16, min_channels=8, shared_mlp=True, **kwargs):
        super().__init__(**kwargs)
        self.ratio = check_int("ratio", ratio)
        self.min_channels = check_int("min_channels", min_channels)
        self.shared_mlp = check_bool("shared_mlp", shared_mlp)

    def build(self, input_shape):
        channels = input_channels(self, input_shape)
        reduced = reduced_channels(channels, self.ratio, self.min_channels)
        if self.shared_mlp:
            self.avg_fc1, self.avg_fc2 = attention_mlp(channels, reduced, ("fc1", "fc2"))
            self.max_fc1, self.max_fc2 = self.avg_fc1, self.avg_fc2
        else:
            self.avg_fc1, self.avg_fc2 = attention_mlp(channels, reduced, ("avg_fc1", "avg_fc2"))
            self.max_fc1, self.max_fc2 = attention_mlp(channels, reduced, ("max_fc1", "max_fc2"))
        super().build(input_shape)

    def call(self, x):
        axes = spatial_axes(x)
        avg_logits = self.avg_fc2(self.avg_fc1(tf.reduce_mean(x, axis=axes, keepdims=True)))
        max_logits = self.max_fc2(self.max_fc1(tf.reduce_max(x, axis=axes, keepdims=True)))
        return x * tf.sigmoid(avg_logits + max_logits)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "ratio": self.ratio,
            "min_channels": self.min_channels,
            "shared_mlp": self.shared_mlp,
        }

    def decompose(self, x):
        """Rebuild this layer on ``x`` from primitive Keras layers (same weights); return the output.

        Layers: ``{name}_avg_pool``, ``{name}_max_pool``, ``{name}_avg_fc1``, ``{name}_avg_fc2``,
        ``{name}_max_fc1``, ``{name}_max_fc2``, ``{name}_sum``, ``{name}_gate``, ``{name}_scale``.
        """
        require_built(self)
        return self._decompose(x, self.name)

    def _decompose(self, x, prefix):
        # A shared MLP becomes two unshared Dense copies with identical weights. Float-identical, but
        # under QAT a shared layer has ONE activation range for the avg path and the ~10x larger max
        # path, which costs the avg path most of its int8 resolution. TFLite duplicates the ops of
        # a shared layer anyway, so the copy costs nothing at deployment.
        logits = []
        for kind, fc1, fc2 in (("avg", self.avg_fc1, self.avg_fc2), ("max", self.max_fc1, self.max_fc2)):
            pooled = global_pool(kind, x, f"{prefix}_{kind}_pool")
            hidden = clone_layer(fc1, f"{prefix}_{kind}_fc1", pooled)
            logits.append(clone_layer(fc2, f"{prefix}_{kind}_fc2", hidden))
        return gated_scale(x, logits, prefix)


@keras.saving.register_keras_serializable(package="edge_attn")
class SpatialAttention(keras.layers.Layer):
    """CBAM's spatial attention: ``x * sigmoid(conv([max_c(x), mean_c(x)]))``, channel order [max, mean].

    Args:
        kernel_size: odd kernel size k of the 'same'-padded conv (k×k for images, k for sequences;
            the paper uses 7).

    Sublayer (after build): ``conv`` (Conv2D or Conv1D, 2 → 1 channels, with bias).
    """

    def __init__(self, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = check_int("kernel_size", kernel_size, odd=True)

    def build(self, input_shape):
        input_channels(self, input_shape)
        shape = tf.TensorShape(input_shape)
        self.conv = single_filter_conv(shape.rank, self.kernel_size, use_bias=True, name="conv")
        build_sublayer(self.conv, shape[:-1].concatenate([2]))
        super().build(input_shape)

    def call(self, x):
        pooled = tf.concat(
            [tf.reduce_max(x, axis=-1, keepdims=True), tf.reduce_mean(x, axis=-1, keepdims=True)], axis=-1
        )
        return x * tf.sigmoid(self.conv(pooled))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}

    def decompose(self, x):
        """Rebuild this layer on ``x`` from primitive Keras layers (same weights); return the output.

        Layers: ``{name}_max`` (ChannelMax), ``{name}_mean`` (ChannelMean), ``{name}_conv_max``,
        ``{name}_conv_mean`` (no bias), ``{name}_sum``, ``{name}_gate``, ``{name}_scale``.
        """
        require_built(self)
        return self._decompose(x, self.name)

    def _decompose(self, x, prefix):
        # conv(concat([max, mean])) == conv_max(max) + conv_mean(mean), with the kernel split along its
        # input-channel axis and the bias kept once. Float-identical, but int8 TFLite makes CONCATENATION
        # and its REDUCE_MAX input share one scale and pushes that range back into the channel-attention
        # multiply, clipping it; the split form has no concat, so nothing forces a shared scale.
        kernel, bias = self.conv.get_weights()
        rank = x.shape.rank
        terms = []
        for channel, (kind, pool_class) in enumerate((("max", ChannelMax), ("mean", ChannelMean))):
            pooled = pool_class(name=f"{prefix}_{kind}")(x)
            use_bias = channel == 0
            conv = single_filter_conv(rank, self.kernel_size, use_bias, f"{prefix}_conv_{kind}")
            terms.append(conv(pooled))
            conv_kernel = kernel[..., channel : channel + 1, :]
            conv.set_weights([conv_kernel, bias] if use_bias else [conv_kernel])
        return gated_scale(x, terms, prefix)


@keras.saving.register_keras_serializable(package="edge_attn")
class CBAM(keras.layers.Layer):
    """CBAM block: channel attention, then spatial attention; optionally plus the block input.

    Args:
        ratio, min_channels, shared_mlp: of the channel attention (see ``ChannelAttention``).
        kernel_size: of the spatial attention's conv (see ``SpatialAttention``).
        residual: False (the paper): y = CBAM(x). True: y = x + CBAM(x).

    ``CBAM()`` is the paper's module (r=16, shared MLP, 7×7 conv). ``create_attn("cbam_tutorial", C)``
    is ``CBAM(kernel_size=3, shared_mlp=False, residual=True)``, the variant common in tutorials,
    which differs from the paper in three ways: separate MLPs (own weights) for the avg and the max
    descriptor, a 3×3 (or 3) spatial conv instead of 7×7, and the block input added back to the
    output (the paper relies on the ResNet block's own shortcut instead).

    Sublayers: ``channel_attention`` (ChannelAttention), ``spatial_attention`` (SpatialAttention).
    """

    def __init__(self, ratio=16, min_channels=8, kernel_size=7, shared_mlp=True, residual=False, **kwargs):
        super().__init__(**kwargs)
        self.channel_attention = ChannelAttention(
            ratio=ratio, min_channels=min_channels, shared_mlp=shared_mlp, name="channel_attention"
        )
        self.spatial_attention = SpatialAttention(kernel_size=kernel_size, name="spatial_attention")
        self.residual = check_bool("residual", residual)

    def build(self, input_shape):
        build_sublayer(self.channel_attention, input_shape)
        build_sublayer(self.spatial_attention, input_shape)
        super().build(input_shape)

    def call(self, x):
        attended = self.spatial_attention(self.channel_attention(x))
        return x + attended if self.residual else attended

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        channel = self.channel_attention
        return {
            **super().get_config(),
            "ratio": channel.ratio,
            "min_channels": channel.min_channels,
            "kernel_size": self.spatial_attention.kernel_size,
            "shared_mlp": channel.shared_mlp,
            "residual": self.residual,
        }

    def decompose(self, x):
        """Rebuild this block on ``x`` from primitive Keras layers (same weights); return the output.

        Layers: those of ``ChannelAttention.decompose`` prefixed ``{name}_ca``, then those of
        ``SpatialAttention.decompose`` prefixed ``{name}_sa``, then ``{name}_residual`` (Add) if residual.
        """
        require_built(self)
        attended = self.channel_attention._decompose(x, f"{self.name}_ca")
        attended = self.spatial_attention._decompose(attended, f"{self.name}_sa")
        if self.residual:
            return keras.layers.Add(name=f"{self.name}_residual")([x, attended])
        return attended
