"""The "no float ops" gate: a calibrated recipe refuses a converted model that left ops computing in float.

TF 2.21's converter keeps ops without an integer kernel (FLOOR, COS, ...) in float between
DEQUANTIZE/QUANTIZE even with an integer-only op set; unless the recipe has ``allow_float_ops`` such a
model is an error listing the ops. Shared by the plain converter and the mixed-precision one.
"""

from edge_attn.convert.inspect import inspect_tflite
from edge_attn.errors import BadInput

_MAX_LISTED_OPS = 8


def refuse_float_ops(data, recipe, what, why, skip=frozenset()):
    """A calibrated recipe without ``allow_float_ops`` refuses a model with ops left in float (``skip``: op
    indices a precision rule asked to be float)."""
    if not recipe.calibrated or recipe.allow_float_ops:
        return
    info = inspect_tflite(data)
    float_ops = [op for op in info.float_ops() if op.index not in skip]
    if float_ops:
        listed = ", ".join(f"{op.op} -> {info.tensors[op.outputs[0]].name}" if op.outputs else op.op
                           for op in float_ops[:_MAX_LISTED_OPS])
        more = f" and {len(float_ops) - _MAX_LISTED_OPS} more" if len(float_ops) > _MAX_LISTED_OPS else ""
        raise BadInput(what, f"{recipe.quantization} recipe {recipe.name!r} left {len(float_ops)} op(s) computing in "
                             f"float: {listed}{more} ({why}set allow_float_ops = true to keep them in float)")
