"""Quantization-aware fine-tuning: calibrate ranges, then train the fake-quant model briefly.

Calibration first (:mod:`edge_attn.qat.calibrate`) because tfmot's ranges start at [-6, 6] and move
too slowly for a short fine-tune; then a low learning rate (the float weights are already good; the
fine-tune only adapts them to quantization), the float model as a teacher (output matching keeps the
int8 model close to the float one it replaces), BN frozen after ``bn_freeze_steps``, early stopping on
the eval split.

Distributed (``strategy``, :mod:`edge_attn.distribute`): the ranges are calibrated on ``qat`` itself,
an ordinary model (tfmot's moving-average range update cannot run outside a replica on distributed
variables); then the model and its teacher are cloned in ``strategy.scope()``, so every variable
training touches is the strategy's; the clone trains and its weights are copied back. ``qat`` stays an
ordinary model to convert, whatever the strategy. A resumed fine-tune (``resume``) calibrates too, and
the checkpoint it restores then overwrites the ranges with the ones training had reached.
"""

from edge_attn._keras import keras, tf
import tensorflow_model_optimization as tfmot

from edge_attn.convert.recipe import QatSettings, Recipe
from edge_attn.distribute import is_distributed
from edge_attn.qat.calibrate import calibrate_ranges
from edge_attn.qat.configs import CUSTOM_OBJECTS
from edge_attn.resources import require_memory
from edge_attn.training import fit


def qat_finetune(qat, data, *, epochs=QatSettings.epochs, learning_rate=QatSettings.learning_rate,
                 schedule=QatSettings.schedule, batch_size=QatSettings.batch_size,
                 bn_freeze_steps=QatSettings.bn_freeze_steps, early_stop_patience=QatSettings.early_stop_patience,
                 calibration_samples=Recipe.calibration_samples, seed=0, progress=True, strategy=None,
                 checkpoint_dir=None, resume=False):
    """Calibrate and fine-tune ``qat`` (a :class:`edge_attn.qat.QuantizeAware`) on ``data`` in place.

    The defaults are the recipes' (:class:`edge_attn.convert.recipe.QatSettings`, ``Recipe.calibration_samples``),
    so the Python API and ``edge-attn convert`` train alike.

    ``epochs=0`` calibrates only. ``batch_size`` is the global batch under ``strategy``;
    ``checkpoint_dir`` and ``resume`` are :func:`edge_attn.training.fit`'s. Returns its
    :class:`edge_attn.training.History`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if epochs > 0:
        # One device accumulates micro-batches down to one sample (edge_attn.training.fit); replicas
        # each hold their whole share of the batch.
        replicas = strategy.num_replicas_in_sync
        need = -(-batch_size // replicas) if is_distributed(strategy) else 1
        require_memory(qat.model, need, training=True, what="the QAT fine-tune",
                       fix="lower [fine_tune] batch_size in the recipe, the input size, or use --epochs 0")
    # A lazy view: calibration reads it a batch at a time.
    calibrate_ranges(qat.model, qat.float_model, data.x_train.head(calibration_samples))
    model, teacher = qat.model, qat.float_model
    distributed = epochs > 0 and is_distributed(strategy)
    if distributed:
        with strategy.scope():
            model, teacher = _clone(model), _clone(teacher)
    history = fit(model, data, epochs=epochs, learning_rate=learning_rate, schedule=schedule,
                  batch_size=batch_size, bn_freeze_steps=bn_freeze_steps, early_stop_patience=early_stop_patience,
                  teacher=teacher, seed=seed, progress=progress, desc="QAT", strategy=strategy,
                  checkpoint_dir=checkpoint_dir, resume=resume)
    if distributed:
        # On every worker: reading synchronised variables (BatchNormalization statistics) can be collective.
        qat.model.set_weights(model.get_weights())
    return history


def _clone(model):
    """``model`` rebuilt from its config with its weights (in the caller's strategy scope)."""
    with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
