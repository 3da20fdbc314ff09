"""Initialise a quantize-aware model's ranges from data before fine-tuning.

tfmot starts every activation range at [-6, 6] and moves it with an exponential moving average of
decay 0.999 (fixed inside ``MovingAverageQuantizer``), so a short fine-tune leaves ranges far from the
data: logits get clipped and the int8 model disagrees with the float one (~10-17 dB output SNR on
digits). Instead, each range is set to the min/max the float model actually produces on calibration
samples — the same statistic TFLite's post-training calibration uses — and the weight ranges
(``LastValueQuantizer``, only refreshed in training mode) are set by one training-mode pass with
BatchNormalization frozen.

Memory is bounded by design: samples are read a batch at a time (the batch sized from the model's
largest activation, :func:`calibration_batch`) and each layer's output is reduced to its min and max
inside the graph, so only running extremes are kept.
"""

import numpy as np

from edge_attn import _compat
from edge_attn._keras import keras, tf
from tensorflow_model_optimization.quantization.keras import QuantizeWrapperV2

from edge_attn.batchnorm import frozen_batch_norm
from edge_attn.errors import BadInput
from edge_attn.resources import batch_within, release_free_memory

CALIBRATION_BYTES = 512 * 1024 * 1024  # activations of one calibration batch (float32), roughly
MAX_BATCH = 64

def _observed_ranges(float_model, layer_names, samples, batch_size):
    """Per-layer (min, max) over ``samples``, a batch at a time, keeping only the running extremes.

    The probe reduces every layer's output to its min and max inside one graph, so an activation is
    freed as soon as its reduction and its consumers have run: memory is one batch's forward pass,
    whatever the number of layers (a probe returning every activation held them all, for every sample
    of the batch: >20 GB for CBAM-ResNet-50 at 224x224 in batches of 64).
    """
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in layer_names])

    @tf.function(reduce_retracing=True)
    def extremes(x):
        outputs = probe(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return (tf.stack([tf.reduce_min(tf.cast(o, tf.float32)) for o in outputs]),
                tf.stack([tf.reduce_max(tf.cast(o, tf.float32)) for o in outputs]))

    lows = np.full(len(layer_names), np.inf)
    highs = np.full(len(layer_names), -np.inf)
    input_low, input_high = np.inf, -np.inf
    for batch in _batches(samples, batch_size):
        low, high = extremes(tf.convert_to_tensor(batch))
        lows = np.minimum(lows, low.numpy())
        highs = np.maximum(highs, high.numpy())
        input_low, input_high = min(input_low, float(batch.min())), max(input_high, float(batch.max()))
    return lows, highs, (input_low, input_high)


def _batches(samples, batch_size):
    """float32 batches of ``samples`` (an array or lazy :class:`edge_attn.data.Samples`), read one at a time."""
    for start in range(0, len(samples), batch_size):
        yield np.asarray(samples[start:start + batch_size], dtype=np.float32)


def calibration_batch(float_model, budget_bytes=CALIBRATION_BYTES):
    """Samples per calibration batch: as many as keep a forward pass within ``budget_bytes``
    (:func:`edge_attn.resources.batch_within`), at most ``MAX_BATCH``."""
    return batch_within(float_model, budget_bytes, most=MAX_BATCH)


def calibrate_ranges(qat_model, float_model, samples, batch_size=None):
    """Set ``qat_model``'s activation and weight ranges from ``samples`` (float32, batched on axis 0; an
    array or a lazy :class:`edge_attn.data.Samples`, read a batch at a time).

    ``float_model`` is the lowered float model ``qat_model`` was made from (layer ``x`` is wrapped as
    ``quant_x``). ``batch_size`` (None: :func:`calibration_batch`, sized from the model's largest
    activation) bounds memory; the ranges do not depend on it. Returns the number of activation ranges set.
    """
    if len(samples) == 0:
        raise BadInput("calibration samples", "none given")
    batch_size = batch_size or calibration_batch(float_model)
    targets = [(w.layer.name, pair) for w in qat_model.layers if isinstance(w, QuantizeWrapperV2)
               for pair in _compat.output_ranges(w)]
    names = sorted({name for name, _ in targets})
    lows, highs, (input_low, input_high) = _observed_ranges(float_model, names, samples, batch_size)
    release_free_memory()
    # Weight ranges are refreshed only in training mode; BN must not update its statistics meanwhile.
    # This pass also moves the activation ranges (EMA), so they are set after it.
    with frozen_batch_norm(qat_model):
        qat_model(next(_batches(samples, batch_size)), training=True)
    observed = dict(zip(names, zip(lows, highs)))
    for name, (_, min_var, max_var) in targets:
        low, high = _quantizable_range(*observed[name])
        min_var.assign(low)
        max_var.assign(high)
    for layer in qat_model.layers:
        if _compat.is_input_quantizer(layer):
            min_var, max_var = _compat.input_range(layer)
            low, high = _quantizable_range(input_low, input_high)
            min_var.assign(low)
            max_var.assign(high)
    return len(targets)


DEAD_RANGE = (0.0, 1.0)


def _quantizable_range(low, high):
    """The observed [low, high] as an int8 range: it must contain 0 (the zero point is an integer in range),
    and a tensor that was 0 on every sample (a dead ReLU, an SE bottleneck that never fires) gets
    :data:`DEAD_RANGE` instead of [0, 0]: any range holds its zeros exactly, but a scale near 0 makes the
    next layer's bias scale (input scale x weight scale) so small that its int32 bias overflows and
    saturates (random-model seed 3: an SE FC after a dead one at 1.4 dB)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    return DEAD_RANGE if high - low == 0.0 else (low, high)
