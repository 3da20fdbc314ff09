"""Quantization-aware training for SE/CBAM models (tfmot + edge_attn QuantizeConfigs)."""

from edge_attn.qat.calibrate import calibrate_ranges
from edge_attn.qat.finetune import qat_finetune
from edge_attn.qat.wrap import QuantizeAware, lower_attention, quantize_aware

__all__ = ["QuantizeAware", "calibrate_ranges", "lower_attention", "qat_finetune", "quantize_aware"]
