"""Local vs inherited (cumulative) per-layer error (edge_attn.evaluate.local_error via layer_errors).

Checked against independent references:
* a numpy re-implementation of int8 FULLY_CONNECTED (quantize the float input with the model's input
  scale → integer matmul with the model's int8 weights and int32 bias → requantize → dequantize), compared
  with the float layer computed in numpy from the Keras weights: its RMSE is the local RMSE;
* a conv model in which one conv's int8 weights are negated in the flatbuffer (a known error injected into
  one layer): only that layer has a high local error, the layers after it only inherit it.
Models are tiny and built once per module.
"""

import numpy as np
import pytest

from edge_attn._keras import keras, tf
from edge_attn.evaluate.local_error import rank_by_local_error
from edge_attn.evaluate.per_layer import layer_errors
from edge_attn.litert import dequantize, quantize


def _int8(model, samples):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([samples[i:i + 1]] for i in range(len(samples)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


# ------------------------------------------------------------------------ numpy int8 FULLY_CONNECTED

@pytest.fixture(scope="module")
def dense():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 12)).astype(np.float32)
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(10, activation="relu", name="fc1")(inputs)
    outputs = keras.layers.Dense(5, name="fc2")(hidden)
    model = keras.Model(inputs, outputs)
    return model, _int8(model, x), x


def _tensors(tflite):
    from edge_attn import _compat
    from edge_attn.litert import make_interpreter

    interpreter = make_interpreter(tflite, preserve_all_tensors=True)
    ops = _compat.interpreter_ops(interpreter)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return interpreter, ops, details


def _numpy_fc(x_float, in_detail, weight, bias, out_detail, relu):
    """int8 FULLY_CONNECTED as the TFLite reference kernel defines it, in float64 for the requantization."""
    s_in, z_in = in_detail["quantization"]
    s_out, z_out = out_detail["quantization"]
    w_scales = np.asarray(weight["quantization_parameters"]["scales"], np.float64)
    xq = quantize(x_float, s_in, z_in, np.int8).astype(np.int64) - z_in
    acc = xq @ weight["value"].astype(np.int64).T + (0 if bias is None else bias["value"].astype(np.int64))
    real = acc * (s_in * w_scales)
    q = np.clip(np.round(real / s_out) + z_out, -128, 127)
    if relu:
        q = np.maximum(q, z_out)
    return dequantize(q, s_out, z_out)


def test_local_error_of_each_dense_layer_matches_a_numpy_int8_kernel(dense):
    model, tflite, x = dense
    interpreter, ops, details = _tensors(tflite)
    fcs = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    assert len(fcs) == 2
    w1, b1 = model.get_layer("fc1").get_weights()
    w2, b2 = model.get_layer("fc2").get_weights()
    float_fc1 = np.maximum(x @ w1 + b1, 0)  # the float layers in numpy, not Keras
    float_fc2 = float_fc1 @ w2 + b2

    def constant(index):  # -1: no bias (the converter drops an all-zero one)
        if index < 0:
            return None
        return {**details[index], "value": interpreter.get_tensor(index)}

    expected = {}
    for name, op, layer_input, reference, relu in (("fc1", fcs[0], x, float_fc1, True),
                                                   ("fc2", fcs[1], float_fc1, float_fc2, False)):
        in_t, w_t, b_t = map(int, op["inputs"])
        local = _numpy_fc(layer_input, details[in_t], constant(w_t), constant(b_t), details[int(op["outputs"][0])],
                          relu)
        expected[name] = np.sqrt(np.mean((local - reference) ** 2))

    layers = {entry["name"]: entry for entry in layer_errors(model, tflite, x)}
    for name in ("fc1", "fc2"):
        assert layers[name]["local_rmse"] == pytest.approx(expected[name], rel=0.02), name
    # fc1 reads the model input itself: local and cumulative are the same computation
    assert layers["fc1"]["local_rmse"] == pytest.approx(layers["fc1"]["rmse"], rel=1e-6)
    # fc2's cumulative error carries fc1's on top of its own
    assert layers["fc2"]["rmse"] > layers["fc2"]["local_rmse"]


# ------------------------------------------------------------------------ an error injected in one conv

CONVS = ("conv1", "conv2", "conv3", "conv4")


@pytest.fixture(scope="module")
def convs():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(32, 8, 8, 2)).astype(np.float32)
    inputs = keras.Input((8, 8, 2))
    h = inputs
    for seed, name in enumerate(CONVS):  # distinct seeds: the converter shares identical weight buffers
        h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name=name,
                                kernel_initializer=keras.initializers.RandomNormal(0.05, 0.25, seed=seed))(h)
    outputs = keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(h))
    model = keras.Model(inputs, outputs)
    return model, _int8(model, x), x


def _negate_weights(tflite, layer_name):
    """The same model with the int8 kernel of ``layer_name``'s conv negated (the bias kept)."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = flat.subgraphs[0]
    hits = 0
    for op in graph.operators:
        output_name = graph.tensors[op.outputs[0]].name.decode()
        if f"/{layer_name}/" in output_name and flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) == "CONV_2D":
            weights = graph.tensors[op.inputs[1]]
            data = np.frombuffer(bytes(flat.buffers[weights.buffer].data), np.int8)
            flat.buffers[weights.buffer].data = np.clip(-data.astype(np.int16), -127, 127).astype(np.int8).view(np.uint8)
            hits += 1
    assert hits == 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


@pytest.fixture(scope="module")
def injected(convs):
    model, tflite, x = convs
    return {entry["name"]: entry for entry in layer_errors(model, _negate_weights(tflite, "conv2"), x)}


def test_only_the_layer_with_the_injected_error_has_a_high_local_error(injected):
    assert injected["conv2"]["local_snr_db"] < 5
    for name in ("conv1", "conv3", "conv4"):
        assert injected[name]["local_snr_db"] > 25, (name, injected[name])
    for name in ("conv3", "conv4", "head"):  # after conv2: they only inherit its error
        assert injected[name]["snr_db"] < 10, (name, injected[name])
    assert rank_by_local_error(list(injected.values()))[0]["name"] == "conv2"


def test_layer_groups_give_the_same_local_error(convs):
    """Bounded memory: one layer per probe group (boundaries come from earlier groups) changes nothing."""
    model, tflite, x = convs
    whole = layer_errors(model, tflite, x[:8])
    split = layer_errors(model, tflite, x[:8], probe_bytes=1)
    assert [e["name"] for e in whole] == [e["name"] for e in split]
    for a, b in zip(whole, split):
        assert a["local_rmse"] == pytest.approx(b["local_rmse"], rel=1e-9, abs=1e-12)


def test_rank_by_local_error_puts_missing_figures_last():
    layers = [{"name": "a", "local_snr_db": None, "snr_db": 1.0}, {"name": "b", "local_snr_db": 30.0, "snr_db": 9.0},
              {"name": "c", "local_snr_db": 12.0, "snr_db": 20.0}, {"name": "d", "local_snr_db": 30.0, "snr_db": 5.0}]
    assert [l["name"] for l in rank_by_local_error(layers)] == ["c", "d", "b", "a"]
