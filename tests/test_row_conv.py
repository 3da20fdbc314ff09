"""Thin convolutions become row convolutions (edge_attn.convert.row_conv), with the same outputs.

The reference is LiteRT itself running the converter's own graph (``lower_thin_convs = false``): for int8 and
int16x8 the rewritten model must give bit-identical outputs on random inputs, under XNNPACK and under the builtin
reference kernels (two independent implementations of the int8 conv); for float32 equal up to summation order.
The convs are generated: seeded mixes of kernel shapes (square, 1×k, k×1, even), strides and dilations per
axis, SAME/VALID padding, fused ReLU/ReLU6, with and without bias, 1 or 2 channels in or out, non-square
maps down to 1 pixel wide, written as Conv2D, Conv1D or a raw ``tf.nn.conv2d`` in a Lambda. Convs the rewrite
must leave alone (2 → 2 channels, 1-wide kernels) are in every model too.
"""

import dataclasses
import os
import random
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

sys.path.insert(0, os.path.dirname(__file__))
from litert_reference import xnnpack_loads  # noqa: E402

from edge_attn._keras import keras, tf  # noqa: E402
from edge_attn.convert.converter import convert_model  # noqa: E402
from edge_attn.convert.inspect import flatbuffer_utils  # noqa: E402
from edge_attn.convert.recipe import load_recipe  # noqa: E402
from edge_attn.convert.row_conv import ROW_CONV_SCOPE, lower_thin_convs, lowered_convs  # noqa: E402

SEEDS = range(6)


def _conv_spec(rng):
    while True:
        kh, kw = rng.choice([(7, 7), (3, 3), (5, 5), (2, 2), (1, 3), (3, 1), (4, 3), (7, 1)])
        stride = rng.choice([(1, 1), (1, 1), (2, 2), (1, 2), (2, 1)])
        dilation = rng.choice([(1, 1), (1, 1), (2, 2), (1, 2)])
        if stride != (1, 1) and dilation != (1, 1):
            continue  # Keras refuses strides > 1 with dilation > 1
        cin, cout = rng.choice([(1, 1), (1, 1), (2, 1), (1, 2), (2, 2)])
        return dict(kernel=(kh, kw), stride=stride, dilation=dilation, cin=cin, cout=cout,
                    padding=rng.choice(["same", "valid"]), activation=rng.choice([None, "relu", "relu6"]),
                    use_bias=rng.random() < 0.7, spelling=rng.choice(["Conv2D", "Conv2D", "Lambda"]))


def _branch(x, spec, rng, index):
    """``x`` (N, H, W, 2) → the spec's conv on its first ``cin`` channels."""
    sliced = keras.layers.Lambda(lambda t, c=spec["cin"]: t[..., :c], name=f"take{index}")(x)
    kernel = np.asarray(rng_normal(rng, (*spec["kernel"], spec["cin"], spec["cout"])), np.float32)
    bias = np.asarray(rng_normal(rng, (spec["cout"],)), np.float32)
    if spec["spelling"] == "Lambda":
        activation = {None: tf.identity, "relu": tf.nn.relu, "relu6": tf.nn.relu6}[spec["activation"]]

        def raw(t, k=kernel, b=bias, s=spec, act=activation):
            y = tf.nn.conv2d(t, k, strides=[1, *s["stride"], 1], padding=s["padding"].upper(), dilations=s["dilation"])
            return act(y + b if s["use_bias"] else y)

        return keras.layers.Lambda(raw, name=f"raw_conv{index}")(sliced)
    conv = keras.layers.Conv2D(spec["cout"], spec["kernel"], strides=spec["stride"], dilation_rate=spec["dilation"],
                               padding=spec["padding"], activation=spec["activation"], use_bias=spec["use_bias"],
                               name=f"conv{index}")
    y = conv(sliced)
    conv.set_weights([kernel, bias] if spec["use_bias"] else [kernel])
    return y


def rng_normal(rng, shape):
    return np.array([rng.gauss(0, 0.4) for _ in range(int(np.prod(shape)))]).reshape(shape)


def _model(seed):
    """A multi-output model of 5 generated thin convs, one 2 → 2 conv and one 1-wide conv, plus a Conv1D branch."""
    rng = random.Random(seed)
    height, width = rng.choice([(16, 16), (8, 13), (5, 1), (1, 9), (12, 7)])
    x = keras.Input((height, width, 2), batch_size=1)
    outputs, specs = [], []
    for index in range(5):
        spec = _conv_spec(rng)
        if spec["padding"] == "valid" and (height < spec["kernel"][0] * spec["dilation"][0]
                                           or width < spec["kernel"][1] * spec["dilation"][1]):
            spec["padding"] = "same"
        specs.append(spec)
        outputs.append(_branch(x, spec, rng, index))
    outputs.append(keras.layers.Conv2D(2, 3, padding="same", name="wide")(x))  # 2·2 channels: stays
    outputs.append(keras.layers.Conv2D(1, (3, 1), padding="same", name="one_wide")(x[..., :1]))  # kw = 1: stays
    sequence = keras.layers.Reshape((height * width, 2))(x)
    outputs.append(keras.layers.Conv1D(1, 5, padding="same", name="conv1d")(sequence))
    return keras.Model(x, outputs), specs


def _run(tflite, inputs, resolver):
    interpreter = Interpreter(model_content=tflite, num_threads=2, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    results = []
    for sample in inputs:
        interpreter.set_tensor(detail["index"], sample.astype(detail["dtype"]))
        interpreter.invoke()
        results.append([interpreter.get_tensor(o["index"]).copy()
                        for o in sorted(interpreter.get_output_details(), key=lambda o: o["name"])])
    return results


def _integer_inputs(tflite, rng, count=6):
    interpreter = Interpreter(model_content=tflite)
    detail = interpreter.get_input_details()[0]
    info = np.iinfo(detail["dtype"]) if np.issubdtype(detail["dtype"], np.integer) else None
    if info is None:
        return [rng.normal(0, 1, detail["shape"]).astype(np.float32) for _ in range(count)]
    return [rng.integers(info.min, info.max + 1, detail["shape"]) for _ in range(count)]


def _conv_shapes(tflite):
    """(input channels, output channels, kernel width) of every CONV_2D in the file."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    shapes = []
    for op in graph.operators:
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) == "CONV_2D":
            cout, _, kw, cin = graph.tensors[op.inputs[1]].shape
            shapes.append((int(cin), int(cout), int(kw)))
    return shapes


@pytest.fixture(scope="module", params=SEEDS)
def converted(request):
    keras.backend.clear_session()
    model, specs = _model(request.param)
    rng = np.random.default_rng(request.param)
    samples = [rng.normal(0, 1, (1, *model.input_shape[1:])).astype(np.float32) for _ in range(24)]
    result = {}
    for recipe_name in ("int8-ptq", "int16x8", "f32"):
        recipe = load_recipe(recipe_name)
        result[recipe_name] = {
            "kept": convert_model(model, dataclasses.replace(recipe, lower_thin_convs=False), samples),
            "lowered": convert_model(model, recipe, samples),
        }
    return request.param, specs, result


@pytest.mark.parametrize("recipe_name", ["int8-ptq", "int16x8"])
def test_integer_outputs_are_bit_identical(converted, recipe_name):
    seed, specs, result = converted
    kept, lowered = result[recipe_name]["kept"], result[recipe_name]["lowered"]
    inputs = _integer_inputs(kept, np.random.default_rng(seed))
    resolvers = [OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES]
    if xnnpack_loads(kept):  # some generated degenerate convs (dilated 4x3 on a 1-pixel-high map) it refuses
        resolvers.append(OpResolverType.AUTO)
    for resolver in resolvers:
        for a, b in zip(_run(kept, inputs, resolver), _run(lowered, inputs, resolver)):
            for out_kept, out_lowered in zip(a, b):
                assert np.array_equal(out_kept, out_lowered), (seed, recipe_name, resolver, specs)


def test_float_outputs_match(converted):
    seed, specs, result = converted
    kept, lowered = result["f32"]["kept"], result["f32"]["lowered"]
    inputs = _integer_inputs(kept, np.random.default_rng(seed))
    resolver = OpResolverType.AUTO if xnnpack_loads(kept) else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    for a, b in zip(_run(kept, inputs, resolver), _run(lowered, inputs, resolver)):
        for out_kept, out_lowered in zip(a, b):
            np.testing.assert_allclose(out_lowered, out_kept, rtol=1e-5, atol=1e-5 * np.abs(out_kept).max())


def test_every_thin_conv_is_lowered_and_no_other(converted):
    seed, specs, result = converted
    for recipe_name, pair in result.items():
        before, after = _conv_shapes(pair["kept"]), _conv_shapes(pair["lowered"])
        thin = [s for s in before if s[0] * s[1] <= 2 and s[2] >= 2]
        assert len(lowered_convs(pair["lowered"])) == len(thin), (seed, recipe_name, before)
        assert not [s for s in after if s[0] * s[1] <= 2 and s[2] >= 2], (seed, recipe_name, after)
        assert (2, 2, 3) in after and (1, 1, 1) in after  # the 2 → 2 conv and the 1-wide one stay as they were
        assert lowered_convs(pair["kept"]) == []
        if xnnpack_loads(pair["kept"]):  # the rewrite must not make XNNPACK refuse a model it took
            assert xnnpack_loads(pair["lowered"]), (seed, recipe_name)


def test_lowered_tensors_are_named_after_the_conv():
    """Per-layer matching finds a row conv's tensors under the conv's layer (its output keeps its name)."""
    keras.backend.clear_session()
    x = keras.Input((9, 9, 1), batch_size=1)
    model = keras.Model(x, keras.layers.Activation("sigmoid")(keras.layers.Conv2D(1, 7, padding="same", name="spatial")(x)))
    rng = np.random.default_rng(0)
    tflite = convert_model(model, load_recipe("int8-ptq"), [np.random.default_rng(0).normal(0, 1, (1, 9, 9, 1))
                                                            .astype(np.float32)])
    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite)).subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else t.name for t in graph.tensors]
    added = [n for n in names if f"/{ROW_CONV_SCOPE}/" in n]
    assert added and all("spatial" in n for n in added)
    lowered = lowered_convs(tflite)
    assert len(lowered) == 1 and lowered[0]["band"] == [9, 7, 1, 9] and "spatial" in lowered[0]["tensor"]
    from edge_attn.evaluate.per_layer import layer_errors

    kept = convert_model(model, dataclasses.replace(load_recipe("int8-ptq"), lower_thin_convs=False),
                         [rng.normal(0, 1, (1, 9, 9, 1)).astype(np.float32)])
    x = rng.normal(0, 1, (4, 9, 9, 1)).astype(np.float32)
    row, kept_row = ({r["name"]: r for r in layer_errors(model, t, x)}["spatial"] for t in (tflite, kept))
    assert row["op"] == kept_row["op"] == "CONV_2D"  # the conv computes it; the closing RESHAPE only relabels
    assert row["local_snr_db"] is not None and row["local_snr_db"] == pytest.approx(kept_row["local_snr_db"])


def test_a_model_without_thin_convs_is_returned_unchanged():
    keras.backend.clear_session()
    x = keras.Input((8, 8, 3), batch_size=1)
    model = keras.Model(x, keras.layers.Conv2D(4, 3, padding="same")(x))
    rng = np.random.default_rng(0)
    recipe = dataclasses.replace(load_recipe("int8-ptq"), lower_thin_convs=False)
    tflite = convert_model(model, recipe, [rng.normal(0, 1, (1, 8, 8, 3)).astype(np.float32)])
    assert lower_thin_convs(tflite) == (tflite, [])
