"""QuantizeConfigs for the layers SE and CBAM need that tfmot's default 8-bit registry lacks.

tfmot (tensorflow-model-optimization 0.8) has no config for ``Multiply`` (the attention scale), for
edge_attn's channel pooling layers (CBAM's spatial branch) or for ``Conv1D``/``MaxPooling1D`` (1D
ResNets; max pooling keeps its input's range, as tfmot does for MaxPooling2D, and so does CBAM's channel
max: TFLite's int8 REDUCE_MAX needs equal input and output scales, and a range of its own made the
converter insert a requantizing QUANTIZE over the whole feature map in every CBAM block; average pooling
likewise), and it only
handles ``BatchNormalization`` where it directly follows a Conv2D/Dense. These configs follow the
TFLite int8 scheme (https://www.tensorflow.org/lite/performance/quantization_spec): activations
8-bit asymmetric per tensor, weights 8-bit symmetric.
"""

from edge_attn import _compat
from edge_attn._keras import keras
from tensorflow_model_optimization.quantization.keras import QuantizeConfig, quantizers

from edge_attn.layers import ChannelMax, ChannelMean
from edge_attn.normalize import ChannelPad, ConstantAffine, HardSigmoid, HardSwish


NoOpQuantizeConfig = _compat.noop_quantize_config()


def _activation_quantizer():
    return quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class OutputQuantizeConfig(QuantizeConfig):
    """Quantize only the layer's output: for weightless layers (Multiply, channel pooling, lone BN)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_activation_quantizer()]

    def get_config(self):
        return {}


class ConvWeightsQuantizeConfig(QuantizeConfig):
    """Conv1D: symmetric 8-bit kernel, per tensor, and a quantized activation.

    Per tensor, not per channel as for Conv2D: tfmot's per-channel ``LastValueQuantize`` fails on 3-D
    kernels, and a per-channel fake-quant on the 3-D kernel makes the converter reject the TRANSPOSE it
    inserts when lowering Conv1D to CONV_2D ("mismatched quantized axes").
    """

    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True,
                                                             narrow_range=True))]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, _activation_quantizer())]

    def set_quantize_weights(self, layer, quantize_weights):
        (layer.kernel,) = quantize_weights

    def set_quantize_activations(self, layer, quantize_activations):
        (layer.activation,) = quantize_activations

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


# Layer class -> config factory. Checked before tfmot's own registry; exact classes only.
EDGE_ATTN_CONFIGS = {
    keras.layers.Multiply: OutputQuantizeConfig,
    ChannelMean: OutputQuantizeConfig,
    ChannelMax: NoOpQuantizeConfig,  # REDUCE_MAX int8 needs its input's scale: no requantizing QUANTIZE
    keras.layers.BatchNormalization: OutputQuantizeConfig,
    keras.layers.Conv1D: ConvWeightsQuantizeConfig,
    keras.layers.MaxPooling1D: NoOpQuantizeConfig,
    # AVERAGE_POOL_2D int8 needs equal input and output scales. tfmot gives the pool an output range of its own
    # (narrower: an average spans less than its inputs), and the converter then requantized around it -- in 1D
    # in FRONT of the pool, clipping every input beyond that range (random-model seed 82: the pool's local SNR
    # 19 dB). An average lies inside its inputs' range: it keeps theirs.
    keras.layers.AveragePooling1D: NoOpQuantizeConfig,
    keras.layers.AveragePooling2D: NoOpQuantizeConfig,
    ChannelPad: NoOpQuantizeConfig,  # zero padding keeps its input's range, like tfmot's ZeroPadding2D
    ConstantAffine: OutputQuantizeConfig,  # x * c + d: int8 MUL/ADD with a constant operand
    HardSigmoid: OutputQuantizeConfig,
    HardSwish: OutputQuantizeConfig,  # TFLite HARD_SWISH: int8 in, int8 out
    keras.layers.Subtract: OutputQuantizeConfig,
}

# What quantize_scope needs to deserialize the configs.
CUSTOM_OBJECTS = {cls.__name__: cls for cls in (OutputQuantizeConfig, ConvWeightsQuantizeConfig, NoOpQuantizeConfig)}
