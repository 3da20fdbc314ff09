"""Rewrite raw-TF-op layers of a user's functional model into equivalent, quantizable Keras layers.

SE and CBAM code in tutorials calls ``tf.reduce_mean``, ``tf.nn.sigmoid``, ``x * s``, ``tf.pad`` ... on
symbolic tensors; tf-keras records each call as a ``TFOpLambda`` layer (``layer.symbol`` names the op,
the node keeps the call's arguments), and tfmot refuses those. Each call is bound to its TF function's
signature and, when its arguments make it expressible that way, replaced by the Keras layer(s) computing
the same thing (same float numerics; no weights involved). A ``Lambda`` layer holds arbitrary Python
and is only considered when the user trusts the model's code (:mod:`edge_attn.normalize.lambdas`).
"""

import inspect
from collections import defaultdict

from edge_attn._keras import keras
from edge_attn.errors import BadInput
from edge_attn.layers import ChannelMax, ChannelMean
from edge_attn.normalize.channel_pad import ChannelPad
from edge_attn.normalize.lambdas import recognise_lambda
from edge_attn.qat.graph import rebuild
from tf_keras.src.layers.core.tf_op_layer import TFOpLambda


class Unsupported(Exception):
    """This call cannot be rewritten; the message is the advice shown to the user."""


def _is_tensor(value):
    """A symbolic tensor of the model (constants are plain Python values or eager tensors)."""
    return hasattr(value, "_keras_history")


def _static_ints(value, what):
    """A Python int or list of ints from a constant argument; Unsupported if it is computed from a tensor."""
    if _is_tensor(value) or hasattr(value, "numpy"):
        raise Unsupported(f"{what} is computed at run time; use a constant")
    if isinstance(value, (list, tuple)):
        return [_static_ints(v, what) for v in value]
    if value is None:
        return None
    return int(value)


def _pool_classes(kind, rank):
    pooling = {
        "mean": (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
                 keras.layers.AveragePooling2D, ChannelMean),
        "max": (keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
                keras.layers.MaxPooling2D, ChannelMax),
    }[kind]
    return {"global": pooling[0] if rank == 3 else pooling[1], "window": pooling[2], "channel": pooling[3]}


def _reduce(kind):
    def rewrite(name, call):
        x, keepdims = call["input_tensor"], bool(call.get("keepdims", False))
        rank = x.shape.rank
        if rank not in (3, 4):
            raise Unsupported(f"reduce_{kind} is rewritten for (N, L, C) and (N, H, W, C) inputs only")
        axes = _static_ints(call.get("axis"), "axis")
        if axes is None:
            raise Unsupported(f"reduce_{kind} without an axis reduces the batch too; pass the axes to reduce")
        axes = sorted({a % rank for a in (axes if isinstance(axes, list) else [axes])})
        spatial = list(range(1, rank - 1))
        classes = _pool_classes(kind, rank)
        if axes == spatial:
            return [classes["global"](keepdims=keepdims, name=name)], x
        if axes == [rank - 1]:
            layers = [classes["channel"](name=name)]
            if not keepdims:
                layers.append(keras.layers.Reshape(tuple(x.shape[1:-1]), name=f"{name}_squeeze"))
            return layers, x
        if rank == 4 and len(axes) == 1 and axes[0] in spatial and x.shape[axes[0]] is not None:
            # One spatial axis of an image: a pooling window spanning that axis and 1 on the other.
            window = tuple(x.shape[a] if a == axes[0] else 1 for a in (1, 2))
            layers = [classes["window"](pool_size=window, strides=window, padding="valid", name=name)]
            if not keepdims:
                kept = [x.shape[a] for a in (1, 2, 3) if a != axes[0]]
                layers.append(keras.layers.Reshape(tuple(kept), name=f"{name}_squeeze"))
            return layers, x
        raise Unsupported(f"reduce_{kind} over axes {tuple(axes)} of a rank-{rank} tensor: only the spatial axes "
                          "(global pooling) or the last axis (channel pooling) are rewritten")
    return rewrite


def _activation(make):
    def rewrite(name, call):
        return [make(name)], next(iter(call.values()))
    return rewrite


def _binary(layer_class, verb):
    def rewrite(name, call):
        x, y = list(call.values())[:2]
        if not (_is_tensor(x) and _is_tensor(y)):
            raise Unsupported(f"{verb} with a constant operand; fold the constant into a neighbouring layer "
                              "(e.g. a Dense/Conv bias or kernel) or use a Rescaling layer")
        return [layer_class(name=name)], [x, y]
    return rewrite


def _reshape(name, call):
    x = call["tensor"]
    target = _static_ints(call["shape"], "the target shape")
    if not isinstance(target, list) or not target or target[0] != -1 or target[1:].count(-1) > 1:
        raise Unsupported("reshape is rewritten when the target shape is constant, starts with -1 (the batch) "
                          "and has at most one other -1, e.g. tf.reshape(s, [-1, 1, 1, C])")
    return [keras.layers.Reshape(tuple(target[1:]), name=name)], x


def _concat(name, call):
    values, axis = call["values"], _static_ints(call["axis"], "axis")
    if not all(_is_tensor(v) for v in values):
        raise Unsupported("concat of a constant; only tensors of the model are rewritten")
    if axis % values[0].shape.rank == 0:
        raise Unsupported("concat along the batch axis is not a per-sample layer")
    return [keras.layers.Concatenate(axis=axis, name=name)], list(values)


def _pad(name, call):
    x = call["tensor"]
    rank = x.shape.rank
    paddings = _static_ints(call["paddings"], "paddings")
    mode = str(call.get("mode", "CONSTANT")).upper()
    constant = call.get("constant_values", 0)
    if mode != "CONSTANT" or _is_tensor(constant) or float(constant) != 0.0:
        raise Unsupported("only zero padding (mode='CONSTANT', constant_values=0) is rewritten")
    if rank not in (3, 4) or len(paddings) != rank or paddings[0] != [0, 0]:
        raise Unsupported("pad is rewritten for rank-3/4 tensors without batch padding")
    spatial, channel = paddings[1:-1], paddings[-1]
    layers = []
    if any(any(p) for p in spatial):
        zero_padding = keras.layers.ZeroPadding1D if rank == 3 else keras.layers.ZeroPadding2D
        layers.append(zero_padding(tuple(spatial[0]) if rank == 3 else tuple(map(tuple, spatial)),
                                   name=f"{name}_spatial" if any(channel) else name))
    if any(channel):
        layers.append(ChannelPad(*channel, name=name))
    return layers, x


def _identity(name, call):
    return [], next(iter(call.values()))


def _strided_slice(name, call):
    x, spec = call["tensor"], call["slice_spec"]
    spec = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    rank = x.shape.rank
    if rank not in (3, 4) or len(spec) != rank or not all(isinstance(s, dict) for s in spec):
        raise Unsupported("only x[:, ::s, ::s, :] (a strided subsampling of the spatial axes) is rewritten")
    whole = {"start": None, "stop": None, "step": None}
    steps = []
    for axis, s in enumerate(spec):
        step = s.get("step") or 1
        plain = s.get("start") in (None, 0) and s.get("stop") is None and not _is_tensor(step)
        if not plain or (axis in (0, rank - 1) and s != whole):
            raise Unsupported("only x[:, ::s, ::s, :] (a strided subsampling of the spatial axes) is rewritten")
        if 0 < axis < rank - 1:
            steps.append(int(step))
    if all(step == 1 for step in steps):
        return [], x
    # A 1-wide max pool with stride s picks every s-th element, exactly like the slice (ceil(H/s) outputs).
    pool = keras.layers.MaxPooling1D if rank == 3 else keras.layers.MaxPooling2D
    return [pool(pool_size=1, strides=steps[0] if rank == 3 else tuple(steps), padding="valid", name=name)], x


# TFOpLambda ``symbol`` → rewrite(name, bound call arguments) returning (layers to chain, their input).
_RULES = {
    "math.reduce_mean": _reduce("mean"),
    "math.reduce_max": _reduce("max"),
    "math.sigmoid": _activation(lambda name: keras.layers.Activation("sigmoid", name=name)),
    "nn.sigmoid": _activation(lambda name: keras.layers.Activation("sigmoid", name=name)),
    "math.tanh": _activation(lambda name: keras.layers.Activation("tanh", name=name)),
    "nn.relu": _activation(lambda name: keras.layers.ReLU(name=name)),
    "nn.relu6": _activation(lambda name: keras.layers.ReLU(6.0, name=name)),
    "math.multiply": _binary(keras.layers.Multiply, "multiply"),
    "__operators__.mul": _binary(keras.layers.Multiply, "multiply"),
    "math.add": _binary(keras.layers.Add, "add"),
    "__operators__.add": _binary(keras.layers.Add, "add"),
    "reshape": _reshape,
    "concat": _concat,
    "pad": _pad,
    "compat.v1.pad": _pad,
    "identity": _identity,
    "__operators__.getitem": _strided_slice,
}


def _bind(layer, args, kwargs):
    """The TF function's arguments by parameter name (defaults filled in, ``name`` dropped)."""
    bound = inspect.signature(layer.function).bind(*args, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != "name"}


def _chain(layers, inputs):
    out = inputs
    for layer in layers:
        out = layer(out)
    return out


def describe(layer):
    """``TFOpLambda(math.reduce_mean)``, ``Lambda`` ...: how a layer shows up in rewrites and errors."""
    symbol = getattr(layer, "symbol", None)
    return f"{type(layer).__name__}({symbol})" if symbol else type(layer).__name__


def normalize(model, trust_model_code=False, strict=True):
    """Return ``(model, rewrites)``: ``model`` with its raw-op layers replaced by quantizable Keras layers.

    ``rewrites`` lists ``{"from": "TFOpLambda(math.reduce_mean)", "to": "GlobalAveragePooling2D",
    "layers": [names]}`` per kind of rewrite. A model without ``TFOpLambda``/``Lambda`` layers is returned
    as is. Layers that cannot be rewritten are kept; with ``strict`` they raise one ``BadInput`` listing
    each by name, class and op, with advice. ``Lambda`` layers are rewritten only with
    ``trust_model_code`` (recognising them runs their code).
    """
    if not any(isinstance(layer, (TFOpLambda, keras.layers.Lambda)) for layer in model.layers):
        return model, []
    grouped = defaultdict(list)
    unsupported = []

    def replace(layer, args, kwargs):
        try:
            if isinstance(layer, TFOpLambda):
                rule = _RULES.get(layer.symbol)
                if rule is None:
                    raise Unsupported("no quantizable Keras equivalent is known; replace it with a Keras layer")
                layers, inputs = rule(layer.name, _bind(layer, args, kwargs))
            elif isinstance(layer, keras.layers.Lambda):
                if not trust_model_code:
                    raise Unsupported("Lambda layers hold Python code; pass --trust-model-code to let edge_attn "
                                      "recognise plain reshape/multiply/add/concatenate Lambdas")
                layers, inputs = recognise_lambda(layer, args, kwargs)
            else:
                return None
        except Unsupported as reason:
            unsupported.append((layer, str(reason)))
            return None
        try:
            out = _chain(layers, inputs)
        except ValueError as error:  # a Keras layer refusing the shapes (e.g. non-broadcastable Multiply)
            unsupported.append((layer, f"the Keras equivalent refuses these shapes ({str(error).splitlines()[0]})"))
            return None
        to = "+".join(type(new).__name__ for new in layers) or "(removed)"
        grouped[describe(layer), to].append(layer.name)
        return out

    rebuilt = rebuild(model, replace)
    if unsupported and strict:
        listed = "; ".join(f"{layer.name} ({describe(layer)}): {advice}" for layer, advice in unsupported)
        raise BadInput(model.name, f"has layers that cannot be made quantization-aware: {listed}")
    rewrites = [{"from": source, "to": to, "layers": names} for (source, to), names in grouped.items()]
    return rebuilt, rewrites
