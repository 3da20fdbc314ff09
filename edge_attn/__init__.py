"""edge_attn: make SE/CBAM attention ResNets quantization-aware, convert them to int8 TFLite (LiteRT)
and check the result against the float reference.

Importing the package is cheap: TensorFlow is imported lazily by the modules that need it, through
:mod:`edge_attn._keras` (the one place that selects Keras 2).
"""

from edge_attn.version import __version__

__all__ = ["__version__"]


def __getattr__(name):
    # ``edge_attn.convert(model, ...)``: the convert subpackage is callable (see edge_attn/convert/__init__.py).
    if name == "convert":
        import edge_attn.convert

        return edge_attn.convert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
