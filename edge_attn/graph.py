"""Rebuild a functional Keras model node by node, letting a callback replace layers by sub-graphs.

Keras' ``clone_model(clone_function=...)`` can only swap one layer for one layer. The quantize-aware
step needs to swap a composite layer (an SE block) for several primitive layers, so this walks the
functional graph in topological order (:func:`edge_attn._compat.nodes_deepest_first`, as Keras' own
``Functional._run_internal_graph`` does) and calls the layers again on new symbolic tensors.
"""

from edge_attn import _compat
from edge_attn._keras import keras, tf
from edge_attn.errors import BadInput


def _clone_layer(layer, name=None):
    """A fresh copy of ``layer`` (same config, or another name); weights are copied after it is built."""
    config = layer.get_config()
    return layer.__class__.from_config({**config, "name": name} if name else config)


def rebuild(model, replace=None, name=None, unshare=False):
    """Return a new functional model computing what ``model`` computes.

    ``replace(layer, args, kwargs)`` is called for every layer call; it returns the output tensor(s)
    of a replacement sub-graph, or ``None`` to keep the layer (as a fresh copy with copied weights).
    Shared layers (one layer called at several places) keep sharing one copy, unless ``unshare``: then
    every further call gets a copy of its own (same weights, named ``<name>_call<k>``), as TFLite
    duplicates them anyway and each call site needs its own quantization ranges.
    """
    if not _compat.is_functional(model):
        raise BadInput(model.name, "only functional or Sequential Keras models can be rewritten (this is a subclassed model)")
    tensors = {}  # id(original KerasTensor) -> rebuilt tensor
    inputs = []
    for original in model.inputs:
        # The InputLayer's name: a model made by rebuild() has inputs whose tensor ``name`` is None.
        new = keras.Input(type_spec=original.type_spec, name=_compat.producing_layer(original).name)
        tensors[id(original)] = new
        inputs.append(new)
    copies = {}  # id(original layer) -> its fresh copy, so shared layers stay shared
    calls = {}  # id(original layer) -> calls rebuilt so far

    def lookup(value):
        # Symbolic tensors of the original graph are rebuilt; constants pass through.
        return tensors[id(value)] if _compat.is_symbolic(value) else value

    for node in _compat.nodes_deepest_first(model):
        layer = node.layer
        if isinstance(layer, keras.layers.InputLayer):
            continue
        args = tf.nest.map_structure(lookup, node.call_args)
        kwargs = tf.nest.map_structure(lookup, node.call_kwargs)
        outputs = replace(layer, args, kwargs) if replace else None
        if outputs is None:
            copy = copies.get(id(layer))
            calls[id(layer)] = calls.get(id(layer), 0) + 1
            if copy is None or unshare:
                copy = _clone_layer(layer, None if copy is None else f"{layer.name}_call{calls[id(layer)]}")
                copies.setdefault(id(layer), copy)
                outputs = copy(*args, **kwargs)
                copy.set_weights(layer.get_weights())
            else:
                outputs = copy(*args, **kwargs)
        for original, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
            tensors[id(original)] = new
    outputs = tf.nest.map_structure(lambda t: tensors[id(t)], model.outputs)
    return keras.Model(inputs, outputs, name=name or model.name)
