"""Fold the BatchNormalization and ReLU that follow a Conv1D into the Conv1D, before quantization-aware training.

tfmot folds BatchNormalization (and fuses ReLU) only after Conv2D / DepthwiseConv2D / Dense. After a Conv1D
the stand-alone BN gets an output fake-quant of its own, and TFLite's converter then keeps it as an int8 MUL
over the whole feature map, with a RESHAPE pair around each CONV_2D it lowers the Conv1D to (measured on the
zoo's resnet1d_18, int8-qat: 20 MUL and 39 RESHAPE ops; post-training int8 of the same model: no MUL, 9
RESHAPE), and a ReLU after a Conv1D stays a separate RELU op whose input range spends half its codes on
negatives. Folding is exact in inference mode: ``W' = W * g``, ``b' = (b - mean) * g + beta`` with
``g = gamma / sqrt(var + epsilon)``, and ``relu`` becomes the conv's activation, which the converter fuses.

The folded BN's moving statistics are frozen from then on (QAT fine-tunes the folded kernel), as they are
after ``bn_freeze_steps`` for the BNs tfmot keeps.
"""

import numpy as np

from edge_attn import _compat
from edge_attn._keras import keras
from edge_attn.graph import rebuild


def fold_into_conv1d(model):
    """``model`` with every Conv1D → (BatchNormalization) → (ReLU) chain of sole consumers as one Conv1D
    (the conv's name, folded weights, ``relu`` activation where a ReLU was folded); ``model`` itself when
    there is none. Float-identical in inference mode."""
    outputs = {id(tensor) for tensor in model.outputs}
    chains = {}  # id(conv) -> (batch_norm or None, relu or None)
    for layer in model.layers:
        if type(layer) is not keras.layers.Conv1D or _activation_name(layer) != "linear" or _calls(layer) != 1:
            continue
        batch_norm = relu = None
        consumer = _sole_consumer(layer, outputs)
        if _is_channel_batch_norm(consumer):
            batch_norm, consumer = consumer, _sole_consumer(consumer, outputs)
        if _is_plain_relu(consumer):
            relu = consumer
        if batch_norm is not None or relu is not None:
            chains[id(layer)] = (batch_norm, relu)
    if not chains:
        return model
    absorbed = {id(layer) for pair in chains.values() for layer in pair if layer is not None}

    def replace(layer, args, kwargs):
        if id(layer) in absorbed:
            return args[0]  # the folded conv's output stands for the BN's / ReLU's
        if id(layer) in chains:
            return _folded_conv(layer, *chains[id(layer)])(*args, **kwargs)
        return None

    return rebuild(model, replace, name=model.name)


def _folded_conv(conv, batch_norm, relu):
    config = {**conv.get_config(), "use_bias": True, "activation": "relu" if relu is not None else "linear"}
    folded = keras.layers.Conv1D.from_config(config)
    kernel, *rest = conv.get_weights()
    bias = rest[0] if rest else np.zeros(kernel.shape[-1], kernel.dtype)
    if batch_norm is not None:
        gain, shift = _batch_norm_affine(batch_norm)
        kernel, bias = kernel * gain, bias * gain + shift
    folded.build(conv.input_shape)
    folded.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return folded


def _batch_norm_affine(batch_norm):
    """(gain, shift) per channel with batch_norm(x) == x * gain + shift in inference mode."""
    mean, variance = batch_norm.moving_mean.numpy(), batch_norm.moving_variance.numpy()
    gamma = batch_norm.gamma.numpy() if batch_norm.scale else np.ones_like(mean)
    beta = batch_norm.beta.numpy() if batch_norm.center else np.zeros_like(mean)
    gain = gamma / np.sqrt(variance + batch_norm.epsilon)
    return gain, beta - mean * gain


def _calls(layer):
    return len(_compat.inbound_nodes(layer))


def _sole_consumer(layer, model_outputs):
    """The one layer reading ``layer``'s output (called once, on that output alone), or None."""
    consumers = _compat.outbound_nodes(layer)
    if len(consumers) != 1 or id(layer.output) in model_outputs:
        return None
    consumer = consumers[0].layer
    if _calls(consumer) != 1 or len(consumers[0].parent_nodes) != 1:
        return None
    return consumer


def _is_channel_batch_norm(layer):
    axis = getattr(layer, "axis", None)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return type(layer) is keras.layers.BatchNormalization and axes in ([-1], [2])


def _is_plain_relu(layer):
    if type(layer) is keras.layers.ReLU:
        return layer.max_value is None and float(layer.negative_slope) == 0 and float(layer.threshold) == 0
    return type(layer) is keras.layers.Activation and _activation_name(layer) == "relu"


def _activation_name(layer):
    return getattr(getattr(layer, "activation", None), "__name__", None)
