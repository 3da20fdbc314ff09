"""Freezing BatchNormalization in (quantize-aware) models.

A frozen BN (``trainable = False``) runs in inference mode even when the model is called with
``training=True`` (tf-keras semantics), so its moving statistics stop changing: used while
calibrating ranges and, after a number of steps, during QAT fine-tuning (as in the TFLite QAT
guidance and Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", §3.2).
"""

import contextlib

from edge_attn._keras import keras


def batch_norm_layers(model):
    """Every BatchNormalization in ``model``, including those inside tfmot's QuantizeWrappers."""
    found = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, keras.layers.BatchNormalization):
            found.append(inner)
    return found


def freeze_batch_norm(model):
    for layer in batch_norm_layers(model):
        layer.trainable = False


@contextlib.contextmanager
def frozen_batch_norm(model):
    """Freeze BN inside the block, restoring each layer's previous ``trainable`` afterwards."""
    layers = batch_norm_layers(model)
    before = [layer.trainable for layer in layers]
    for layer in layers:
        layer.trainable = False
    try:
        yield
    finally:
        for layer, trainable in zip(layers, before):
            layer.trainable = trainable
