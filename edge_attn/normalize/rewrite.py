"""Normalize a user's functional model into equivalent layers that tfmot and TFLite's int8 scheme take.

SE and CBAM code in tutorials calls ``tf.reduce_mean``, ``tf.nn.sigmoid``, ``x * s``, ``tf.pad`` ... on
symbolic tensors; tf-keras records each call as a ``TFOpLambda`` layer (``layer.symbol`` names the op,
the node keeps the call's arguments), and tfmot refuses those. Each call is bound to its TF function's
signature and, when its arguments make it expressible that way, replaced by the Keras layer(s) computing
the same thing (:mod:`edge_attn.normalize.op_rules`; same float numerics). Ordinary Keras layers that
tfmot or TFLite's int8 scheme cannot take as they are (preprocessing layers, dropout, activations that
block BatchNormalization folding, MobileNetV3's hard activations) are rewritten by
:mod:`edge_attn.normalize.layer_rules`. Shared layers are unshared (one copy per call, same weights):
each call site gets its own quantization ranges, as TFLite gives each its own tensors. A ``Lambda``
layer holds arbitrary Python and is only considered when the user trusts the model's code
(:mod:`edge_attn.normalize.lambdas`). Last, a conv or Dense over a channel concatenation is split into one
per concatenated input (:mod:`edge_attn.normalize.concat_split`), so that each input keeps its own int8 scale,
and a stand-alone BatchNormalization read only by a linear layer that never reads padding is folded into it
(:mod:`edge_attn.normalize.affine_fold`), so that its output needs no int8 tensor of its own.
"""

import inspect
from collections import defaultdict

from edge_attn import _compat
from edge_attn._keras import keras
from edge_attn.errors import BadInput
from edge_attn.graph import rebuild
from edge_attn.normalize.affine_fold import fold_affines_forward
from edge_attn.normalize.concat_split import split_concatenated_inputs
from edge_attn.normalize.elementwise import ConstantAffine
from edge_attn.normalize.lambdas import recognise_lambda
from edge_attn.normalize.layer_rules import fuse_hard_sigmoid, rule_for
from edge_attn.normalize.op_rules import RULES, Unsupported

_LISTED_PER_GROUP = 3  # layer names shown per kind of refusal; the count says how many there are


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


def _consumers(layer):
    return [node.layer for node in _compat.outbound_nodes(layer)]


def _refusal(model, unsupported):
    """One line for every refused layer, grouped by kind and advice: a count and a few names each."""
    groups = defaultdict(list)
    for layer, advice in unsupported:
        groups[describe(layer), advice].append(layer.name)
    parts = []
    for (kind, advice), names in groups.items():
        shown = ", ".join(names[:_LISTED_PER_GROUP]) + (f" and {len(names) - _LISTED_PER_GROUP} more"
                                                       if len(names) > _LISTED_PER_GROUP else "")
        parts.append(f"{len(names)} x {kind} ({shown}): {advice}")
    return BadInput(model.name, f"has layers that cannot be made quantization-aware: {'; '.join(parts)}")


def normalize(model, trust_model_code=False, strict=True):
    """Return ``(model, rewrites)``: ``model`` rebuilt with every layer tfmot/TFLite int8 cannot take as it
    is replaced by equivalent quantizable layers, and shared layers unshared.

    ``rewrites`` lists ``{"from": "TFOpLambda(math.reduce_mean)", "to": "GlobalAveragePooling2D",
    "layers": [names]}`` per kind of rewrite. Layers that cannot be rewritten are kept; with ``strict``
    they raise one ``BadInput`` grouping them by kind, with a count, a few names and advice. ``Lambda``
    layers are rewritten only with ``trust_model_code`` (recognising them runs their code).
    """
    grouped = defaultdict(list)
    unsupported = []
    calls = defaultdict(int)

    def replace(layer, args, kwargs):
        calls[id(layer)] += 1
        name = layer.name if calls[id(layer)] == 1 else f"{layer.name}_call{calls[id(layer)]}"
        try:
            if isinstance(layer, _compat.tf_op_lambda_class()):
                rule = RULES.get(layer.symbol)
                if rule is None:
                    raise Unsupported("no quantizable Keras equivalent is known; replace it with a Keras layer")
                call = _bind(layer, args, kwargs)
                call["_output_shape"] = tuple(layer.output_shape) if len(_compat.inbound_nodes(layer)) == 1 else None
                layers, inputs = rule(name, call)
            elif isinstance(layer, keras.layers.Lambda):
                if not trust_model_code:
                    raise Unsupported("Lambda layers hold Python code; pass --trust-model-code (and --import "
                                      "MODULE for the names its code uses) to let edge_attn recognise it")
                layers, inputs = recognise_lambda(layer, args, kwargs, name)
            else:
                rule = rule_for(layer)
                replaced = rule(layer, name, args, kwargs, _consumers(layer)) if rule else None
                if replaced is None:
                    return None
                out, to = replaced
                grouped[describe(layer), to].append(layer.name)
                return _fused(out, grouped, describe(layer), layer.name)
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
        return _fused(out, grouped, describe(layer), layer.name)

    rebuilt = rebuild(model, replace, unshare=True)
    if unsupported and strict:
        raise _refusal(model, unsupported)
    shared = any(len(_compat.inbound_nodes(layer)) > 1 for layer in model.layers)
    if not grouped and not unsupported and not shared:
        rebuilt = model  # nothing to change (zoo models): the model itself, not a copy
    rewrites = [{"from": source, "to": to, "layers": names} for (source, to), names in grouped.items()]
    rebuilt, split = split_concatenated_inputs(rebuilt)
    rebuilt, folded = fold_affines_forward(rebuilt)
    return rebuilt, rewrites + [extra for extra in (split, folded) if extra]


def _fused(out, grouped, source, name):
    """``out``, or the HardSigmoid it completes when it is the ``* (1/6)`` of ``relu6(x + 3) * (1/6)``."""
    layer = _compat.producing_layer(out) if _compat.is_symbolic(out) else None
    if isinstance(layer, ConstantAffine):
        fused = fuse_hard_sigmoid(layer.name, out)
        if fused is not None:
            grouped[f"{source}+ReLU6+ConstantAffine", "HardSigmoid"].append(name)
            return fused
    return out
