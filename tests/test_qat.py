"""Quantize-aware wrapping, range calibration and fine-tuning of SE/CBAM models.

References are independent of the code under test: the float model's own outputs (lowering must not
change them; a calibrated fake-quant model must stay close to them), tfmot's refusal of the same
models, and the TFLite flatbuffer's tensor types read by the inspector.
"""

import numpy as np
import pytest

from edge_attn._keras import keras, tf
from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.data import load_data
from edge_attn.errors import BadInput
from edge_attn.evaluate.metrics import snr_db
from edge_attn.models import create_model
from edge_attn.qat import calibrate_ranges, lower_attention, qat_finetune, quantize_aware

import tensorflow_model_optimization as tfmot
from zoo_patterns import zoo_params

SMALL = {"imagenet": (32, 32, 3), "cifar": (8, 8, 1), "1d": (64, 2)}
DEFAULT_2D = ["se_resnet20", "cbam_resnet20", "resnet20", "se_resnet18", "cbam_resnet18"]
DEFAULT_1D = ["se_resnet1d_18", "cbam_resnet1d_18"]
SLOW_2D = ["resnet18", "resnet34", "se_resnet34", "cbam_resnet34", "resnet50", "se_resnet50", "cbam_resnet50",
           "resnet101", "se_resnet101", "cbam_resnet101", "resnet56", "se_resnet56", "cbam_resnet56"]


def _input_shape(name):
    return SMALL["1d"] if "1d" in name else SMALL["cifar"] if name.endswith(("20", "56")) else SMALL["imagenet"]


def _random_bn_statistics(model, seed=0):
    """Give BN layers non-trivial statistics so lowering/quantization errors are not hidden by identity BNs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", input_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def trained_se(digits):
    """se_resnet20 trained briefly on digits: real activations for calibration checks."""
    from edge_attn.training import fit

    keras.utils.set_random_seed(0)
    model = create_model("se_resnet20", input_shape=(8, 8, 1), classes=10)
    fit(model, digits, epochs=3, learning_rate=3e-3, progress=False)
    return model


def test_tfmot_alone_refuses_se_models():
    """The premise: tfmot's quantize_model cannot handle an SE model (so our wrapping is needed)."""
    model = create_model("se_resnet20", input_shape=(8, 8, 1), classes=10)
    with pytest.raises(RuntimeError, match=r"Layer stage2_block1_se:.*SqueezeExcite'> is not supported"):
        tfmot.quantization.keras.quantize_model(model)


@pytest.mark.parametrize("name", ["se_resnet20", "cbam_resnet20", "cbam_resnet1d_18", "se_resnet1d_18"])
def test_lowering_preserves_outputs(name):
    model = create_model(name, input_shape=_input_shape(name), classes=10)
    _random_bn_statistics(model)
    lowered = lower_attention(model)
    x = np.random.default_rng(1).normal(size=(4, *_input_shape(name))).astype("float32")
    np.testing.assert_allclose(lowered(x).numpy(), model(x).numpy(), atol=1e-5)
    kinds = {type(layer).__name__ for layer in lowered.layers}
    assert not kinds & {"SqueezeExcite", "CBAM", "ChannelAttention", "SpatialAttention"}


@pytest.mark.parametrize("name", ["cbam_resnet1d_18", "se_resnet1d_18", "resnet1d_18"])
def test_1d_models_are_made_quantize_aware(name):
    qat = quantize_aware(create_model(name, input_shape=_input_shape(name), classes=5))
    out = qat.model(np.zeros((2, *_input_shape(name)), "float32"))
    assert out.shape == (2, 5)
    assert any("quant_" in layer.name for layer in qat.model.layers)


def test_unsupported_layers_are_listed_by_name_and_class():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(4, 3, name="upconv")(x)  # no int8 scheme in tfmot or edge_attn
    x = keras.layers.LayerNormalization(name="norm")(x)
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x))
    with pytest.raises(BadInput) as error:
        quantize_aware(keras.Model(inputs, outputs, name="odd"))
    message = str(error.value)
    assert "norm (LayerNormalization)" in message
    assert "conv (" not in message and "head (" not in message
    assert "\n" not in message and "replace" in message


def test_calibrated_fake_quant_model_tracks_the_float_model(trained_se, digits):
    """Before calibration tfmot's [-6, 6] ranges clip; after it the fake-quant model is within ~25 dB."""
    x = digits.x_eval[:64]
    reference = trained_se.predict(x, verbose=0)
    qat = quantize_aware(trained_se)
    count = calibrate_ranges(qat.model, qat.float_model, digits.x_train[:256])
    assert count > 20
    calibrated = qat.model.predict(x, verbose=0)
    assert snr_db(reference, calibrated) > 25
    # the logits range is what the float model produces on the calibration samples
    logits_layer = qat.model.get_layer("quant_logits")
    low = [v for v in logits_layer.weights if "post_activation_min" in v.name][0].numpy()
    high = [v for v in logits_layer.weights if "post_activation_max" in v.name][0].numpy()
    observed = qat.float_model.predict(digits.x_train[:256], verbose=0)
    # rel 1e-4: predict() batches differently from the calibration probe, and oneDNN's sums differ by ~1 ulp
    # per batch size; a range left at tfmot's -6/6 start would be off by > 20%.
    assert low == pytest.approx(min(observed.min(), 0), rel=1e-4)
    assert high == pytest.approx(max(observed.max(), 0), rel=1e-4)


def test_finetune_keeps_the_model_close_and_freezes_bn(trained_se, digits):
    qat = quantize_aware(trained_se)
    bn = [layer.layer for layer in qat.model.layers
          if isinstance(getattr(layer, "layer", None), keras.layers.BatchNormalization)][0]
    history = qat_finetune(qat, digits, epochs=1, learning_rate=1e-4, bn_freeze_steps=3,
                           calibration_samples=256, progress=False)
    assert history.bn_frozen_at_step == 3
    assert bn.trainable is False
    frozen_mean = bn.moving_mean.numpy().copy()
    qat.model(digits.x_train[:32], training=True)  # a frozen BN ignores training=True
    np.testing.assert_array_equal(bn.moving_mean.numpy(), frozen_mean)
    reference = trained_se.predict(digits.x_eval, verbose=0)
    assert snr_db(reference, qat.model.predict(digits.x_eval, verbose=0)) > 20


def _int8_qat_tflite(model, samples):
    recipe = load_recipe("int8-qat")
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, samples)
    return convert_model(qat.model, recipe, [s[None] for s in samples[:8]])


def test_a_dead_se_bottleneck_keeps_the_next_layers_bias():
    """Found by the random-model generator (seed 3): an SE bottleneck that is 0 on every calibration sample
    (dead ReLU) got the range [0, 0]; its scale ~0 made the next Dense's bias scale ~0, its int32 bias
    saturated, and that layer was at 1.4 dB. Reference: the float model and the real LiteRT interpreter."""
    from litert_reference import run_on_float_samples, snr_db as litert_snr_db

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    squeezed = keras.layers.GlobalAveragePooling2D()(x)
    dead = keras.layers.Dense(2, activation="relu", kernel_initializer="zeros", bias_initializer=keras.initializers.
                              Constant(-1.0), name="se_fc1")(squeezed)
    gate = keras.layers.Dense(8, activation="sigmoid", bias_initializer=keras.initializers.RandomNormal(0, 2, seed=1),
                              name="se_fc2")(dead)
    x = keras.layers.Multiply()([x, keras.layers.Reshape((1, 1, 8))(gate)])
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    samples = np.random.default_rng(3).normal(size=(32, 6, 6, 4)).astype("float32")
    assert np.all(keras.Model(inputs, dead).predict(samples, verbose=0) == 0)  # dead on every sample
    tflite = _int8_qat_tflite(model, samples)
    assert litert_snr_db(model.predict(samples, verbose=0), run_on_float_samples(tflite, samples)) > 25


@pytest.mark.parametrize("name", zoo_params(DEFAULT_2D + DEFAULT_1D + SLOW_2D, quick=DEFAULT_2D + DEFAULT_1D))
def test_zoo_model_converts_fully_int8(name):
    shape = _input_shape(name)
    model = create_model(name, input_shape=shape, classes=10)
    _random_bn_statistics(model)
    samples = np.random.default_rng(2).uniform(0, 1, size=(16, *shape)).astype("float32")
    info = inspect_tflite(_int8_qat_tflite(model, samples))
    assert info.fully_int8, [op.op for op in info.float_ops()]
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert "MUL" in info.op_names if "se_" in name or "cbam_" in name else True
    # No QUANTIZE (a requantizing pass over a whole activation tensor) in front of REDUCE_MAX: its int8
    # kernel needs its input's scale, so CBAM's channel max must not get a range of its own.
    requantized = {out for op in info.ops if op.op == "QUANTIZE" for out in op.outputs}
    assert not [op.index for op in info.ops if op.op == "REDUCE_MAX" and requantized & set(op.inputs)]
    assert {t.dtype for t in info.tensors} <= {"int8", "int32"}


def _avg_pool_model(rank, kind, padding):
    """A linear conv whose outputs reach well beyond their 2x2 (or 2-tap) averages, then average pooling."""
    conv, pool = (keras.layers.Conv2D, keras.layers.AveragePooling2D) if rank == 4 else (keras.layers.Conv1D,
                                                                                      keras.layers.AveragePooling1D)
    inputs = keras.Input((8, 8, 3) if rank == 4 else (16, 3))
    x = conv(6, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(0, 1, seed=1))(inputs)
    if kind == "layer":
        x = pool(2, padding=padding)(x)
    else:  # the raw op, as tutorials write it (normalize rewrites it to the layer)
        x = tf.nn.avg_pool2d(x, ksize=2, strides=2, padding=padding.upper())
    x = (keras.layers.GlobalAveragePooling2D if rank == 4 else keras.layers.GlobalAveragePooling1D)()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name=f"avg_pool_{rank}_{kind}_{padding}")


@pytest.mark.parametrize("rank,kind,padding", [(4, "layer", "valid"), (4, "layer", "same"), (4, "tf_nn", "valid"),
                                               (3, "layer", "valid"), (3, "layer", "same")])
def test_average_pooling_keeps_its_input_range_so_nothing_clips_before_it(rank, kind, padding):
    """Found by the random-model generator (seed 82, 16.5 dB): TFLite's int8 AVERAGE_POOL_2D needs equal input
    and output scales. With a fake-quant range of its own (narrower: an average spans less than its inputs)
    the converter put a QUANTIZE in front of it into that narrower range, clipping every conv output beyond it
    (the pool's local SNR 19 dB). An average lies inside its inputs' range, so the pool keeps its input's
    range, as max pooling does. Reference: numpy's average of the int8 model's own dequantized pool input."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from edge_attn.normalize import normalize

    model, _ = normalize(_avg_pool_model(rank, kind, padding))
    samples = np.random.default_rng(4).normal(size=(32, *model.input_shape[1:])).astype("float32")
    tflite = _int8_qat_tflite(model, samples)
    info = inspect_tflite(tflite)
    assert info.fully_int8
    assert "QUANTIZE" not in [op.op for op in info.ops[1:]], [op.op for op in info.ops]
    interpreter = Interpreter(model_content=tflite, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    (pool,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "AVERAGE_POOL_2D"]
    (source, pooled) = (tensors[pool["inputs"][0]], tensors[pool["outputs"][0]])
    assert source["quantization"] == pooled["quantization"]
    scale, zero = source["quantization"]
    inp = interpreter.get_input_details()[0]
    for sample in samples[:4]:
        in_scale, in_zero = inp["quantization"]
        interpreter.set_tensor(inp["index"], np.clip(np.round(sample[None] / in_scale + in_zero), -128, 127).astype("int8"))
        interpreter.invoke()
        before = (interpreter.get_tensor(source["index"]).astype(np.float64) - zero) * scale
        after = (interpreter.get_tensor(pooled["index"]).astype(np.float64) - zero) * scale
        window = (2, 2) if rank == 4 else (2, 1)  # TFLite runs a 1D pool over (N, L, 1, C)
        want = tf.nn.avg_pool2d(before, window, window, padding.upper()).numpy()
        np.testing.assert_allclose(after, want, atol=scale * 0.51)
