"""Loading the user's Keras model (``.keras``, ``.h5`` or a SavedModel folder) with edge_attn's layers.

Keras ``Lambda`` layers hold Python code that runs when the model is loaded. Before anything is
deserialized, the model's config (``config.json`` in a ``.keras`` archive, the ``model_config``
attribute of an ``.h5`` file, the per-layer metadata in a SavedModel's ``keras_metadata.pb``) is
scanned for ``Lambda`` layers, and such files are refused unless the
user trusts them (``--trust-model-code``); only then is a ``.keras`` file loaded with
``safe_mode=False``. Any failure to load is a one-line ``BadInput`` naming the file.
"""

import json
import os
import zipfile

from edge_attn import _compat
from edge_attn.errors import BadInput

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
LAMBDA_REFUSED = ("contains Lambda layers ({names}): Lambda layers hold Python code that runs when the model is "
                  "loaded; pass --trust-model-code if you trust this file")


def _model_config(path):
    """The model's architecture as JSON, read without deserializing anything; None if not found."""
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        if path.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(path, "r") as h5:
                raw = h5.attrs.get("model_config")
            if raw is None:
                return None
            return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        if os.path.isdir(path):
            return _saved_model_config(path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # not readable as such: load_model below reports why
    return None


def _saved_model_config(path):
    """The root model's config from a tf-keras SavedModel's ``keras_metadata.pb``, plus every layer node's
    class (a Lambda can sit in a node the root config does not describe, e.g. inside a subclassed model)."""
    from google.protobuf.message import DecodeError
    from tf_keras.protobuf import saved_metadata_pb2

    metadata_path = os.path.join(path, "keras_metadata.pb")
    if not os.path.isfile(metadata_path):
        return None  # a bare SavedModel: tf-keras revives no Keras layers from it (refused after loading)
    saved = saved_metadata_pb2.SavedMetadata()
    with open(metadata_path, "rb") as f:
        try:
            saved.ParseFromString(f.read())
        except DecodeError as error:
            raise ValueError(str(error)) from error
    nodes = [json.loads(node.metadata) for node in saved.nodes if node.metadata]
    root = next((n for n, node in zip(nodes, saved.nodes) if node.node_path == "root"), {})
    layer_classes = [{"class_name": n.get("class_name"), "config": {"name": n.get("name", "?")}} for n in nodes]
    return {**root, "saved_model_nodes": layer_classes}


def lambda_layers(config):
    """Names of the ``Lambda`` layers anywhere in a model config (nested models included), each once."""
    return list(dict.fromkeys(_lambda_names(config)))


def _lambda_names(config):
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            found.append(str(config.get("config", {}).get("name", "?")))
        for value in config.values():
            found.extend(_lambda_names(value))
    elif isinstance(config, list):
        for value in config:
            found.extend(_lambda_names(value))
    return found


def _layer_entries(config):
    """``(name, class_name, registered_name)`` of every layer in a model config, nested models included."""
    layers = config.get("config", {}).get("layers", []) if isinstance(config, dict) else []
    for layer in layers:
        yield layer.get("config", {}).get("name", "?"), layer.get("class_name"), layer.get("registered_name")
        yield from _layer_entries(layer)


def unknown_layers(config):
    """``name (class)`` of layers whose class neither Keras nor edge_attn (nor a registration) provides."""
    from edge_attn._keras import keras

    import edge_attn.layers  # noqa: F401  registers edge_attn's layers
    import edge_attn.normalize.channel_pad  # noqa: F401

    known = _compat.deserializable_layer_names()
    return [f"{name} ({class_name})" for name, class_name, registered in _layer_entries(config)
            if class_name not in known and keras.saving.get_registered_object(registered or class_name) is None]


def load_keras_model(path, trust_model_code=False):
    """Load a Keras 2 model from ``path``; raise ``BadInput`` for anything that is not one.

    Files with ``Lambda`` layers are refused unless ``trust_model_code`` (their code would run).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BadInput(path, "no such file or directory")
    from edge_attn.filekind import describe

    kind = describe(path)
    if kind == "a TFLite model" or path.endswith(".tflite"):
        raise BadInput(path, "is a TFLite model; here a float Keras model is expected (.keras, .h5 or a SavedModel "
                             "folder, e.g. the OUT/reference.keras that `edge-attn convert` writes)")
    is_saved_model = os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb"))
    if not (is_saved_model or path.endswith(KERAS_SUFFIXES)):
        raise BadInput(path, (f"is {kind}, not a Keras model" if kind else "not a Keras model")
                       + ": expected a .keras or .h5 file or a SavedModel folder")
    if not os.access(path, os.R_OK | (os.X_OK if is_saved_model else 0)):
        raise BadInput(path, "cannot read: Permission denied")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise BadInput(path, "is empty (0 bytes); expected a Keras model")
    config = _model_config(path)
    lambdas = lambda_layers(config)
    if lambdas and not trust_model_code:
        raise BadInput(path, LAMBDA_REFUSED.format(names=", ".join(lambdas)))
    from edge_attn._keras import keras
    import edge_attn.layers  # noqa: F401  registers edge_attn's layers for deserialization
    import edge_attn.normalize.channel_pad  # noqa: F401  (a normalized model may hold ChannelPad)

    unknown = unknown_layers(config)
    if unknown:
        raise BadInput(path, f"uses custom layers that are neither Keras nor edge_attn layers: {', '.join(unknown)}; "
                             "rebuild the model from standard layers (or register the classes and use the Python API)")
    from edge_attn.usercode import lambda_globals

    custom_objects = lambda_globals() if trust_model_code else None
    try:
        if path.endswith(".keras"):
            model = keras.models.load_model(path, compile=False, safe_mode=not trust_model_code,
                                            custom_objects=custom_objects)
        else:
            model = keras.models.load_model(path, compile=False, custom_objects=custom_objects)
    except Exception as error:  # corrupt archives fail in many ways (zipfile, h5py, json, ValueError)
        raise BadInput(path, f"cannot be loaded as a Keras model: {load_failure_reason(error)}") from error
    if not isinstance(model, keras.Model) or not _compat.is_functional(model):
        raise BadInput(path, "loaded, but it is not a functional/Sequential Keras model (subclassed or a bare SavedModel)")
    return model


_ROOT_CAUSES = (NameError, ImportError, AttributeError)


def load_failure_reason(error):
    """The most telling line of a load failure: Keras wraps a Lambda's ``NameError`` in "Exception encountered
    when calling layer ..."; the cause (and the advice to ``--import`` the module defining the name) matters."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    for cause in chain:
        if isinstance(cause, _ROOT_CAUSES):
            # tf-keras re-raises it as "Exception encountered when calling layer ...\n\nname 'K' is not defined
            # \n\nCall arguments received ...": keep the layer and the original message, drop the arguments dump.
            lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
            kept = [line for line in lines[:2] if not line.startswith("Call arguments")]
            return (f"{type(cause).__name__}: {' '.join(kept)} (a Lambda layer's code uses a name from the module "
                    "that defined it; pass --import MODULE, with --code-path DIR for where it lives)")
    text = str(chain[0]).strip()
    for line in text.splitlines():  # tf-keras puts the original error's text inside its own message
        stripped = line.strip()
        if stripped.startswith(tuple(f"{cls.__name__}:" for cls in _ROOT_CAUSES)):
            return f"{stripped[:300]} (pass --import MODULE for the module that defined it)"
    return (text.splitlines()[0] if text else type(chain[0]).__name__)[:300]
