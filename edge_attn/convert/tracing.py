"""A Keras model traced for conversion: its forward pass as a concrete function with a fixed batch.

Fixing the batch folds squeeze-and-excitation's Reshape/Shape ops into constants. Also: whether the traced
graph holds fake-quant ops (a tfmot quantize-aware model), and a TFLite converter for the traced function.
"""

import itertools

from edge_attn._keras import tf
from edge_attn.errors import BadInput

# The op types TFLite's converter itself treats as "this model was quantization-aware trained".
_FAKE_QUANT_OPS = frozenset({
    "FakeQuantWithMinMaxVars",
    "FakeQuantWithMinMaxVarsPerChannel",
    "FakeQuantWithMinMaxArgs",
    "QuantizeAndDequantizeV2",
    "QuantizeAndDequantizeV3",
})


def is_quantize_aware(model, recipe):
    """Whether ``model`` traced as ``recipe`` converts it holds fake-quant ops (a tfmot QAT model)."""
    return _has_fake_quant(_trace(model, recipe.batch_size, f"model {model.name!r}"))


def new_converter(function):
    """A TFLite converter for a traced model (:func:`trace`)."""
    return tf.lite.TFLiteConverter.from_concrete_functions([function])


def trace(model, recipe, what):
    """The model's forward pass with the recipe's fixed batch, as conversion traces it."""
    return _trace(model, recipe.batch_size, what)


def _trace(model, batch_size, what):
    """The model's forward pass as a concrete function with a fixed batch dimension."""
    if len(model.inputs) != 1:
        raise BadInput(what, f"expected a single-input model, got {len(model.inputs)} inputs")
    shape = [batch_size, *model.inputs[0].shape[1:]]
    if any(dim is None for dim in shape):
        raise BadInput(what, f"input shape {tuple(model.inputs[0].shape)} has unknown dimensions; a fixed input "
                             "shape is needed for conversion")
    spec = tf.TensorSpec(shape, model.inputs[0].dtype)
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def _has_fake_quant(function):
    graph_def = function.graph.as_graph_def()
    nodes = itertools.chain(graph_def.node, (n for f in graph_def.library.function for n in f.node_def))
    return any(node.op in _FAKE_QUANT_OPS for node in nodes)
