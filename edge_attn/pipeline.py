"""The convert flow behind ``edge-attn train|convert|demo``: reference → quantize → check → report.

Each stage is a function so the demo can train one float reference and quantize it with several
recipes. Outputs go to a staging folder beside ``--out`` and are moved into place only when every
file is complete, so a failed run leaves the previous outputs (or nothing), never half of a new set.
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

import numpy as np

from edge_attn.version import __version__
from edge_attn.errors import BadInput
from edge_attn.failures import model_failure

DEFAULT_FLOAT_EPOCHS = 15
FLOAT_LEARNING_RATE = 3e-3
FLOAT_BATCH_SIZE = 32
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
    fake_quant: object = None  # QAT recipes: the fake-quant Keras model that was converted (parity check)
    precision: dict | None = None  # recipes with precision rules: the islands and their cost (report.json)


def prepare_reference(model_spec, data_spec, *, input_shape=None, float_epochs=DEFAULT_FLOAT_EPOCHS, seed=0,
                      progress=True, trust_model_code=False, strategy=None, checkpoints=None):
    """Load ``data_spec`` and either build+train registry model ``model_spec`` or load a saved Keras model.

    A registry model trains under ``strategy`` (a ``tf.distribute.Strategy`` or a name of
    :data:`edge_attn.distribute.STRATEGIES`; None: default) and is returned as an ordinary model.
    With ``checkpoints`` (:class:`edge_attn.checkpoints.RunCheckpoints`) the trained model is kept there,
    and a resumed run loads it instead of training again.
    """
    from edge_attn.data import load_data
    from edge_attn.distribute import is_distributed, resolve_strategy
    from edge_attn.models import create_model, is_registered
    from edge_attn.modelio import load_keras_model

    if float_epochs < 0:
        raise BadInput("--float-epochs", f"must be 0 or more; Received: {float_epochs}")
    if is_keras_model(model_spec):  # the Python API: a model the user holds in memory
        if input_shape is not None:
            raise BadInput("input_shape", "only applies to registry models; a Keras model has its own input shape")
        data = load_data(data_spec, input_shape=tuple(model_spec.input_shape[1:]))
        _check_classes(model_spec, data, data_spec, f"model {model_spec.name!r}")
        return Reference(model_spec, data, model_spec.name, None, trust_model_code)
    if is_registered(model_spec):
        data = load_data(data_spec, input_shape=input_shape)
        saved = checkpoints.load_float_reference() if checkpoints is not None else None
        if saved is not None:
            model, history = saved
            print(f"float: trained reference loaded from {checkpoints.float_reference_path()}", file=sys.stderr)
            return Reference(model, data, model_spec, {**history, "from_checkpoint": True})
        strategy = resolve_strategy(strategy)

        def build():
            return create_model(model_spec, input_shape=data.input_shape, classes=data.num_classes)

        _seed_everything(seed)
        with strategy.scope():
            model = build()
        _require_memory_for(model, float_epochs)
        history = train_float(model, data, epochs=float_epochs, seed=seed, progress=progress, strategy=strategy)
        if is_distributed(strategy):
            model = _undistributed_copy(model, build)
        if checkpoints is not None and float_epochs > 0:
            checkpoints.save_float_reference(model, history)
        return Reference(model, data, model_spec, history)
    if not os.path.exists(model_spec) and os.sep not in model_spec and "." not in model_spec:
        create_model(model_spec)  # raises BadInput with the close registry matches
    if input_shape is not None:
        raise BadInput("--input-shape", "only applies to registry models; a saved model has its own input shape")
    model = load_keras_model(model_spec, trust_model_code=trust_model_code)
    _require_memory_for(model, 0)
    data = load_data(data_spec, input_shape=tuple(model.input_shape[1:]))
    _check_classes(model, data, data_spec, model_spec)
    return Reference(model, data, model_spec, None, trust_model_code)


def is_keras_model(value):
    """True for an in-memory Keras model (checked without importing TensorFlow for strings)."""
    if isinstance(value, (str, os.PathLike)):
        return False
    from edge_attn._keras import keras

    return isinstance(value, keras.Model)


def _check_classes(model, data, data_spec, what):
    outputs = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    if outputs != data.num_classes:
        raise BadInput(data_spec, f"has {data.num_classes} classes but {what} outputs {outputs}")


def _require_memory_for(model, float_epochs):
    """A one-line BadInput instead of the OOM killer: one inference sample must fit, and the float
    training step of one sample when there is training (training accumulates micro-batches: a batch of
    FLOAT_BATCH_SIZE need not fit at once)."""
    from edge_attn.resources import require_memory
    require_memory(model, 1, training=False, what="inference", fix="use a smaller --input-shape")
    if float_epochs > 0:
        require_memory(model, 1, training=True, what="float training",
                       fix="use a smaller --input-shape, or --float-epochs 0 to keep the random init")


def train_float(model, data, *, epochs, seed=0, progress=True, strategy=None):
    from edge_attn.training import fit

    history = fit(model, data, epochs=epochs, learning_rate=FLOAT_LEARNING_RATE, schedule="cosine",
                  batch_size=FLOAT_BATCH_SIZE, seed=seed, progress=progress, desc="float", strategy=strategy)
    return history.to_dict()


def _undistributed_copy(model, build):
    """``build()`` (a model like ``model``, made outside any strategy scope) holding ``model``'s weights.

    Converting, checking and saving use the copy: a model made under a strategy scope needs that
    strategy to be read (multi-worker: all workers at once). Every worker calls this, since reading
    the weights of synchronised variables can be a collective op.
    """
    weights = model.get_weights()
    copy = build()
    copy.set_weights(weights)
    return copy


def quantize(reference, recipe, *, epochs=None, seed=0, progress=True, strategy=None, checkpoints=None):
    """Convert ``reference`` per ``recipe`` (quantization-aware fine-tune first for QAT recipes).

    The fine-tune (wrapping, optimizer, steps, data) runs under ``strategy`` (a ``tf.distribute.Strategy``
    or a name of :data:`edge_attn.distribute.STRATEGIES`; None: default); the recipe's batch size is the
    global batch. With ``checkpoints`` (:class:`edge_attn.checkpoints.RunCheckpoints`) it saves a
    checkpoint every epoch there and, resuming, continues from the last one. On a multi-worker task other
    than the chief the result has ``tflite=None``: the chief converts.
    """
    from edge_attn.convert.converter import convert_model
    from edge_attn.convert.precision import float_rule_layers
    from edge_attn.distribute import is_chief, resolve_strategy
    from edge_attn.qat import qat_finetune, quantize_aware

    data = reference.data
    if epochs is not None and epochs < 0:
        raise BadInput("--epochs", f"must be 0 or more; Received: {epochs}")
    representative = data.representative(recipe.calibration_samples) if recipe.calibrated else None
    seconds = {}
    fine_tune = None
    start = time.perf_counter()
    strategy = resolve_strategy(strategy)
    if recipe.qat:
        _seed_everything(seed)
        settings = recipe.fine_tune
        epochs = settings.epochs if epochs is None else epochs
        with _failures_reported("quantize", reference.model, reference.source):
            qat = quantize_aware(reference.model, trust_model_code=reference.trust_model_code,
                                 keep_float=float_rule_layers(recipe))
        with _failures_reported("fine-tune", qat.float_model, reference.source):
            history = qat_finetune(
                qat, data, epochs=epochs, learning_rate=settings.learning_rate,
                schedule=settings.schedule, batch_size=settings.batch_size, bn_freeze_steps=settings.bn_freeze_steps,
                early_stop_patience=settings.early_stop_patience or None,
                calibration_samples=recipe.calibration_samples, seed=seed, progress=progress, strategy=strategy,
                checkpoint_dir=checkpoints.training_directory() if checkpoints is not None and epochs > 0 else None,
                resume=checkpoints is not None and checkpoints.resume)
        fine_tune = history.to_dict()
        seconds["qat"] = time.perf_counter() - start
        to_convert, layer_reference, rewrites = qat.deployable(), qat.float_model, qat.rewrites
    else:
        # The lowered (decomposed) float model is float-identical and converts better: CBAM's split
        # spatial conv avoids the CONCATENATION/REDUCE_MAX shared scale that clips post-training int8.
        with _failures_reported("normalize", reference.model, reference.source):
            to_convert, rewrites = lowered_float_model(reference.model, reference.trust_model_code)
        layer_reference = to_convert
    if not is_chief(strategy):
        return Quantized(recipe, None, None, fine_tune, rewrites, seconds)
    start = time.perf_counter()
    with _failures_reported("convert", to_convert, reference.source):
        tflite = convert_model(to_convert, recipe, representative, name=reference.source)
    seconds["convert"] = time.perf_counter() - start
    precision = None
    if recipe.precision:
        from edge_attn.convert.precision import precision_report

        with _failures_reported("convert", to_convert, reference.source):
            precision = precision_report(to_convert, recipe, tflite, representative, name=reference.source)
    return Quantized(recipe, tflite, layer_reference, fine_tune, rewrites, seconds,
                     fake_quant=to_convert if recipe.qat else None, precision=precision)


@contextlib.contextmanager
def _failures_reported(stage, model, source):
    """Any library crash inside the block becomes one BadInput line naming the stage and the layer."""
    try:
        yield
    except Exception as error:
        raise model_failure(stage, model, error, source) from error


def lowered_float_model(model, trust_model_code=False):
    """(float model with raw ops normalized and attention decomposed, the rewrites): float-identical to
    ``model``; what non-QAT recipes convert and what per-layer error maps TFLite tensors to. Ops the
    normalizer cannot rewrite stay as they are (``strict=False``): a float recipe can keep them, and an
    int8 recipe then reports the op the converter left in float."""
    from edge_attn.normalize import normalize
    from edge_attn.qat import lower_attention

    normalized, rewrites = normalize(model, trust_model_code=trust_model_code, strict=False)
    return lower_attention(normalized), rewrites


def check(reference_model, layer_reference, tflite, data, *, threads=2, runs=50, reference_tflite=None,
          split="eval"):
    """Accuracy, per-layer error and latency of ``tflite`` against the float model, on ``split`` of ``data``
    (:mod:`edge_attn.evaluate.samples`: eval, train or all)."""
    from edge_attn.evaluate.compare import compare
    from edge_attn.evaluate.latency import measure_latency
    from edge_attn.evaluate.per_layer import layer_errors
    from edge_attn.evaluate.samples import split_arrays

    x, y = split_arrays(data, split)  # lazy: both read a batch (per-layer: a sample) at a time
    accuracy = compare(reference_model, tflite, x, y)
    layers = layer_errors(layer_reference, tflite, x.head(LAYER_SAMPLES) if hasattr(x, "head") else x[:LAYER_SAMPLES])
    latency = {"threads": threads, "quantized": measure_latency(tflite, runs=runs, threads=threads)}
    if reference_tflite is not None:
        latency["reference"] = measure_latency(reference_tflite, runs=runs, threads=threads)
    return accuracy, layers, latency


def float_tflite(model):
    """The float model as f32 TFLite: the latency baseline measured in the same run as the int8 model."""
    from edge_attn.convert.converter import convert_model
    from edge_attn.convert.recipe import load_recipe

    return convert_model(model, load_recipe("f32"))


def build_report(reference, quantized, accuracy, layers, latency, *, model_path, reference_tflite=None, budget=None):
    """report.json as a dict (docs/report-json.md; the keys shared with ``check --json`` come from
    :func:`edge_attn.evaluate.results.checked_model`); ``budget`` ({max_drop, min_agreement, min_snr_db}, None:
    check's defaults) is what the model is judged by."""
    from edge_attn.convert.row_conv import lowered_convs
    from edge_attn.evaluate.latency import host_target
    from edge_attn.evaluate.results import checked_model

    checked = checked_model(quantized.tflite, model_path, accuracy, layers, latency, reference.data, "eval",
                            reference_tflite=reference_tflite, **({"budget": budget} if budget else {}))
    _warn_xnnpack(checked, latency["quantized"].get("xnnpack_problem"))
    return {
        **checked,
        "accelerator": host_target(model_path, latency["quantized"], accuracy),  # docs/result-shape.md
        "edge_attn_version": __version__,
        "recipe": quantized.recipe.name,
        "recipe_settings": quantized.recipe.to_dict(),
        "source_model": reference.source,
        "data": reference.data.info,
        "float_training": reference.trained,
        "fine_tune": quantized.fine_tune,
        "rewrites": quantized.rewrites,
        "lowered_convs": lowered_convs(quantized.tflite),
        "precision": quantized.precision,
        "reference_saved": "normalized (the rewrites above applied; float-identical)" if quantized.rewrites
                           else "as given",
        "seconds": {k: round(v, 2) for k, v in quantized.seconds.items()},
    }


def _warn_xnnpack(checked, problem):
    """A converted model that LiteRT's XNNPACK delegate fails on (it would fail in the user's app too): said on
    stderr and in the xnnpack target's warnings (the host ``accelerator`` result says it as its problem)."""
    if not problem:
        return
    from edge_attn.evaluate.latency import xnnpack_warning

    line = xnnpack_warning(problem)
    print(f"warning: {line}", file=sys.stderr)
    for target in checked["targets"]:
        if target["delegate"] == "xnnpack":
            target["warnings"] = [*(target.get("warnings") or []), line]


@contextlib.contextmanager
def staged_outputs(out_dir):
    """Yield a staging folder; on success move every file in it into ``out_dir``, all or nothing.

    On failure (Ctrl-C included) the staging folder is removed, and ``out_dir`` is removed too if this
    call created it and it is still empty: a failed run leaves nothing behind and never touches existing
    outputs. The final move cannot be split by Ctrl-C/SIGTERM (they wait until it is done), and an error
    in the middle of it puts back the files it had replaced. Files in ``out_dir`` that the run does not
    write are never touched.
    """
    from edge_attn.atomic import interrupts_deferred

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise BadInput(out_dir, "exists and is not a directory")
    created = not os.path.exists(out_dir)
    parent = os.path.dirname(out_dir)
    staging = None
    try:
        try:
            os.makedirs(parent, exist_ok=True)
            with interrupts_deferred():  # no Ctrl-C between creating the staging folder and knowing its name
                staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)
        except OSError as error:
            raise BadInput(out_dir, f"cannot write there: {error.strerror}") from error
        yield staging
        with interrupts_deferred():
            _move_all_or_nothing(staging, out_dir)
    except BaseException:
        with interrupts_deferred():
            if created and os.path.isdir(out_dir) and not os.listdir(out_dir):
                os.rmdir(out_dir)
        raise
    finally:
        if staging is not None:
            with interrupts_deferred():
                shutil.rmtree(staging, ignore_errors=True)


def _move_all_or_nothing(staging, out_dir):
    """Move every file under ``staging`` to the same place under ``out_dir`` (``os.replace``, atomic per
    file); if a move fails, undo the moves before it so ``out_dir`` keeps its previous files."""
    moves = [(os.path.join(root, name), os.path.normpath(os.path.join(out_dir, os.path.relpath(root, staging), name)))
             for root, _dirs, files in os.walk(staging) for name in files]
    previous = tempfile.mkdtemp(prefix=".replaced-", dir=staging)  # hard links to the files being replaced
    done, made_dirs = [], _makedirs(out_dir)
    try:
        for index, (source, target) in enumerate(moves):
            made_dirs += _makedirs(os.path.dirname(target))
            kept = None
            if os.path.lexists(target):
                kept = os.path.join(previous, str(index))
                _keep_copy(target, kept)
            os.replace(source, target)
            done.append((target, kept))
    except BaseException:
        for target, kept in reversed(done):
            if kept is None:
                os.remove(target)
            else:
                os.replace(kept, target)
        for folder in reversed(made_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def _makedirs(folder):
    """``os.makedirs(folder, exist_ok=True)``; returns the folders it created, outermost first."""
    missing = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        os.mkdir(path)
    return list(reversed(missing))


def _keep_copy(path, copy):
    if os.path.isdir(path):
        raise BadInput(path, "is a folder where edge_attn writes a file; move it away or choose another --out")
    try:
        os.link(path, copy, follow_symlinks=False)  # instant; the old content survives os.replace over ``path``
    except OSError:
        shutil.copy2(path, copy, follow_symlinks=False)  # file systems without hard links


def write_run(staging, reference, quantized, report, *, save_reference=True):
    """Write model.tflite, reference.keras, report.json and report.html into ``staging``."""
    from edge_attn.atomic import write_bytes
    from edge_attn.evaluate.report import write_report

    write_bytes(os.path.join(staging, "model.tflite"), quantized.tflite)
    if save_reference:
        saved_reference(reference, quantized).save(os.path.join(staging, "reference.keras"))
    write_report(staging, report)


def saved_reference(reference, quantized):
    """The float model written as ``reference.keras``: the normalized one when normalization rewrote
    layers (float-identical, and free of the user's Lambda code, so a later ``check`` needs no
    ``--trust-model-code``); the user's own model when there was nothing to rewrite or a Lambda stayed."""
    if not quantized.rewrites:
        return reference.model
    from edge_attn._keras import keras
    from edge_attn.normalize import normalize

    normalized, _ = normalize(reference.model, trust_model_code=reference.trust_model_code, strict=False)
    keeps_code = any(isinstance(layer, keras.layers.Lambda) for layer in normalized.layers)
    return reference.model if keeps_code else normalized


def run_convert(model_spec, recipe_spec, data_spec, out_dir, *, input_shape=None, epochs=None,
                float_epochs=DEFAULT_FLOAT_EPOCHS, threads=2, runs=50, seed=0, progress=True, trust_model_code=False,
                strategy="default", resume=False, budget=None, auto_precision=False):
    """``edge-attn convert``: every output in ``out_dir``; returns the report dict.

    Training runs under the strategy named ``strategy`` (:mod:`edge_attn.distribute`) and keeps
    checkpoints in ``out_dir/checkpoints`` (:mod:`edge_attn.checkpoints`) until the run has finished;
    ``resume`` continues from them. On a multi-worker task other than the chief nothing is written and
    the result is ``{"task", "writer", "fine_tune"}`` instead of the report. ``budget`` ({max_drop,
    min_agreement, min_snr_db}; None: check's defaults) judges the result; with ``auto_precision`` a plain int8
    model that misses it has its worst layers raised (:mod:`edge_attn.convert.auto_precision`) and the recipe
    that met it is written beside the model as ``recipe.toml``; ``auto_precision`` a delegate name ("xnnpack",
    "gpu", "nnapi") also keeps only candidates that delegate runs as far as it runs the all-int8 model.
    """
    from edge_attn.checkpoints import RunCheckpoints, fingerprint
    from edge_attn.convert.recipe import load_recipe
    from edge_attn.distribute import check_strategy_name, cluster_task, create_strategy
    from edge_attn.models import is_registered

    from edge_attn.resources import available_memory

    memory_at_start = available_memory()
    recipe = load_recipe(recipe_spec)  # bad recipes fail before any training
    if auto_precision:
        from edge_attn.convert.auto_precision import require_searchable

        require_searchable(recipe)
    task = cluster_task() if check_strategy_name(strategy) == "multi-worker" else None
    settings = fingerprint(model=model_spec if isinstance(model_spec, str) else f"<in-memory {model_spec.name}>", recipe=recipe, data=data_spec, seed=seed, input_shape=input_shape,
                           epochs=(recipe.fine_tune.epochs if epochs is None else epochs) if recipe.qat else None,
                           float_epochs=float_epochs if isinstance(model_spec, str) and is_registered(model_spec) else None)
    checkpoints = RunCheckpoints.open(out_dir, settings, resume=resume, chief=task is None or task.is_chief)
    distribution = create_strategy(strategy)  # before TensorFlow runs any op (see edge_attn.distribute)
    reference = prepare_reference(model_spec, data_spec, input_shape=input_shape, float_epochs=float_epochs,
                                  seed=seed, progress=progress, trust_model_code=trust_model_code,
                                  strategy=distribution, checkpoints=checkpoints)
    quantized = quantize(reference, recipe, epochs=epochs, seed=seed, progress=progress, strategy=distribution,
                         checkpoints=checkpoints)
    if quantized.tflite is None:  # a multi-worker task other than the chief: it trained its share
        chief = "chief:0" if "chief" in task.cluster else "worker:0"
        return {"task": task.name, "writer": chief, "fine_tune": quantized.fine_tune}
    reference_tflite = float_tflite(reference.model)
    accuracy, layers, latency = check(reference.model, quantized.layer_reference, quantized.tflite, reference.data,
                                      threads=threads, runs=runs, reference_tflite=reference_tflite)
    searched = None
    if auto_precision:
        from edge_attn.evaluate.compare import DEFAULT_BUDGET

        quantized, searched = _raise_precision(reference, quantized, accuracy, layers,
                                               {**DEFAULT_BUDGET, **(budget or {})},
                                               auto_precision if isinstance(auto_precision, str) else None)
        if searched.replaces_model:  # a new model: checked like the first
            accuracy, layers, latency = check(reference.model, quantized.layer_reference, quantized.tflite,
                                              reference.data, threads=threads, runs=runs,
                                              reference_tflite=reference_tflite)
    report = build_report(reference, quantized, accuracy, layers, latency, reference_tflite=reference_tflite,
                          model_path=os.path.join(os.path.abspath(out_dir), "model.tflite"), budget=budget)
    if auto_precision:
        report["auto_precision"] = searched.to_dict()
    if quantized.fake_quant is not None:
        from edge_attn.evaluate.parity import qat_parity

        report["qat_parity"] = qat_parity(quantized.fake_quant, quantized.tflite, reference.data.x_eval, layers)
    report["resources"] = _resources(memory_at_start)
    with staged_outputs(out_dir) as staging:
        write_run(staging, reference, quantized, report)
        if searched is not None and searched.replaces_model:
            from edge_attn.atomic import write_bytes
            from edge_attn.convert.auto_precision import recipe_toml

            note = (f"Written by edge-attn convert --auto-precision ({time.strftime('%Y-%m-%d')}): the layers below "
                    f"raised to meet {json.dumps(searched.budget)}\non {reference.data.info.get('source', 'the data')}; "
                    f"pass this file as --recipe to convert the same way without the search.")
            write_bytes(os.path.join(staging, "recipe.toml"), recipe_toml(quantized.recipe, note).encode())
    checkpoints.finish()  # complete: nothing left to resume
    return report


def _raise_precision(reference, quantized, accuracy, layers, budget, delegate=None):
    """(Quantized, AutoPrecision): the plain int8 model kept when it meets ``budget`` (no search: ``trials``
    empty), else the search's choice (which may raise no layer: the search converts with float32 inputs and
    outputs, and that alone can meet it), or the plain model again when no candidate met the budget."""
    from edge_attn.convert.auto_precision import AutoPrecision, search
    from edge_attn.convert.precision import precision_report
    from edge_attn.evaluate.compare import budget_failures
    from edge_attn.evaluate.samples import split_arrays

    if not budget_failures(accuracy, **budget):
        return quantized, AutoPrecision(budget, [], [], None, quantized.recipe)
    x, y = split_arrays(reference.data, "eval")
    representative = reference.data.representative(quantized.recipe.calibration_samples)
    start = time.perf_counter()
    model = quantized.layer_reference
    with _failures_reported("auto-precision", model, reference.source):
        searched = search(model, quantized.recipe, representative, x, y, layers, what=reference.source,
                          delegate=delegate, **budget)
    seconds = {**quantized.seconds, "auto_precision": time.perf_counter() - start}
    if searched.chosen is None:
        return replace(quantized, seconds=seconds), searched
    precision = None  # the chosen model may raise no layer: plain int8 with float32 I/O met the budget
    if searched.recipe.precision:
        with _failures_reported("auto-precision", model, reference.source):
            precision = precision_report(model, searched.recipe, searched.tflite, representative,
                                         name=reference.source)
    return replace(quantized, recipe=searched.recipe, tflite=searched.tflite, precision=precision,
                   seconds=seconds), searched


def _resources(memory_at_start):
    """``report.json``'s ``resources``: this run's peak resident memory (itself, and its largest child,
    e.g. a LiteRT probe) and the memory that was available when it started, in MiB."""
    from edge_attn.resources import MB, peak_rss

    return {**peak_rss(), "available_at_start_mb": None if memory_at_start is None else round(memory_at_start / MB),
            "cpus": os.cpu_count()}


def _seed_everything(seed):
    from edge_attn._keras import keras

    keras.utils.set_random_seed(seed)
    np.random.seed(seed)
