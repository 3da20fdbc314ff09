"""The quantization scheme edge_attn applies: tfmot's default 8-bit scheme with its weight-dropping transform mended.

tfmot 0.8's layout transforms ``LayerReLUQuantize`` / ``LayerReluActivationQuantize`` match a ``Conv2D``,
``DepthwiseConv2D`` or ``Dense`` followed by a separate ``ReLU`` / ``Activation("relu")`` layer (no
BatchNormalization between) and give the producer ``NoOpQuantizeConfig``, so that no fake-quant sits
between the two (TFLite fuses the ReLU into the op). ``NoOpQuantizeConfig`` also drops the producer's
*weight* fake-quant (tensorflow/model-optimization#523): those layers were fine-tuned with float weights
and quantized only by the converter afterwards, the fake-quant model no longer simulated the int8 model,
and QAT could not learn around their weight rounding. That is the common shape of tutorial models
(``Conv2D`` then ``ReLU()``) and of MobileNetV3's squeeze-and-excitation convolutions.

:class:`EdgeAttnScheme` runs tfmot's own transforms and then gives each such producer back its registry
config with the weight quantizer only (no activation or output fake-quant): what tfmot's
``Conv2DBatchNormReLUQuantize`` does for the Conv+BN+ReLU shape.
"""

import tensorflow_model_optimization as tfmot

from edge_attn import _compat
from edge_attn._keras import keras
from edge_attn.qat.configs import NoOpQuantizeConfig

_qk = tfmot.quantization.keras
# The producers tfmot's ReLU transforms match (exact classes, as their LayerPattern names them).
_RELU_FUSED_PRODUCERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


class _KeepWeightQuantizers:
    """A layout transform: tfmot's default one, then weight fake-quant back on the ReLU-fused producers."""

    def __init__(self, default_transform, registry):
        self._default = default_transform
        self._registry = registry

    def apply(self, model, layer_quantize_map):
        # None: the layer was annotated for the registry's default config (not edge_attn's, not the user's).
        defaulted = {name for name, entry in layer_quantize_map.items() if entry.get("quantize_config") is None}
        transformed, layer_quantize_map = self._default.apply(model, layer_quantize_map)
        for layer in transformed.layers:
            entry = layer_quantize_map.get(layer.name)
            if (layer.name in defaulted and type(layer) in _RELU_FUSED_PRODUCERS and entry is not None
                    and isinstance(entry.get("quantize_config"), NoOpQuantizeConfig)):
                entry["quantize_config"] = _compat.weights_only_config(self._registry.get_quantize_config(layer))
        return transformed, layer_quantize_map


class EdgeAttnScheme(_qk.default_8bit.Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme whose layout transform keeps weight fake-quant where tfmot drops it."""

    def get_layout_transformer(self):
        return _KeepWeightQuantizers(super().get_layout_transformer(), self.get_quantize_registry())
