"""Split a convolution (or Dense) over a channel concatenation into one per concatenated input, summed.

``conv(concat([a, b]))`` equals ``conv_a(a) + conv_b(b)`` with the kernel cut along its input-channel axis
(the bias kept once, the activation applied to the sum). Float-identical up to summation order, but not in
int8: TFLite's CONCATENATION takes its inputs at the output's scale, so every input of the concat is
quantized with the range of the widest one. In CBAM's spatial attention (``concat([max_c(x),
mean_c(x)])`` into a 7×7 conv, in nearly every published implementation) the channel max is several
times the channel mean, and the mean kept a few int8 steps: measured on a tutorial CBAM trained on digits,
the mean had a local SNR of 16.6 dB, the weakest layer of the model. The split form has no concatenation,
so each input keeps its own scale and the int8 ADD rescales the two partial sums (edge_attn's own
``SpatialAttention.decompose`` does the same for the zoo).

Applied only where nothing else reads the concatenation (it disappears), on the channels-last axis, to
plain ``Conv1D``/``Conv2D`` (``groups`` 1) and ``Dense``. This runs after :func:`normalize`'s main pass, on
its already rebuilt and unshared model, where every concatenation is a Keras ``Concatenate`` layer and
every layer has one call.
"""

from edge_attn import _compat
from edge_attn._keras import keras
from edge_attn.graph import rebuild

_SPLITTABLE = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Dense)


def _activation(layer, name):
    activation = getattr(layer.activation, "__name__", "linear")
    if activation == "linear":
        return None
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "relu6":
        return keras.layers.ReLU(6.0, name=name)
    return keras.layers.Activation(layer.activation, name=name)


def _splittable_concat(layer):
    """The Concatenate feeding only ``layer`` along the channel axis, if ``layer`` can be split over it."""
    if type(layer) not in _SPLITTABLE or len(_compat.inbound_nodes(layer)) != 1:
        return None
    if getattr(layer, "groups", 1) != 1 or getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    producers = _compat.inbound_nodes(layer)[0].inbound_layers
    concat = producers if isinstance(producers, keras.layers.Layer) else None
    if type(concat) is not keras.layers.Concatenate or len(_compat.outbound_nodes(concat)) != 1:
        return None
    rank = len(concat.output_shape)
    if concat.axis % rank != rank - 1:
        return None
    return concat


def _split(layer, concat_inputs, name):
    """``layer`` applied to ``concat_inputs`` one part each (kernel cut on its input axis), summed."""
    kernel, *bias = layer.get_weights()
    config = {**layer.get_config(), "activation": "linear"}
    partial_sums, start = [], 0
    for index, part in enumerate(concat_inputs):
        width = part.shape[-1]
        piece = type(layer).from_config({**config, "name": f"{name}_part{index}", "use_bias": bool(bias) and not index})
        partial_sums.append(piece(part))
        piece.set_weights([kernel[..., start:start + width, :]] + (bias if bias and not index else []))
        start += width
    activation = _activation(layer, name)
    total = keras.layers.Add(name=f"{name}_sum" if activation else name)(partial_sums)
    return activation(total) if activation else total


def split_concatenated_inputs(model):
    """``(model, rewrite)``: ``model`` with every splittable conv/Dense over a concatenation split (a new model
    only if one was found) and ``{"from": ..., "to": ..., "layers": [names]}`` describing it, or None."""
    targets = {id(layer) for layer in model.layers if _splittable_concat(layer) is not None}
    if not targets:
        return model, None
    split = []

    def replace(layer, args, kwargs):
        if id(layer) not in targets:
            return None
        split.append(layer.name)
        return _split(layer, _compat.producing_node(args[0]).keras_inputs, layer.name)

    rebuilt = rebuild(model, replace)
    kinds = sorted({type(layer).__name__ for layer in model.layers if id(layer) in targets})
    return rebuilt, {"from": "Concatenate+" + "/".join(kinds), "to": "split per input+Add", "layers": split}
