"""Recognise a trusted ``Lambda`` layer that is a plain reshape, channel/spatial mean or max, sigmoid,
ReLU, multiply, add or concatenate (what published Keras CBAM/SE code writes as Lambdas).

A ``Lambda`` is opaque Python (``lambda t: K.reshape(t, (-1, 1, C))``), so it is recognised by what it
computes, not by what its code looks like: the function is called on random probe inputs of the layer's
input shapes, at two batch sizes, and its output is compared with each candidate Keras layer's result
computed in numpy. Random normal probes make a coincidental match of a different function practically
impossible. This runs the Lambda's code, so it is only done when the user trusts the model's code.
"""

import numpy as np

from edge_attn._keras import keras, tf
from edge_attn.layers import ChannelMax, ChannelMean
from edge_attn.normalize.op_rules import Unsupported

_PROBE_BATCHES = (2, 3)


def _probe_inputs(tensors, batch, rng):
    shapes = [(batch, *t.shape[1:]) for t in tensors]
    if any(None in shape for shape in shapes):
        return None
    return [rng.standard_normal(shape).astype("float32") for shape in shapes]


def _candidates(tensors):
    """(Keras layer factory, numpy reference) pairs for the inputs' arity."""
    if len(tensors) == 1:
        spatial = tuple(range(1, tensors[0].shape.rank - 1))
        pooling = [] if tensors[0].shape.rank not in (3, 4) else [
            (lambda name, out: ChannelMean(name=name), lambda xs, out: xs[0].mean(axis=-1, keepdims=True)),
            (lambda name, out: ChannelMax(name=name), lambda xs, out: xs[0].max(axis=-1, keepdims=True)),
            (lambda name, out: _global_pool(tensors[0], "mean", out, name),
             lambda xs, out: xs[0].mean(axis=spatial, keepdims=out.ndim == xs[0].ndim)),
            (lambda name, out: _global_pool(tensors[0], "max", out, name),
             lambda xs, out: xs[0].max(axis=spatial, keepdims=out.ndim == xs[0].ndim)),
        ]
        return [
            *pooling,
            (lambda name, out: keras.layers.Activation("sigmoid", name=name), lambda xs, out: 1 / (1 + np.exp(-xs[0]))),
            (lambda name, out: keras.layers.ReLU(name=name), lambda xs, out: np.maximum(xs[0], 0)),
            (lambda name, out: keras.layers.Reshape(tuple(out.shape[1:]), name=name),
             lambda xs, out: xs[0].reshape(out.shape) if xs[0].size == out.size else None),
        ]
    return [
        (lambda name, out: keras.layers.Multiply(name=name), lambda xs, out: np.prod(np.broadcast_arrays(*xs), 0)),
        (lambda name, out: keras.layers.Add(name=name), lambda xs, out: np.sum(np.broadcast_arrays(*xs), 0)),
        (lambda name, out: keras.layers.Concatenate(axis=-1, name=name),
         lambda xs, out: np.concatenate(xs, axis=-1) if all(x.shape[:-1] == xs[0].shape[:-1] for x in xs) else None),
    ]


def _global_pool(tensor, kind, out, name):
    rank = tensor.shape.rank
    layers = {("mean", 3): keras.layers.GlobalAveragePooling1D, ("mean", 4): keras.layers.GlobalAveragePooling2D,
              ("max", 3): keras.layers.GlobalMaxPooling1D, ("max", 4): keras.layers.GlobalMaxPooling2D}
    return layers[kind, rank](keepdims=out.ndim == rank, name=name)


def recognise_lambda(layer, args, kwargs, name=None):
    """``([keras layer], inputs)`` computing what ``layer`` computes on ``args`` (the layer called
    ``name``, default the Lambda's); raises ``Unsupported``."""
    inputs = args[0]
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    rng = np.random.default_rng(0)
    probes = [_probe_inputs(tensors, batch, rng) for batch in _PROBE_BATCHES]
    if any(p is None for p in probes) or len(args) > 1 or set(kwargs) - {"mask", "training"}:
        raise Unsupported("only Lambda layers on inputs of known shape, called on their inputs alone, are recognised")
    outputs = []
    for probe in probes:
        try:
            # As tensors: Keras backend functions (K.mean, ...) read ``x.dtype.base_dtype``, which numpy lacks.
            probe_tensors = [tf.constant(p) for p in probe]
            args_for_call = probe_tensors if isinstance(inputs, (list, tuple)) else probe_tensors[:1]
            out = layer.function(*([args_for_call] if isinstance(inputs, (list, tuple)) else args_for_call),
                                 **layer.arguments)
            outputs.append(np.asarray(tf.convert_to_tensor(out)))
        except Exception as error:  # the user's code failing on a probe: not a layer we can recognise
            reason = " ".join(str(error).split())[:160]
            raise Unsupported(f"calling it on a probe input failed ({type(error).__name__}: {reason}); if its code "
                              "uses names from your training script, pass --import MODULE") from error
    for make, reference in _candidates(tensors):
        if all(_matches(reference(probe, out), out) for probe, out in zip(probes, outputs)):
            return [make(name or layer.name, outputs[0])], inputs if isinstance(inputs, (list, tuple)) else tensors[0]
    raise Unsupported("it is not a plain reshape, channel/spatial mean or max, sigmoid, ReLU, multiply, add or "
                      "concatenate; replace it with a Keras layer")


def _matches(expected, actual):
    return expected is not None and expected.shape == actual.shape and np.allclose(expected, actual, atol=1e-6)
