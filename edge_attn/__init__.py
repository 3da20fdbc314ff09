"""edge_attn: make SE/CBAM attention ResNets quantization-aware, convert them to int8 TFLite (LiteRT)
and check the result against the float reference.

Importing the package is cheap: TensorFlow is imported lazily by the modules that need it, through
:mod:`edge_attn._keras` (the one place that selects Keras 2).
"""

__version__ = "0.1.0"


def convert(model, **kwargs):
    """Quantize and convert a Keras model; see :func:`edge_attn.api.convert` (imported on first use)."""
    from edge_attn.api import convert as _convert

    return _convert(model, **kwargs)
