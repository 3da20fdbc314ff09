"""The convert flow behind ``edge-attn train|convert|demo``: reference → quantize → check → report.

Each stage is a function so the demo can train one float reference and quantize it with several
recipes. Outputs go to a staging folder beside ``--out`` and are moved into place only when every
file is complete, so a failed run leaves the previous outputs (or nothing), never half of a new set.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from edge_attn import __version__
from edge_attn.errors import BadInput

DEFAULT_FLOAT_EPOCHS = 15
FLOAT_LEARNING_RATE = 3e-3
LAYER_SAMPLES = 64  # samples for per-layer error: enough for stable RMSE, bounded memory


@dataclass
class Reference:
    """The float model everything is checked against, and the data it was trained/evaluated on."""

    model: object
    data: object
    source: str  # registry name or the user's path
    trained: dict | None = None  # training history when edge_attn trained it
    trust_model_code: bool = False  # the user allowed Lambda layers (Python code) in their model


@dataclass
class Quantized:
    """A converted model and what produced it."""

    recipe: object
    tflite: bytes
    layer_reference: object  # float model whose layer names the TFLite tensors carry
    fine_tune: dict | None = None
    rewrites: list = field(default_factory=list)  # raw-op layers normalized into quantizable ones
    seconds: dict = field(default_factory=dict)


def prepare_reference(model_spec, data_spec, *, input_shape=None, float_epochs=DEFAULT_FLOAT_EPOCHS, seed=0,
                      progress=True, trust_model_code=False):
    """Load ``data_spec`` and either build+train registry model ``model_spec`` or load a saved Keras model."""
    from edge_attn.data import load_data
    from edge_attn.models import create_model, is_registered
    from edge_attn.modelio import load_keras_model

    if float_epochs < 0:
        raise BadInput("--float-epochs", f"must be 0 or more; Received: {float_epochs}")
    if is_registered(model_spec):
        data = load_data(data_spec, input_shape=input_shape)
        _seed_everything(seed)
        model = create_model(model_spec, input_shape=data.input_shape, classes=data.num_classes)
        history = train_float(model, data, epochs=float_epochs, seed=seed, progress=progress)
        return Reference(model, data, model_spec, history)
    if not os.path.exists(model_spec) and os.sep not in model_spec and "." not in model_spec:
        create_model(model_spec)  # raises BadInput with the close registry matches
    if input_shape is not None:
        raise BadInput("--input-shape", "only applies to registry models; a saved model has its own input shape")
    model = load_keras_model(model_spec, trust_model_code=trust_model_code)
    data = load_data(data_spec, input_shape=tuple(model.input_shape[1:]))
    outputs = model.output_shape[-1]
    if outputs != data.num_classes:
        raise BadInput(data_spec, f"has {data.num_classes} classes but {model_spec} outputs {outputs}")
    return Reference(model, data, model_spec, None, trust_model_code)


def train_float(model, data, *, epochs, seed=0, progress=True):
    from edge_attn.training import fit

    history = fit(model, data, epochs=epochs, learning_rate=FLOAT_LEARNING_RATE, schedule="cosine",
                  seed=seed, progress=progress, desc="float")
    return history.to_dict()


def quantize(reference, recipe, *, epochs=None, seed=0, progress=True):
    """Convert ``reference`` per ``recipe`` (quantization-aware fine-tune first for QAT recipes)."""
    from edge_attn.convert import convert_model
    from edge_attn.qat import qat_finetune, quantize_aware

    data = reference.data
    if epochs is not None and epochs < 0:
        raise BadInput("--epochs", f"must be 0 or more; Received: {epochs}")
    representative = data.representative(recipe.calibration_samples) if recipe.quantization == "int8" else None
    seconds = {}
    fine_tune = None
    start = time.perf_counter()
    if recipe.qat:
        _seed_everything(seed)
        settings = recipe.fine_tune
        qat = quantize_aware(reference.model, trust_model_code=reference.trust_model_code)
        history = qat_finetune(
            qat, data, epochs=settings.epochs if epochs is None else epochs, learning_rate=settings.learning_rate,
            schedule=settings.schedule, batch_size=settings.batch_size, bn_freeze_steps=settings.bn_freeze_steps,
            early_stop_patience=settings.early_stop_patience or None,
            calibration_samples=recipe.calibration_samples, seed=seed, progress=progress)
        fine_tune = history.to_dict()
        seconds["qat"] = time.perf_counter() - start
        to_convert, layer_reference, rewrites = qat.model, qat.float_model, qat.rewrites
    else:
        # The lowered (decomposed) float model is float-identical and converts better: CBAM's split
        # spatial conv avoids the CONCATENATION/REDUCE_MAX shared scale that clips post-training int8.
        to_convert, rewrites = lowered_float_model(reference.model, reference.trust_model_code)
        layer_reference = to_convert
    start = time.perf_counter()
    tflite = convert_model(to_convert, recipe, representative, name=reference.source)
    seconds["convert"] = time.perf_counter() - start
    return Quantized(recipe, tflite, layer_reference, fine_tune, rewrites, seconds)


def lowered_float_model(model, trust_model_code=False):
    """(float model with raw ops normalized and attention decomposed, the rewrites): float-identical to
    ``model``; what non-QAT recipes convert and what per-layer error maps TFLite tensors to. Ops the
    normalizer cannot rewrite stay as they are (``strict=False``): a float recipe can keep them, and an
    int8 recipe then reports the op the converter left in float."""
    from edge_attn.normalize import normalize
    from edge_attn.qat import lower_attention

    normalized, rewrites = normalize(model, trust_model_code=trust_model_code, strict=False)
    return lower_attention(normalized), rewrites


def check(reference_model, layer_reference, tflite, data, *, threads=2, runs=50, reference_tflite=None):
    """Accuracy, per-layer error and latency of ``tflite`` against the float model, on the eval split."""
    from edge_attn.evaluate.compare import compare
    from edge_attn.evaluate.latency import measure_latency
    from edge_attn.evaluate.per_layer import layer_errors

    accuracy = compare(reference_model, tflite, data.x_eval, data.y_eval)
    layers = layer_errors(layer_reference, tflite, data.x_eval[:LAYER_SAMPLES])
    latency = {"threads": threads, "quantized": measure_latency(tflite, runs=runs, threads=threads)}
    if reference_tflite is not None:
        latency["reference"] = measure_latency(reference_tflite, runs=runs, threads=threads)
    return accuracy, layers, latency


def float_tflite(model):
    """The float model as f32 TFLite: the latency baseline measured in the same run as the int8 model."""
    from edge_attn.convert import convert_model, load_recipe

    return convert_model(model, load_recipe("f32"))


def build_report(reference, quantized, accuracy, layers, latency, *, model_path):
    from edge_attn.convert import inspect_tflite

    info = inspect_tflite(quantized.tflite)
    return {
        "edge_attn_version": __version__,
        "recipe": quantized.recipe.name,
        "recipe_settings": quantized.recipe.to_dict(),
        "source_model": reference.source,
        "model": {"path": model_path, "bytes": len(quantized.tflite),
                  "sha256": hashlib.sha256(quantized.tflite).hexdigest()},
        "ops": list(info.op_names),
        "fully_int8": info.fully_int8,
        "float_ops": [f"{op.op} #{op.index}" for op in info.float_ops()],
        "inputs": [t.to_dict() for t in info.inputs],
        "outputs": [t.to_dict() for t in info.outputs],
        "accuracy": accuracy,
        "latency_ms": latency,
        "layers": layers,
        "data": reference.data.info,
        "float_training": reference.trained,
        "fine_tune": quantized.fine_tune,
        "rewrites": quantized.rewrites,
        "seconds": {k: round(v, 2) for k, v in quantized.seconds.items()},
    }


@contextlib.contextmanager
def staged_outputs(out_dir):
    """Yield a staging folder; on success move every file in it into ``out_dir`` (atomic per file).

    On failure the staging folder is removed, and ``out_dir`` is removed too if this call created it
    and it is still empty: a failed run leaves nothing behind and never touches existing outputs.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise BadInput(out_dir, "exists and is not a directory")
    created = not os.path.exists(out_dir)
    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)
    except OSError as error:
        raise BadInput(out_dir, f"cannot write there: {error.strerror}") from error
    try:
        yield staging
        os.makedirs(out_dir, exist_ok=True)
        for root, _dirs, files in os.walk(staging):
            target_root = os.path.join(out_dir, os.path.relpath(root, staging))
            os.makedirs(target_root, exist_ok=True)
            for name in files:
                os.replace(os.path.join(root, name), os.path.join(target_root, name))
    except BaseException:
        if created and os.path.isdir(out_dir) and not os.listdir(out_dir):
            os.rmdir(out_dir)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_run(staging, reference, quantized, report, *, save_reference=True):
    """Write model.tflite, reference.keras, report.json and report.html into ``staging``."""
    from edge_attn.evaluate.report import write_report

    with open(os.path.join(staging, "model.tflite"), "wb") as f:
        f.write(quantized.tflite)
    if save_reference:
        reference.model.save(os.path.join(staging, "reference.keras"))
    write_report(staging, report)


def run_convert(model_spec, recipe_spec, data_spec, out_dir, *, input_shape=None, epochs=None,
                float_epochs=DEFAULT_FLOAT_EPOCHS, threads=2, runs=50, seed=0, progress=True, trust_model_code=False):
    """``edge-attn convert``: every output in ``out_dir``; returns the report dict."""
    from edge_attn.convert import load_recipe

    recipe = load_recipe(recipe_spec)  # bad recipes fail before any training
    reference = prepare_reference(model_spec, data_spec, input_shape=input_shape, float_epochs=float_epochs,
                                  seed=seed, progress=progress, trust_model_code=trust_model_code)
    quantized = quantize(reference, recipe, epochs=epochs, seed=seed, progress=progress)
    accuracy, layers, latency = check(reference.model, quantized.layer_reference, quantized.tflite, reference.data,
                                      threads=threads, runs=runs, reference_tflite=float_tflite(reference.model))
    report = build_report(reference, quantized, accuracy, layers, latency,
                          model_path=os.path.join(os.path.abspath(out_dir), "model.tflite"))
    with staged_outputs(out_dir) as staging:
        write_run(staging, reference, quantized, report)
    return report


def _seed_everything(seed):
    from edge_attn._keras import keras

    keras.utils.set_random_seed(seed)
    np.random.seed(seed)
