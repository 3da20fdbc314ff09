"""Tests for edge_attn.litert and edge_attn.evaluate: numbers against hand-computed numpy values, and the
per-layer mapping against an independent TFLite run on tiny PTQ and tfmot-QAT models (8x8 inputs)."""

import base64
import html.parser
import json
import math

import numpy as np
import pytest

from edge_attn._keras import keras, tf  # selects Keras 2 before tfmot is imported

import tensorflow_model_optimization as tfmot  # after edge_attn._keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edge_attn.errors import BadInput
from edge_attn.evaluate.compare import accuracy_from_outputs, budget_failures, compare
from edge_attn.evaluate.latency import measure_latency
from edge_attn.evaluate.metrics import rmse, snr_db
from edge_attn.evaluate.per_layer import layer_errors
from edge_attn.evaluate.report import model_file_info, write_report
from edge_attn.litert import dequantize, make_interpreter, quantize, run

L = keras.layers


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=192)
    # three classes told apart by overall brightness (-0.5, 0, +0.5) under unit noise
    x = (rng.normal(size=(192, 8, 8, 1)) + 0.5 * (y - 1)[:, None, None, None]).astype(np.float32)
    return x[:128], y[:128], x[128:], y[128:]


@pytest.fixture(scope="module")
def float_model(data):
    """conv1 -> bn1 -> relu1 -> conv2 -> bn2 -> pool -> logits, with non-trivial frozen BatchNorms.

    conv2 has no bias and bn2 only scales (beta = mean = 0): the converter folds bn2 into conv2's weights
    and names the tensor after conv2 alone, so matching bn2 exercises the "folded without a trace" rule.
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    h = L.BatchNormalization(name="bn1", trainable=False)(h)
    h = L.ReLU(name="relu1")(h)
    h = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv2")(h)
    h = L.BatchNormalization(name="bn2", trainable=False)(h)
    h = L.GlobalAveragePooling2D(name="pool")(h)
    model = keras.Model(inputs, L.Dense(3, name="logits")(h), name="tiny")
    gamma, beta, mean, variance = [1.5, 0.7, 1.2, 2.0], [0.3, -0.4, 0.1, 0.5], [0.2, -0.1, 0.0, 0.3], [1.2, 0.5, 2.0, 1.0]
    model.get_layer("bn1").set_weights([np.array(v, np.float32) for v in (gamma, beta, mean, variance)])
    model.get_layer("bn2").set_weights([np.linspace(0.5, 2.0, 8, dtype=np.float32), np.zeros(8, np.float32),
                                        np.zeros(8, np.float32), np.linspace(0.4, 3.0, 8, dtype=np.float32)])
    x_train, y_train, _, _ = data
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def ptq_tflite(float_model, data):
    """Post-training int8 with int8 input and output."""
    x_train = data[0]
    converter = tf.lite.TFLiteConverter.from_keras_model(float_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x_train[i:i + 1]] for i in range(64))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def qat_tflite(float_model, data):
    """tfmot quantize_model, calibrated without changing a weight, converted from a batch-1 concrete function.

    A training-mode pass sets the weight and input ranges (the BatchNorms are frozen, so their statistics
    stay); activation ranges start at tfmot's [-6, 6] and follow a slow moving average, so they are set to
    the float layer outputs' observed ranges (calibrate before fine-tuning: tfmot's [-6, 6] initial ranges clip the logits).
    """
    x_train = data[0]
    qat = tfmot.quantization.keras.quantize_model(float_model)
    qat(x_train, training=True)
    probe = keras.Model(float_model.inputs, [layer.output for layer in float_model.layers[1:]])
    observed = {layer.name: (min(out.min(), 0.0), max(out.max(), 0.0))
                for layer, out in zip(float_model.layers[1:], probe.predict(x_train, verbose=0))}
    for wrapper in qat.layers:
        for variable in wrapper.weights:
            kind = variable.name.split("/")[-1].split(":")[0]  # output_min, post_activation_max, kernel_min...
            if kind in ("output_min", "output_max", "post_activation_min", "post_activation_max"):
                low, high = observed[wrapper.name.removeprefix("quant_")]
                variable.assign(np.full(variable.shape, low if kind.endswith("min") else high, np.float32))
    function = tf.function(lambda t: qat(t, training=False)).get_concrete_function(
        tf.TensorSpec((1, 8, 8, 1), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def ptq_layers(float_model, ptq_tflite, data):
    return layer_errors(float_model, ptq_tflite, data[2])


# ---------------------------------------------------------------------------------- litert helpers

def test_quantize_follows_the_tflite_formula():
    # q = clip(round_half_away_from_zero(x / 0.5) + (-3), -128, 127)
    x = np.array([0.0, 0.24, 0.25, -0.25, 0.75, -0.75, 100.0, -100.0])
    q = quantize(x, 0.5, -3, np.int8)
    assert q.dtype == np.int8
    assert q.tolist() == [-3, -3, -2, -4, -1, -5, 127, -128]
    # uint8, zero point 128: 0.1 / 0.1 = 1 -> 129; -12.8 / 0.1 = -128 -> 0; 30 -> 300+128 clipped to 255
    q = quantize(np.array([0.1, -12.8, 30.0, 0.0]), 0.1, 128, np.uint8)
    assert q.dtype == np.uint8
    assert q.tolist() == [129, 0, 255, 128]


def test_dequantize_follows_the_formula():
    q = np.array([-128, -3, 0, 127], np.int8)
    assert dequantize(q, 0.5, -3).tolist() == [-62.5, 0.0, 1.5, 65.0]  # 0.5 * (q + 3)


def test_round_trip_is_within_half_a_step():
    x = np.linspace(-1.0, 1.0, 101)
    scale, zero_point = 2.0 / 255, 0
    error = np.abs(dequantize(quantize(x, scale, zero_point, np.int8), scale, zero_point) - x)
    assert error.max() <= scale / 2 + 1e-7


def test_make_interpreter_names_bad_models(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        make_interpreter(tmp_path / "missing.tflite")
    with pytest.raises(BadInput, match="cannot be loaded"):
        make_interpreter(b"not a flatbuffer at all")


def test_run_rejects_wrong_sample_shape(ptq_tflite):
    with pytest.raises(BadInput, match="expects"):
        run(make_interpreter(ptq_tflite), np.zeros((2, 4, 4, 1), np.float32))


# ------------------------------------------------------------------------------ metrics and compare

def test_metrics_on_fixed_arrays():
    assert rmse([1.0, 2.0], [1.0, 4.0]) == pytest.approx(math.sqrt(2.0))  # sqrt((0 + 4) / 2)
    assert snr_db([3.0, 4.0], [3.0, 4.0]) == math.inf
    assert snr_db([0.0, 0.0], [1.0, 0.0]) == -math.inf
    assert snr_db([3.0, 4.0], [3.0, 3.0]) == pytest.approx(10 * math.log10(25.0 / 1.0))


def test_accuracy_from_outputs_hand_computed():
    reference = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 2], [0, 1, 0]], np.float32)
    quantized = np.array([[1.5, 1, 0], [0, 2, 3], [1, 0, 2], [1, 0, 0]], np.float32)
    labels = np.array([0, 1, 2, 1])
    acc = accuracy_from_outputs(reference, quantized, labels)
    # argmax: reference [0, 1, 2, 1] (4/4 right); quantized [0, 2, 2, 0] (2/4 right); they agree on 2
    assert acc["samples"] == 4
    assert acc["reference_top1"] == 1.0
    assert acc["quantized_top1"] == 0.5
    assert acc["top1_drop_pt"] == pytest.approx(50.0)
    assert acc["top1_agreement"] == 0.5 and acc["agreement_count"] == 2
    # sum ref^2 = 5 + 10 + 5 + 1 = 21; sum err^2 = 0.25 + (1 + 4) + 0 + (1 + 1) = 7.25
    assert acc["output_snr_db"] == pytest.approx(10 * math.log10(21 / 7.25))
    assert acc["output_max_abs_err"] == pytest.approx(2.0)


def test_budget_failures():
    good = {"samples": 100, "reference_top1": 0.9, "quantized_top1": 0.895, "top1_drop_pt": 0.5,
            "top1_agreement": 0.99, "agreement_count": 99, "output_snr_db": 20.0}
    assert budget_failures(good) == []
    bad = dict(good, quantized_top1=0.85, top1_drop_pt=5.0, top1_agreement=0.9, agreement_count=90)
    reasons = budget_failures(bad, max_drop=1.0, min_agreement=0.98)
    assert len(reasons) == 2
    assert "5.00 pt" in reasons[0] and "90/100" in reasons[1]
    assert budget_failures(bad, max_drop=10.0, min_agreement=0.5) == []
    assert budget_failures(good, min_snr_db=19.9) == []
    assert budget_failures(good, min_snr_db=25) == ["output SNR 20.0 dB is below the minimum 25.0 dB"]


def test_compare_ptq_model(float_model, ptq_tflite, data):
    _, _, x, y = data
    acc = compare(float_model, ptq_tflite, x, y)
    float_pred = np.argmax(float_model(x, training=False).numpy(), axis=1)
    assert acc["samples"] == len(x)
    assert acc["reference_top1"] == pytest.approx(np.mean(float_pred == y))
    assert acc["reference_top1"] > 0.7  # the tiny model learned (chance is ~1/3): agreement is not trivial
    assert acc["top1_agreement"] >= 0.9
    assert math.isfinite(acc["output_snr_db"]) and acc["output_snr_db"] > 20


def test_compare_names_bad_labels(float_model, ptq_tflite, data):
    _, _, x, y = data
    with pytest.raises(BadInput, match="labels"):
        compare(float_model, ptq_tflite, x, y[:-1])


# ----------------------------------------------------------------------------------- per-layer error

def _tensor_and_layer_outputs(float_model, tflite_model, x, tensor_name, layer_names):
    """Independent of per_layer: run LiteRT directly, dequantize one tensor by the formula, and return it
    with the float model's outputs for ``layer_names``."""
    interpreter = Interpreter(model_content=tflite_model, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    (detail,) = [d for d in interpreter.get_tensor_details() if d["name"] == tensor_name]
    (inp,) = interpreter.get_input_details()
    in_scale, in_zero = inp["quantization"]
    scale, zero = detail["quantization"]
    values = []
    for sample in x:
        q = np.clip(np.round(sample[None] / in_scale) + in_zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        values.append(scale * (interpreter.get_tensor(detail["index"]).astype(np.float64) - zero))
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in layer_names])
    outputs = probe(x, training=False)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return np.concatenate(values), [np.asarray(o, np.float64) for o in outputs]


def _check_layer_entries(entries, float_model):
    names = [e["name"] for e in entries]
    order = [layer.name for layer in float_model.layers]
    assert {"relu1", "logits"} <= set(names)  # the fused conv/bn/relu and the dense layer
    assert set(names) <= set(order)  # real float-model layer names (no tfmot "quant_" prefix)
    assert names == sorted(names, key=order.index)  # graph order follows the float model's order here
    assert "conv1" not in names and "bn1" not in names  # fused into relu1's op: skipped
    for e in entries:
        assert set(e) == {"name", "op", "rmse", "snr_db", "local_rmse", "local_snr_db", "scale", "tensor",
                          "float_range", "levels", "clipped", "clipping_snr_db"}
        assert e["rmse"] >= 0 and e["scale"] > 0
        # levels: the float values' span in steps of the tensor's scale
        low, high = e["float_range"]
        assert low <= high and e["levels"] == pytest.approx((high - low) / e["scale"], abs=0.05)
        # every tensor is compared with the layer whose output it really is: good int8 agreement
        assert e["snr_db"] > 20, e


def test_layer_errors_ptq(float_model, ptq_tflite, ptq_layers, data):
    _check_layer_entries(ptq_layers, float_model)
    by_name = {e["name"]: e for e in ptq_layers}
    assert by_name["relu1"]["op"] == "CONV_2D" and by_name["logits"]["op"] == "FULLY_CONNECTED"
    # conv2 -> bn2 (scale only) is one CONV_2D whose output is bn2's (not conv2's): matched as bn2
    assert "bn2" in by_name and "conv2" not in by_name
    assert "bn2" not in by_name["bn2"]["tensor"]  # guards the fixture: the fold really dropped bn2's name

    tensor, (relu1, bn1, conv1) = _tensor_and_layer_outputs(
        float_model, ptq_tflite, data[2], by_name["relu1"]["tensor"], ["relu1", "bn1", "conv1"])
    assert by_name["relu1"]["rmse"] == pytest.approx(np.sqrt(np.mean((tensor - relu1) ** 2)), rel=1e-4)
    # the fused tensor is the LAST layer's output: against conv1 or bn1 it is far off
    assert np.sqrt(np.mean((tensor - bn1) ** 2)) > 5 * by_name["relu1"]["rmse"]
    assert np.sqrt(np.mean((tensor - conv1) ** 2)) > 5 * by_name["relu1"]["rmse"]


def test_layer_errors_qat(float_model, qat_tflite, data):
    entries = layer_errors(float_model, qat_tflite, data[2])
    _check_layer_entries(entries, float_model)
    assert all("quant_" in e["tensor"] for e in entries)  # tfmot names were really translated
    by_name = {e["name"]: e for e in entries}
    tensor, (logits,) = _tensor_and_layer_outputs(float_model, qat_tflite, data[2], by_name["logits"]["tensor"],
                                                  ["logits"])
    assert by_name["logits"]["rmse"] == pytest.approx(np.sqrt(np.mean((tensor - logits) ** 2)), rel=1e-4)


def test_layer_errors_drop_with_wrong_weights(float_model, ptq_tflite, ptq_layers, data):
    keras.utils.set_random_seed(1)
    wrong = keras.models.clone_model(float_model)  # same graph and names, freshly initialised weights
    broken = layer_errors(wrong, ptq_tflite, data[2])
    assert [e["name"] for e in broken] == [e["name"] for e in ptq_layers]
    for good, bad in zip(ptq_layers, broken):
        assert bad["snr_db"] < good["snr_db"] - 15, (good, bad)


@pytest.mark.parametrize("fused", [False, True], ids=["softmax-layer", "dense-softmax"])
def test_a_logits_reference_matches_the_softmax_input_not_its_output(fused):
    """Found on random-model seeds 10/21: the check's reference for a probability head is the logits
    model (edge_attn.heads), and the nameless SOFTMAX output of the graph was matched to its last layer
    (the logits Dense): -0.4 dB. The Dense must match the FULLY_CONNECTED feeding the SOFTMAX, whose values
    are numpy's ``features @ kernel + bias`` of the float model."""
    from edge_attn.convert import convert_model, load_recipe
    from edge_attn.heads import split_head

    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.Conv2D(6, 3, activation="relu")(inputs))
    if fused:
        outputs = keras.layers.Dense(3, activation="softmax", name="logits")(x)
    else:
        outputs = keras.layers.Softmax(name="probabilities")(keras.layers.Dense(3, name="logits")(x))
    model = keras.Model(inputs, outputs)
    samples = np.random.default_rng(0).normal(size=(24, 6, 6, 2)).astype("float32")
    tflite = convert_model(model, load_recipe("int8-ptq"), [s[None] for s in samples])
    logits_model, head = split_head(model)
    assert head == "softmax"
    rows = {row["name"]: row for row in layer_errors(logits_model, tflite, samples)}
    logits_name = logits_model.output_names[0]
    assert rows[logits_name]["op"] == "FULLY_CONNECTED"
    features = keras.Model(inputs, model.get_layer("pool").output).predict(samples, verbose=0)
    kernel, bias = model.get_layer("logits").get_weights()
    expected = features @ kernel + bias
    assert rows[logits_name]["float_range"] == pytest.approx([expected.min(), expected.max()], abs=1e-5)
    assert rows[logits_name]["snr_db"] > 25


# ---------------------------------------------------------------------------------------- latency

def test_latency(ptq_tflite, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(ptq_tflite)
    stats = measure_latency(path, runs=10, warmup=2, threads=1)
    # the latency_ms block of the shared result shape (docs/result-shape.md), plus the flat keys of before
    assert {"cold_start", "warm", "threads", "times", "p50", "p90", "min", "max", "mean", "runs"} <= set(stats)
    warm, times = stats["warm"], np.asarray(stats["times"])
    assert stats["runs"] == len(times) == 10 and stats["threads"] == 1
    steady = times[warm["warmup_runs_dropped"]:]
    assert warm["p50"] == stats["p50"] == pytest.approx(np.median(steady))
    assert warm["p90"] == stats["p90"] == pytest.approx(np.percentile(steady, 90))
    assert (stats["min"], stats["max"]) == (steady.min(), steady.max())
    assert 0 < stats["min"] <= stats["p50"] <= stats["p90"] <= stats["max"]
    assert stats["min"] <= stats["mean"] <= stats["max"]
    assert stats["cold_start"] > 0 and "XNNPACK" in stats["delegation"]
    with pytest.raises(BadInput, match="runs"):
        measure_latency(ptq_tflite, runs=0)


# ----------------------------------------------------------------------------------------- reports

class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.links, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        self.links += [v for k, v in attrs.items() if k in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def report(float_model, ptq_tflite, ptq_layers, data, tmp_path_factory):
    model_path = tmp_path_factory.mktemp("model") / "model.tflite"
    model_path.write_bytes(ptq_tflite)
    interpreter = make_interpreter(ptq_tflite, preserve_all_tensors=True)
    latency = measure_latency(ptq_tflite, runs=5, warmup=1, threads=1)
    accuracy = compare(float_model, ptq_tflite, data[2], data[3])
    layers = [dict(ptq_layers[0], snr_db=math.inf)] + ptq_layers[1:]  # a bit-exact layer: JSON null
    return {
        "recipe": "int8-ptq <script>alert(1)</script>",
        "model": model_file_info(model_path),
        "ops": [op["op_name"] for op in interpreter._get_ops_details()],
        "fully_int8": True,
        "accuracy": accuracy,
        "latency_ms": {"threads": 1, "reference": {"p50": 2 * latency["p50"]}, "quantized": latency},
        "layers": layers,
        "comparisons": [{"recipe": "int8-qat-contrast", "accuracy": dict(accuracy, quantized_top1=0.5),
                         "model": {"bytes": 1234}, "latency_ms": {"quantized": {"p50": 0.01}}}],
    }


def test_write_report_json_has_contract_keys(report, tmp_path):
    write_report(tmp_path, report)
    text = (tmp_path / "report.json").read_text()
    written = json.loads(text)
    # docs/report-json.md contract, spelled out independently of the module's own table
    for key in ("recipe", "model", "ops", "fully_int8", "accuracy", "latency_ms", "layers"):
        assert key in written
    assert set(written["model"]) >= {"path", "bytes", "sha256"}
    assert written["model"]["bytes"] == len(open(written["model"]["path"], "rb").read())
    assert set(written["accuracy"]) >= {"samples", "reference_top1", "quantized_top1", "top1_drop_pt",
                                        "top1_agreement", "output_snr_db"}
    for k in ("reference_top1", "quantized_top1", "top1_agreement"):
        assert 0 <= written["accuracy"][k] <= 1
    assert isinstance(written["latency_ms"]["threads"], int)
    assert written["latency_ms"]["reference"]["p50"] > 0 and written["latency_ms"]["quantized"]["p50"] > 0
    assert all(isinstance(op, str) for op in written["ops"]) and "CONV_2D" in written["ops"]
    assert all({"name", "op", "rmse", "snr_db"} <= set(layer) for layer in written["layers"])
    assert written["layers"][0]["snr_db"] is None  # +inf has no JSON spelling
    assert "Infinity" not in text and "NaN" not in text
    assert list(written) == sorted(written)  # keys sorted
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_write_report_html_is_self_contained(report, tmp_path):
    write_report(tmp_path, report)
    page = _PageParser()
    page.feed((tmp_path / "report.html").read_text())
    page.close()
    assert "script" not in page.tags  # the recipe name was escaped, not injected
    text = "".join(page.text)
    assert "int8-ptq <script>alert(1)</script>" in text and "int8-qat-contrast" in text
    assert "relu1" in text and "FULLY_CONNECTED" in text
    assert len(page.images) == 4  # size, latency, per-layer SNR and (with comparisons) top-1 per recipe
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):]).startswith(b"\x89PNG\r\n\x1a\n")
    assert all(link.startswith("data:") for link in page.links)  # no external assets


def test_write_report_refuses_missing_contract_keys(report, tmp_path):
    incomplete = {k: v for k, v in report.items() if k != "layers"}
    incomplete["latency_ms"] = {"threads": 1, "quantized": {"p50": 1.0}}
    with pytest.raises(ValueError, match=r"latency_ms\.reference\.p50, layers"):
        write_report(tmp_path, incomplete)
    assert not (tmp_path / "report.json").exists()
