"""Normalization: make "bring your own" SE/CBAM models quantizable, float-identically.

``normalize(model, trust_model_code=False)`` rewrites ``TFOpLambda`` layers (and, if trusted, plain
``Lambda`` layers), preprocessing layers and patterns tfmot cannot take into equivalent Keras/edge_attn
layers; see :mod:`edge_attn.normalize.rewrite`.
"""

from edge_attn.normalize.channel_pad import ChannelPad
from edge_attn.normalize.elementwise import ConstantAffine, HardSigmoid, HardSwish
from edge_attn.normalize.rewrite import describe, normalize

__all__ = ["ChannelPad", "ConstantAffine", "HardSigmoid", "HardSwish", "describe", "normalize"]
