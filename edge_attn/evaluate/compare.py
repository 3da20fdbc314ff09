"""Float reference vs converted model on the same labelled samples: top-1, agreement, logit SNR, budgets.

Top-1 alone hides quantization damage on small evaluation sets (one of ~360 samples is 0.28 points), so
the comparison also counts how often both models pick the same class and measures the error of the
outputs themselves (SNR in dB over all evaluation logits, see :mod:`edge_attn.evaluate.metrics`).
"""

import os
import tempfile

import numpy as np

from edge_attn.errors import BadInput
from edge_attn.evaluate.metrics import snr_db
from edge_attn.litert import make_interpreter, run
from edge_attn.resources import batch_within

INFERENCE_BYTES = 512 * 1024 * 1024  # float32 activations of one reference batch, roughly


def compare(reference_model, tflite_model, x, y, run_quantized=None, batch_bytes=INFERENCE_BYTES):
    """Run the float Keras ``reference_model`` and ``tflite_model`` (bytes or path) on ``x``; score against ``y``.

    ``x`` is an array or a lazy :class:`edge_attn.data.Samples`, read a batch at a time (the batch sized
    from the model's largest activation so a forward pass stays within ``batch_bytes``); only the outputs
    are kept. ``y`` holds integer class labels. Returns the dict described in :func:`accuracy_from_outputs`,
    plus ``compared_on``: "outputs", or "logits" for a model ending in a softmax/sigmoid
    (:mod:`edge_attn.heads`): then both sides are the head's input, the TFLite one read from the deployed
    flatbuffer itself, and ``head``. ``run_quantized(model, x)`` computes the TFLite outputs of all of ``x``
    at once; ``model`` is ``tflite_model`` or, for the logits, the path of a temporary .tflite (device
    runners copy files). None: LiteRT in this process, batch by batch (a device's runner, e.g.
    ``SshRunner.run_outputs``, computes them on the device).
    """
    from edge_attn.convert.inspect import inspect_tflite
    from edge_attn.heads import split_head, tflite_logits_model

    shape = tuple(getattr(x, "shape", np.shape(x)))
    y = _labels(y, shape[0] if shape else 0)
    expected = tuple(reference_model.input_shape[1:])
    if shape[1:] != expected:
        raise BadInput("input data", f"samples have shape {shape[1:]}, the reference expects {expected}")
    reference_logits, head = split_head(reference_model)
    if head is not None:
        tflite_bytes = _read_bytes(tflite_model)
        logits_tflite = tflite_logits_model(tflite_bytes, inspect_tflite(tflite_bytes))
        if logits_tflite is not None:
            with tempfile.TemporaryDirectory(prefix="edge_attn_logits_") as folder:
                logits_path = os.path.join(folder, "logits.tflite")
                with open(logits_path, "wb") as f:
                    f.write(logits_tflite)
                # In this process the bytes are run (make_interpreter probes them for XNNPACK); runners copy the file.
                logits_model = logits_tflite if run_quantized is None else logits_path
                reference_out, quantized_out = _outputs(reference_logits, logits_model, x, run_quantized, batch_bytes)
            return {**accuracy_from_outputs(reference_out, quantized_out, y), "compared_on": "logits", "head": head}
    reference_out, quantized_out = _outputs(reference_model, tflite_model, x, run_quantized, batch_bytes)
    return {**accuracy_from_outputs(reference_out, quantized_out, y), "compared_on": "outputs", "head": head}


def _outputs(reference_model, tflite_model, x, run_quantized, batch_bytes):
    """(reference outputs, TFLite outputs) of all of ``x``, the reference a bounded batch at a time."""
    batch = batch_within(reference_model, batch_bytes)
    interpreter = make_interpreter(tflite_model) if run_quantized is None else None
    reference_out, quantized_out = [], []
    for start in range(0, len(x), batch):
        samples = np.asarray(x[start:start + batch], np.float32)
        reference_out.append(np.asarray(reference_model(samples, training=False)))
        if interpreter is not None:
            quantized_out.append(run(interpreter, samples))
    if interpreter is None:
        quantized_out = [np.asarray(run_quantized(tflite_model, np.asarray(x[:], np.float32)))]
    return np.concatenate(reference_out), np.concatenate(quantized_out)


def _read_bytes(tflite_model):
    if isinstance(tflite_model, (bytes, bytearray, memoryview)):
        return bytes(tflite_model)
    from edge_attn.convert.verify import probe_tflite, verify_tflite

    data = verify_tflite(tflite_model)  # a user's file: verified and probed before LiteRT runs it in-process
    probe_tflite(data, what=str(tflite_model))
    return data


def accuracy_from_outputs(reference_out, quantized_out, y):
    """Score two (N, classes) output arrays for the same samples against integer labels ``y``.

    Returns a dict with ``samples``; ``reference_top1``, ``quantized_top1`` and ``top1_agreement`` as
    fractions in 0..1; ``top1_drop_pt`` = (reference - quantized) top-1 in percentage points;
    ``agreement_count`` = samples where both argmaxes agree; ``output_snr_db`` =
    10·log10(Σ ref² / Σ (ref − quant)²) summed over every output value of every sample (the outputs as
    they come, logits or probabilities); ``output_max_abs_err`` = max |ref − quant|.
    """
    reference_out = np.asarray(reference_out, np.float64)
    quantized_out = np.asarray(quantized_out, np.float64)
    if reference_out.shape != quantized_out.shape or reference_out.ndim != 2:
        raise BadInput("model outputs", f"reference {reference_out.shape} and quantized {quantized_out.shape} "
                                        "are not matching (samples, classes) arrays")
    y = _labels(y, len(reference_out))
    reference_pred = reference_out.argmax(axis=1)
    quantized_pred = quantized_out.argmax(axis=1)
    reference_top1 = float(np.mean(reference_pred == y))
    quantized_top1 = float(np.mean(quantized_pred == y))
    agreement_count = int(np.sum(reference_pred == quantized_pred))
    return {
        "samples": int(len(y)),
        "reference_top1": reference_top1,
        "quantized_top1": quantized_top1,
        "top1_drop_pt": 100.0 * (reference_top1 - quantized_top1),
        "top1_agreement": agreement_count / len(y),
        "agreement_count": agreement_count,
        "output_snr_db": snr_db(reference_out, quantized_out),
        "output_max_abs_err": float(np.max(np.abs(reference_out - quantized_out))),
    }


# The budgets `edge-attn check` applies by default and `convert` reports against (report.json "budget").
DEFAULT_BUDGET = {"max_drop": 1.0, "min_agreement": 0.98, "min_snr_db": 25.0}


def budget_verdict(accuracy, max_drop=DEFAULT_BUDGET["max_drop"], min_agreement=DEFAULT_BUDGET["min_agreement"],
                   min_snr_db=DEFAULT_BUDGET["min_snr_db"]):
    """The ``budget`` entry of report.json and ``check --json``: the budgets, the failures and ``passed``."""
    failures = budget_failures(accuracy, max_drop=max_drop, min_agreement=min_agreement, min_snr_db=min_snr_db)
    return {"max_drop": max_drop, "min_agreement": min_agreement, "min_snr_db": min_snr_db,
            "failures": failures, "passed": not failures}


def budget_failures(accuracy, max_drop=1.0, min_agreement=0.98, min_snr_db=None):
    """Reasons the ``accuracy`` dict misses its budget, one readable line each; empty means it passed.

    ``max_drop`` is in top-1 points, ``min_agreement`` a fraction, ``min_snr_db`` the output SNR floor
    (None: not checked). Top-1 can look fine while logits are clipped by wrong ranges; the SNR shows it.
    """
    failures = []
    if accuracy["top1_drop_pt"] > max_drop:
        failures.append(f"top-1 dropped {accuracy['top1_drop_pt']:.2f} pt "
                        f"({100 * accuracy['reference_top1']:.2f}% -> {100 * accuracy['quantized_top1']:.2f}%), "
                        f"budget {max_drop:.2f} pt")
    if accuracy["top1_agreement"] < min_agreement:
        failures.append(f"top-1 agreement {100 * accuracy['top1_agreement']:.2f}% "
                        f"({accuracy['agreement_count']}/{accuracy['samples']} samples) "
                        f"is below the minimum {100 * min_agreement:.2f}%")
    snr = accuracy["output_snr_db"]
    if min_snr_db is not None and snr is not None and snr < min_snr_db:
        failures.append(f"output SNR {snr:.1f} dB is below the minimum {min_snr_db:.1f} dB")
    return failures


def _labels(y, count):
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise BadInput("labels", f"expected a 1-D array of integer class labels, got {y.dtype} {y.shape}")
    if len(y) != count:
        raise BadInput("labels", f"{len(y)} labels for {count} samples")
    if count == 0:
        raise BadInput("input data", "no samples")
    return y
