"""Per-layer range diagnostics of a converted model, named in check's and convert's summary.

- ``levels``: layers whose values span only a few int8 steps. The case users hit: [0, 1] images fed to a model
  whose Rescaling expects [0, 255] (``Rescaling(1/127.5, offset=-1)``, MobileNetV3's and EfficientNetV2's
  built-in preprocessing).
- ``clipped`` / ``clipping_snr_db``: layers whose values go beyond the calibrated int8 range. The case
  users hit: calibration on a few samples, evaluation on data that reaches further (random-model seed 14:
  logits clipped at 2.4 where the held-out samples reach 3.1, 16.7 dB output SNR).

Reference: TFLite's quantization spec — an int8 tensor's range always contains 0 and is the calibrated
[min, max], so values in [lo, hi] with lo < hi < 0 get the scale (0 - lo) / 255 and span (hi - lo) / scale
steps, and values past the calibrated max are clipped to it — computed here with numpy from the data, not
from edge_attn.
"""

import numpy as np
import pytest

from edge_attn._keras import keras
from edge_attn.convert import convert_model, load_recipe
from edge_attn.evaluate.per_layer import (clipped_layers, describe_ranges, layer_errors,
                                          low_resolution_layers)

SHAPE = (12, 12, 3)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _rows(model, x, calibration=None):
    calibration = x if calibration is None else calibration
    tflite = convert_model(model, load_recipe("int8-ptq"), [s[None] for s in calibration])
    return {row["name"]: row for row in layer_errors(model, tflite, x)}


def test_unit_range_data_into_a_0_255_rescaling_is_named(model):
    x = np.random.default_rng(1).uniform(0, 1, size=(16, *SHAPE)).astype("float32")
    rows = _rows(model, x)
    lo, hi = x.min() / 127.5 - 1, x.max() / 127.5 - 1
    expected = (hi - lo) / ((0 - lo) / 255)  # about 2 steps
    assert rows["preprocess"]["levels"] == pytest.approx(expected, abs=0.15)
    assert rows["preprocess"]["float_range"] == pytest.approx([lo, hi], abs=1e-6)
    assert [r["name"] for r in low_resolution_layers(list(rows.values()))] == ["preprocess"]
    (label, text), = describe_ranges(list(rows.values()), kinds=("levels",))
    assert "preprocess 2" in text and "feed data in the range the model expects" in text, text


def test_data_in_the_expected_range_is_not_named(model):
    x = np.random.default_rng(1).uniform(0, 255, size=(16, *SHAPE)).astype("float32")
    rows = _rows(model, x)
    assert rows["preprocess"]["levels"] > 200  # [-1, 1] over 255 steps
    assert low_resolution_layers(list(rows.values())) == [] and describe_ranges(list(rows.values()), kinds=("levels",)) == []


def test_values_beyond_the_calibrated_range_are_measured_and_named(model):
    rng = np.random.default_rng(2)
    calibration = rng.uniform(0, 255, size=(16, *SHAPE)).astype("float32")
    x = rng.uniform(0, 510, size=(16, *SHAPE)).astype("float32")  # reaches twice as far
    rows = _rows(model, x, calibration)
    values = x.astype(np.float64) / 127.5 - 1
    lo, hi = calibration.min() / 127.5 - 1, calibration.max() / 127.5 - 1
    expected_share = np.mean(values > hi)  # about half of them
    clipped = np.clip(values, lo, hi)
    expected_db = 10 * np.log10(np.sum(values ** 2) / np.sum((values - clipped) ** 2))
    # within a step of the nudged zero point: ~1/255 of the range moves the boundary
    assert rows["preprocess"]["clipped"] == pytest.approx(expected_share, abs=0.01)
    assert rows["preprocess"]["clipping_snr_db"] == pytest.approx(expected_db, abs=0.3)
    assert "preprocess" in [r["name"] for r in clipped_layers(list(rows.values()))]
    (label, text), = describe_ranges(list(rows.values()), kinds=("clipped",))
    assert label.startswith("clipped") and "preprocess" in text and "calibrat" in text, text


def test_data_inside_the_calibrated_range_is_not_clipped(model):
    x = np.random.default_rng(1).uniform(0, 255, size=(16, *SHAPE)).astype("float32")
    rows = _rows(model, x)
    assert all(r["clipped"] == 0 and r["clipping_snr_db"] is None for r in rows.values()), rows
    assert describe_ranges(list(rows.values()), kinds=("clipped",)) == []
