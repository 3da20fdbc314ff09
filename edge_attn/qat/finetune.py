"""Quantization-aware fine-tuning: calibrate ranges, then train the fake-quant model briefly.

Calibration first (:mod:`edge_attn.qat.calibrate`) because tfmot's ranges start at [-6, 6] and move
too slowly for a short fine-tune; then a low learning rate (the float weights are already good; the
fine-tune only adapts them to quantization), the float model as a teacher (output matching keeps the
int8 model close to the float one it replaces), BN frozen after ``bn_freeze_steps``, early stopping on
the eval split.
"""

from edge_attn.qat.calibrate import calibrate_ranges
from edge_attn.training import fit


def qat_finetune(qat, data, *, epochs, learning_rate, schedule="cosine", batch_size=32, bn_freeze_steps=50,
                 early_stop_patience=2, calibration_samples=512, seed=0, progress=True):
    """Calibrate and fine-tune ``qat`` (a :class:`edge_attn.qat.QuantizeAware`) on ``data`` in place.

    ``epochs=0`` calibrates only. Returns the training :class:`edge_attn.training.History`.
    """
    calibrate_ranges(qat.model, qat.float_model, data.x_train[:calibration_samples])
    return fit(qat.model, data, epochs=epochs, learning_rate=learning_rate, schedule=schedule,
               batch_size=batch_size, bn_freeze_steps=bn_freeze_steps, early_stop_patience=early_stop_patience,
               teacher=qat.float_model, seed=seed, progress=progress, desc="QAT")
