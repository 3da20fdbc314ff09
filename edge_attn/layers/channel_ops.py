"""Primitive channel-pooling layers: the mean and the max over the channel axis (the last one),
keeping it as size 1. Spatial attention (CBAM) pools this way; as real layers rather than raw
``tf.reduce_*`` calls they serialize, and quantization tools can put a QuantizeConfig on them.
"""

from edge_attn._keras import keras, tf


@keras.saving.register_keras_serializable(package="edge_attn")
class ChannelMean(keras.layers.Layer):
    """Mean over the last (channel) axis, keepdims: (N, ..., C) → (N, ..., 1)."""

    def call(self, x):
        return tf.reduce_mean(x, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([1])


@keras.saving.register_keras_serializable(package="edge_attn")
class ChannelMax(keras.layers.Layer):
    """Max over the last (channel) axis, keepdims: (N, ..., C) → (N, ..., 1)."""

    def call(self, x):
        return tf.reduce_max(x, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([1])
