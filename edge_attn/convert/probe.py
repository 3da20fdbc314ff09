"""Defence in depth for a verified .tflite: load, allocate and invoke it with LiteRT in a child process, so a model
that still kills LiteRT (a kernel crash of a structurally sound graph, a hang) costs a child, not the command.
"""

import hashlib
import os
import signal
import subprocess
import sys

from edge_attn.errors import BadInput

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # edge_attn/
PROBE_TIMEOUT_S = 60.0  # load + allocate + one invoke; generous for a large model on a busy 2-core machine

# Run as ``python -c``: a fresh interpreter that imports only numpy, LiteRT and edge_attn's _compat (not edge_attn,
# not TensorFlow)
# reads the model from stdin and tries both interpreter set-ups edge_attn uses, printing one line per set-up (the
# builtin one first, so a crash of the XNNPACK delegate still says whether builtin kernels run it).
_PROBE_CHILD = r"""
import sys
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:
    sys.exit(4)
sys.path.append(sys.argv[1])  # edge_attn/: the child imports _compat (standard library only) from there
import _compat
model = sys.stdin.buffer.read()
set_ups = (("builtin", {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                        "experimental_preserve_all_tensors": True}),
           ("default", {}))  # last: when XNNPACK kills the process, the builtin line is already out
for config, kwargs in set_ups:
    try:
        interpreter = Interpreter(model_content=model, num_threads=1, **kwargs)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        _compat.interpreter_ops(interpreter)  # what per-layer error and the host runner read
        details = interpreter.get_tensor_details() if config == "builtin" else interpreter.get_output_details()
        for detail in details:
            try:
                interpreter.get_tensor(detail["index"])
            except ValueError:  # a tensor without data (unused or freed): a refusal, not what is probed for
                pass
        print(config, "ok", flush=True)
    except Exception as error:
        print(config, (str(error).strip().splitlines() or [type(error).__name__])[0], flush=True)
"""
_SET_UPS = ("builtin", "default")  # in the child's order
_probed = {}  # sha256 of the model -> {set-up: None (ran) or LiteRT's error line, and "crash": the problem string
#             when the child died}, or a BadInput problem string (a timeout, a probe that could not run)


def probe_tflite(model, *, what, config=None, timeout_s=None):
    """Load, allocate and invoke (on zeros) ``model`` (bytes, already verified) with LiteRT in a child process.

    The child tries the two interpreter set-ups edge_attn uses: ``"default"`` (XNNPACK applied) and
    ``"builtin"`` (builtin kernels, every tensor preserved, as per-layer error runs it), then reads the outputs
    (every tensor for ``"builtin"``). A child killed by a signal, or still running after ``timeout_s`` (default
    :data:`PROBE_TIMEOUT_S`), is a :class:`~edge_attn.errors.BadInput` naming ``what``; so is a clean LiteRT error
    in the set-up named by ``config`` (``None``: only crashes and timeouts count, for callers that use another
    LiteRT API). Results are cached per process by the model's sha256.
    """
    outcome = _outcome(model, timeout_s)
    if isinstance(outcome, str):
        raise BadInput(what, outcome)
    if outcome.get("crash"):
        raise BadInput(what, outcome["crash"])
    if config is not None and outcome.get(config):
        raise BadInput(what, f"LiteRT cannot run it ({outcome[config]})")


def xnnpack_problem(model, timeout_s=None):
    """None when LiteRT's default set-up (the XNNPACK delegate applied, as in a user's app) loads and runs
    ``model`` (bytes edge_attn's converter made), else LiteRT's one-line reason, crashes included; probed
    in a child process (cached like :func:`probe_tflite`). Also None when the builtin kernels cannot run it
    either: that is not the delegate's problem, and the next in-process LiteRT call reports it."""
    outcome = _outcome(model, timeout_s)
    if isinstance(outcome, str) or "builtin" not in outcome or outcome["builtin"]:
        return None
    return outcome.get("default")


def _outcome(model, timeout_s):
    key = hashlib.sha256(model).hexdigest()
    if key not in _probed:
        _probed[key] = _run_probe(bytes(model), PROBE_TIMEOUT_S if timeout_s is None else timeout_s)
    return _probed[key]


def _run_probe(model, timeout_s):
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE_CHILD, _PACKAGE_DIR], input=model, capture_output=True,
                               timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"LiteRT did not load and run it within {timeout_s:g} s"
    if child.returncode == 4:  # no ai_edge_litert here: nothing to probe with
        return {}
    if child.returncode > 0:
        return f"LiteRT's probe process failed (exit status {child.returncode})"
    outcome = {}
    for line in child.stdout.decode("utf-8", "replace").splitlines():
        config, _, result = line.partition(" ")
        outcome[config] = None if result == "ok" else result
    if child.returncode < 0:
        signal_name = signal.Signals(-child.returncode).name
        crashed = next((config for config in _SET_UPS if config not in outcome), None)
        if crashed is not None:
            outcome[crashed] = f"the process was killed by {signal_name}"
        outcome["crash"] = f"LiteRT crashed loading it (signal {signal_name})"
    return outcome
