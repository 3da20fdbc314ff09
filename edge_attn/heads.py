"""Probability heads: models that end in a softmax or sigmoid, as published models do.

Quantization is judged and trained on logits, not on probabilities: a softmax output saturates (most
values 0 or 1), so an SNR over probabilities says little, and a fine-tune that treats probabilities as
logits (``from_logits=True``) trains against the wrong loss. With a head, the QAT fine-tune runs on the
logits model (the head's input) with a logit-matching teacher, the head is put back for conversion (the
app gets probabilities, as from the float model), and the check compares the logits: the Keras model's
head input against the TFLite tensor feeding its final SOFTMAX/LOGISTIC op.
"""

from edge_attn import _compat
from edge_attn._keras import keras

HEADS = ("softmax", "sigmoid")
TFLITE_HEAD_OPS = {"softmax": "SOFTMAX", "sigmoid": "LOGISTIC"}
_PASS_THROUGH_OPS = ("QUANTIZE", "DEQUANTIZE", "RESHAPE")


def _activation_name(layer):
    layer = getattr(layer, "layer", layer)  # through a tfmot QuantizeWrapper
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    activation = getattr(activation, "activation", activation)  # tfmot's QuantizeAwareActivation wraps it
    name = getattr(activation, "__name__", None) or (activation if isinstance(activation, str) else None)
    if name is None and getattr(layer, "symbol", None) in ("nn.softmax", "math.sigmoid", "nn.sigmoid"):
        name = "softmax" if layer.symbol == "nn.softmax" else "sigmoid"
    return name


def output_head(model):
    """"softmax" or "sigmoid" when ``model``'s single output comes out of one, else None."""
    if len(model.outputs) != 1:
        return None
    layer = _compat.producing_layer(model.outputs[0])
    name = _activation_name(layer)
    return name if name in HEADS else None


def split_head(model):
    """``(logits model, head)``: the model up to its softmax/sigmoid (the pre-activation of a fused
    ``Dense(activation="softmax")`` included), sharing its layers; ``(model, None)`` without a head."""
    head = output_head(model)
    if head is None:
        return model, None
    layer = _compat.producing_layer(model.outputs[0])
    layer = getattr(layer, "layer", layer)
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)) or not layer.weights:
        logits = layer.input
    else:  # the activation is fused into a weighted layer: apply a linear copy of it to the same input
        # Same name: the original is not in the logits model, and per-layer error matches TFLite tensors
        # (which carry the original's name) to layers by name.
        config = {**layer.get_config(), "activation": "linear", "name": layer.name}
        linear = type(layer).from_config(config)
        logits = linear(layer.input)
        linear.set_weights(layer.get_weights())
    return keras.Model(model.inputs, logits, name=f"{model.name}_logits"), head


def with_head(model, head, name=None):
    """``model`` (logits) with the ``head`` activation appended, as a new functional model."""
    if head is None:
        return model
    layer = keras.layers.Softmax(name="head_softmax") if head == "softmax" else keras.layers.Activation(
        "sigmoid", name="head_sigmoid")
    return keras.Model(model.inputs, layer(model.outputs[0]), name=name or model.name)


def tflite_logits_tensor(info):
    """Index of the tensor feeding the final SOFTMAX/LOGISTIC of a TFLite model (through QUANTIZE/DEQUANTIZE/
    RESHAPE), or None when its output is not such a head. ``info``: :class:`edge_attn.convert.TFLiteInfo`."""
    producers = {out: op for op in info.ops for out in op.outputs}
    tensor = info.outputs[0].index if len(info.outputs) == 1 else None
    while tensor is not None and tensor in producers:
        op = producers[tensor]
        if op.op in TFLITE_HEAD_OPS.values():
            return op.inputs[0]
        if op.op not in _PASS_THROUGH_OPS:
            return None
        tensor = op.inputs[0]
    return None


def tflite_logits_model(tflite_bytes, info):
    """The same flatbuffer with its logits tensor as the graph output (the head's ops still run), or None
    when the model has no softmax/sigmoid head. The numbers are the deployed model's own int8 logits."""
    from edge_attn.convert.inspect import flatbuffer_utils

    tensor = tflite_logits_tensor(info)
    if tensor is None:
        return None
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    model.subgraphs[0].outputs = [tensor]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
