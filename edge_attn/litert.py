"""The one place that picks the TFLite (LiteRT) interpreter, and runs float data through quantized models.

Interpreter choice: ``ai_edge_litert.interpreter.Interpreter`` (LiteRT, the maintained successor). Only
when that package is missing do we fall back to ``tflite_runtime.interpreter`` and then
``tf.lite.Interpreter``. The order matters: ``tflite-runtime`` 2.14 (its last release) was built against
numpy 1 and cannot load models under numpy 2, and ``tf.lite.Interpreter`` is deprecated and imports all of
TensorFlow. All three share the same ``Interpreter`` API.

Quantized inputs and outputs use the affine mapping of the TFLite quantization spec
(https://ai.google.dev/edge/litert/models/quantization_spec): ``real = scale * (q - zero_point)``.
"""

import os
import warnings

import numpy as np

from edge_attn.convert.probe import xnnpack_problem
from edge_attn.convert.verify import probe_tflite, verify_tflite
from edge_attn.errors import BadInput

try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:  # pragma: no cover - ai-edge-litert is a declared dependency
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    except ImportError:
        from edge_attn._keras import tf

        Interpreter = tf.lite.Interpreter
        OpResolverType = tf.lite.experimental.OpResolverType

__all__ = ["make_interpreter", "run", "invoke_sample", "read_float", "quantize", "dequantize"]


def make_interpreter(model, num_threads=None, preserve_all_tensors=False):
    """Return an allocated interpreter for ``model`` (the flatbuffer as bytes, or a path to a .tflite file).

    ``preserve_all_tensors=True`` keeps every intermediate tensor readable after ``invoke()`` (for
    per-layer error). It also turns off the default XNNPACK delegate: a delegated partition runs as one
    node and its intermediate tensors are never written.

    A file is the user's: it is verified and probed in a child process first
    (:mod:`edge_attn.convert.verify`), so a model that would crash LiteRT is a BadInput naming the file, and
    the bytes verified are the bytes loaded. Bytes come from edge_attn's own converter and are loaded as given,
    with LiteRT's default XNNPACK delegate unless a probe in a child process found that the delegate fails or
    crashes on them (:func:`edge_attn.convert.probe.xnnpack_problem`; the converter's caller reports that):
    then builtin kernels run them, so edge_attn's own checks never take the process down.
    """
    kwargs = {"num_threads": num_threads}
    if not preserve_all_tensors and isinstance(model, (bytes, bytearray, memoryview)) and xnnpack_problem(bytes(model)):
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if isinstance(model, (bytes, bytearray, memoryview)):
        what = "TFLite model"
        kwargs["model_content"] = bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        what = os.fspath(model)
        kwargs["model_content"] = verify_tflite(what)
        probe_tflite(kwargs["model_content"], what=what, config="builtin" if preserve_all_tensors else "default")
    else:
        raise BadInput("TFLite model", f"expected bytes or a file path, got {type(model).__name__}")
    try:
        with warnings.catch_warnings():
            # preserve_all_tensors warns that it is a debugging aid that costs memory: that is why we use it.
            warnings.simplefilter("ignore")
            interpreter = Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BadInput(what, f"cannot be loaded as a TFLite model ({str(e).strip().splitlines()[0]})") from e
    return interpreter


def quantize(x, scale, zero_point, dtype):
    """``clip(round(x / scale) + zero_point)`` in ``dtype`` (an integer type), as TFLite's QUANTIZE kernel.

    Rounding is half away from zero (the kernel's ``std::round``), not numpy's half-to-even; the division
    is done in float32 like the kernel's.
    """
    info = np.iinfo(dtype)
    scaled = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)  # float64: exact +0.5
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.clip(rounded + zero_point, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    """``scale * (q - zero_point)`` as float32."""
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)


def read_float(interpreter, detail):
    """Read the tensor described by ``detail`` (a tensor-details dict) as real numbers.

    Integer tensors with a quantization scale are dequantized; float tensors are returned as they are.
    """
    value = interpreter.get_tensor(detail["index"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32)
    if scale == 0:
        raise BadInput(detail["name"], f"{value.dtype} tensor without quantization parameters")
    return dequantize(value, scale, zero_point)


def _single(details, kind):
    if len(details) != 1:
        raise BadInput("TFLite model", f"has {len(details)} {kind}s; edge_attn runs single-{kind} models")
    return details[0]


def _quantize_input(detail, sample):
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return np.asarray(sample, dtype)
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        raise BadInput("TFLite model", f"input of type {dtype} without quantization parameters")
    return quantize(sample, scale, zero_point, dtype)


def invoke_sample(interpreter, sample):
    """Run one sample (no batch axis) through the model; return its float output (no batch axis).

    The input is quantized with the model's own input scale and zero point when the input is integer,
    and an integer output is dequantized with the output's parameters.
    """
    input_detail = _single(interpreter.get_input_details(), "input")
    output_detail = _single(interpreter.get_output_details(), "output")
    interpreter.set_tensor(input_detail["index"], _quantize_input(input_detail, sample[np.newaxis]))
    try:
        interpreter.invoke()
    except RuntimeError as e:  # a kernel that refuses the model only when it runs
        raise BadInput("TFLite model", f"LiteRT failed running it ({str(e).strip().splitlines()[0]})") from e
    return read_float(interpreter, output_detail)[0]


def run(interpreter, x_float):
    """Run float samples ``x_float`` (N, ...) through the model one at a time; return float outputs (N, ...).

    One sample per invoke because converted models usually have a fixed batch of 1.
    """
    x_float = check_samples(x_float, _single(interpreter.get_input_details(), "input"))
    return np.stack([invoke_sample(interpreter, sample) for sample in x_float])


def check_samples(x, input_detail, model="TFLite model"):
    """``x`` as an array of samples (N, ...) for a model whose single input is ``input_detail``: BadInput
    unless there are samples, each of the input's shape, and the model takes them one at a time (batch 1)."""
    x = np.asarray(x)
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    if x.ndim < 1 or len(x) == 0:
        raise BadInput("input data", "no samples")
    if tuple(x.shape[1:]) != expected:
        raise BadInput("input data", f"samples have shape {tuple(x.shape[1:])}, the model expects {expected}")
    if int(input_detail["shape"][0]) != 1:
        raise BadInput(model, f"expected a batch size of 1, got {int(input_detail['shape'][0])}")
    return x
