"""Tests of edge_attn.delegates: GPU / NNAPI / XNNPACK compatibility rules and partitioning.

Expected verdicts come from the documented rules in ``docs/delegate-rules.md`` (quoted next to each
assertion) applied by hand to tiny converted models, not from the code under test. Partition counts are derived by
hand from the graph, and for XNNPACK also checked against the real thing: the installed ai-edge-litert interpreter
applies XNNPACK by default and leaves one DELEGATE node per partition it created. Constant values (reduction axes)
are read back through LiteRT's own interpreter, independently of edge_attn's flatbuffer view.
"""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_litert.tools import flatbuffer_utils

from edge_attn._keras import keras, tf
from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.delegates import check_compat, format_compat
from edge_attn.errors import BadInput
from edge_attn.models import create_model
from edge_attn.qat import calibrate_ranges, quantize_aware

SPEC = tf.TensorSpec
X = SPEC([1, 4, 4, 3])


def convert(fn, specs, int8=False):
    """A ``tf.function`` of ``specs`` as .tflite bytes; ``int8``: full-integer post-training quantization (float
    I/O), calibrated on a few normal samples."""
    function = tf.function(fn).get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    if int8:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.normal(size=s.shape).astype("float32") for s in specs]
                                                    for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(converter.convert())


def reshape_model():
    """Conv → Reshape → Dense; converted with an unknown batch it computes the reshape's shape at runtime."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1)(inputs)
    x = keras.layers.Reshape((8, 6))(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def mobile_block(depth_multiplier):
    """Depthwise conv → average pool → max pool → pad → hard-swish → dense softmax, on 8×8×3."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=depth_multiplier, padding="same")(inputs)
    x = keras.layers.MaxPooling2D()(keras.layers.AveragePooling2D()(x))
    x = keras.layers.ZeroPadding2D()(x)
    x = keras.layers.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) / 6.0)(x)
    x = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(x))
    return keras.Model(inputs, x)


def fp16_weights(fn, specs):
    """Like :func:`convert`, with float16 weights (constant fp16 tensors behind DEQUANTIZE ops)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([tf.function(fn).get_concrete_function(*specs)])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def models():
    """name → flatbuffer bytes; each model is a few ops around the op under test."""
    keras_model = reshape_model()
    conv_weights = np.linspace(-1, 1, 4 * 4 * 3 * 5).reshape(4, 4, 3, 5).astype("float32")
    built = {
        "dynamic_reshape": bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()),
        "constant_reshape": convert(lambda x: keras_model(x), [SPEC([1, 4, 4, 2])]),
        "mean_runtime_axes": convert(lambda x, axes: tf.reduce_mean(x * 2.0, axis=axes) * 3.0,
                                     [X, SPEC([2], tf.int32)]),
        "mul_broadcast_2d": convert(lambda x: x * tf.constant(np.linspace(1, 2, 12).reshape(4, 3), tf.float32), [X]),
        "mul_broadcast_3d": convert(lambda x: x * tf.constant(np.linspace(1, 2, 48).reshape(4, 4, 3), tf.float32),
                                    [X]),
        "topk_in_middle": convert(lambda x: tf.math.top_k(x * 2.0, k=2).values * 3.0, [X]),
        "topk_on_side_branch": convert(lambda x: (tf.math.top_k(x * 2.0, k=2).values, (x * 2.0) * 3.0), [X]),
        "rank5": convert(lambda x: x * 2.0 + 1.0, [SPEC([1, 2, 2, 2, 2])]),
        "rank4": convert(lambda x: x * 2.0 + 1.0, [SPEC([1, 2, 2, 2])]),
        "conv": convert(lambda x: tf.nn.conv2d(x, conv_weights, 1, "SAME") + 0.5, [X]),
        "conv_max_fp16": fp16_weights(
            lambda x: tf.reduce_max(tf.nn.conv2d(x, conv_weights, 1, "SAME") + 0.5, axis=[1, 2]), [X]),
    }
    single, double = mobile_block(1), mobile_block(2)
    built["mobile_m1_f32"] = convert(lambda x: single(x), [SPEC([1, 8, 8, 3])])
    built["mobile_m2_f32"] = convert(lambda x: double(x), [SPEC([1, 8, 8, 3])])
    built["mobile_m2_int8"] = convert(lambda x: double(x), [SPEC([1, 8, 8, 3])], int8=True)
    for suffix, int8 in (("f32", False), ("int8", True)):
        built[f"mean_hw_{suffix}"] = convert(lambda x: tf.reduce_mean(x * 2.0, axis=[1, 2], keepdims=True) * 3.0,
                                             [X], int8)
        built[f"mean_c_{suffix}"] = convert(lambda x: tf.reduce_mean(x * 2.0, axis=3, keepdims=True) * 3.0, [X], int8)
        built[f"max_hw_{suffix}"] = convert(lambda x: tf.reduce_max(x * 2.0, axis=[1, 2], keepdims=True) * 3.0,
                                            [X], int8)
        built[f"softmax_{suffix}"] = convert(lambda x: tf.nn.softmax(x * 2.0) * 3.0, [X], int8)
    return built


@pytest.fixture(scope="module")
def cbam_int8():
    """An int8 cbam_resnet20 made with the project's own QAT pipeline."""
    qat = quantize_aware(create_model("cbam_resnet20", input_shape=(8, 8, 1), classes=10))
    samples = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
    calibrate_ranges(qat.model, qat.float_model, samples)
    return convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples[:8]])


def verdicts(report, op):
    return [v for v in report.ops if v.op == op]


def only(report, op):
    found = verdicts(report, op)
    assert len(found) == 1, f"expected one {op}, got {[v.op for v in report.ops]}"
    return found[0]


def runtime_xnnpack_partitions(data):
    """Partitions the installed LiteRT's XNNPACK delegate created: one DELEGATE node each."""
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    return [d["op_name"] for d in interpreter._get_ops_details()].count("DELEGATE")


def constant_values(data):
    """tensor index → value of every constant tensor, read by LiteRT's interpreter (no delegate)."""
    interpreter = Interpreter(model_content=data,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    info = inspect_tflite(data)
    return {t.index: interpreter.get_tensor(t.index) for t in info.tensors if t.is_constant}


def with_op_inputs(data, op_index, inputs):
    """``data`` with op ``op_index``'s input list replaced (for layouts the converter never writes)."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    model.subgraphs[0].operators[op_index].inputs = np.array(inputs, dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ---- GPU ---------------------------------------------------------------------------------------------------------

def test_gpu_reshape_needs_a_constant_shape(models):
    # "RESHAPE: Exactly 1 runtime input (shape tensor must be constant or absent)"; "SHAPE: No parser exists".
    dynamic = check_compat(models["dynamic_reshape"], "gpu")
    reshapes = verdicts(dynamic, "RESHAPE")
    assert reshapes and not any(v.supported for v in reshapes)
    assert all("runtime" in " ".join(v.reasons) for v in reshapes)
    assert not any(v.supported for v in verdicts(dynamic, "SHAPE"))
    constant = check_compat(models["constant_reshape"], "gpu")
    assert only(constant, "RESHAPE").supported
    assert constant.supported_count == len(constant.ops) and constant.partitions == 1


def test_gpu_mean_axes_must_be_constant_int32(models):
    # "MEAN: Exactly 1 runtime input + 1 constant input; axes must be constant int32."
    runtime_axes = only(check_compat(models["mean_runtime_axes"], "gpu"), "MEAN")
    assert not runtime_axes.supported and "not constant" in runtime_axes.reasons[0]
    assert only(check_compat(models["mean_hw_f32"], "gpu"), "MEAN").supported


def test_gpu_mul_broadcasting_limits(models):
    # Standard broadcast mode: a 4-D tensor broadcasts with 3-D (batch 1), 2-D [1, 1] or 2-D [b, c] only;
    # [4, 3] against [1, 4, 4, 3] is none of them.
    rejected = only(check_compat(models["mul_broadcast_2d"], "gpu"), "MUL")
    assert not rejected.supported and "broadcast" in rejected.reasons[0]
    assert only(check_compat(models["mul_broadcast_3d"], "gpu"), "MUL").supported


def test_gpu_rejects_rank_5_tensors(models):
    # "every non-optional input/output tensor must have rank ≤ 4".
    assert not any(v.supported for v in check_compat(models["rank5"], "gpu").ops)
    assert all(v.supported for v in check_compat(models["rank4"], "gpu").ops)


def test_gpu_op_outside_its_op_set_splits_the_graph(models):
    # "TOPK_V2: No — model_builder has no parser"; the MULs before and after it are two partitions, and the GPU
    # takes only the largest one ("max_delegated_partitions default 1").
    report = check_compat(models["topk_in_middle"], "gpu")
    topk = only(report, "TOPK_V2")
    assert not topk.supported and "parser" in topk.reasons[0] and topk.partition is None
    muls = verdicts(report, "MUL")
    assert [v.partition for v in muls] == [1, 2]
    assert report.partitions == 2 and report.delegated_partitions == 1
    assert [v.delegated for v in muls].count(True) == 1
    assert any("largest" in w for w in report.warnings)
    assert report.summary.startswith("gpu: 2/3 ops supported, 2 partitions; rejected: TOPK_V2 #")
    table = format_compat(report).splitlines()
    rows = table[1:1 + len(report.ops)]
    assert [row.split()[1] for row in rows] == ["MUL", "TOPK_V2", "MUL"]
    assert rows[1].split()[2] == "NO" and "parser" in rows[1]
    assert table[-1] == report.summary


def test_gpu_depthwise_multiplier_needs_a_single_input_channel(models):
    # "DEPTHWISE_CONV_2D: depth_multiplier must be 1 unless input has 1 channel" (3 channels here).
    rejected = only(check_compat(models["mobile_m2_f32"], "gpu"), "DEPTHWISE_CONV_2D")
    assert not rejected.supported and "depth_multiplier" in rejected.reasons[0]
    assert all(v.supported for v in check_compat(models["mobile_m1_f32"], "gpu").ops)


def test_fp16_weights(models):
    # GPU: FP16GraphPartitionHelper takes a fully supported graph whole, fp16 DEQUANTIZE nodes included.
    # NNAPI: "fp16-weight models: only all-or-nothing delegation" — REDUCE_MAX needs API 29, so at 28 nothing.
    data = models["conv_max_fp16"]
    assert "DEQUANTIZE" in inspect_tflite(data).op_names
    gpu = check_compat(data, "gpu")
    assert gpu.supported_count == len(gpu.ops) and gpu.partitions == 1
    at_28 = check_compat(data, "nnapi", 28)
    assert [v.op for v in at_28.ops if not v.supported] == ["REDUCE_MAX"] and at_28.partitions == 0
    assert any("whole graph" in w for w in at_28.warnings)
    assert check_compat(data, "nnapi", 29).partitions == 1


def test_gpu_quantized_model_runs_in_float(models):
    # §1.3: int8 models are accepted by default and computed in float (fp16 with the Java defaults).
    report = check_compat(models["mean_hw_int8"], "gpu")
    assert all(v.supported for v in report.ops)
    assert any("computes in float" in w and "fp16" in w for w in report.warnings)
    assert not any("computes in float" in w for w in check_compat(models["mean_hw_f32"], "gpu").warnings)


# ---- NNAPI -------------------------------------------------------------------------------------------------------

def test_nnapi_quantized_mean_needs_api_29(models):
    # "MEAN: Min API float32 28, quantized 29".
    assert not only(check_compat(models["mean_hw_int8"], "nnapi", 28), "MEAN").supported
    assert only(check_compat(models["mean_hw_int8"], "nnapi", 29), "MEAN").supported
    assert only(check_compat(models["mean_hw_int8"], "nnapi", 28), "MEAN").min_api == 29
    assert not only(check_compat(models["mean_hw_f32"], "nnapi", 27), "MEAN").supported
    float_mean = only(check_compat(models["mean_hw_f32"], "nnapi", 28), "MEAN")
    assert float_mean.supported and float_mean.min_api == 28


def test_nnapi_reduce_max_needs_api_29(models):
    assert not only(check_compat(models["max_hw_f32"], "nnapi", 28), "REDUCE_MAX").supported
    assert only(check_compat(models["max_hw_f32"], "nnapi", 29), "REDUCE_MAX").supported


def test_nnapi_rejects_rank_5_tensors(models):
    # ADD and MUL: "Input ranks ≤ 4".
    rank5 = check_compat(models["rank5"], "nnapi", 30)
    assert not any(v.supported for v in rank5.ops) and all("rank" in v.reasons[0] for v in rank5.ops)
    assert all(v.supported for v in check_compat(models["rank4"], "nnapi", 30).ops)


def test_nnapi_reshape_needs_a_constant_shape(models):
    # "RESHAPE: shape input (if present) must be constant".
    dynamic = verdicts(check_compat(models["dynamic_reshape"], "nnapi", 30), "RESHAPE")
    assert dynamic and not any(v.supported for v in dynamic)
    assert only(check_compat(models["constant_reshape"], "nnapi", 30), "RESHAPE").supported


def test_nnapi_conv_needs_its_bias_slot(models):
    # "CONV_2D: Node must have the bias slot (3 inputs)".
    data = models["conv"]
    conv = inspect_tflite(data).ops[0]
    assert conv.op == "CONV_2D" and len(conv.inputs) == 3
    assert only(check_compat(data, "nnapi", 29), "CONV_2D").supported
    without_bias = only(check_compat(with_op_inputs(data, 0, conv.inputs[:2]), "nnapi", 29), "CONV_2D")
    assert not without_bias.supported and "bias" in without_bias.reasons[0]


def test_nnapi_is_deprecated_from_api_35(models):
    # §2.6: deprecated in Android 15 (API 35); prefer the GPU delegate or the CPU path.
    deprecated = [w for w in check_compat(models["mean_hw_f32"], "nnapi", 35).warnings if "deprecated" in w]
    assert len(deprecated) == 1 and "GPU" in deprecated[0] and "CPU" in deprecated[0]
    assert not any("deprecated" in w for w in check_compat(models["mean_hw_f32"], "nnapi", 34).warnings)


def test_nnapi_without_an_api_level_is_judged_at_the_newest(models):
    report = check_compat(models["mean_hw_int8"], "nnapi")
    assert report.android_api == 36 and "API 36" in report.warnings[0]
    assert only(report, "MEAN").min_api == 29


def test_nnapi_partitions_follow_the_api_level(models):
    # TOPK_V2 needs API 29: below it the MULs around it form two partitions; from it, one.
    assert check_compat(models["topk_in_middle"], "nnapi", 28).partitions == 2
    assert check_compat(models["topk_in_middle"], "nnapi", 29).partitions == 1


# ---- XNNPACK -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["f32", "int8"])
def test_xnnpack_mean_only_over_spatial_axes(models, suffix):
    # README: "Only [1, 2], [2, 1], and [2] axes"; current LiteRT code: any static int32 axes.
    assert only(check_compat(models[f"mean_hw_{suffix}"], "xnnpack"), "MEAN").supported
    channel = only(check_compat(models[f"mean_c_{suffix}"], "xnnpack"), "MEAN")
    assert not channel.supported and "axes" in channel.reasons[0]
    assert only(check_compat(models[f"mean_c_{suffix}"], "xnnpack", xnnpack_rules="litert"), "MEAN").supported


def test_xnnpack_runs_int8_softmax_on_the_cpu(models):
    # §3.3: "int8 AVERAGE_POOL_2D, SOFTMAX, HARD_SWISH and standalone RELU/RELU6 fall back to the built-in CPU
    # kernels, which splits the graph into more partitions".
    int8 = check_compat(models["softmax_int8"], "xnnpack")
    assert not only(int8, "SOFTMAX").supported and int8.partitions == 2
    float_ = check_compat(models["softmax_f32"], "xnnpack")
    assert only(float_, "SOFTMAX").supported and float_.partitions == 1


def test_xnnpack_conv_needs_a_bias(models):
    # "CONV_2D: Bias required (bias slot −1 → rejected)".
    data = models["conv"]
    conv = inspect_tflite(data).ops[0]
    assert only(check_compat(data, "xnnpack"), "CONV_2D").supported
    no_bias = only(check_compat(with_op_inputs(data, 0, [*conv.inputs[:2], -1]), "xnnpack"), "CONV_2D")
    assert not no_bias.supported and "bias" in no_bias.reasons[0]


def test_xnnpack_reduce_max_only_in_litert(models):
    # "REDUCE_MAX: Yes only since LiteRT commit 354d907 (2025-05-08)" — not in the README list.
    assert not only(check_compat(models["max_hw_int8"], "xnnpack"), "REDUCE_MAX").supported
    assert only(check_compat(models["max_hw_int8"], "xnnpack", xnnpack_rules="litert"), "REDUCE_MAX").supported


@pytest.mark.parametrize("name", ["dynamic_reshape", "mean_runtime_axes", "topk_in_middle", "topk_on_side_branch",
                                  "softmax_int8", "softmax_f32", "mean_c_int8", "max_hw_int8", "rank5",
                                  "mobile_m2_int8", "mobile_m2_f32", "conv_max_fp16"])
def test_xnnpack_litert_partitions_match_the_installed_runtime(models, name):
    report = check_compat(models[name], "xnnpack", xnnpack_rules="litert")
    assert report.partitions == runtime_xnnpack_partitions(models[name])


# ---- partitioning ------------------------------------------------------------------------------------------------

def test_one_unsupported_op_in_the_middle_makes_two_partitions(models):
    # MUL → TOPK_V2 → MUL: GPU and XNNPACK reject TOPK_V2, so the two MULs cannot share a partition.
    for delegate in ("gpu", "xnnpack"):
        report = check_compat(models["topk_in_middle"], delegate)
        assert [v.op for v in report.ops] == ["MUL", "TOPK_V2", "MUL"]
        assert report.partitions == 2
        assert [v.partition for v in report.ops] == [1, None, 2]


def test_an_unsupported_op_on_a_side_branch_does_not_split(models):
    # TOPK_V2 only feeds a graph output: TFLite's partitioner puts both MULs into one partition even though
    # TOPK_V2 sits between them in execution order.
    report = check_compat(models["topk_on_side_branch"], "gpu")
    assert sorted(v.op for v in report.ops) == ["MUL", "MUL", "TOPK_V2"]
    assert report.partitions == 1
    assert {v.partition for v in verdicts(report, "MUL")} == {1}


# ---- the project's own int8 CBAM model ---------------------------------------------------------------------------

def test_cbam_resnet20_int8_gets_a_verdict_for_every_op(cbam_int8):
    info = inspect_tflite(cbam_int8)
    constants = constant_values(cbam_int8)
    reports = {"gpu": check_compat(cbam_int8, "gpu"), "nnapi 29": check_compat(cbam_int8, "nnapi", 29),
               "nnapi 30": check_compat(cbam_int8, "nnapi", 30), "xnnpack": check_compat(cbam_int8, "xnnpack"),
               "xnnpack litert": check_compat(cbam_int8, "xnnpack", xnnpack_rules="litert")}
    for name, report in reports.items():
        assert [v.op for v in report.ops] == [op.op for op in info.ops], name
        assert all(v.reasons and all(v.reasons) for v in report.ops), name
        assert name.split()[0] in format_compat(report).splitlines()[-1]

    # GPU: every op of the SE/CBAM set has a parser; axes are constant int32, ranks ≤ 4 → one partition.
    assert reports["gpu"].supported_count == len(info.ops) and reports["gpu"].partitions == 1
    # NNAPI at 29: "QUANTIZE ... 30 for output int8" and "FULLY_CONNECTED keep_num_dims=true needs 30"; at 30 all.
    for verdict, op in zip(reports["nnapi 29"].ops, info.ops):
        int8_requantize = op.op == "QUANTIZE" and info.tensors[op.outputs[0]].dtype == "int8"
        keep_dims_fc = op.op == "FULLY_CONNECTED" and len(info.tensors[op.outputs[0]].shape) == 4
        assert verdict.supported == (not int8_requantize and not keep_dims_fc), (verdict.index, verdict.reasons)
    assert reports["nnapi 30"].supported_count == len(info.ops) and reports["nnapi 30"].partitions == 1
    # XNNPACK README rules: no REDUCE_MAX; MEAN only over [1, 2]/[2] of 4-D to 4-D.
    for verdict, op in zip(reports["xnnpack"].ops, info.ops):
        if op.op == "REDUCE_MAX":
            assert not verdict.supported
        elif op.op == "MEAN":
            axes = sorted(int(a) % 4 for a in np.ravel(constants[op.inputs[1]]))
            spatial = axes in ([1, 2], [2]) and len(info.tensors[op.outputs[0]].shape) == 4
            assert verdict.supported == spatial, (verdict.index, axes)
        else:
            assert verdict.supported, (verdict.index, verdict.op, verdict.reasons)
    # Current LiteRT: everything, in as many partitions as the installed runtime makes.
    assert reports["xnnpack litert"].supported_count == len(info.ops)
    assert reports["xnnpack litert"].partitions == runtime_xnnpack_partitions(cbam_int8)


# ---- inputs and errors -------------------------------------------------------------------------------------------

def test_model_can_be_a_path_bytes_or_tflite_info(models, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(models["topk_in_middle"])
    expected = check_compat(models["topk_in_middle"], "gpu").to_dict()
    assert check_compat(path, "gpu").to_dict() == expected
    assert check_compat(inspect_tflite(path), "gpu").to_dict() == expected
    with pytest.raises(BadInput, match="TFLiteInfo"):
        check_compat(inspect_tflite(models["topk_in_middle"]), "gpu")
    with pytest.raises(BadInput) as error:
        check_compat(b"not a model at all", "gpu")
    assert "not a TFLite model" in str(error.value)


@pytest.mark.parametrize("arguments, option", [
    (("tpu",), "--delegate"), ((None,), "--delegate"),
    (("nnapi", 26), "--android-api"), (("nnapi", 37), "--android-api"), (("nnapi", "29"), "--android-api"),
    (("nnapi", True), "--android-api"),
])
def test_bad_arguments_name_the_option(models, arguments, option):
    with pytest.raises(BadInput) as error:
        check_compat(models["rank4"], *arguments)
    assert error.value.what == option


def test_bad_xnnpack_rule_set(models):
    with pytest.raises(BadInput) as error:
        check_compat(models["rank4"], "xnnpack", xnnpack_rules="newest")
    assert error.value.what == "--xnnpack-rules"


def test_android_api_is_ignored_outside_nnapi(models):
    report = check_compat(models["rank4"], "gpu", android_api=29)
    assert report.android_api is None and any("ignored" in w for w in report.warnings)
    assert report.to_dict() | {"warnings": []} == check_compat(models["rank4"], "gpu").to_dict() | {"warnings": []}
