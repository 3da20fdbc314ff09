"""benchmarks/keras_applications.py end to end on a small stand-in for a Keras Application (an SE conv net):
train, both edge_attn recipes and the TF-converter peer, rows merged into the JSON, the README table printed.

Reference for the numbers: the peer's int8 model is rebuilt here the same way and run in LiteRT by
tests/litert_reference.py (not edge_attn's runner); its held-out agreement with the float model is counted
with numpy and must equal the row's. The real models take about an hour (`python -m benchmarks.keras_applications`).
"""

import json

import numpy as np
import pytest
from litert_reference import run_on_float_samples

import benchmarks.keras_applications as apps
from edge_attn._keras import keras
from edge_attn.convert import load_recipe
from edge_attn.convert.inspect import inspect_tflite
from edge_attn.data import load_data


def small_se_net(classes):
    """Conv → SE (GAP, 1×1-conv pair, sigmoid, multiply) → pooled softmax head: an Application's pattern in miniature."""
    inputs = keras.Input(apps.INPUT_SHAPE)
    x = inputs
    for filters in (16, 32):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = keras.layers.Conv2D(8, 1, activation="relu")(gate)  # 1x1-conv "FC"s, as MobileNetV3 writes them
    gate = keras.layers.Conv2D(32, 1, activation="sigmoid")(gate)
    x = keras.layers.Multiply()([x, gate])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))  # as Applications end


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("apps") / "keras_applications.json"
    models = {}

    def build(name, classes):
        keras.utils.set_random_seed(0)
        models[name] = small_se_net(classes)
        return models[name]

    patch = pytest.MonkeyPatch()
    patch.setattr(apps, "build", build)
    # An earlier row of another model must survive the merge; a stale row of this one must be replaced.
    earlier = {"recipe": "int8-qat", "fully_int8": True, "float_top1": 0.9, "agreement": 0.5, "agreement_count": 1,
               "held_out_samples": 2, "snr_db": 1.0, "rewritten": []}
    out.write_text(json.dumps({"rows": [{**earlier, "model": "Other"}, {**earlier, "model": "SmallSE", "stale": True}]}))
    try:
        assert apps.main(["--models", "SmallSE", "--epochs", "6", "--qat-epochs", "1", "--out", str(out)]) == 0
    finally:
        patch.undo()
    return json.loads(out.read_text()), models["SmallSE"]


def test_rows_for_both_recipes_and_the_peer_merge_into_the_json(run):
    record, _ = run
    rows = {(r["model"], r["recipe"]): r for r in record["rows"]}
    assert set(rows) == {("Other", "int8-qat"), ("SmallSE", "int8-qat"), ("SmallSE", "int8-ptq"),
                         ("SmallSE", apps.PEER)}
    for recipe in (*apps.RECIPES, apps.PEER):
        row = rows["SmallSE", recipe]
        assert "stale" not in row and row["fully_int8"] is True, row
        assert row["agreement_count"] / row["held_out_samples"] == pytest.approx(row["agreement"])
        assert row["machine"]["cpus"] >= 1 and row["machine"]["float_epochs"] == 6
        assert row["input_range"] == [0.0, 1.0]  # no built-in preprocessing: the digits as they are
    assert rows["SmallSE", apps.PEER]["rewritten"] == []


def test_the_peer_row_is_what_tfs_converter_gives(run):
    record, model = run
    row = next(r for r in record["rows"] if r["model"] == "SmallSE" and r["recipe"] == apps.PEER)
    data = load_data("digits", input_shape=apps.INPUT_SHAPE)
    peer = apps.tf_converter_ptq(model, np.asarray(data.x_train), load_recipe("int8-ptq").calibration_samples)
    info = inspect_tflite(peer)
    assert info.fully_int8 and [t.dtype for t in info.inputs] == ["int8"]
    assert round(len(peer) / 1024, 1) == row["kib"]
    # The row compares logits (the softmax input, which edge_attn reads from the flatbuffer): here LiteRT
    # itself reads them, and numpy's argmax (first of tied maxima, as for any top-1) picks the class.
    x = np.asarray(data.x_eval)
    logits = run_on_float_samples(peer, x, input_of_op="SOFTMAX")
    agreement_count = np.sum(logits.argmax(1) == model.predict(x, verbose=0).argmax(1))
    assert (row["agreement_count"], row["held_out_samples"]) == (agreement_count, len(x))
