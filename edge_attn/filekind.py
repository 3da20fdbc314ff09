"""What kind of file a path is, from its first bytes: for errors that say what the user passed and what to
pass instead ("is a Keras model (.keras archive), not a TFLite model; pass OUT/model.tflite").

Only signatures are read (a few bytes, a zip's member names), never the content: sniffing is safe on
any file. :func:`describe` returns a short noun phrase, or None for a file of no kind recognised here.
"""

import io
import os
import zipfile

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of a TFLite flatbuffer
_IMAGE_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"BM": "a BMP image"}


def describe(path):
    """A noun phrase for the kind of file or folder ``path`` is ("a Keras model (.keras archive)"), or None."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return "a TensorFlow SavedModel folder"
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    return _kind(head, lambda: path, path)


def describe_bytes(data):
    """:func:`describe` for a file's content already read (``data``: bytes)."""
    return _kind(bytes(data[:16]), lambda: io.BytesIO(data), "")


def _kind(head, open_zip, path):
    if head[4:8] == TFLITE_IDENTIFIER:
        return "a TFLite model"
    if head.startswith(HDF5_SIGNATURE):
        return "a Keras model (.h5, HDF5)"
    if head.startswith(ZIP_SIGNATURE):
        return _zip_kind(open_zip())
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array (.npy)"
    for signature, kind in _IMAGE_SIGNATURES.items():
        if head.startswith(signature):
            return kind
    if head.startswith(b"\x08") and path.endswith(".onnx"):
        return "an ONNX model"
    return None


def is_keras_model(path):
    """True for a .keras archive, an .h5 file or a SavedModel folder (what :func:`edge_attn.modelio.load_keras_model`
    loads)."""
    kind = describe(path) or ""
    return kind.startswith("a Keras model") or kind == "a TensorFlow SavedModel folder"


def _zip_kind(file):
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return "a damaged zip archive"
    if "config.json" in names and "metadata.json" in names:
        return "a Keras model (.keras archive)"
    if names and all(name.endswith(".npy") for name in names):
        return "a NumPy archive (.npz)"
    if "manifest.json" in names:
        return "an edge_attn bundle (.zip)"
    return "a zip archive"
