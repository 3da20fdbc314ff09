"""Turn a crash inside TensorFlow / tfmot / LiteRT on a user's model into one line naming the layer.

A model a user brings can trip any of those libraries in ways nobody listed; that is edge_attn's bug to
report, not a traceback to show. :func:`model_failure` makes the :class:`BadInput` (exit 2): which stage
failed, the layer the library's message names (the longest layer name of the model found in it), the
message's first line, and what to do. The original exception stays chained (shown with ``--debug``).
"""

from edge_attn.errors import BadInput, EdgeAttnError

_ADVICE = {
    "normalize": "replace that layer with a standard Keras layer",
    "quantize": "replace that layer with a standard Keras layer, or convert with int8-ptq",
    "fine-tune": "try --epochs 0 (calibrate and convert without fine-tuning), or int8-ptq",
    "convert": "try int8-ptq, or set allow_float_ops = true in a copy of the recipe to keep that op in float",
    "auto-precision": "convert without --auto-precision and add [[precision]] rules by hand (README: int16x8 and "
                      "per-layer precision)",
}


def named_layer(model, text):
    """The layer of ``model`` whose name appears in ``text`` (the longest such name), or None."""
    names = [layer.name for layer in getattr(model, "layers", [])]
    found = [name for name in names if name and name in text]
    return max(found, key=len) if found else None


def model_failure(stage, model, error, what=None):
    """A one-line :class:`BadInput` for ``error`` raised at ``stage`` (a key of the advice table)."""
    if isinstance(error, EdgeAttnError):
        return error
    text = str(error)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    layer = named_layer(model, text)
    where = ""
    if layer is not None:
        where = f" at layer {layer} ({type(model.get_layer(layer)).__name__})"
    failure = BadInput(what or getattr(model, "name", "model"),
                       f"{stage} failed{where}: {type(error).__name__}: {first[:240]}; {_ADVICE[stage]} "
                       "(please report this model to edge_attn; --debug shows the traceback)")
    failure.__cause__ = error
    return failure
