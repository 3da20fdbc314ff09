"""The part of ``report.json`` (``convert``, ``demo``) and ``check --json`` that describes a checked model,
built in one place so both have the same shape (docs/report-json.md, docs/report.schema.json).

A checked model is: the file (``model``: path, bytes, sha256), what it holds (``ops``, ``fully_int8``,
``float_ops``, ``inputs``, ``outputs``), the float baseline it was timed against (``reference_model``: the
f32 TFLite conversion of the float Keras model, its bytes; the size chart sets it beside the int8 one), its
scores (``accuracy``, ``layers``, ``latency_ms``), which samples were scored (``evaluation``), the verdict
against the budgets (``budget``) and what each delegate would take (``targets``: the rules of
:mod:`edge_attn.delegates`, per delegate a summary line and counts).
"""

import hashlib

from edge_attn.errors import BadInput

SCHEMA_VERSION = 1  # docs/report.schema.json; raise it when a key changes meaning or goes away
TARGET_DELEGATES = ("xnnpack", "gpu", "nnapi")


def checked_model(tflite, path, accuracy, layers, latency, data, split, *, reference_tflite=None, budget=None):
    """The shared entries for the model ``tflite`` (bytes) at ``path``, scored on ``split`` of ``data``.
    ``budget``: keyword arguments of :func:`edge_attn.evaluate.compare.budget_verdict` (None: the defaults)."""
    from edge_attn.convert.inspect import inspect_tflite
    from edge_attn.evaluate.compare import budget_verdict
    from edge_attn.evaluate.samples import evaluation_info

    tflite = bytes(tflite)
    info = inspect_tflite(tflite)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"path": path, "bytes": len(tflite), "sha256": hashlib.sha256(tflite).hexdigest()},
        "ops": list(info.op_names),
        "fully_int8": info.fully_int8,
        "fully_integer": info.fully_integer,  # fully_int8, int16 activations allowed too (int16x8)
        "activation_types": info.activation_types,
        "why_not_fully_int8": info.why_not_fully_int8(),
        "float_ops": [f"{op.op} #{op.index}" for op in info.float_ops()],
        "inputs": [t.to_dict() for t in info.inputs],
        "outputs": [t.to_dict() for t in info.outputs],
        "reference_model": ({"format": "f32 tflite", "bytes": len(reference_tflite)}
                            if reference_tflite is not None else None),
        "accuracy": accuracy,
        "latency_ms": latency,
        "layers": layers,
        "evaluation": evaluation_info(data, split),
        "budget": budget_verdict(accuracy, **(budget or {})),
        "targets": delegate_targets(tflite),
    }


def delegate_targets(tflite):
    """Per delegate of :data:`TARGET_DELEGATES`: ``dict(delegate, summary, supported_count, op_count,
    delegated_partitions, warnings, rules_from)`` from :func:`edge_attn.delegates.check_compat`."""
    from edge_attn.delegates import check_compat

    targets = []
    for delegate in TARGET_DELEGATES:
        try:
            verdict = check_compat(tflite, delegate, None).to_dict()
        except BadInput as error:  # a model the rules cannot read is still reported, with why
            targets.append({"delegate": delegate, "summary": f"not judged: {error.problem}"})
            continue
        targets.append({key: verdict[key] for key in ("delegate", "summary", "supported_count", "op_count",
                                                      "delegated_partitions", "warnings", "rules_from")})
    return targets
