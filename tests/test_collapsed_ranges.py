"""A dead ReLU's collapsed int8 range no longer makes XNNPACK refuse the model (edge_attn.convert.collapsed_ranges).

Reproduced with the real converter: a Dense/Conv2D/DepthwiseConv2D whose ReLU no calibration sample turns on
gets an output scale near 1e-8, its requantization scale exceeds XNNPACK's limit of 256, and LiteRT's default
Interpreter fails to allocate the whole model. Each generated model is first checked to fail that way as the
converter wrote it (so the test fails if the fix is removed), then the widened model must load under XNNPACK
and, on LiteRT's builtin kernels (which take either model), give the same int8 outputs within one step.
"""

import os
import random
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

sys.path.insert(0, os.path.dirname(__file__))
from litert_reference import xnnpack_loads  # noqa: E402

from edge_attn._keras import keras  # noqa: E402
from edge_attn.convert.collapsed_ranges import widen_collapsed_ranges  # noqa: E402
from edge_attn.convert.converter import _convert  # noqa: E402
from edge_attn.convert.recipe import load_recipe  # noqa: E402


def _dead(kind, rng, index):
    """A layer whose ReLU is off for every input the test feeds (bias far below any pre-activation)."""
    activation = rng.choice(["fused", "Activation", "ReLU6"])
    make = {"dense": lambda act: keras.layers.Dense(8, activation=act, name=f"dead{index}"),
            "conv": lambda act: keras.layers.Conv2D(4, 3, padding="same", activation=act, name=f"dead{index}"),
            "depthwise": lambda act: keras.layers.DepthwiseConv2D(3, padding="same", activation=act,
                                                                  name=f"dead{index}")}[kind]
    layer = make("relu" if activation == "fused" else None)
    after = {"fused": None, "Activation": keras.layers.Activation("relu"), "ReLU6": keras.layers.ReLU(6.0)}[activation]
    return layer, after


def _model(seed):
    keras.utils.set_random_seed(seed)  # the weights too: the outcome must not depend on the tests run before
    rng = random.Random(seed)
    kind = rng.choice(["dense", "conv", "depthwise"])
    x = keras.Input((6, 6, 3), batch_size=1)
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(x)
    if kind == "dense":
        h = keras.layers.GlobalAveragePooling2D()(h)
    layer, after = _dead(kind, rng, 0)
    d = layer(h)
    if after is not None:
        d = after(d)
    head = keras.layers.Dense(5) if kind == "dense" else keras.layers.Conv2D(2, 1)
    model = keras.Model(x, head(d))
    weights = layer.get_weights()
    weights[-1] = np.full_like(weights[-1], -100.0)  # the bias: the ReLU never turns on
    layer.set_weights(weights)
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.linspace(-1, 1, bias.size).astype(np.float32)])  # a non-constant output range
    return model, kind


def _outputs(tflite, inputs, resolver=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
    """Dequantized outputs for float ``inputs`` (quantized with the model's input scale), and the output step."""
    interpreter = Interpreter(model_content=tflite, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    detail, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = detail["quantization"], out["quantization"]
    results = []
    for x in inputs:
        interpreter.set_tensor(detail["index"], np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8))
        interpreter.invoke()
        results.append((interpreter.get_tensor(out["index"]).astype(np.float64) - out_zero) * out_scale)
    return np.array(results), out_scale


@pytest.mark.parametrize("seed", range(6))
def test_dead_relu_model_loads_under_xnnpack_with_the_same_outputs(seed):
    keras.backend.clear_session()
    model, kind = _model(seed)
    rng = np.random.default_rng(seed)
    samples = [rng.uniform(0, 1, (1, 6, 6, 3)).astype(np.float32) for _ in range(32)]
    as_converted = _convert(model, load_recipe("int8-ptq"), samples, f"seed {seed}")
    assert not xnnpack_loads(as_converted), (seed, kind, "the converter's model loads: nothing reproduced")

    widened, names = widen_collapsed_ranges(as_converted)
    assert names and all("dead0" in name for name in names), names
    assert xnnpack_loads(widened), (seed, kind)
    inputs = [rng.uniform(0, 1, (1, 6, 6, 3)).astype(np.float32) for _ in range(16)]
    expected = np.array([model(x).numpy() for x in inputs])  # the float model: the dead layer adds exactly 0
    for resolver in (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, OpResolverType.AUTO):
        got, step = _outputs(widened, inputs, resolver)
        assert np.abs(got - expected).max() <= 3 * step, (seed, kind, resolver)
    before, _ = _outputs(as_converted, inputs)  # builtin kernels take the converter's model: same numbers
    assert np.abs(before - _outputs(widened, inputs)[0]).max() <= step, (seed, kind)


def test_a_healthy_model_is_left_alone():
    keras.backend.clear_session()
    x = keras.Input((6, 6, 3), batch_size=1)
    model = keras.Model(x, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(4, 3, activation="relu")(x))))
    rng = np.random.default_rng(0)
    tflite = _convert(model, load_recipe("int8-ptq"), [rng.uniform(0, 1, (1, 6, 6, 3)).astype(np.float32)
                                                       for _ in range(8)], "healthy")
    assert widen_collapsed_ranges(tflite) == (tflite, [])
