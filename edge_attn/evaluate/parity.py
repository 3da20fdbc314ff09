"""QAT → TFLite parity: does the converted int8 model compute what the fake-quant Keras model computed?

Quantization-aware training models the int8 arithmetic with fake-quant ops; the converter then makes
its own choices (fusions, requantizations, scales it derives). When the two part, QAT trained for a
model that does not exist. The logits of the fake-quant model and of the int8 flatbuffer are compared
on evaluation samples; below :data:`MIN_SNR_DB` the check names the first layer (in graph order) whose
int8 tensor is below that SNR against the float model, the place to look first.
"""

import numpy as np

from edge_attn.evaluate.metrics import snr_db
from edge_attn.heads import split_head, tflite_logits_model
from edge_attn.evaluate.compare import INFERENCE_BYTES
from edge_attn.litert import make_interpreter, run
from edge_attn.resources import batch_within

MIN_SNR_DB = 30.0
SAMPLES = 128  # enough for a stable SNR; bounded time and memory


def qat_parity(fake_quant_model, tflite, x, layers):
    """``{snr_db, agreement, samples, min_snr_db, passed, first_layer_below}`` for the fake-quant Keras model
    (with its head, as converted) against ``tflite`` (bytes) on ``x``; ``layers`` is the per-layer error list."""
    from edge_attn.convert.inspect import inspect_tflite

    x = np.asarray(x[:SAMPLES])
    keras_logits, head = split_head(fake_quant_model)
    deployed = tflite_logits_model(tflite, inspect_tflite(tflite)) if head else None
    reference = keras_logits.predict(x, batch_size=batch_within(keras_logits, INFERENCE_BYTES), verbose=0)
    converted = run(make_interpreter(deployed or tflite), x)
    snr = snr_db(reference, converted)
    passed = snr is None or snr >= MIN_SNR_DB
    first = None if passed else next(
        (layer["name"] for layer in layers if layer["snr_db"] is not None and layer["snr_db"] < MIN_SNR_DB), None)
    return {"snr_db": snr, "agreement": float(np.mean(reference.argmax(-1) == converted.argmax(-1))),
            "samples": int(len(x)), "min_snr_db": MIN_SNR_DB, "passed": passed, "first_layer_below": first,
            "compared_on": "logits" if head else "outputs"}
