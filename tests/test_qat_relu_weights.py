"""A Conv2D / DepthwiseConv2D / Dense / Conv1D followed by a separate ReLU keeps its weight fake-quant in QAT.

tfmot's default layout transform gives such a producer a no-op config (tensorflow/model-optimization#523): it
was fine-tuned with float weights, and the fake-quant model stopped simulating the int8 model. The reference
here is the real LiteRT int8 model converted from the same fake-quant model: a faithful simulation predicts
its logits to rounding (measured: exact, SNR = inf), while float weights put the two 32–45 dB apart.

The ReLU is written every way users write it (a ReLU layer, Activation("relu"), ReLU(6), Activation("relu6"),
a raw tf.nn.relu / tf.nn.relu6 op, a Lambda), 2D and 1D, mixed per block by a seeded generator.
"""

import random

import numpy as np
import pytest
import tensorflow as tf

from edge_attn._keras import keras
from edge_attn.convert.converter import convert_model
from edge_attn.convert.recipe import load_recipe
from edge_attn.qat.calibrate import calibrate_ranges
from edge_attn.qat.wrap import quantize_aware
from litert_reference import run_on_float_samples, snr_db

L = keras.layers
RELU_SPELLINGS = {
    "ReLU()": lambda x, name: L.ReLU(name=name)(x),
    "Activation(relu)": lambda x, name: L.Activation("relu", name=name)(x),
    "ReLU(6)": lambda x, name: L.ReLU(6.0, name=name)(x),
    "Activation(relu6)": lambda x, name: L.Activation("relu6", name=name)(x),
    "tf.nn.relu": lambda x, name: tf.nn.relu(x),
    "tf.nn.relu6": lambda x, name: tf.nn.relu6(x),
    "Lambda(relu)": lambda x, name: L.Lambda(lambda t: tf.nn.relu(t), name=name)(x),
}
# Simulation and int8 model computed alike: all but rounding-order differences (float weights: 32–45 dB).
MIN_SIMULATION_SNR_DB = 60.0


def _generated_model(seed):
    rng = random.Random(seed)
    one_d = seed % 2 == 1
    spell = [rng.choice(sorted(RELU_SPELLINGS)) for _ in range(4)]
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((20, 3) if one_d else (12, 12, 3))
    conv = L.Conv1D if one_d else L.Conv2D
    for block in range(2):
        x = conv(8, 3, padding="same", name=f"conv{block}")(x)
        x = RELU_SPELLINGS[spell[block]](x, f"relu{block}")
    if not one_d:
        x = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
        x = RELU_SPELLINGS[spell[2]](x, "relu_depthwise")
    x = (L.GlobalAveragePooling1D() if one_d else L.GlobalAveragePooling2D())(x)
    x = L.Dense(16, name="dense")(x)
    x = RELU_SPELLINGS[spell[3]](x, "relu_dense")
    return keras.Model(inputs, L.Dense(5, name="logits")(x)), spell


@pytest.mark.parametrize("seed", range(6))
def test_fake_quant_model_simulates_the_int8_model(seed):
    model, spellings = _generated_model(seed)
    x = np.random.default_rng(seed).uniform(0, 1, (24, *model.input_shape[1:])).astype(np.float32)
    qat = quantize_aware(model, trust_model_code=True)
    calibrate_ranges(qat.model, qat.float_model, x)
    tflite = convert_model(qat.deployable(), load_recipe("int8-qat"))

    simulated = qat.model.predict(x, verbose=0)
    int8 = run_on_float_samples(tflite, x)
    assert snr_db(simulated, int8) >= MIN_SIMULATION_SNR_DB, spellings


def test_conv_batchnorm_relu_keeps_weight_fake_quant_too():
    """tfmot's own Conv+BN+ReLU transform (untouched by edge_attn) keeps the kernel quantizer: the guard that
    the mended transform did not take over a shape tfmot already handles."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    model = keras.Model(inputs, L.Dense(5, name="logits")(L.GlobalAveragePooling2D()(x)))
    x = np.random.default_rng(0).uniform(0, 1, (24, 12, 12, 3)).astype(np.float32)
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, x)
    tflite = convert_model(qat.deployable(), load_recipe("int8-qat"))
    assert snr_db(qat.model.predict(x, verbose=0), run_on_float_samples(tflite, x)) >= MIN_SIMULATION_SNR_DB
