"""DEQUANTIZE → QUANTIZE pairs between int8 tensors become integer ops (edge_attn.convert.requantize).

The converter leaves such a pair after the input of models whose first layer is a preprocessing affine
(generator seeds 4 and 24: Rescaling first; both scales equal up to float32 rounding) or a stand-alone
BatchNormalization in a 1D model (seed 5: a real rescale); int8-qat then refused them as "left 2 op(s)
computing in float". Checked with the real converter and LiteRT: an identity pair is dropped and the int8
outputs are identical on every sample to the model with ``allow_float_ops`` (pair kept); a real rescale
becomes one int8 → int8 QUANTIZE whose output is the numpy requantization ``round(q * s_in / s_out) + z_out``
of its input.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from model_generator import random_data, random_model, train_briefly  # noqa: E402

from edge_attn._keras import keras  # noqa: E402
from edge_attn.convert.inspect import flatbuffer_utils, inspect_tflite  # noqa: E402
from edge_attn.convert.requantize import integer_requantize  # noqa: E402
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


def _converted_both_ways(seed, tmp_path_factory):
    """``({"kept": bytes, "int8": bytes}, x)``: the seed's model through the CLI, once with the pass disabled
    and allow_float_ops = true (the converter's own output), once with int8-qat as shipped."""
    import edge_attn.convert.converter as converter
    from edge_attn.cli import main

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
                patch.setattr(converter, "integer_requantize", lambda data: (data, 0, 0))
            assert main(argv) == 0, name
        results[name] = (out / "model.tflite").read_bytes()
    return results, x


@pytest.fixture(scope="module", params=[24, 4])
def converted(request, tmp_path_factory):
    """Seeds whose pair requantizes to the same scale."""
    return _converted_both_ways(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def rescaled(tmp_path_factory):
    """Seed 5: 1D input → BatchNormalization, the pair rescales 0.0256 → 0.0306."""
    return _converted_both_ways(5, tmp_path_factory)


def test_the_converter_leaves_the_pair_and_the_pass_removes_it(converted):
    results, x = converted
    assert [op.op for op in inspect_tflite(results["kept"]).float_ops()] == ["DEQUANTIZE", "QUANTIZE"]
    assert inspect_tflite(results["int8"]).float_ops() == []
    cleaned, removed, fused = integer_requantize(results["kept"])
    assert (removed, fused) == (1, 0) and inspect_tflite(cleaned).float_ops() == []
    # bit-identical int8 outputs on every sample: the pair was an identity
    np.testing.assert_array_equal(_int8_outputs(cleaned, x), _int8_outputs(results["kept"], x))
    np.testing.assert_array_equal(_int8_outputs(results["int8"], x), _int8_outputs(results["kept"], x))


def test_a_pair_that_really_rescales_is_not_dropped_but_requantized(converted):
    results, _ = converted
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(results["kept"]))
    graph = model.subgraphs[0]
    info = inspect_tflite(results["kept"])
    quantize = next(op for op in info.float_ops() if op.op == "QUANTIZE")
    tensor = graph.tensors[quantize.outputs[0]]
    tensor.quantization.scale = np.asarray(tensor.quantization.scale) * 1.01  # a 1% rescale is real
    rescaled = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    _, removed, fused = integer_requantize(rescaled)
    assert (removed, fused) == (0, 1)


def test_nothing_to_remove_returns_the_bytes_unchanged(converted):
    results, _ = converted
    data, removed, fused = integer_requantize(results["int8"])
    assert removed == fused == 0 and data is results["int8"]


def test_a_real_rescale_becomes_one_integer_quantize_equal_to_numpy_requantization(rescaled):
    from edge_attn.litert import make_interpreter

    results, x = rescaled
    assert [op.op for op in inspect_tflite(results["kept"]).float_ops()] == ["DEQUANTIZE", "QUANTIZE"]
    info = inspect_tflite(results["int8"])
    assert info.float_ops() == [] and info.fully_int8
    requantize = [op for op in info.ops if op.op == "QUANTIZE" and info.tensors[op.inputs[0]].dtype == "int8"]
    assert len(requantize) == 1
    source, target = info.tensors[requantize[0].inputs[0]], info.tensors[requantize[0].outputs[0]]
    assert source.scales[0] != pytest.approx(target.scales[0], rel=1e-3)  # a real rescale, not an identity

    interpreter = make_interpreter(results["int8"], preserve_all_tensors=True)
    inp = interpreter.get_input_details()[0]
    scale, zero = inp["quantization"]
    steps_off = []
    for sample in x:
        interpreter.set_tensor(inp["index"], np.clip(np.round(sample[None] / scale + zero), -128, 127).astype(np.int8))
        interpreter.invoke()
        q_in = interpreter.get_tensor(source.index).astype(np.float64)
        expected = np.clip(np.round((q_in - source.zero_points[0]) * source.scales[0] / target.scales[0])
                           + target.zero_points[0], -128, 127)
        steps_off.append(np.abs(interpreter.get_tensor(target.index).astype(np.float64) - expected))
    steps_off = np.concatenate([s.ravel() for s in steps_off])
    assert steps_off.max() <= 1  # a fixed-point multiplier may round a tie the other way
    assert np.mean(steps_off == 0) >= 0.99
    # and the whole model computes what the float round trip did: a one-step tie rounded the other way
    # early on can grow through the layers after it (measured: 87% of output values identical, the others
    # 1-3 steps off)
    fused, kept = (_int8_outputs(results[name], x).astype(np.float64) for name in ("int8", "kept"))
    print(f"identical {np.mean(fused == kept):.3f}, max steps off {np.abs(fused - kept).max():.0f}")
    assert np.mean(fused == kept) >= 0.75
    snr_db = 10 * np.log10(np.sum(kept ** 2) / np.sum((fused - kept) ** 2)) if np.any(fused != kept) else np.inf
    print(f"SNR of the requantized model's int8 outputs against the float round trip's: {snr_db:.1f} dB")
    assert snr_db >= 30
