"""Attention layers for ResNet blocks (SE, CBAM and its halves) and a registry to pick one by key.

Importing this package registers every layer with Keras (package "edge_attn"), so a saved ``.keras``
model that uses them loads with ``keras.models.load_model`` and no ``custom_objects``.

The registry follows timm's ``create_attn``: a block calls ``create_attn(key, channels, name=...)``
and applies the returned layer (or nothing, for ``None``) to its last BN output.
"""

from edge_attn._keras import keras
from edge_attn.errors import BadInput
from edge_attn.layers._common import check_int
from edge_attn.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from edge_attn.layers.channel_ops import ChannelMax, ChannelMean
from edge_attn.layers.se import SqueezeExcite

# key → (layer class, preset arguments; keyword arguments given to create_attn override them)
_ATTENTION = {
    "se": (SqueezeExcite, {}),
    "cbam": (CBAM, {}),
    "cbam_tutorial": (CBAM, {"kernel_size": 3, "shared_mlp": False, "residual": True}),
    "ca": (ChannelAttention, {}),
    "sa": (SpatialAttention, {}),
}


def list_attn():
    """The attention keys ``create_attn`` knows."""
    return list(_ATTENTION)


def create_attn(attn, channels, name=None, **kwargs):
    """Make the attention layer for a block with ``channels`` output channels.

    Args:
        attn: a key of ``list_attn()``, a Keras layer class (instantiated with ``kwargs``), or None.
        channels: the block's channel count. Checked here; the layers read it from their input
            when they are built.
        name: the layer's name (Keras picks one if None).
        **kwargs: layer arguments, e.g. ``ratio=8``; they override a key's preset.

    Returns the layer, or None for ``attn=None``. Raises ``BadInput`` for an unknown key and
    ValueError for bad arguments.
    """
    if attn is None:
        return None
    check_int("channels", channels)
    if isinstance(attn, type) and issubclass(attn, keras.layers.Layer):
        layer_class, preset = attn, {}
    elif isinstance(attn, str) and attn in _ATTENTION:
        layer_class, preset = _ATTENTION[attn]
    else:
        raise BadInput("attn", f"unknown attention {attn!r}; known: {', '.join(list_attn())}")
    return layer_class(name=name, **{**preset, **kwargs})


__all__ = [
    "CBAM",
    "ChannelAttention",
    "ChannelMax",
    "ChannelMean",
    "SpatialAttention",
    "SqueezeExcite",
    "create_attn",
    "list_attn",
]
