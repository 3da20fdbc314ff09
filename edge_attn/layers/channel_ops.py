"""Primitive channel-pooling layers: the mean and the max over the channel axis (the last one),
keeping it as size 1. Spatial attention (CBAM) pools this way; as real layers rather than raw
``tf.reduce_*`` calls they serialize, and quantization tools can put a QuantizeConfig on them.
"""

from edge_attn._keras import keras, tf


class _ChannelReduction(keras.layers.Layer):
    """A reduction over the last (channel) axis, keepdims: (N, ..., C) → (N, ..., 1)."""

    reduce = None  # tf.reduce_mean, tf.reduce_max

    def call(self, x):
        return type(self).reduce(x, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([1])


@keras.saving.register_keras_serializable(package="edge_attn")
class ChannelMean(_ChannelReduction):
    """Mean over the last (channel) axis, keepdims: (N, ..., C) → (N, ..., 1)."""

    reduce = staticmethod(tf.reduce_mean)


@keras.saving.register_keras_serializable(package="edge_attn")
class ChannelMax(_ChannelReduction):
    """Max over the last (channel) axis, keepdims: (N, ..., C) → (N, ..., 1)."""

    reduce = staticmethod(tf.reduce_max)
