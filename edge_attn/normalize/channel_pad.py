"""``ChannelPad``: zero channels appended before/after the last axis, as a real (quantizable) layer.

CIFAR ResNets' "option A" shortcut (He et al. 2016, "Deep Residual Learning for Image Recognition",
§4.2) widens the identity path with ``tf.pad`` on the channel axis. Keras' ``ZeroPadding`` layers pad
only spatial axes, so the normalization pass rewrites that ``tf.pad`` into this layer; under
quantization it keeps its input's range (padding adds zeros, which every int8 range contains), and
TFLite runs it as one PAD op.
"""

from edge_attn._keras import keras, tf
from edge_attn.layers._common import check_int


@keras.saving.register_keras_serializable(package="edge_attn")
class ChannelPad(keras.layers.Layer):
    """(N, ..., C) → (N, ..., before + C + after), the new channels zero."""

    def __init__(self, before=0, after=0, **kwargs):
        super().__init__(**kwargs)
        self.before = check_int("before", before, minimum=0)
        self.after = check_int("after", after, minimum=0)

    def call(self, x):
        paddings = [[0, 0]] * (x.shape.rank - 1) + [[self.before, self.after]]
        return tf.pad(x, paddings)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        channels = None if shape[-1] is None else shape[-1] + self.before + self.after
        return shape[:-1].concatenate([channels])

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}
