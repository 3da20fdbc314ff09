"""Loading the user's Keras model (``.keras``, ``.h5`` or a SavedModel folder) with edge_attn's layers.

Keras ``Lambda`` layers hold Python code: ``.keras`` files are loaded with ``safe_mode=True`` so such
code is never deserialized. Any failure to load is a one-line ``BadInput`` naming the file.
"""

import os

from edge_attn.errors import BadInput

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_keras_model(path):
    """Load a Keras 2 model from ``path``; raise ``BadInput`` for anything that is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BadInput(path, "no such file or directory")
    if path.endswith(".tflite"):
        raise BadInput(path, "is a TFLite model; this command expects a Keras model (.keras, .h5 or a SavedModel folder)")
    is_saved_model = os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb"))
    if not (is_saved_model or path.endswith(KERAS_SUFFIXES)):
        raise BadInput(path, "not a Keras model: expected a .keras or .h5 file or a SavedModel folder")
    from edge_attn._keras import keras
    import edge_attn.layers  # noqa: F401  registers edge_attn's layers for deserialization

    try:
        if path.endswith(".keras"):
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        else:
            model = keras.models.load_model(path, compile=False)
    except Exception as error:  # corrupt archives fail in many ways (zipfile, h5py, json, ValueError)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(path, f"cannot be loaded as a Keras model: {reason[:300]}") from error
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise BadInput(path, "loaded, but it is not a functional/Sequential Keras model (subclassed or a bare SavedModel)")
    return model
