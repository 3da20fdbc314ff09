"""Which app-side consumers can run a bundled model, and why not when one cannot.

Judged from the model's tensors and its ``TFLITE_METADATA``, by the rules the consumers apply when they load a
model (tflite-support 0.4.4, ``cc/task/vision/utils/image_tensor_specs.cc`` and the classification
post-processor; ML Model Binding generates its ``TensorImage`` wrapper from the same metadata):

- **LiteRT Interpreter**: any tensor types; the app quantizes and dequantizes itself.
- **Task Library ImageClassifier**: one 4-D ``1×H×W×3`` input of type uint8 or float32 with RGB (or no)
  ``ImageProperties``; float32 needs ``NormalizationOptions``; one output of type uint8 or float32. It feeds a
  uint8 input the raw 0..255 pixels, so the input's quantization must mean the metadata's normalization
  (``scale = 1/std``, ``zero point = mean``) — checked by :func:`normalization_problem`.
- **ML Model Binding (image input)**: uint8 or float32 image input and output; grayscale is accepted.
"""

import math

from edge_attn.bundle import metadata_schema as ms

LITERT = "LiteRT Interpreter"
TASK_LIBRARY = "Task Library ImageClassifier"
MODEL_BINDING = "ML Model Binding (image input)"
_APP_TYPES = ("uint8", "float32")


def model_consumers(info, metadata):
    """``[{"consumer", "works", "reason"}]`` for ``info`` (a :class:`~edge_attn.convert.inspect.TFLiteInfo`)
    and ``metadata`` (its ``ModelMetadataReader``, or None)."""
    inp, out = info.inputs[0], info.outputs[0]
    image_md = _input_metadata(metadata)
    props = image_md.content().image_properties() if image_md is not None and image_md.content() else None
    normalization = _normalization(image_md)
    shape = tuple(inp.shape)

    task = []
    if inp.dtype not in _APP_TYPES:
        task.append(f"input is {inp.dtype}; it takes uint8 or float32")
    if len(shape) != 4 or shape[0] != 1 or shape[-1] != 3:
        task.append(f"input shape {list(shape)}; it takes 1×H×W×3 (RGB) images")
    if props is not None and props.color_space() != ms.ColorSpaceType.RGB:
        task.append("metadata colour space is not RGB; it takes RGB only")
    if inp.dtype == "float32" and normalization is None:
        task.append("float32 input without NormalizationOptions metadata")
    if out.dtype not in _APP_TYPES:
        task.append(f"output is {out.dtype}; it takes uint8 or float32")
    mismatch = normalization_problem(info, metadata)
    if mismatch:
        task.append(mismatch)

    binding = []
    if inp.dtype not in _APP_TYPES or out.dtype not in _APP_TYPES:
        binding.append(f"{inp.dtype} input / {out.dtype} output; its image path takes uint8 or float32")
    if props is None:
        binding.append("no ImageProperties metadata on the input")
    if mismatch:
        binding.append(mismatch)

    return [
        {"consumer": LITERT, "works": True, "reason": f"takes any tensor type ({inp.dtype} in, {out.dtype} out)"},
        _verdict(TASK_LIBRARY, task, f"{inp.dtype} RGB input, {out.dtype} output"),
        _verdict(MODEL_BINDING, binding, f"{inp.dtype} image input, {out.dtype} output"),
    ]


def normalization_problem(info, metadata):
    """For a uint8 image input: a sentence when its quantization does not mean the metadata's
    ``(pixel - mean) / std`` (an app feeding raw pixels would compute on other values), else None."""
    inp = info.inputs[0]
    normalization = _normalization(_input_metadata(metadata))
    if inp.dtype != "uint8" or normalization is None or len(inp.scales) != 1:
        return None
    mean, std = normalization
    if len(set(mean)) != 1 or len(set(std)) != 1:
        return "uint8 input with per-channel normalization metadata: one quantization cannot mean it"
    scale, zero_point = inp.scales[0], inp.zero_points[0]
    if zero_point != mean[0] or not math.isclose(scale * std[0], 1.0, rel_tol=1e-6):
        return (f"uint8 input quantization (scale {scale!r}, zero point {zero_point}) does not mean the metadata's "
                f"normalization (mean {mean[0]!r}, std {std[0]!r}): raw pixels would reach the model as "
                f"(pixel - {zero_point}) * {scale!r}")
    return None


def _verdict(consumer, problems, ok_reason):
    return {"consumer": consumer, "works": not problems, "reason": "; ".join(problems) if problems else ok_reason}


def _input_metadata(metadata):
    try:
        return metadata.subgraph_metadata()[0].input_tensor_metadata()[0] if metadata is not None else None
    except (IndexError, ValueError):
        return None


def _normalization(tensor_md):
    if tensor_md is None:
        return None
    for unit in tensor_md.process_units():
        options = unit.normalization()
        if options is not None:
            return tuple(options.mean()), tuple(options.std())
    return None
