"""Fold a stand-alone per-channel affine into the linear layer after it, where that is exact.

A BatchNormalization that no linear conv before it can absorb (after a fused activation, an Add, a pooling)
computes ``y = x * s + b`` per channel, and int8 TFLite then stores ``y`` as a tensor of its own: one
per-tensor range over channels whose ``s`` differ, so the small channels keep few int8 steps (a 1x1
DepthwiseConv2D, which :mod:`edge_attn.normalize.layer_rules` makes of it on images, gives the weights
per-channel scales, not the output). When the affine's only reader is a linear layer -- a Dense, or a
convolution that never reads padding -- ``W @ (x * s + b) = (W * s) @ x + W @ b`` is exact: the affine goes
into that layer's kernel and bias and its output tensor, with its rounding, disappears.

Between the affine and that layer there may be layers that commute with a per-channel affine: average
pooling of any kind (a mean of ``x * s + b`` is the mean of ``x`` times ``s`` plus ``b``), ``Flatten``
(channels-last: ``s`` tiled over the positions), a channel padding (``s = 1``, ``b = 0`` on the zero channels)
and max pooling when every ``s`` is positive.

Not folded (kept as they are): a convolution with ``same`` padding and a kernel wider than 1 (its border
windows read zeros, where the affine would have put ``b``), a grouped or channels-first conv, an affine read
by anything else or that is a model output, a BatchNormalization that folds into the linear conv before it
(tfmot and TFLite fold that one already). Runs after :func:`normalize`'s main pass, on the rebuilt and
unshared model.
"""

import numpy as np

from edge_attn import _compat
from edge_attn._keras import keras
from edge_attn.graph import rebuild
from edge_attn.normalize.channel_pad import ChannelPad

_COMMUTING = (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
              keras.layers.AveragePooling1D, keras.layers.AveragePooling2D)
_COMMUTING_IF_POSITIVE = (keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
                          keras.layers.MaxPooling1D, keras.layers.MaxPooling2D)
_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
# tfmot folds a BN into a linear Conv2D/DepthwiseConv2D/Dense before it, edge_attn's qat.conv1d_fold into a Conv1D.
_FOLDS_BACKWARD_INTO = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _only_call(layer):
    nodes = _compat.inbound_nodes(layer)
    return nodes[0] if len(nodes) == 1 else None


def _single_input(layer):
    node = _only_call(layer)
    if node is None or len(node.keras_inputs) != 1:
        return None
    return node.keras_inputs[0]


def _only_reader(layer, model_outputs):
    """The one layer reading ``layer``'s output, or None (several readers, or a model output)."""
    if _only_call(layer) is None or any(_compat.producing_layer(t) is layer for t in model_outputs):
        return None
    readers = _compat.outbound_nodes(layer)
    return readers[0].layer if len(readers) == 1 else None


def batch_norm_affine(batch_norm):
    """``(s, b)``, float64 per channel: what a BatchNormalization computes in inference mode, ``x * s + b``."""
    gamma = batch_norm.gamma.numpy() if batch_norm.scale else 1.0
    beta = batch_norm.beta.numpy() if batch_norm.center else 0.0
    scale = gamma / np.sqrt(batch_norm.moving_variance.numpy() + batch_norm.epsilon)
    shape = batch_norm.moving_mean.shape
    return (np.broadcast_to(scale, shape).astype(np.float64),
            np.broadcast_to(beta - batch_norm.moving_mean.numpy() * scale, shape).astype(np.float64))


def per_channel_affine(layer):
    """``(s, b)`` when ``layer`` computes ``x * s + b`` over the last axis (a channels-last BatchNormalization
    or a linear, stride-1, 1x1 depthwise conv with depth multiplier 1), else None."""
    if type(layer) is keras.layers.BatchNormalization:
        rank = len(layer.input_shape)
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if [a % rank for a in axes] != [rank - 1]:
            return None
        return batch_norm_affine(layer)
    if (type(layer) is keras.layers.DepthwiseConv2D and tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.strides) == (1, 1) and layer.depth_multiplier == 1
            and layer.data_format == "channels_last" and _activation(layer) == "linear"):
        kernel, *bias = layer.get_weights()
        scale = kernel[0, 0, :, 0].astype(np.float64)
        return scale, (bias[0].astype(np.float64) if bias else np.zeros_like(scale))
    return None


def _activation(layer):
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


def _folds_backward(layer):
    """A BatchNormalization after a linear conv/Dense, which folds into that one instead."""
    if type(layer) is not keras.layers.BatchNormalization:
        return False
    source = _single_input(layer)
    producer = _compat.producing_layer(source) if source is not None else None
    return isinstance(producer, _FOLDS_BACKWARD_INTO) and _activation(producer) == "linear"


def _reads_no_padding(conv):
    if conv.data_format != "channels_last" or getattr(conv, "groups", 1) != 1:
        return False
    return conv.padding == "valid" or all(k == 1 for k in conv.kernel_size)


def _fold_target(layer, scale, offset, model_outputs):
    """``(target, scale, offset)`` when the affine's output reaches a foldable linear layer through commuting
    layers only, each read by the next alone, with ``scale``/``offset`` carried to the target's input; else
    None."""
    current = layer
    while True:
        reader = _only_reader(current, model_outputs)
        if reader is None or _single_input(reader) is None:
            return None
        if type(reader) is keras.layers.Dense or (type(reader) in _CONVS and _reads_no_padding(reader)):
            return reader, scale, offset
        if type(reader) is ChannelPad:  # zero channels: x * 1 + 0 on them
            pad = (reader.before, reader.after)
            scale, offset = np.pad(scale, pad, constant_values=1.0), np.pad(offset, pad)
        elif type(reader) is keras.layers.Flatten:  # channels-last: index = position * C + channel
            positions = int(np.prod(reader.output_shape[1:])) // scale.size
            scale, offset = np.tile(scale, positions), np.tile(offset, positions)
        elif not (type(reader) in _COMMUTING or (type(reader) in _COMMUTING_IF_POSITIVE and np.all(scale > 0))):
            return None
        current = reader


def _folded_weights(target, scale, offset):
    """The target's ``[kernel, bias]`` with ``x * scale + offset`` on its input folded in (float64 sums)."""
    kernel, *bias = target.get_weights()
    kernel64 = kernel.astype(np.float64)
    if isinstance(target, keras.layers.DepthwiseConv2D):  # (kh, kw, C, M); output channel c * M + m
        folded = kernel64 * scale[None, None, :, None]
        shift = (kernel64.sum(axis=(0, 1)) * offset[:, None]).reshape(-1)
    else:  # Dense (C, U), Conv1D (k, C, U), Conv2D (kh, kw, C, U)
        per_input = (1,) * (kernel.ndim - 2) + (-1, 1)
        folded = kernel64 * scale.reshape(per_input)
        shift = (kernel64 * offset.reshape(per_input)).sum(axis=tuple(range(kernel.ndim - 1)))
    new_bias = (bias[0].astype(np.float64) if bias else 0.0) + shift
    return [folded.astype(np.float32), new_bias.astype(np.float32)]


def fold_affines_forward(model):
    """``(model, rewrite)``: ``model`` with each foldable stand-alone affine folded into its reader (a new model
    only if one was found) and ``{"from": ..., "to": ..., "layers": [names]}`` describing it, or None."""
    folds = {}  # id(target) -> (affine layer, scale, offset) with scale/offset tiled to the target's input
    skipped = set()  # id(affine) of each folded affine: rebuilt as the identity
    for layer in model.layers:
        affine = per_channel_affine(layer)
        if affine is None or _folds_backward(layer):
            continue
        found = _fold_target(layer, *affine, model.outputs)
        if found is None:
            continue
        target, scale, offset = found
        folds[id(target)] = (layer, scale, offset)
        skipped.add(id(layer))
    if not folds:
        return model, None
    names = []

    def replace(layer, args, kwargs):
        if id(layer) in skipped:
            return args[0]
        if id(layer) not in folds:
            return None
        affine, scale, offset = folds[id(layer)]
        names.append(affine.name)
        config = {**layer.get_config(), "use_bias": True}
        folded = type(layer).from_config(config)
        out = folded(args[0], **kwargs)
        folded.set_weights(_folded_weights(layer, scale, offset))
        return out

    rebuilt = rebuild(model, replace)
    kinds = sorted({type(layer).__name__ for layer in model.layers if id(layer) in skipped})
    targets = sorted({type(layer).__name__ for layer in model.layers if id(layer) in folds})
    return rebuilt, {"from": "/".join(kinds) + " (stand-alone)", "to": "folded into the next " + "/".join(targets),
                     "layers": names}
