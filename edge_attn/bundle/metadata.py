"""Embed standard TFLite metadata (``TFLITE_METADATA``) and a labels file in a .tflite model.

This is the format Android Studio's ML Model Binding, the LiteRT support library's ``MetadataExtractor`` and
the Task library read (https://ai.google.dev/edge/litert/models/metadata): a ``ModelMetadata`` flatbuffer
(schema in :mod:`edge_attn.bundle.metadata_schema`) stored in one of the model's buffers and named
``TFLITE_METADATA`` in the model's ``metadata`` list; associated files (here ``labels.txt``, type
``TENSOR_AXIS_LABELS`` on the output tensor) appended to the model as a zip archive, so the .tflite file is a
valid flatbuffer *and* a valid zip. The interpreter ignores both, so the model computes exactly as before.

Zip entries are stored uncompressed with a fixed timestamp, so the same inputs give the same bytes.
"""

import dataclasses
import io
import zipfile

import numpy as np

from edge_attn.bundle import metadata_schema as ms
from edge_attn.convert.inspect import flatbuffer_utils, schema

LABELS_FILE = "labels.txt"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: entries carry no build time


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How an app prepares the model input: ``(pixel - mean) / std`` per channel, then the tensor's quantization."""

    mean: tuple
    std: tuple
    color_space: str | None  # "RGB", "GRAYSCALE", or None for a non-image input
    height: int | None = None
    width: int | None = None


def embed_metadata(model_bytes, *, name, description, version, author, input_spec, input_description,
                   output_description, labels):
    """Return ``model_bytes`` with ``TFLITE_METADATA`` and ``labels.txt`` attached.

    An existing ``TFLITE_METADATA`` entry and any previously appended zip are replaced, so re-bundling a
    bundled model gives the same bytes as bundling the original.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    subgraph = model.subgraphs[0]
    metadata = ms.build_model_metadata(
        name=name, description=description, version=version, author=author,
        inputs=len(subgraph.inputs), outputs=len(subgraph.outputs),
        build_tensors=lambda b: _tensor_metadata(b, input_spec, input_description, output_description))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode("utf-8") != ms.METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = ms.METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    flat = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return _append_zip(flat, {LABELS_FILE: "".join(f"{label}\n" for label in labels).encode("utf-8")})


def _tensor_metadata(builder, spec, input_description, output_description):
    if spec.color_space is None:
        content = ms.build_feature_content(builder)
    else:
        color = getattr(ms.ColorSpaceType, spec.color_space)
        content = ms.build_image_content(builder, color, spec.width, spec.height)
    unit = ms.build_normalization_unit(builder, spec.mean, spec.std)
    image = ms.build_tensor_metadata(builder, "image" if spec.color_space else "input", input_description,
                                     content, process_units=[unit])
    labels = ms.build_associated_file(builder, LABELS_FILE, "class names, one per line, in output order",
                                      ms.AssociatedFileType.TENSOR_AXIS_LABELS)
    output = ms.build_tensor_metadata(builder, "logits", output_description, ms.build_feature_content(builder),
                                      associated_files=[labels])
    return [image], [output]


def _append_zip(prefix, files):
    """``prefix`` followed by a zip of ``files`` (name → bytes): stored, sorted, fixed timestamps.

    Appending in mode "a" (as tflite-support's MetadataPopulator does) makes the zip offsets count from the
    start of the file, which readers that do not search for a zip inside a larger file need.
    """
    out = io.BytesIO(prefix)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return out.getvalue()


def read_metadata(model_bytes):
    """The ``TFLITE_METADATA`` buffer of a model as a :class:`~edge_attn.bundle.metadata_schema.ModelMetadataReader`,
    or None when the model has none."""
    model = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode("utf-8") == ms.METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return ms.ModelMetadataReader.from_bytes(data.tobytes())
    return None


def associated_files(model_bytes):
    """The files appended to the model as a zip (name → bytes); empty when there are none."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}
