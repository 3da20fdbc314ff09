"""Per-op profiling by cutting ops out: each single-op model must compute exactly what that op computes
inside the whole model (the reference: the whole model's intermediate tensors, read with
``experimental_preserve_all_tensors``), and the profile must account for every op."""

import collections

import numpy as np
import pytest

from edge_attn._keras import keras
from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.evaluate.op_profile import profile_ops, single_op_models
from edge_attn.layers import CBAM
from edge_attn.litert import make_interpreter
from edge_attn.qat import calibrate_ranges, quantize_aware


@pytest.fixture(scope="module")
def cbam_int8():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = CBAM(16, name="cbam")(x)
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    samples = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype("float32")
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, samples)
    return convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples[:8]])


def test_each_cut_out_op_computes_what_it_computes_in_the_model(cbam_int8):
    whole = make_interpreter(cbam_int8, preserve_all_tensors=True)
    detail = whole.get_input_details()[0]
    whole.set_tensor(detail["index"], np.random.default_rng(1).integers(-128, 128, detail["shape"]).astype(np.int8))
    whole.invoke()
    info = inspect_tflite(cbam_int8)
    singles = single_op_models(cbam_int8)
    assert [(index, name) for index, name, _ in singles] == [(op.index, op.op) for op in info.ops]
    for (index, name, data), op in zip(singles, info.ops):
        assert data is not None, name
        single = make_interpreter(data, preserve_all_tensors=True)
        variable_inputs = [i for i in op.inputs if i >= 0 and not info.tensors[i].is_constant]
        for detail, tensor_index in zip(single.get_input_details(), variable_inputs):
            single.set_tensor(detail["index"], whole.get_tensor(tensor_index))
        single.invoke()
        expected = whole.get_tensor(op.outputs[0])
        np.testing.assert_array_equal(single.get_tensor(single.get_output_details()[0]["index"]), expected,
                                      err_msg=f"op {index} {name}")


def test_profile_accounts_for_every_op(cbam_int8):
    profile = profile_ops(cbam_int8, threads=1, rounds=2, runs_per_round=3)
    counts = collections.Counter(op.op for op in inspect_tflite(cbam_int8).ops)
    assert {row["op"]: row["count"] for row in profile.by_type} == dict(counts)
    assert sum(row["percent"] for row in profile.by_type) == pytest.approx(100.0, abs=0.05)
    assert all(entry["ms"] > 0 for entry in profile.ops) and profile.model_ms > 0
    assert {"REDUCE_MAX", "MEAN", "MUL", "LOGISTIC"} <= set(counts)  # the CBAM ops are there to be profiled
    assert profile.not_profiled == []
