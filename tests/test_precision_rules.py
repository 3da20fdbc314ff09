"""Per-layer precision rules (``[[precision]]`` in recipes): validation, conversion with a float and an int16x8
island, what the report says about them, and their numerics.

References independent of the code under test: LiteRT's own ``Interpreter`` (tensor dtypes and quantization
parameters of each op as the runtime loads them; the outputs it computes), the float Keras model's output and
layer outputs (numpy SNR formula), and the weights' own sizes (a float island's conv stores its weights in
float32: 3 bytes more per weight than int8).
"""

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edge_attn._keras import keras, tf
from litert_reference import run_on_float_samples, snr_db, xnnpack_loads

from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.convert.precision import precision_report
from edge_attn.convert.recipe import parse_recipe
from edge_attn.errors import BadInput

SHAPE = (16, 16, 1)
RULES = [{"match": "^body$", "precision": "float"}, {"match": "^head$", "precision": "int16x8"},
         {"match": "^(body|head)$", "precision": "int8"}]  # never decides: the first match wins
TABLE = {"name": "mixed", "quantization": "int8", "input_type": "float32", "output_type": "float32",
         "calibration_samples": 16, "precision": RULES}


def _build():
    keras.utils.set_random_seed(3)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="body")(x)
    x = keras.layers.ReLU(name="body_relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="tail")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(x))


@pytest.fixture(scope="module")
def setup():
    model = _build()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(16, *SHAPE)).astype("float32")
    samples = [s[np.newaxis] for s in x]
    recipe = parse_recipe(dict(TABLE), "mixed.toml")
    tflite = convert_model(model, recipe, samples, name="tiny")
    return model, x, samples, recipe, tflite


def _ops_of_layer(info, layer):
    return [op for op in info.ops if op.op not in ("QUANTIZE", "DEQUANTIZE")
            and any(f"/{layer}/" in info.tensors[t].name or f"/quant_{layer}/" in info.tensors[t].name
                    for t in op.outputs)]


def test_rules_make_a_float_and_an_int16_island_with_quantize_dequantize_at_their_borders(setup):
    model, x, samples, recipe, tflite = setup
    info = inspect_tflite(tflite)
    interpreter = Interpreter(model_content=tflite)
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    body, stem = _ops_of_layer(info, "body"), _ops_of_layer(info, "stem")
    head = [op for op in info.ops if op.op == "FULLY_CONNECTED"]  # the graph output: its tensor has no layer name
    assert [op.op for op in body] == ["CONV_2D"] and [op.op for op in head] == ["FULLY_CONNECTED"]
    assert dtype[body[0].outputs[0]] == np.float32 and dtype[body[0].inputs[1]] == np.float32  # float weights too
    assert dtype[head[0].outputs[0]] == np.int16 and dtype[head[0].inputs[0]] == np.int16
    assert dtype[head[0].inputs[1]] == np.int8  # 8-bit weights
    assert dtype[stem[0].outputs[0]] == np.int8
    # the float island reads a DEQUANTIZE of the int8 stem and feeds a QUANTIZE back to int8
    producer = {t: op for op in info.ops for t in op.outputs}
    assert producer[body[0].inputs[0]].op == "DEQUANTIZE"
    readers = [op.op for op in info.ops if body[0].outputs[0] in op.inputs]
    assert readers == ["QUANTIZE"]
    assert not info.fully_int8 and not info.fully_integer
    assert info.activation_types == ["float32", "int16", "int8"]
    assert "compute in float" in info.why_not_fully_int8()


def test_the_report_names_the_islands_and_what_they_cost(setup):
    model, x, samples, recipe, tflite = setup
    section = precision_report(model, recipe, tflite, samples, name="tiny")
    by_precision = {island["precision"]: island for island in section["islands"]}
    assert set(by_precision) == {"float", "int16x8"}
    assert by_precision["float"]["layers"][0] == "body" and by_precision["float"]["rules"] == [1]
    assert by_precision["int16x8"]["layers"] == ["head"] and by_precision["int16x8"]["rules"] == [2]
    assert all(island["why"].startswith("precision rule") for island in section["islands"])
    assert section["base"] == "int8" and section["not_honoured"] == []
    cost = section["cost"]
    body_weights = int(np.prod(model.get_layer("body").kernel.shape))
    # float32 instead of int8 weights: 3 bytes more per weight, give or take a few border tensors and bias words
    # (both models carry the float32 input's QUANTIZE and the output's DEQUANTIZE; measured 3448 for 3456)
    assert 3 * body_weights - 64 <= cost["bytes_added"] <= 3 * body_weights + 4096, cost
    assert cost["bytes"] == len(tflite)
    for entry in cost["delegates"]:
        assert entry["splits"] == (entry["partitions"] > entry["partitions_without_rules"])
    xnnpack = next(e for e in cost["delegates"] if e["delegate"] == "xnnpack")
    assert xnnpack["delegated_ops"] < xnnpack["delegated_ops_without_rules"] + len(section["islands"]) * 3
    json.dumps(section)


def test_mixed_numerics_against_the_float_model_with_the_real_interpreter(setup):
    from edge_attn.convert.precision import convert_mixed

    model, x, samples, recipe, tflite = setup
    reference = model(x, training=False).numpy()
    mixed = snr_db(reference, run_on_float_samples(tflite, x))
    # all-int8 through the same quantizer and samples: a float and an int16 island only take error away
    all_int8 = snr_db(reference, run_on_float_samples(convert_mixed(model, recipe, samples, "tiny", rules=()), x))
    assert mixed > 30 and mixed > all_int8, (mixed, all_int8)
    # the float island computes the float layer: fed the float model's own input to it, its output is exact
    inner = keras.Model(model.inputs, [model.get_layer("stem_relu").output, model.get_layer("body").output])
    stem = inner(x[:1], training=False)[0].numpy()
    interpreter = Interpreter(model_content=tflite, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    value = x[:1]
    if inp["dtype"] != np.float32:  # the quantizer may make the graph input int8 itself
        scale, zero = inp["quantization"]
        value = np.clip(np.round(value / scale) + zero, -128, 127).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], value)
    interpreter.invoke()
    info = inspect_tflite(tflite)
    conv = _ops_of_layer(info, "body")[0]
    fed = interpreter.get_tensor(conv.inputs[0])  # the DEQUANTIZEd int8 stem: float values on the int8 grid
    assert snr_db(stem, fed) > 25
    exact = np.maximum(model.get_layer("body")(fed).numpy(), 0)  # the Keras conv (+ its ReLU, fused in the op)
    np.testing.assert_allclose(interpreter.get_tensor(conv.outputs[0]), exact, rtol=1e-4, atol=1e-4)


def test_mixed_ranges_are_the_calibration_samples_extremes(setup):
    """int16x8 islands through the AI Edge Quantizer take each tensor's min/max over all calibration samples, as
    TF's converter does (its default merges samples by a moving average: ranges near the last samples' own,
    which clipped 8% of an SE layer's values and cost 20 dB on digits-glare). Reference: the Keras model's
    own activations over the same samples."""
    from edge_attn.convert.precision import convert_mixed

    model, x, samples, recipe, _ = setup
    rules = parse_recipe(TABLE | {"precision": [{"match": ".", "precision": "int16x8"}]}, "all16.toml").precision
    tflite = convert_mixed(model, recipe, samples, "tiny", rules=rules)
    info = inspect_tflite(tflite)
    (body,) = _ops_of_layer(info, "body")  # the conv with its ReLU fused: the ReLU's range
    details = next(t for t in Interpreter(model_content=tflite).get_tensor_details() if t["index"] == body.outputs[0])
    assert details["dtype"] == np.int16
    activations = keras.Model(model.inputs, model.get_layer("body_relu").output)(np.concatenate(samples)).numpy()
    np.testing.assert_allclose(details["quantization"][0], np.abs(activations).max() / 32767, rtol=1e-4)


def test_rules_are_validated_naming_the_file_and_field():
    cases = [
        (TABLE | {"precision": [{"match": "x", "precision": "int4"}]}, "precision[1].precision"),
        (TABLE | {"precision": [{"match": "(", "precision": "float"}]}, "precision[1].match"),
        (TABLE | {"precision": [{"precision": "float"}]}, "precision[1].match"),
        (TABLE | {"precision": [{"match": "x", "precision": "float", "scope": "y"}]}, "precision[1].scope"),
        (TABLE | {"precision": [RULES[0], {"match": 3, "precision": "float"}]}, "precision[2].match"),
        (TABLE | {"precision": {"match": "x"}}, "precision"),
        (TABLE | {"input_type": "int8"}, "precision"),
        ({"quantization": "fp16", "precision": RULES}, "precision"),
    ]
    for table, field in cases:
        with pytest.raises(BadInput) as caught:
            parse_recipe(table, "my.toml")
        assert caught.value.what == "my.toml", table
        assert caught.value.problem.startswith(field + ":"), (field, caught.value.problem)
    recipe = parse_recipe(dict(TABLE), "my.toml")
    assert [r.to_dict() for r in recipe.precision] == RULES
    assert recipe.to_dict()["precision"] == RULES


def test_a_rule_matching_no_layer_is_refused(setup):
    model, x, samples, recipe, tflite = setup
    typo = parse_recipe(TABLE | {"precision": [{"match": "^bodyy$", "precision": "float"}]}, "typo.toml")
    with pytest.raises(BadInput) as caught:
        convert_model(model, typo, samples, name="tiny")
    assert caught.value.what == "typo.toml" and "precision[1].match" in caught.value.problem


def test_shipped_recipes_document_the_rules():
    for name in ("int8-ptq", "int8-qat", "int16x8"):
        recipe = load_recipe(name)
        text = open(recipe.source).read()
        assert "[[precision]]" in text and "first match wins" in text, name
        assert recipe.precision == ()  # the examples are commented out


def _qat_conversion(setup, match):
    from edge_attn.convert.precision import float_rule_layers
    from edge_attn.qat import calibrate_ranges, quantize_aware

    model, x, samples, _, _ = setup
    recipe = parse_recipe(TABLE | {"qat": True, "precision": [{"match": match, "precision": "float"}]}, "qat.toml")
    qat = quantize_aware(model, keep_float=float_rule_layers(recipe))
    calibrate_ranges(qat.model, qat.float_model, x)
    return qat, recipe, convert_model(qat.deployable(), recipe, samples, name="tiny-qat")


def _run_preserving(tflite, sample):
    """The builtin kernels, every tensor kept (inside an XNNPACK partition intermediate tensors are not written)."""
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(model_content=tflite, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    return interpreter


def _quantize_like(values, interpreter, index):
    details = next(t for t in interpreter.get_tensor_details() if t["index"] == index)
    scale, zero = details["quantization"]
    return np.clip(np.round(values / scale) + zero, -128, 127).astype(np.int8)


def test_qat_puts_no_fake_quant_on_float_layers_and_converts_them_in_float(setup):
    """Under QAT a float rule means: no fake-quant on the layer's weights (its output is fake-quantized only
    where an int8 layer reads it, as the deployed QUANTIZE at the island's border does) and its op computes in
    float with the layer's own float weights; the rest keeps its QAT (fake-quant) ranges and is int8. The rule
    is on ``tail`` (Conv2D → pooling), whose weights are fake-quantized without the rule (asserted). TF's
    converter alone made that op int8 (its denylist is not honoured between fake-quant ranges):
    :mod:`edge_attn.convert.float_islands` puts it back into float."""
    from edge_attn.qat import quantize_aware

    model, x, samples, _, _ = setup

    def weight_ranges(qat, name):
        layer = next(l for l in qat.model.layers if l.name in (name, f"quant_{name}"))
        return [w.name for w in layer.weights if "kernel_m" in w.name]

    qat, recipe, tflite = _qat_conversion(setup, "^tail$")
    assert weight_ranges(quantize_aware(model), "tail") and weight_ranges(qat, "head")
    assert weight_ranges(qat, "tail") == []
    info = inspect_tflite(tflite)
    interpreter = Interpreter(model_content=tflite)
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    tail, body, head = (_ops_of_layer(info, name) for name in ("tail", "body", "head"))
    assert dtype[tail[0].outputs[0]] == np.float32 and dtype[tail[0].inputs[1]] == np.float32
    assert dtype[body[0].outputs[0]] == np.int8 and dtype[head[0].outputs[0]] == np.int8
    assert not info.fully_int8
    # the float op holds the layer's trained float kernel (OHWI), not int8 values
    tail_layer = next(l for l in qat.deployable().layers if l.name in ("tail", "quant_tail"))
    kernel = getattr(tail_layer, "layer", tail_layer).kernel.numpy().transpose(3, 0, 1, 2)
    interpreter = _run_preserving(tflite, x[:1])
    np.testing.assert_array_equal(interpreter.get_tensor(tail[0].inputs[1]), kernel)
    # and computes the float convolution on what it is fed (the DEQUANTIZEd int8 body output). The reference is
    # TF's conv2d with the Keras weights: calling the QAT layer would also fake-quantize its output (which the
    # QUANTIZE after the float op does for the int8 MEAN that reads it)
    fed = interpreter.get_tensor(tail[0].inputs[0])
    inner = getattr(tail_layer, "layer", tail_layer)
    exact = tf.nn.conv2d(fed, inner.kernel, 1, "SAME").numpy() + inner.bias.numpy()
    np.testing.assert_allclose(interpreter.get_tensor(tail[0].outputs[0]), exact, rtol=1e-5, atol=1e-5)
    (requantize,) = [op for op in info.ops if op.op == "QUANTIZE" and op.inputs == tail[0].outputs]
    np.testing.assert_array_equal(interpreter.get_tensor(requantize.outputs[0]),
                                  _quantize_like(exact, interpreter, requantize.outputs[0]))
    assert xnnpack_loads(tflite)
    reference = model(x, training=False).numpy()
    assert snr_db(reference, run_on_float_samples(tflite, x)) > 25
    section = precision_report(qat.deployable(), recipe, tflite, samples, name="tiny-qat")
    assert [island["precision"] for island in section["islands"]] == ["float"]
    assert section["islands"][0]["layers"][0] == "tail"
    assert section["cost"]["bytes_added"] > 0


def test_qat_float_island_of_two_convs_has_no_int8_round_trip_inside(setup):
    """``body`` and ``tail`` float: one island from a DEQUANTIZE after ``stem`` to a QUANTIZE before the int8
    pooling; ``tail`` reads ``body``'s float output itself (no QUANTIZE/DEQUANTIZE between them)."""
    qat, recipe, tflite = _qat_conversion(setup, "^(body|tail)$")
    info = inspect_tflite(tflite)
    body, tail = _ops_of_layer(info, "body"), _ops_of_layer(info, "tail")
    assert tail[0].inputs[0] == body[0].outputs[0] and info.tensors[body[0].outputs[0]].dtype == "float32"
    ops = [op.op for op in info.ops]
    assert ops.count("QUANTIZE") == 2 and ops.count("DEQUANTIZE") == 2, ops  # + the graph input's and output's
    section = precision_report(qat.deployable(), recipe, tflite, setup[2], name="tiny-qat")
    assert len(section["islands"]) == 1 and set(section["islands"][0]["layers"]) >= {"body", "tail"}


def test_float_pass_on_the_output_op_writes_the_float_output_itself(setup):
    """:func:`compute_in_float` straight on a post-training int8 model, on its last op (the head, whose int8
    output was only DEQUANTIZEd for the float32 output): the head computes the float output directly and
    equals the Dense on its float input."""
    from edge_attn.convert.float_islands import compute_in_float

    model, x, samples, _, _ = setup
    float_io = parse_recipe({k: v for k, v in TABLE.items() if k != "precision"}, "float-io.toml")
    tflite = convert_model(model, float_io, samples, name="tiny")
    info = inspect_tflite(tflite)
    (head,) = [op for op in info.ops if op.op == "FULLY_CONNECTED"]
    floated, done = compute_in_float(tflite, [info.tensors[head.outputs[0]].name])
    assert [d["op"] for d in done] == ["FULLY_CONNECTED"] and done[0]["weights"] == "int8 grid"
    after = inspect_tflite(floated)
    assert [op.op for op in after.ops].count("DEQUANTIZE") == 1 and after.ops[-1].op == "FULLY_CONNECTED"
    assert done[0]["outputs"] == [after.outputs[0].name]  # what the QAT path exempts from the float-op gate
    interpreter = _run_preserving(floated, x[:1])
    fc = after.ops[-1]
    fed, weights = (interpreter.get_tensor(t) for t in fc.inputs[:2])
    bias = interpreter.get_tensor(fc.inputs[2]) if len(fc.inputs) > 2 and fc.inputs[2] >= 0 else 0.0
    np.testing.assert_allclose(interpreter.get_tensor(after.outputs[0].index), fed @ weights.T + bias, rtol=1e-5,
                               atol=1e-6)
    reference = model(x, training=False).numpy()
    assert snr_db(reference, run_on_float_samples(floated, x)) >= snr_db(reference, run_on_float_samples(tflite, x))
    assert xnnpack_loads(floated)


def test_qat_refuses_int16_rules():
    with pytest.raises(BadInput) as caught:
        parse_recipe(TABLE | {"qat": True}, "qat.toml")
    assert caught.value.problem.startswith("precision[2].precision:") and "8 bits" in caught.value.problem


def test_convert_command_reports_the_islands_in_report_json(setup, tmp_path):
    """`edge-attn convert` with a recipe file holding rules: report.json names the islands, says why the model is
    not fully int8, and validates against docs/report.schema.json."""
    import pathlib

    import jsonschema

    from edge_attn.cli import main

    model, x, _, _, _ = setup
    model.save(tmp_path / "tiny.keras")
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "d.npz", x=rng.uniform(0, 1, size=(40, *SHAPE)).astype("float32"), y=np.arange(40) % 5)
    rules = "".join(f'[[precision]]\nmatch = "{r["match"]}"\nprecision = "{r["precision"]}"\n' for r in RULES[:2])
    (tmp_path / "mixed.toml").write_text('quantization = "int8"\ninput_type = "float32"\noutput_type = "float32"\n'
                                         'calibration_samples = 16\n' + rules)
    out = tmp_path / "out"
    code = main(["convert", str(tmp_path / "tiny.keras"), "--recipe", str(tmp_path / "mixed.toml"), "--data",
                 str(tmp_path / "d.npz"), "--runs", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["fully_int8"] is False and report["fully_integer"] is False
    assert "compute in float" in report["why_not_fully_int8"]
    islands = {i["precision"]: i for i in report["precision"]["islands"]}
    assert islands["float"]["layers"][0] == "body" and islands["int16x8"]["layers"] == ["head"]
    assert report["precision"]["cost"]["bytes"] == report["model"]["bytes"]
    assert report["recipe_settings"]["precision"] == RULES[:2]
    schema = json.loads((pathlib.Path(__file__).parents[1] / "docs" / "report.schema.json").read_text())
    jsonschema.validate(report, schema)
