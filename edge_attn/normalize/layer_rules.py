"""Rules for ordinary Keras layers that tfmot or TFLite's int8 scheme cannot take as they are.

- ``Rescaling`` and ``Normalization`` (preprocessing inside Keras Applications) have no tfmot scheme:
  they are the affine maps ``x * scale + offset`` they compute (:class:`ConstantAffine`).
- ``Dropout`` and its kin are the identity at inference: removed.
- A Conv/Dense with a fused activation TFLite cannot fuse (anything but ReLU/ReLU6), or one whose
  output feeds a BatchNormalization (which then cannot be folded into it), gets its activation split
  into an ``Activation`` layer: the pre-activation tensor then has a range of its own under QAT, as
  it has an int8 tensor of its own in TFLite.
- MobileNetV3's ``relu6(x + 3) * (1/6)`` and ``x * hard_sigmoid(x)`` are fused into
  :class:`HardSigmoid` / :class:`HardSwish` once their parts have been rewritten (a peephole on the
  rebuilt graph).
- A stand-alone BatchNormalization (not foldable into a linear conv before it) on an image becomes the
  1x1 depthwise convolution it computes: per-channel int8 weights instead of TFLite's per-tensor MUL
  constant. A BatchNormalization over another axis than the last has no per-channel lowering: refused.

Each rule is ``rule(layer, name, args, kwargs, consumers)`` returning ``(outputs, "what it became")`` or
None to keep the layer; it raises :class:`Unsupported` with advice.
"""

import numpy as np

from edge_attn import _compat
from edge_attn._keras import keras, tf
from edge_attn.normalize.affine_fold import batch_norm_affine
from edge_attn.normalize.elementwise import ConstantAffine, HardSigmoid, HardSwish
from edge_attn.normalize.op_rules import Unsupported

# TFLite fuses linear/relu/relu6 into CONV_2D/FULLY_CONNECTED, but tfmot's QuantizeAwareActivation refuses a
# fused relu6 ("Only some Keras activations ... are supported"): it is split into a ReLU(6) layer, which
# tfmot quantizes and the converter fuses back.
_FUSABLE_ACTIVATIONS = ("linear", "relu")
_DROPOUT = (keras.layers.Dropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
            keras.layers.GaussianNoise, keras.layers.GaussianDropout, keras.layers.AlphaDropout,
            keras.layers.ActivityRegularization)
_WEIGHTED_WITH_ACTIVATION = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                             keras.layers.Dense)


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def _producer(tensor):
    """(layer, its input tensors) of a symbolic tensor of the graph being rebuilt; (None, []) for inputs."""
    if not _compat.is_symbolic(tensor):
        return None, []
    layer = _compat.producing_layer(tensor)
    if isinstance(layer, keras.layers.InputLayer):
        return None, []
    return layer, list(_compat.producing_node(tensor).keras_inputs)


def _is_affine(layer, scale, offset):
    return (isinstance(layer, ConstantAffine) and layer.scale.size == 1 and layer.offset.size == 1
            and np.isclose(float(layer.scale.reshape(-1)[0]), scale, rtol=1e-6)
            and np.isclose(float(layer.offset.reshape(-1)[0]), offset, rtol=1e-6))


def _is_relu6(layer):
    if isinstance(layer, keras.layers.ReLU):
        return (layer.max_value is not None and float(layer.max_value) == 6.0 and float(layer.threshold) == 0.0
                and float(layer.negative_slope) == 0.0)
    return isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "relu6"


def hard_sigmoid_input(tensor):
    """The ``x`` of ``tensor = relu6(x + 3) * (1/6)`` built from ConstantAffine/ReLU layers, else None."""
    scale, inputs = _producer(tensor)
    if not (_is_affine(scale, 1.0 / 6.0, 0.0) and len(inputs) == 1):
        return None
    relu, inputs = _producer(inputs[0])
    if not (_is_relu6(relu) and len(inputs) == 1):
        return None
    shift, inputs = _producer(inputs[0])
    if not (_is_affine(shift, 1.0, 3.0) and len(inputs) == 1):
        return None
    return inputs[0]


def fuse_hard_sigmoid(name, tensor):
    """``HardSigmoid(x)`` for ``tensor = relu6(x + 3) * (1/6)``; None when it is not that pattern."""
    x = hard_sigmoid_input(tensor)
    return None if x is None else HardSigmoid(name=name)(x)


def fuse_hard_swish(name, a, b):
    """``HardSwish(x)`` when the product ``a * b`` is ``x * hard_sigmoid(x)``; else None."""
    for x, gate in ((a, b), (b, a)):
        gate_layer, gate_inputs = _producer(gate)
        if isinstance(gate_layer, HardSigmoid) and len(gate_inputs) == 1 and gate_inputs[0] is x:
            return HardSwish(name=name)(x)
    return None


def _rescaling(layer, name, args, kwargs, consumers):
    affine = ConstantAffine(scale=np.asarray(layer.scale, np.float32), offset=np.asarray(layer.offset, np.float32),
                            name=name)
    return affine(args[0]), "ConstantAffine"


def _normalization(layer, name, args, kwargs, consumers):
    x = args[0]
    axes = [a % x.shape.rank for a in layer.axis]
    if layer.invert:
        raise Unsupported("Normalization(invert=True) is not rewritten")
    if axes not in ([], [x.shape.rank - 1]):
        raise Unsupported(f"Normalization over axes {tuple(layer.axis)}: only the last (channel) axis is rewritten")
    mean = np.asarray(layer.mean, np.float32).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(layer.variance, np.float32).reshape(-1)), keras.backend.epsilon())
    return ConstantAffine(scale=1.0 / std, offset=-mean / std, name=name)(x), "ConstantAffine"


def _dropout(layer, name, args, kwargs, consumers):
    return args[0], "(removed)"


def _split_activation(layer, name, args, kwargs, consumers):
    activation = _activation_name(layer)
    if activation in (None, "linear"):
        return None
    feeds_batch_norm = any(isinstance(c, keras.layers.BatchNormalization) for c in consumers)
    if activation in _FUSABLE_ACTIVATIONS and not feeds_batch_norm:
        return None
    config = layer.get_config()
    config["activation"] = "linear"
    linear = type(layer).from_config({**config, "name": f"{name}_linear"})
    out = linear(*args, **kwargs)
    linear.set_weights(layer.get_weights())
    if activation == "relu":
        act = keras.layers.ReLU(name=name)
    elif activation == "relu6":
        act = keras.layers.ReLU(6.0, name=name)
    else:
        act = keras.layers.Activation(layer.activation, name=name)
    return act(out), f"{type(layer).__name__}+{type(act).__name__}"


def _folds_into_producer(batch_norm):
    """tfmot (and TFLite) fold a BN into a linear Conv2D/DepthwiseConv2D/Dense that feeds only it (read on
    the user's graph: the rebuilt one does not know every consumer yet)."""
    calls = _compat.inbound_nodes(batch_norm)
    if len(calls) != 1:
        return False
    producers = tf.nest.flatten(calls[0].inbound_layers)
    producer = producers[0] if len(producers) == 1 else None
    return (isinstance(producer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))
            and _activation_name(producer) == "linear" and len(_compat.outbound_nodes(producer)) == 1)


def _activation_layer(layer, name, args, kwargs, consumers):
    """``Activation("relu6")``: tfmot's QuantizeAwareActivation refuses relu6; ``ReLU(6)`` is the same layer."""
    if _activation_name(layer) != "relu6":
        return None
    return keras.layers.ReLU(6.0, name=name)(*args, **kwargs), "ReLU"


def _batch_norm(layer, name, args, kwargs, consumers):
    x = args[0]
    rank = x.shape.rank
    axes = [a % rank for a in (layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis])]
    if axes != [rank - 1]:
        raise Unsupported(f"BatchNormalization over axis {tuple(layer.axis)}: TFLite's int8 lowering is per "
                          "channel on the last axis; use axis=-1 (channels-last)")
    if rank != 4 or _folds_into_producer(layer):
        return None
    # A stand-alone BN (after a ReLU, an Add, a pooling) is y = x * s + b per channel. TFLite lowers it to
    # MUL + ADD whose constant s is quantized per TENSOR: with s spread over channels (a nearly dead channel
    # has a tiny variance, so a huge s) the small scales lose most of their bits (measured on a tutorial
    # SE-ResNet: 42 -> 31 dB in one BN). A 1x1 depthwise conv computes the same, with per-channel int8 weights.
    scale, offset = batch_norm_affine(layer)
    depthwise = keras.layers.DepthwiseConv2D(1, use_bias=True, name=name)
    out = depthwise(x)
    depthwise.set_weights([scale.reshape(1, 1, -1, 1).astype(np.float32), offset.astype(np.float32)])
    return out, "DepthwiseConv2D(1x1)"


def _multiply(layer, name, args, kwargs, consumers):
    inputs = args[0]
    if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
        fused = fuse_hard_swish(name, *inputs)
        if fused is not None:
            return fused, "HardSwish"
    return None


def rule_for(layer):
    """The rule for ``layer``'s exact class, or None."""
    cls = type(layer)
    if cls is keras.layers.Rescaling:
        return _rescaling
    if cls is keras.layers.Normalization:
        return _normalization
    if cls in _DROPOUT:
        return _dropout
    if cls in _WEIGHTED_WITH_ACTIVATION:
        return _split_activation
    if cls is keras.layers.BatchNormalization:
        return _batch_norm
    if cls is keras.layers.Activation:
        return _activation_layer
    if cls is keras.layers.Multiply:
        return _multiply
    return None
