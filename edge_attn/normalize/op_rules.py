"""Rules that turn one ``TFOpLambda`` (a raw TF op called on a symbolic tensor) into Keras layers.

Each rule takes the replacement's name and the call's arguments bound to the TF function's signature,
and returns ``(layers to chain, their input)`` computing the same thing in float, or raises
:class:`Unsupported` with the advice shown to the user. Constant operands (``x + 3``, ``x / 255``,
``1 - x``) become :class:`~edge_attn.normalize.elementwise.ConstantAffine` layers.
"""

import numpy as np

from edge_attn import _compat
from edge_attn._keras import keras
from edge_attn.layers import ChannelMax, ChannelMean
from edge_attn.normalize.channel_pad import ChannelPad
from edge_attn.normalize.elementwise import ConstantAffine


class Unsupported(Exception):
    """This call cannot be rewritten; the message is the advice shown to the user."""


def _is_tensor(value):
    """A symbolic tensor of the model (constants are plain Python values or eager tensors)."""
    return _compat.is_symbolic(value)


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


def _constant(value, x, what):
    """A constant operand as a float32 scalar or per-channel vector for ``x``; Unsupported otherwise."""
    if _is_tensor(value):
        raise Unsupported(f"{what} of two computed tensors has no per-sample Keras layer")
    try:
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise Unsupported(f"{what} with a constant that is not numeric") from error
    if array.ndim > x.shape.rank or any(d != 1 for d in array.shape[:-1]) or (
            array.ndim and array.shape[-1] not in (1, x.shape[-1])):
        raise Unsupported(f"{what} with a constant of shape {array.shape}: only scalars and per-channel "
                          f"vectors (shape ({x.shape[-1]},)) are rewritten")
    if not np.all(np.isfinite(array)):
        raise Unsupported(f"{what} with a non-finite constant")
    return array.reshape(-1) if array.ndim else array


def _operands(call):
    x, y = list(call.values())[:2]
    return x, y


def _commutative(layer_class, affine_argument, what):
    """The rule for ``x + y`` / ``x * y``: a Keras merge layer for two tensors (``x * x`` included), else a
    ConstantAffine with the constant operand as its ``offset`` or ``scale``."""

    def rule(name, call):
        x, y = _operands(call)
        if _is_tensor(x) and _is_tensor(y):
            return [layer_class(name=name)], [x, y]
        tensor, constant = (x, y) if _is_tensor(x) else (y, x)
        return [ConstantAffine(**{affine_argument: _constant(constant, tensor, what)}, name=name)], tensor

    return rule


_add = _commutative(keras.layers.Add, "offset", "add")
_multiply = _commutative(keras.layers.Multiply, "scale", "multiply")


def _subtract(name, call):
    x, y = _operands(call)
    if _is_tensor(x) and _is_tensor(y):
        return [keras.layers.Subtract(name=name)], [x, y]
    if _is_tensor(x):  # x - c
        return [ConstantAffine(offset=-_constant(y, x, "subtract"), name=name)], x
    return [ConstantAffine(scale=-1.0, offset=_constant(x, y, "subtract"), name=name)], y  # c - x


def _divide(name, call):
    x, y = _operands(call)
    if not _is_tensor(x) or _is_tensor(y):
        raise Unsupported("division by a tensor has no int8 kernel in TFLite; only x / constant is rewritten")
    divisor = _constant(y, x, "divide")
    if np.any(divisor == 0):
        raise Unsupported("division by a constant 0")
    return [ConstantAffine(scale=1.0 / divisor, name=name)], x


def _negative(name, call):
    return [ConstantAffine(scale=-1.0, name=name)], next(iter(call.values()))


def _scalar_mul(name, call):
    return _multiply(name, {"x": call["x"], "y": call["scalar"]})


def _silu(name, call):
    if float(call.get("beta", 1.0)) != 1.0:
        raise Unsupported("silu with beta != 1 is not rewritten; use beta=1 (swish)")
    return [keras.layers.Activation("swish", name=name)], call["features"]


def _softmax(name, call):
    x, axis = call["logits"], call.get("axis")
    if axis not in (None, -1, x.shape.rank - 1):
        raise Unsupported("softmax is rewritten over the last axis only")
    return [keras.layers.Softmax(axis=-1, name=name)], x


def _maximum(name, call):
    x, y = _operands(call)
    tensor, constant = (x, y) if _is_tensor(x) else (y, x)
    value = None if _is_tensor(constant) else _constant(constant, tensor, "maximum")
    if value is None or np.ndim(value) or float(value) != 0.0:
        raise Unsupported("maximum is rewritten against the constant 0 only (a ReLU)")
    return [keras.layers.ReLU(name=name)], tensor


def _clip(name, call):
    x, low, high = call["t"], call["clip_value_min"], call["clip_value_max"]
    if _is_tensor(low) or _is_tensor(high) or float(low) != 0.0 or np.ndim(high) or float(high) <= 0:
        raise Unsupported("clip_by_value is rewritten for clip(x, 0, c) (a ReLU capped at c) only")
    return [keras.layers.ReLU(max_value=float(high), name=name)], x


def _leaky_relu(name, call):
    return [keras.layers.LeakyReLU(alpha=float(call.get("alpha", 0.2)), name=name)], call["features"]


def _gelu(name, call):
    if call.get("approximate"):
        raise Unsupported("gelu(approximate=True) is not rewritten; use the exact gelu")
    return [keras.layers.Activation("gelu", name=name)], call["features"]


def _square(name, call):
    x = next(iter(call.values()))
    return [keras.layers.Multiply(name=name)], [x, x]


def _pow(name, call):
    x, y = _operands(call)
    if not _is_tensor(x) or _is_tensor(y) or float(y) != 2.0:
        raise Unsupported("pow is rewritten for x ** 2 only")
    return _square(name, {"x": x})


def _squeeze_or_expand(name, call):
    x = call["input"]
    if any(d is None for d in x.shape[1:]):
        raise Unsupported("squeeze/expand_dims is rewritten for inputs of known shape only")
    axis = _static_ints(call.get("axis"), "axis")
    if axis is None:
        raise Unsupported("squeeze without an axis may drop the batch axis; pass the axes")
    axes = axis if isinstance(axis, list) else [axis]
    if 0 in axes:
        raise Unsupported("squeeze/expand_dims of the batch axis is not a per-sample layer")
    return [keras.layers.Reshape(tuple(call["_output_shape"][1:]), name=name)], x


def _transpose(name, call):
    x, perm = call["a"], _static_ints(call.get("perm"), "perm")
    if perm is None or perm[0] != 0:
        raise Unsupported("transpose is rewritten when it keeps the batch axis first (a Permute)")
    return [keras.layers.Permute(tuple(p for p in perm[1:]), name=name)], x


def _pool2d(kind):
    def rewrite(name, call):
        x = call["input"]
        ksize, strides = _static_ints(call["ksize"], "ksize"), _static_ints(call["strides"], "strides")
        padding = str(call.get("padding", "VALID")).lower()
        if call.get("data_format", "NHWC") != "NHWC" or padding not in ("valid", "same"):
            raise Unsupported(f"{kind}_pool2d is rewritten for NHWC with 'VALID' or 'SAME' padding")

        def pair(v):
            v = v if isinstance(v, list) else [v]
            return tuple(v[1:3]) if len(v) == 4 else (v[0], v[-1]) if len(v) in (1, 2) else None
        layer = keras.layers.AveragePooling2D if kind == "avg" else keras.layers.MaxPooling2D
        return [layer(pool_size=pair(ksize), strides=pair(strides), padding=padding, name=name)], x
    return rewrite


def _reduce_sum(name, call):
    # sum = mean x count: the mean rule's layers, then a constant scale.
    x = call["input_tensor"]
    layers, inputs = _reduce("mean")(f"{name}_mean", call)
    axes = _static_ints(call.get("axis"), "axis")
    axes = axes if isinstance(axes, list) else [axes]
    count = int(np.prod([x.shape[a] for a in axes]))
    return [*layers, ConstantAffine(scale=float(count), name=name)], inputs


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
_ADD = ("math.add", "__operators__.add")
_MULTIPLY = ("math.multiply", "__operators__.mul")
_SUBTRACT = ("math.subtract", "__operators__.sub")
_DIVIDE = ("math.truediv", "__operators__.truediv", "math.divide")
_SIGMOID = ("math.sigmoid", "nn.sigmoid")
_SILU = ("nn.silu", "nn.swish")

# TFOpLambda ``symbol`` → rewrite(name, bound call arguments) returning (layers to chain, their input).
RULES = {
    "math.reduce_mean": _reduce("mean"),
    "math.reduce_max": _reduce("max"),
    "math.reduce_sum": _reduce_sum,
    **{symbol: _activation(lambda name: keras.layers.Activation("sigmoid", name=name)) for symbol in _SIGMOID},
    "math.tanh": _activation(lambda name: keras.layers.Activation("tanh", name=name)),
    "nn.relu": _activation(lambda name: keras.layers.ReLU(name=name)),
    "nn.relu6": _activation(lambda name: keras.layers.ReLU(6.0, name=name)),
    **{symbol: _silu for symbol in _SILU},
    "nn.softmax": _softmax,
    "nn.leaky_relu": _leaky_relu,
    "nn.gelu": _gelu,
    "math.maximum": _maximum,
    "clip_by_value": _clip,
    **{symbol: _add for symbol in _ADD},
    **{symbol: _multiply for symbol in _MULTIPLY},
    **{symbol: _subtract for symbol in _SUBTRACT},
    **{symbol: _divide for symbol in _DIVIDE},
    "math.negative": _negative,
    "compat.v1.math.scalar_mul": _scalar_mul,
    "math.scalar_mul": _scalar_mul,
    "math.square": _square,
    "math.pow": _pow,
    "reshape": _reshape,
    "squeeze": _squeeze_or_expand,
    "compat.v1.squeeze": _squeeze_or_expand,
    "expand_dims": _squeeze_or_expand,
    "transpose": _transpose,
    "compat.v1.transpose": _transpose,
    "nn.avg_pool2d": _pool2d("avg"),
    "nn.max_pool2d": _pool2d("max"),
    "concat": _concat,
    "pad": _pad,
    "compat.v1.pad": _pad,
    "identity": _identity,
    "__operators__.getitem": _strided_slice,
}
