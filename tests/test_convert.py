"""Tests of edge_attn.convert: recipes, Keras → TFLite conversion and the .tflite inspector.

References are independent of the code under test: the TFLite 8-bit quantization spec (int8 weights with
zero point 0, int32 biases with scale = input scale × weight scale), LiteRT's own ``Interpreter`` for
tensor names and quantization parameters, tfmot's fake-quant range variables (an 8-bit fake-quant over
[min, max] has scale (max - min) / 255), and the Keras model's own float output.
"""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edge_attn._keras import keras, tf
from edge_attn.convert import convert_model, inspect_tflite, list_recipes, load_recipe, write_tflite
from edge_attn.errors import BadInput

INPUT_SHAPE = (8, 8, 1)
SHIPPED = ["dynamic", "f32", "fp16", "int16x8", "int8-ptq", "int8-qat"]


def build_tiny(extra_layer=None, seed=0):
    """Conv→BN→ReLU→[extra]→Conv→ReLU→GAP→Dense at 8×8×1, untrained, with random biases and BN
    statistics (zero biases would be dropped by the converter; identity BN would fold to nothing).

    The second conv has 3·3·8·16 = 1152 weights: dynamic-range quantization skips tensors under 1024.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    bn = keras.layers.BatchNormalization()
    x = keras.layers.ReLU()(bn(x))
    if extra_layer is not None:
        x = extra_layer(x)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(seed)
    gamma, beta, mean, variance = (rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.1, 8),
                                   rng.uniform(0.5, 1.5, 8))
    bn.set_weights([gamma, beta, mean, variance])
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return model


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(1)
    return [rng.normal(size=(1, *INPUT_SHAPE)).astype("float32") for _ in range(16)]


@pytest.fixture(scope="module")
def float_model():
    return build_tiny()


@pytest.fixture(scope="module")
def converted(float_model, samples):
    """recipe name → flatbuffer bytes for the float model (the QAT recipe has its own fixture)."""
    return {name: convert_model(float_model, load_recipe(name), samples)
            for name in ("f32", "fp16", "dynamic", "int8-ptq")}


@pytest.fixture(scope="module")
def qat_model():
    import tensorflow_model_optimization as tfmot

    model = tfmot.quantization.keras.quantize_model(build_tiny(seed=2))
    # One forward pass in training mode initialises the fake-quant ranges (the input range from the batch).
    model(np.random.default_rng(3).normal(size=(16, *INPUT_SHAPE)).astype("float32"), training=True)
    return model


@pytest.fixture(scope="module")
def qat_converted(qat_model):
    return convert_model(qat_model, load_recipe("int8-qat"))


def write(tmp_path, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def tensors_of_op(info, op):
    return [info.tensors[i] for i in op.inputs if i >= 0], [info.tensors[i] for i in op.outputs]


# ---------------------------------------------------------------- recipes


def test_shipped_recipes_load():
    assert list_recipes() == SHIPPED
    for name in SHIPPED:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.batch_size == 1
        assert recipe == load_recipe(recipe.source)  # by path, the same recipe
        integer_io = {"int8": ("int8", "int8"), "int16x8": ("int16", "int16")}
        assert (recipe.input_type, recipe.output_type) == integer_io.get(recipe.quantization, ("float32", "float32"))
        assert recipe.qat == (name == "int8-qat")
        assert not recipe.allow_float_ops
    assert load_recipe("int8-qat").fine_tune.schedule in ("cosine", "step")


def test_shipped_recipes_comment_every_key():
    """Users copy these files: each key (or group of keys) sits under a comment explaining it."""
    key = re.compile(r"^\s*[A-Za-z_]+\s*=")
    for name in SHIPPED:
        lines = [line for line in open(load_recipe(name).source).read().splitlines() if line.strip()]
        for i, line in enumerate(lines):
            if key.match(line):
                above = next(prev for prev in reversed(lines[:i]) if not key.match(prev))
                assert above.lstrip().startswith("#"), f"{name}: {line!r} has no comment above it"


def test_minimal_recipe_takes_documented_defaults(tmp_path):
    int8 = load_recipe(write(tmp_path, 'quantization = "int8"\n', "mine.toml"))
    assert (int8.name, int8.input_type, int8.output_type, int8.batch_size, int8.qat) == ("mine", "int8", "int8", 1, False)
    fp16 = load_recipe(write(tmp_path, 'quantization = "fp16"\n'))
    assert (fp16.input_type, fp16.output_type) == ("float32", "float32")


@pytest.mark.parametrize("text, field", [
    ('quantization = "int8"\nbatchsize = 1\n', "batchsize"),  # unknown key
    ('quantization = "int8"\nbatch_size = "1"\n', "batch_size"),  # wrong type
    ('quantization = "int8"\nbatch_size = true\n', "batch_size"),  # bool is not an int
    ('quantization = "int8"\nbatch_size = 0\n', "batch_size"),
    ('quantization = "int8"\nbatch_size = 2\n', "batch_size"),  # checks run one sample per invoke
    ('quantization = "int8"\ncalibration_samples = 0\n', "calibration_samples"),
    ('quantization = "int8"\nallow_float_ops = "no"\n', "allow_float_ops"),
    ('quantization = "int4"\n', "quantization"),  # bad enum
    ('quantization = "int8"\ninput_type = "int16"\n', "input_type"),
    ('name = "x"\n', "quantization"),  # missing
    ('quantization = "fp16"\nqat = true\n', "qat"),  # qat with non-int8
    ('quantization = "fp16"\noutput_type = "int8"\n', "output_type"),
    ('quantization = "f32"\ncalibration_samples = 10\n', "calibration_samples"),  # would be ignored
    ('quantization = "int8"\n[fine_tune]\nepochs = 1\n', "fine_tune"),  # fine-tune without qat
    ('quantization = "int8"\nqat = true\n[fine_tune]\nepochz = 1\n', "fine_tune.epochz"),
    ('quantization = "int8"\nqat = true\n[fine_tune]\nschedule = "linear"\n', "fine_tune.schedule"),
    ('quantization = "int8"\nqat = true\n[fine_tune]\nlearning_rate = -1e-3\n', "fine_tune.learning_rate"),
    ('quantization = "int8"\nqat = true\n[fine_tune]\nepochs = 1.5\n', "fine_tune.epochs"),
])
def test_bad_recipe_names_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        load_recipe(path)
    assert caught.value.what == str(path)
    assert caught.value.problem.startswith(f"{field}:"), caught.value.problem


def test_every_learning_rate_schedule_can_be_chosen_in_a_recipe(tmp_path):
    from edge_attn.training import learning_rate_schedule

    for schedule in ("cosine", "step", "constant"):
        recipe = load_recipe(write(tmp_path, f'quantization = "int8"\nqat = true\n[fine_tune]\nschedule = "{schedule}"\n'))
        assert recipe.fine_tune.schedule == schedule
    rate = learning_rate_schedule("constant", 3e-4, 100)
    assert float(rate if isinstance(rate, float) else rate(50)) == pytest.approx(3e-4)


def test_the_python_api_trains_with_the_recipes_defaults():
    """``qat_finetune`` called without settings fine-tunes as ``edge-attn convert`` with a default recipe does."""
    import inspect

    from edge_attn.convert.recipe import QatSettings, Recipe
    from edge_attn.qat import qat_finetune

    defaults = {name: p.default for name, p in inspect.signature(qat_finetune).parameters.items()}
    for field in dataclasses.fields(QatSettings):
        assert defaults[field.name] == getattr(QatSettings(), field.name), field.name
    assert defaults["calibration_samples"] == Recipe.calibration_samples == load_recipe("int8-qat").calibration_samples
    assert QatSettings() == load_recipe("int8-qat").fine_tune  # and the shipped recipe states the same values


def test_unreadable_recipes(tmp_path):
    path = write(tmp_path, "quantization = \n")
    with pytest.raises(BadInput, match="not valid TOML") as caught:
        load_recipe(path)
    assert caught.value.what == str(path)
    with pytest.raises(BadInput, match="no such recipe file"):
        load_recipe(tmp_path / "missing.toml")
    with pytest.raises(BadInput) as caught:
        load_recipe("int9-qat")
    assert caught.value.what == "int9-qat"
    assert all(name in caught.value.problem for name in SHIPPED)


# ---------------------------------------------------------------- conversion


def test_ptq_int8_is_fully_int8_per_the_quantization_spec(converted):
    info = inspect_tflite(converted["int8-ptq"])
    assert info.fully_int8 and info.float_ops() == []
    assert [t.dtype for t in info.inputs + info.outputs] == ["int8", "int8"]
    assert info.inputs[0].shape == (1, *INPUT_SHAPE)  # the fixed batch
    # BN folds into the conv, ReLU fuses, GAP is MEAN: nothing else (no Shape/Reshape left behind)
    assert info.op_names == ["CONV_2D", "FULLY_CONNECTED", "MEAN"]
    weighted = [op for op in info.ops if op.op in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(weighted) == 3
    for op in weighted:
        (activation, weights, bias), (output,) = tensors_of_op(info, op)
        assert activation.dtype == output.dtype == "int8" and not activation.is_constant
        assert weights.dtype == "int8" and weights.is_constant and set(weights.zero_points) == {0}
        assert len(weights.scales) in (1, weights.shape[0])  # per-tensor or per output channel
        if op.op == "CONV_2D":
            assert len(weights.scales) == weights.shape[0] and weights.quantized_dimension == 0
        assert bias.dtype == "int32" and bias.is_constant and set(bias.zero_points) == {0}
        expected_bias_scales = np.float32(activation.scales[0]) * np.asarray(weights.scales, np.float32)
        np.testing.assert_allclose(bias.scales, np.broadcast_to(expected_bias_scales, (bias.shape[0],)), rtol=1e-5)
        assert all(-128 <= z <= 127 for z in output.zero_points)


def test_quantization_parameters_match_the_interpreter(converted):
    for name in ("int8-ptq", "dynamic", "f32"):
        info = inspect_tflite(converted[name])
        interpreter = Interpreter(model_content=converted[name],
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        for ours, theirs in [(info.inputs[0], interpreter.get_input_details()[0]),
                             (info.outputs[0], interpreter.get_output_details()[0])]:
            assert ours.index == theirs["index"] and ours.name == theirs["name"]
            assert ours.dtype == np.dtype(theirs["dtype"]).name
            assert ours.shape == tuple(theirs["shape"])
            assert (ours.scales[:1] or (0.0,))[0] == theirs["quantization"][0]
            assert (ours.zero_points[:1] or (0,))[0] == theirs["quantization"][1]
        details = {d["index"]: d for d in interpreter.get_tensor_details()}
        for tensor in info.tensors:
            params = details[tensor.index]["quantization_parameters"]
            assert tensor.name == details[tensor.index]["name"]
            assert tensor.scales == tuple(params["scales"].tolist())
            assert tensor.zero_points == tuple(params["zero_points"].tolist())
            assert tensor.quantized_dimension == params["quantized_dimension"]


def test_int8_model_computes_what_the_float_model_computes(float_model, converted, samples):
    """Through quantize → invoke → dequantize with the file's parameters, logits follow the float model."""
    interpreter = Interpreter(model_content=converted["int8-ptq"])
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    (in_scale, in_zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]
    got, want = [], []
    for x in samples:
        interpreter.set_tensor(inp["index"], np.clip(np.round(x / in_scale) + in_zero, -128, 127).astype(np.int8))
        interpreter.invoke()
        got.append((interpreter.get_tensor(out["index"]).astype(np.float32) - out_zero) * out_scale)
        want.append(float_model(x, training=False).numpy())
    got, want = np.concatenate(got), np.concatenate(want)
    snr_db = 10 * np.log10(np.sum(want**2) / np.sum((got - want) ** 2))
    assert snr_db > 20, snr_db


def test_float_recipes_keep_float_activations(converted):
    f32 = inspect_tflite(converted["f32"])
    assert not f32.fully_int8
    assert {t.dtype for t in f32.tensors if not t.is_constant} == {"float32"}
    assert all(t.scales == () for t in f32.tensors)
    assert f32.float_ops() == list(f32.ops)
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(f32.op_names)

    fp16 = inspect_tflite(converted["fp16"])
    assert not fp16.fully_int8 and "DEQUANTIZE" in fp16.op_names
    half = [t for t in fp16.tensors if t.dtype == "float16"]
    assert len(half) >= 6 and all(t.is_constant for t in half)  # 3 kernels + 3 biases
    for op in fp16.ops:
        ins, outs = tensors_of_op(fp16, op)
        if op.op == "DEQUANTIZE":
            assert [t.dtype for t in ins] == ["float16"] and [t.dtype for t in outs] == ["float32"]
        else:
            assert "float16" not in {t.dtype for t in ins}  # only DEQUANTIZE reads the fp16 weights

    dynamic = inspect_tflite(converted["dynamic"])
    assert not dynamic.fully_int8 and dynamic.float_ops()
    assert [t.dtype for t in dynamic.inputs + dynamic.outputs] == ["float32", "float32"]
    hybrid = []
    for op in dynamic.ops:
        ins, outs = tensors_of_op(dynamic, op)
        int8_weights = [t for t in ins if t.dtype == "int8" and t.is_constant and t.scales]
        if int8_weights:
            assert ins[0].dtype == "float32" and outs[0].dtype == "float32"
            hybrid.append(int8_weights[0].shape)
    assert (16, 3, 3, 8) in hybrid  # the 1152-weight conv


def test_converted_models_record_a_min_runtime_version(converted, qat_converted):
    for data in [*converted.values(), qat_converted]:
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", inspect_tflite(data).min_runtime_version)


def test_conversion_is_deterministic(float_model, converted, samples):
    clone = keras.models.clone_model(float_model)  # a second model object with the same layers and weights
    clone.set_weights(float_model.get_weights())
    assert convert_model(clone, load_recipe("int8-ptq"), iter(samples)) == converted["int8-ptq"]


def test_int8_with_float_io_is_integer_inside(float_model, samples):
    recipe = dataclasses.replace(load_recipe("int8-ptq"), input_type="float32", output_type="float32")
    info = inspect_tflite(convert_model(float_model, recipe, samples))
    assert info.op_names[0:1] == ["CONV_2D"] and {"QUANTIZE", "DEQUANTIZE"} <= set(info.op_names)
    assert info.float_ops() == []  # the QUANTIZE/DEQUANTIZE at the edges are not float computation
    assert not info.fully_int8  # but the graph inputs and outputs are float32


def test_tfmot_quantize_model_converts_fully_int8_from_its_fake_quant_ranges(qat_model, qat_converted):
    info = inspect_tflite(qat_converted)
    assert info.fully_int8
    # tfmot names the input range after its layer ("quantize_layer_3_min" when other models came first)
    low = [float(w.numpy()) for w in qat_model.layers[1].weights if w.name.endswith("_min:0")][0]
    high = [float(w.numpy()) for w in qat_model.layers[1].weights if w.name.endswith("_max:0")][0]
    assert info.inputs[0].scales[0] == pytest.approx((high - low) / 255, rel=1e-6)


def test_representative_data_does_not_override_qat_ranges(qat_model, qat_converted, samples):
    """Samples 100× larger than anything seen in training leave every QAT range as it was."""
    with_data = convert_model(qat_model, load_recipe("int8-qat"), [100 * s for s in samples])

    def quantization_by_op(data):
        info = inspect_tflite(data)
        return [(op.op, [(t.scales, t.zero_points) for t in tensors_of_op(info, op)[1]]) for op in info.ops]

    assert quantization_by_op(with_data) == quantization_by_op(qat_converted)


def test_qat_tensors_without_ranges_are_calibrated_only_with_data(samples):
    """A model where tfmot wrapped only the first conv: without data the rest stays float (rejected);
    with data the converter calibrates the uncovered tensors and the model is all-int8."""
    import tensorflow_model_optimization as tfmot

    annotate = tfmot.quantization.keras.quantize_annotate_layer
    keras.utils.set_random_seed(4)
    inputs = keras.Input(INPUT_SHAPE)
    x = annotate(keras.layers.Conv2D(8, 3, padding="same"))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = tfmot.quantization.keras.quantize_apply(keras.Model(inputs, keras.layers.Dense(3, name="head")(x)))
    model(np.concatenate(samples), training=True)  # initialise the fake-quant ranges
    recipe = load_recipe("int8-qat")
    with pytest.raises(BadInput, match=r"computing in float: .*FULLY_CONNECTED -> "):
        convert_model(model, recipe)
    assert inspect_tflite(convert_model(model, recipe, samples)).fully_int8


def test_op_without_int8_kernel_is_rejected_unless_float_ops_are_allowed(samples):
    model = build_tiny(keras.layers.Lambda(tf.math.floor, name="floor"), seed=5)
    with pytest.raises(BadInput, match=r"left 3 op\(s\) computing in float: DEQUANTIZE -> .*FLOOR -> .*floor") as caught:
        convert_model(model, load_recipe("int8-ptq"), samples)
    assert caught.value.what == f"model {model.name!r}"
    allowed = dataclasses.replace(load_recipe("int8-ptq"), allow_float_ops=True)
    info = inspect_tflite(convert_model(model, allowed, samples))
    assert "FLOOR" in [op.op for op in info.float_ops()] and not info.fully_int8


def test_converter_failure_names_the_op_and_writes_nothing(tmp_path, samples, capfd):
    model = build_tiny(keras.layers.Lambda(tf.math.erf, name="erf"), seed=6)
    target = tmp_path / "model.tflite"
    with pytest.raises(BadInput, match=r"failed: op tf\.Erf: ") as caught:
        write_tflite(target, convert_model(model, load_recipe("f32"), samples, name="erf.keras"))
    assert caught.value.what == "erf.keras"
    assert "\n" not in str(caught.value)
    assert caught.value.__cause__ is not None  # the converter's full message, for --debug
    assert "tf.Erf" in "".join(getattr(caught.value.__cause__, "__notes__", []))  # its native log too
    assert "loc(" not in capfd.readouterr().err  # ...and not on the terminal
    assert os.listdir(tmp_path) == []


def test_write_tflite_is_atomic(tmp_path, converted):
    target = tmp_path / "out" / "model.tflite"
    write_tflite(target, converted["f32"])
    assert target.read_bytes() == converted["f32"]
    with pytest.raises(TypeError):
        write_tflite(target, object())  # fails inside the write: the old file stays, no temp file is left
    assert target.read_bytes() == converted["f32"] and os.listdir(target.parent) == ["model.tflite"]


def test_model_and_recipe_mismatches(float_model, qat_model, samples):
    with pytest.raises(BadInput, match="needs representative data"):
        convert_model(float_model, load_recipe("int8-ptq"))
    with pytest.raises(BadInput, match=r"sample 0 has shape \(8, 8, 1\), expected \(1, 8, 8, 1\)") as caught:
        convert_model(float_model, load_recipe("int8-ptq"), [s[0] for s in samples])
    assert caught.value.what == "representative data"
    with pytest.raises(BadInput, match="expects a quantize-aware model"):
        convert_model(float_model, load_recipe("int8-qat"), samples)
    for name in ("int8-ptq", "fp16"):
        with pytest.raises(BadInput, match="model is quantize-aware"):
            convert_model(qat_model, load_recipe(name), samples)


# ---------------------------------------------------------------- inspector


def test_inspector_rejects_what_is_not_a_tflite_model(tmp_path, converted):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
    cases = {"empty.tflite": b"", "short.tflite": b"TFL3", "picture.tflite": png,
             "truncated.tflite": converted["int8-ptq"][: len(converted["int8-ptq"]) // 2]}
    for name, data in cases.items():
        path = write(tmp_path, "", name)
        path.write_bytes(data)
        with pytest.raises(BadInput) as caught:
            inspect_tflite(path)
        assert caught.value.what == str(path)
        assert "\n" not in caught.value.problem
    with pytest.raises(BadInput, match="no such file"):
        inspect_tflite(tmp_path / "missing.tflite")
    with pytest.raises(BadInput, match="truncated") as caught:
        inspect_tflite(converted["f32"][:-100])
    assert caught.value.what == "<bytes>"


def test_inspector_reads_files_and_writes_json(tmp_path, converted):
    path = tmp_path / "model.tflite"
    write_tflite(path, converted["int8-ptq"])
    info = inspect_tflite(path)
    assert info == dataclasses.replace(inspect_tflite(converted["int8-ptq"]), source=str(path))
    data = json.loads(json.dumps(info.to_dict()))
    assert data["fully_int8"] is True and data["op_names"] == info.op_names
    assert data["size_bytes"] == len(converted["int8-ptq"])
    assert [op["op"] for op in data["ops"]] == [op.op for op in info.ops]
    assert data["inputs"][0]["dtype"] == "int8" and data["inputs"][0]["scales"] == list(info.inputs[0].scales)
