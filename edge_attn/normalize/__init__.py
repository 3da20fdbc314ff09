"""Normalization: make "bring your own" SE/CBAM models written with raw TF ops quantizable.

``normalize(model, trust_model_code=False)`` rewrites ``TFOpLambda`` layers (and, if trusted, plain
``Lambda`` layers) into equivalent Keras/edge_attn layers that tfmot accepts; see
:mod:`edge_attn.normalize.rewrite`. Names are loaded on first use: ``edge_attn.qat.configs`` imports
``ChannelPad`` from here while the rewrite itself imports ``edge_attn.qat``.
"""

__all__ = ["ChannelPad", "describe", "normalize"]


def __getattr__(name):
    if name == "ChannelPad":
        from edge_attn.normalize.channel_pad import ChannelPad

        return ChannelPad
    if name in ("describe", "normalize"):
        from edge_attn.normalize import rewrite

        return getattr(rewrite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
