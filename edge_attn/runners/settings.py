"""The one validator of measurement settings (delegate, threads, runs, warm-up) for every runner,
``edge-attn bench``, the pytest plugin and ``check``'s host latency.

A wrong value is a one-line :class:`~edge_attn.errors.BadInput` naming the setting.
"""

from edge_attn.errors import BadInput

DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
ENGINES = ("interpreter", "compiled_model")  # the host runner's LiteRT APIs


def check_count(name, value, least=1):
    """``value`` if it is an integer (not a bool) >= ``least``, else BadInput naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BadInput(name, f"expected an integer >= {least}, got {value!r}")
    return value


def check_delegate(delegate, allowed=DELEGATES):
    if delegate not in allowed:
        raise BadInput("delegate", f"expected one of {', '.join(map(repr, allowed))}, got {delegate!r}")
    return delegate


def check_delegates(delegates):
    """A list of delegate names (one name as a string is a list of one), repeats dropped, order kept."""
    if isinstance(delegates, str):
        delegates = [delegates]
    chosen = list(dict.fromkeys(delegates))
    if not chosen:
        raise BadInput("delegate", "no delegate to measure")
    for delegate in chosen:
        check_delegate(delegate)
    return chosen


def check_settings(delegate, threads, runs, warmup):
    """BadInput unless ``delegate`` is one of DELEGATES and the counts are integers of sensible size."""
    check_delegate(delegate)
    check_count("threads", threads)
    check_count("runs", runs)
    check_count("warmup", warmup, least=0)
