"""Layers whose values span only a few int8 steps are named (per-layer ``levels``, check's and convert's
summary row). The case users hit: [0, 1] images fed to a model whose Rescaling expects [0, 255]
(``Rescaling(1/127.5, offset=-1)``, MobileNetV3's and EfficientNetV2's built-in preprocessing).

Reference: TFLite's quantization spec — an int8 tensor's range always contains 0, so values in
[lo, hi] with lo < hi < 0 get the scale (0 - lo) / 255 and span (hi - lo) / scale steps — computed here with
numpy from the data, not from edge_attn.
"""

import numpy as np
import pytest

from edge_attn._keras import keras
from edge_attn.convert import convert_model, load_recipe
from edge_attn.evaluate.per_layer import describe_low_resolution, layer_errors, low_resolution_layers

SHAPE = (12, 12, 3)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _rows(model, x):
    tflite = convert_model(model, load_recipe("int8-ptq"), [s[None] for s in x])
    return {row["name"]: row for row in layer_errors(model, tflite, x)}


def test_unit_range_data_into_a_0_255_rescaling_is_named(model):
    x = np.random.default_rng(1).uniform(0, 1, size=(16, *SHAPE)).astype("float32")
    rows = _rows(model, x)
    lo, hi = x.min() / 127.5 - 1, x.max() / 127.5 - 1
    expected = (hi - lo) / ((0 - lo) / 255)  # about 2 steps
    assert rows["preprocess"]["levels"] == pytest.approx(expected, abs=0.15)
    assert rows["preprocess"]["float_range"] == pytest.approx([lo, hi], abs=1e-6)
    assert [r["name"] for r in low_resolution_layers(list(rows.values()))] == ["preprocess"]
    (label, text), = describe_low_resolution(list(rows.values()))
    assert "preprocess 2" in text and "feed data in the range the model expects" in text, text


def test_data_in_the_expected_range_is_not_named(model):
    x = np.random.default_rng(1).uniform(0, 255, size=(16, *SHAPE)).astype("float32")
    rows = _rows(model, x)
    assert rows["preprocess"]["levels"] > 200  # [-1, 1] over 255 steps
    assert low_resolution_layers(list(rows.values())) == [] and describe_low_resolution(list(rows.values())) == []
