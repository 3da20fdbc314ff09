"""Convert a Keras model (float, or tfmot quantize-aware) to TFLite flatbuffer bytes as a recipe says.

The model is traced as a ``tf.function`` with a fixed batch (``recipe.batch_size``) so that the
Reshape/Shape ops of squeeze-and-excitation fold into constants, then handed to
``TFLiteConverter.from_concrete_functions([function])``. The model itself is deliberately not passed:
with it the converter lowers through a SavedModel, which keeps a ``serving_default`` SignatureDef but
is ~10x slower (se_resnet20, f32: 11.4 s vs 0.9 s; its QAT model: ~40 s) — too slow for a demo that
converts six models. The .tflite therefore has no SignatureDef; tensors are addressed by index.
A recipe's ``qat`` flag must match the model: a quantize-aware model (fake-quant ops in the graph) only
converts with a QAT recipe, and a QAT recipe only converts a quantize-aware model. Per quantization:

- ``int8``: ``Optimize.DEFAULT``, int8 (or uint8/float32) inputs and outputs, and
  ``representative_dataset`` from the caller's samples. After conversion the flatbuffer is inspected: TF
  2.21's converter keeps ops without an int8 kernel (FLOOR, COS, ...) in float between
  DEQUANTIZE/QUANTIZE even when ``supported_ops`` is ``TFLITE_BUILTINS_INT8`` only, so unless the recipe
  has ``allow_float_ops`` any op left in float is an error listing the ops.
- ``int16x8``: the same with ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`` (16-bit symmetric
  activations, int8 weights, int64 biases; TF routes it through its older calibrating quantizer), int16 or float32
  inputs and outputs; with ``allow_float_ops`` the float builtins are added beside it.
- a calibrated recipe with ``[[precision]]`` rules: :mod:`edge_attn.convert.precision` (mixed widths per layer).
- ``fp16``: float16 weights (``supported_types=[tf.float16]``); ``dynamic``: ``Optimize.DEFAULT`` without
  data (int8 weights, float activations); ``f32``: plain.

Quantize-aware (QAT) models and representative data, as measured with TF 2.21 / tfmot 0.8.1:

- The converter demands a representative dataset whenever ``supported_ops`` is
  ``TFLITE_BUILTINS_INT8`` only, QAT model or not (its metrics hook builds ``QuantizationMode`` without the
  graph, so it cannot see the fake-quant ops; also reported in tensorflow/tensorflow#38285). Without
  samples a QAT model is therefore converted with the default op set; the fake-quant ranges still make it
  int8 and the inspection above still enforces "no float ops".
- With samples, the converter quantizes from the fake-quant ranges and then runs its calibrator over the
  result: tensors that carry QAT ranges keep them (samples scaled by 100 give byte-identical output), and
  only tensors with no fake-quant range (ops tfmot did not wrap) are calibrated from the samples, which
  turns them int8 instead of leaving them float. Passing samples for a QAT model is therefore harmless and
  fills gaps; it also renames the graph input/output tensors to the signature names.

The conversion is deterministic: the same model, recipe and samples give byte-identical bytes (the
embedded metadata holds the TF version and a hash of the model, nothing time- or path-dependent).
"""

import contextlib
import itertools
import os
import re
import sys
import tempfile

import numpy as np

from edge_attn._keras import tf
from edge_attn.atomic import write_bytes
from edge_attn.errors import BadInput
from edge_attn.convert.float_gate import refuse_float_ops
from edge_attn.convert.collapsed_ranges import widen_collapsed_ranges
from edge_attn.convert.requantize import integer_requantize
from edge_attn.convert.row_conv import lower_thin_convs
from edge_attn.convert.tracing import _has_fake_quant, _trace
from edge_attn.resources import release_free_memory

_IO_DTYPES = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}
# The integer-only op set of each calibrated quantization (int16x8: 16-bit activations, 8-bit weights).
_INTEGER_OPS = {"int8": tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                "int16x8": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8}


def convert_model(model, recipe, representative=None, *, name=None):
    """Convert ``model`` per ``recipe`` and return the .tflite flatbuffer as bytes.

    ``representative``: an iterable of float32 batches shaped ``[recipe.batch_size, *input_shape[1:]]``
    (single-sample batches with the default batch size 1); the first ``recipe.calibration_samples`` are
    used. Required for post-training int8; optional for a quantize-aware model (see the module notes);
    unused by the other quantizations. ``name`` names the model in errors (default: the Keras model name).

    Raises :class:`~edge_attn.errors.BadInput` for a model the recipe cannot convert, naming the op(s);
    the converter's own exception stays chained (shown with ``--debug``).

    With ``recipe.lower_thin_convs`` (the default) thin convolutions are rewritten as exact row convolutions
    afterwards (:mod:`edge_attn.convert.row_conv`: CBAM's spatial conv, several times faster in XNNPACK).
    """
    data = _convert(model, recipe, representative, name or f"model {model.name!r}")
    if recipe.quantization == "int8":
        data, _ = widen_collapsed_ranges(data)  # a dead ReLU's ~0 range would make XNNPACK refuse the model
    if recipe.lower_thin_convs:
        data, _ = lower_thin_convs(data)
    return data


def _convert(model, recipe, representative, what):
    function = _trace(model, recipe.batch_size, what)
    quantize_aware = _has_fake_quant(function)
    _check_model_matches_recipe(recipe, quantize_aware, what)
    samples = None
    if recipe.calibrated and representative is not None:
        samples = _take_samples(representative, recipe, function)
    if recipe.calibrated and samples is None and not quantize_aware:
        raise BadInput(what, f"recipe {recipe.name!r} (post-training {recipe.quantization}) needs representative "
                             "data to calibrate activation ranges")
    if recipe.precision:
        from edge_attn.convert.precision import convert_mixed, convert_qat_with_float_layers

        if quantize_aware:
            return convert_qat_with_float_layers(function, model, recipe, samples, what)
        return convert_mixed(model, recipe, samples, what)  # refuses float ops no rule asked for itself

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    _configure(converter, recipe, samples)
    with tempfile.TemporaryFile() as native_log:
        try:
            with _redirect_native_output(native_log):
                data = bytes(converter.convert())
        except BadInput:  # a representative sample refused while the converter read it
            raise
        except Exception as e:
            native_log.seek(0)
            log = native_log.read().decode("utf-8", "replace").strip()
            if log:
                e.add_note(f"converter output:\n{log}")
            raise BadInput(what, f"conversion with recipe {recipe.name!r} failed: {_describe_failure(e)}") from e
        finally:
            del converter
            release_free_memory()  # the converter's transient copies of the graph, back to the OS

    if recipe.quantization == "int8":
        data, _, _ = integer_requantize(data)  # a float round trip between int8 tensors, not a float op
    refuse_float_ops(data, recipe, what, "no integer kernel or no quantization range; ")
    return data


def write_tflite(path, data):
    """Write the flatbuffer ``data`` to ``path`` atomically (a failed write leaves no partial file)."""
    write_bytes(path, data)


def _check_model_matches_recipe(recipe, quantize_aware, what):
    if quantize_aware and not recipe.qat:
        raise BadInput(what, f"the model is quantize-aware (fake-quant ops) but recipe {recipe.name!r} is not a QAT "
                             "recipe; convert it with an int8 QAT recipe such as int8-qat")
    if recipe.qat and not quantize_aware:
        raise BadInput(what, f"recipe {recipe.name!r} expects a quantize-aware model but the model has no fake-quant "
                             "ops; make it quantize-aware first, or use int8-ptq")


def _take_samples(representative, recipe, function):
    """The first ``calibration_samples`` representative batches as float32 arrays, shape-checked.

    A re-iterable ``representative`` (a list, :meth:`edge_attn.data.DataSet.representative`) stays lazy:
    samples are read and checked as the converter asks for them, never all held at once. A one-shot
    iterator (a generator) is read into a list, since the converter may iterate more than once.
    """
    expected = tuple(function.inputs[0].shape)
    count = recipe.calibration_samples

    def checked(samples):
        for i, sample in enumerate(itertools.islice(samples, count)):
            try:
                array = np.asarray(sample, dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise BadInput("representative data", f"sample {i} is not a float array: {e}") from e
            if array.shape != expected:
                raise BadInput("representative data", f"sample {i} has shape {array.shape}, expected {expected} "
                                                      f"(batches of {recipe.batch_size})")
            yield array

    if iter(representative) is representative:  # one pass only: keep what it yields
        samples = list(checked(representative))
    else:
        samples = _Reiterable(lambda: checked(representative))
        next(iter(samples), None)  # a bad first sample fails here, before the converter runs
    if not any(True for _ in itertools.islice(iter(samples), 1)):
        raise BadInput("representative data", "no samples")
    return samples


class _Reiterable:
    """Calls ``make()`` for a fresh iterator on every iteration."""

    def __init__(self, make):
        self._make = make

    def __iter__(self):
        return self._make()


def _configure(converter, recipe, samples):
    if recipe.calibrated:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if samples is not None:
            # A fresh generator per call: the converter may iterate the dataset more than once.
            converter.representative_dataset = lambda: ([sample] for sample in samples)
            integer_ops = _INTEGER_OPS[recipe.quantization]
            if not recipe.allow_float_ops:
                converter.target_spec.supported_ops = [integer_ops]
            elif recipe.quantization == "int16x8":  # the 16x8 op set, and float for ops it has no kernel for
                converter.target_spec.supported_ops = [integer_ops, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = _IO_DTYPES[recipe.input_type]
        converter.inference_output_type = _IO_DTYPES[recipe.output_type]
    elif recipe.quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif recipe.quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _describe_failure(error):
    """One line from a converter exception: the offending op(s) and the first line of the message."""
    ops, messages = [], []
    for entry in getattr(error, "errors", []):  # ConverterError carries structured ConverterErrorData
        if entry.operator.name:
            ops.append(entry.operator.name)
        if entry.error_message:
            messages.append(entry.error_message.splitlines()[0])
    text = str(error)
    if not ops:
        ops = re.findall(r"'((?:tf|tfl)\.\w+)' op", text)
    first = messages[0] if messages else next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first.replace("Could not translate MLIR to FlatBuffer.", "").strip()
    unique_ops = list(dict.fromkeys(ops))
    return f"op {', '.join(unique_ops)}: {first}" if unique_ops else first or type(error).__name__


@contextlib.contextmanager
def _redirect_native_output(log_file):
    """Send the converter's C++ stdout/stderr (MLIR dumps, absl logs) to ``log_file`` instead of the
    terminal, so that a failure prints one line; the chained Python exception keeps the details."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
