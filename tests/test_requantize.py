"""DEQUANTIZE → QUANTIZE pairs that requantize to the same scale are dropped (edge_attn.convert.requantize).

The converter leaves such a pair after the input of models whose first layer is a preprocessing affine
(generator seeds 4 and 24: Rescaling first); int8-qat then refused them as "left 2 op(s) computing in
float". Checked with the real converter and LiteRT: the model with ``allow_float_ops`` (pair kept) and the
pass's result give identical int8 outputs on every sample, and a pair that really rescales is kept.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from model_generator import random_data, random_model, train_briefly  # noqa: E402

from edge_attn._keras import keras  # noqa: E402
from edge_attn.convert.inspect import flatbuffer_utils, inspect_tflite  # noqa: E402
from edge_attn.convert.requantize import drop_identity_requantize  # noqa: E402
from edge_attn.litert import make_interpreter  # noqa: E402

RECIPE = os.path.join(os.path.dirname(__file__), "..", "edge_attn", "recipes", "int8-qat.toml")


def _int8_outputs(tflite, x):
    interpreter = make_interpreter(tflite)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    results = []
    for sample in x:
        interpreter.set_tensor(inp["index"], np.clip(np.round(sample[None] / scale + zero), -128, 127).astype(np.int8))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(results)


@pytest.fixture(scope="module", params=[24, 4])
def converted(request, tmp_path_factory):
    """``({"kept": bytes, "int8": bytes}, x)``: the seed's model through the CLI, once with the pass disabled
    and allow_float_ops = true (the converter's own output), once with int8-qat as shipped."""
    import edge_attn.convert.converter as converter
    from edge_attn.cli import main

    seed = request.param
    folder = tmp_path_factory.mktemp(f"seed{seed}")
    keras.backend.clear_session()
    model = random_model(seed, classes=3)
    x, y = random_data(model, seed, classes=3)
    train_briefly(model, x, y, seed=seed)
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", x=x, y=y)
    recipe = folder / "float-ops.toml"
    recipe.write_text(open(RECIPE).read().replace("allow_float_ops = false", "allow_float_ops = true")
                      .replace('name = "int8-qat"', 'name = "float-ops"'))
    results = {}
    for name, recipe_arg in (("kept", str(recipe)), ("int8", "int8-qat")):
        out = folder / name
        argv = ["convert", str(folder / "model.keras"), "--recipe", recipe_arg, "--data", str(folder / "data.npz"),
                "--epochs", "0", "--runs", "1", "--no-progress", "--out", str(out)]
        with pytest.MonkeyPatch.context() as patch:
            if name == "kept":
                patch.setattr(converter, "drop_identity_requantize", lambda data: (data, 0))
            assert main(argv) == 0, name
        results[name] = (out / "model.tflite").read_bytes()
    return results, x


def test_the_converter_leaves_the_pair_and_the_pass_removes_it(converted):
    results, x = converted
    assert [op.op for op in inspect_tflite(results["kept"]).float_ops()] == ["DEQUANTIZE", "QUANTIZE"]
    assert inspect_tflite(results["int8"]).float_ops() == []
    cleaned, removed = drop_identity_requantize(results["kept"])
    assert removed == 1 and inspect_tflite(cleaned).float_ops() == []
    # bit-identical int8 outputs on every sample: the pair was an identity
    np.testing.assert_array_equal(_int8_outputs(cleaned, x), _int8_outputs(results["kept"], x))
    np.testing.assert_array_equal(_int8_outputs(results["int8"], x), _int8_outputs(results["kept"], x))


def test_a_pair_that_really_rescales_is_kept(converted):
    results, _ = converted
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(results["kept"]))
    graph = model.subgraphs[0]
    info = inspect_tflite(results["kept"])
    quantize = next(op for op in info.float_ops() if op.op == "QUANTIZE")
    tensor = graph.tensors[quantize.outputs[0]]
    tensor.quantization.scale = np.asarray(tensor.quantization.scale) * 1.01  # a 1% rescale is real
    rescaled = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    _, removed = drop_identity_requantize(rescaled)
    assert removed == 0


def test_nothing_to_remove_returns_the_bytes_unchanged(converted):
    results, _ = converted
    data, removed = drop_identity_requantize(results["int8"])
    assert removed == 0 and data is results["int8"]
