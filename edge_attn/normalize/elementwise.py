"""Element-wise layers the normalization pass introduces: constant arithmetic and hard activations.

Models people write (and Keras Applications) compute ``x + 3.0``, ``x * (1 / 6)``, ``x / 255``,
``1 - x``, ``Rescaling`` and ``Normalization`` with constants; tf-keras records the raw ones as
``TFOpLambda`` layers, which tfmot refuses, and tfmot has no int8 scheme for the two preprocessing
layers. Each becomes a :class:`ConstantAffine` (``x * scale + offset`` with a scalar or per-channel
constant): a real layer with a quantized output, which TFLite runs as int8 MUL and/or ADD with a
constant operand.

MobileNetV3's hard-sigmoid ``relu6(x + 3) / 6`` and hard-swish ``x * relu6(x + 3) / 6`` become
:class:`HardSigmoid` and :class:`HardSwish`: one quantized output each instead of three or four
fake-quant points, and the converter maps the hard-swish pattern to TFLite's HARD_SWISH op.
"""

import numpy as np

from edge_attn._keras import keras, tf


@keras.saving.register_keras_serializable(package="edge_attn")
class ConstantAffine(keras.layers.Layer):
    """``x * scale + offset``: scale and offset scalars or vectors over the last axis (per channel)."""

    def __init__(self, scale=1.0, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = np.asarray(scale, np.float32)
        self.offset = np.asarray(offset, np.float32)
        for what, array in (("scale", self.scale), ("offset", self.offset)):
            if array.ndim > 1 or not np.all(np.isfinite(array)):
                raise ValueError(f"ConstantAffine {what} must be a finite scalar or a per-channel vector; "
                                 f"Received: shape {array.shape}")

    def build(self, input_shape):
        channels = tf.TensorShape(input_shape)[-1]
        for what, array in (("scale", self.scale), ("offset", self.offset)):
            if array.ndim == 1 and channels is not None and array.shape[0] not in (1, channels):
                raise ValueError(f"ConstantAffine {what} has {array.shape[0]} values for {channels} channels")
        super().build(input_shape)

    def call(self, x):
        # Identity halves are left out, so TFLite gets exactly one MUL or ADD where only one is needed.
        if not np.all(self.scale == 1.0):
            x = x * tf.constant(self.scale, x.dtype)
        if not np.all(self.offset == 0.0):
            x = x + tf.constant(self.offset, x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale.tolist(), "offset": self.offset.tolist()}


@keras.saving.register_keras_serializable(package="edge_attn")
class HardSigmoid(keras.layers.Layer):
    """``relu6(x + 3) / 6`` (Howard et al. 2019, "Searching for MobileNetV3", eq. 2)."""

    def call(self, x):
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)


@keras.saving.register_keras_serializable(package="edge_attn")
class HardSwish(keras.layers.Layer):
    """``x * relu6(x + 3) / 6`` (MobileNetV3's h-swish); TFLite's HARD_SWISH."""

    def call(self, x):
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)
