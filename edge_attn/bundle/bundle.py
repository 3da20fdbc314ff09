"""App bundles: a converted model laid out for an Android or iOS project, with metadata, labels and a manifest.

    manifest = bundle("out/model.tflite", target="android", out="app-bundle")
    problems = verify_bundle("app-bundle")   # [] when every file still matches the manifest
    check = check_bundle("app-bundle")       # .problems, and .consumers: which app runtimes take the model

Layout (``android`` / ``ios``)::

    assets/<name>.tflite  |  Resources/<name>.tflite     model + TFLITE_METADATA + labels.txt inside
    assets/labels.txt     |  Resources/labels.txt        one class name per line, in output order
    edge_attn_manifest.json                              sha256/size of every file, tensor specs, delegates
    INTEGRATION.md                                       Gradle/Kotlin or Podfile/Swift

``zip=True`` writes the same files as one archive ``<name>-<target>.zip`` instead. Nothing in a bundle
depends on the time or the machine (no timestamps, no absolute paths, fixed zip entry times), so the same
inputs give byte-identical bundles. Outputs are staged and moved into place only when complete.

An int8 image classifier gets float32 (or, asked for, uint8) input and output tensors around its unchanged int8 graph
(:mod:`edge_attn.bundle.interface`), because the Task Library and ML Model Binding refuse int8 tensors; the
manifest's ``interface`` says what was done and ``consumers`` which runtimes take the bundled model.
"""

import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field

from edge_attn import __version__
from edge_attn.bundle import metadata_schema as ms
from edge_attn.bundle.consumers import model_consumers, normalization_problem
from edge_attn.bundle.integration import integration_markdown
from edge_attn.bundle.interface import choose_interface, with_interface
from edge_attn.bundle.metadata import (LABELS_FILE, ZIP_EPOCH, InputSpec, associated_files, embed_metadata,
                                      read_metadata)
from edge_attn.convert.inspect import inspect_tflite
from edge_attn.errors import BadInput
from edge_attn.outdir import MARKER

TARGETS = {"android": "assets", "ios": "Resources"}
MANIFEST = "edge_attn_manifest.json"
INTEGRATION = "INTEGRATION.md"
# Delegates tried on each platform, in order of preference when each takes the whole model; NNAPI is judged at
# API 30 (Android 11), the level most devices in use run or exceed.
CANDIDATE_DELEGATES = {"android": (("gpu", None), ("nnapi", 30), ("xnnpack", None)),
                       "ios": (("gpu", None), ("xnnpack", None))}
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; labels.txt for more would not be an app asset
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ACCURACY_KEYS = ("samples", "reference_top1", "quantized_top1", "top1_drop_pt", "top1_agreement", "output_snr_db")


def bundle(model_tflite, target="android", labels=None, out="bundle", name=None, zip=False, normalization=None,
           interface="auto"):
    """Bundle ``model_tflite`` for ``target`` into the folder ``out``; return the manifest (a dict).

    ``labels``: a text file with one class name per line (default: the class names recorded in a
    ``report.json`` beside the model, else the class ids ``0..N-1``). ``name``: the model file's base name in
    the bundle (default: the model file's). ``normalization``: ``(mean, std)`` an app applies to 0..255 pixels
    before quantizing (default: derived from the data scaling in ``report.json``, else identity).
    ``interface``: the bundled model's input/output tensor types — ``auto`` (float32 around an int8 image
    model's graph, so the Task Library takes it; other models as they are), ``uint8``, ``float32`` or ``keep``
    (see :mod:`edge_attn.bundle.interface`).
    Every input is checked before anything is written; a bad one is a :class:`BadInput` naming it.
    """
    from edge_attn.pipeline import staged_outputs

    if target not in TARGETS:
        raise BadInput("--target", f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    model_path = os.fspath(model_tflite)
    info = inspect_tflite(model_path)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise BadInput(model_path, f"has {len(info.inputs)} inputs and {len(info.outputs)} outputs; "
                                   "bundles are made for single-input classifiers")
    with open(model_path, "rb") as f:
        source = f.read()
    name = _bundle_name(name, model_path)
    report, report_note = _report_beside(model_path, source)
    num_classes = int(info.outputs[0].shape[-1]) if info.outputs[0].shape else 1
    if num_classes > MAX_CLASSES:  # a damaged output shape must not make us write 10^8 labels
        raise BadInput(model_path, f"outputs {num_classes} classes, more than a classifier bundle takes "
                                   f"({MAX_CLASSES}); is this a classification model?")
    class_names, labels_source = _labels(labels, report, num_classes)
    spec, normalization_source = _input_spec(info.inputs[0], report, normalization)
    chosen, interface_reason = choose_interface(interface, info.inputs[0].dtype, info.outputs[0].dtype,
                                                spec.color_space is not None, spec.mean, spec.std)
    try:
        model = with_interface(source, chosen, spec.mean, spec.std)
        graph_info, info = info, inspect_tflite(model)
    except BadInput:
        raise
    except Exception as e:  # a damaged model can fail anywhere in the flatbuffer object API
        raise BadInput(model_path, f"cannot put {chosen} input/output tensors around the graph "
                                   f"({type(e).__name__}: {e}); try --interface keep") from e

    bundled = embed_metadata(
        model, name=name, version=hashlib.sha256(source).hexdigest()[:12], author=f"edge_attn {__version__}",
        description=_description(report), input_spec=spec,
        input_description=_tensor_text(info.inputs[0], _input_meaning(info.inputs[0].dtype)),
        output_description=_tensor_text(info.outputs[0], "class logits; softmax gives probabilities"),
        labels=class_names)
    folder = TARGETS[target]
    labels_text = "".join(f"{label}\n" for label in class_names).encode("utf-8")
    files = {f"{folder}/{name}.tflite": bundled, f"{folder}/{LABELS_FILE}": labels_text}
    manifest = {
        "format": "edge_attn-bundle/1",
        "name": name,
        "target": target,
        "model": {"file": f"{folder}/{name}.tflite", "source": os.path.basename(model_path),
                  "source_sha256": hashlib.sha256(source).hexdigest(), "metadata": ms.METADATA_NAME,
                  "min_runtime_version": info.min_runtime_version, "fully_int8": graph_info.fully_int8},
        "interface": {"requested": interface, "chosen": chosen, "reason": interface_reason,
                      "graph": {"input": graph_info.inputs[0].dtype, "output": graph_info.outputs[0].dtype}},
        "input": _tensor_spec(info.inputs[0]) | {"normalization": {"mean": list(spec.mean), "std": list(spec.std),
                                                                   "source": normalization_source},
                                                 "color_space": spec.color_space},
        "output": _tensor_spec(info.outputs[0]) | {"meaning": "class logits"},
        "labels": {"file": f"{folder}/{LABELS_FILE}", "count": len(class_names), "source": labels_source},
        # the bundled model's flatbuffer (with its uint8/float32 edges): compat rules read op versions and options
        "delegates": _delegates(model, target, report),
        "evaluation": _evaluation(report, report_note),
        "consumers": model_consumers(info, read_metadata(bundled)),
    }
    files[INTEGRATION] = integration_markdown(manifest).encode("utf-8")
    manifest["files"] = {path: _file_entry(data) for path, data in sorted(files.items())}
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")

    with staged_outputs(out) as staging:
        if zip:
            _write(staging, f"{name}-{target}.zip", _zip_bytes(files))
        else:
            for path, data in files.items():
                _write(staging, path, data)
    return manifest


@dataclass(frozen=True)
class BundleCheck:
    """What ``verify-bundle`` found: ``problems`` (each naming the file; empty: intact) and ``consumers``
    (``[{"consumer", "works", "reason"}]`` for the bundled model, empty when it cannot be read)."""

    problems: list = field(default_factory=list)
    consumers: list = field(default_factory=list)

    def to_dict(self):
        return {"ok": not self.problems, "problems": list(self.problems), "consumers": list(self.consumers)}


def verify_bundle(path):
    """The problems :func:`check_bundle` finds in the bundle at ``path`` (empty: the bundle is intact)."""
    return check_bundle(path).problems


def check_bundle(path):
    """Re-check a bundle folder (or a bundle ``.zip``): every file against the manifest's size and sha256, no
    unlisted files, the model's ``TFLITE_METADATA`` present with a labels file whose line count matches the
    output size, a uint8 input quantized as its normalization metadata says; and judge which consumers
    (LiteRT Interpreter, Task Library, ML Model Binding) take the model. Returns a :class:`BundleCheck`."""
    path = os.fspath(path)
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if MANIFEST not in archive.namelist():
                raise BadInput(path, f"not a bundle: no {MANIFEST} in the archive")
        with tempfile.TemporaryDirectory() as folder:
            problems = _extract(path, folder)
            return BundleCheck(problems) if problems else check_bundle(folder)
    if not os.path.isdir(path):
        raise BadInput(path, "no such bundle folder or zip")
    manifest_path = os.path.join(path, MANIFEST)
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        listed = manifest["files"]
        model_file, labels_file = manifest["model"]["file"], manifest["labels"]["file"]
    except FileNotFoundError:
        raise BadInput(path, f"not a bundle: no {MANIFEST}") from None
    except (ValueError, KeyError, TypeError) as e:
        return BundleCheck([f"{MANIFEST}: unreadable manifest ({type(e).__name__}: {e})"])

    problems = []
    for rel, entry in sorted(listed.items()):
        problems += _check_file(path, rel, entry)
    present = {os.path.relpath(os.path.join(root, f), path).replace(os.sep, "/")
               for root, _dirs, names in os.walk(path) for f in names}
    # MARKER: the file saying edge_attn created the folder (``edge-attn bundle --out``); not part of the bundle
    problems += [f"{rel}: not listed in the manifest" for rel in sorted(present - set(listed) - {MANIFEST, MARKER})]
    consumers = []
    if model_file in present and labels_file in present:
        model_problems, consumers = _check_model(path, model_file, labels_file)
        problems += model_problems
    return BundleCheck(problems, consumers)


def _check_file(root, rel, entry):
    if not _inside(root, rel):
        return [f"{rel}: path leaves the bundle folder"]
    full = os.path.join(root, rel)
    if not os.path.isfile(full):
        return [f"{rel}: missing"]
    with open(full, "rb") as f:
        data = f.read()
    problems = []
    if len(data) != entry.get("bytes"):
        problems.append(f"{rel}: {len(data)} bytes, the manifest says {entry.get('bytes')}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        problems.append(f"{rel}: sha256 {digest} does not match the manifest ({entry.get('sha256')})")
    return problems


def _check_model(root, model_file, labels_file):
    with open(os.path.join(root, model_file), "rb") as f:
        model = f.read()
    try:
        info = inspect_tflite(model)
        outputs = info.outputs
        metadata = read_metadata(model)
    except Exception as e:  # a damaged flatbuffer can fail anywhere in the generated parser
        return [f"{model_file}: cannot read the model or its metadata ({type(e).__name__}: {e})"], []
    if metadata is None:
        return [f"{model_file}: no {ms.METADATA_NAME} metadata"], []
    num_classes = int(outputs[0].shape[-1]) if outputs and outputs[0].shape else 0
    problems = []
    try:
        output_md = metadata.subgraph_metadata()[0].output_tensor_metadata()[0]
        axis_labels = [f.name() for f in output_md.associated_files()
                       if f.type() == ms.AssociatedFileType.TENSOR_AXIS_LABELS]
    except (IndexError, ValueError) as e:
        return [f"{model_file}: incomplete {ms.METADATA_NAME} ({e})"], []
    embedded = associated_files(model)
    if not axis_labels:
        problems.append(f"{model_file}: metadata names no TENSOR_AXIS_LABELS file for the output")
    elif axis_labels[0] not in embedded:
        problems.append(f"{model_file}: labels file {axis_labels[0]!r} named in the metadata is not packed in "
                        "the model")
    else:
        count = len(embedded[axis_labels[0]].decode("utf-8", "replace").splitlines())
        if count != num_classes:
            problems.append(f"{model_file}: {count} embedded labels for {num_classes} outputs")
    with open(os.path.join(root, labels_file), "rb") as f:
        count = len(f.read().decode("utf-8", "replace").splitlines())
    if count != num_classes:
        problems.append(f"{labels_file}: {count} labels for {num_classes} outputs")
    mismatch = normalization_problem(info, metadata)
    if mismatch:
        problems.append(f"{model_file}: {mismatch}")
    try:
        consumers = model_consumers(info, metadata)
    except Exception as e:  # damaged metadata tables beyond the ones checked above
        return problems + [f"{model_file}: cannot judge its consumers ({type(e).__name__}: {e})"], []
    return problems, consumers


def _extract(archive_path, folder):
    with zipfile.ZipFile(archive_path) as archive:
        bad = [n for n in archive.namelist() if not _inside(folder, n)]
        if bad:
            return [f"{archive_path}: entry {n!r} leaves the bundle folder" for n in bad]
        archive.extractall(folder)
    return []


def _inside(root, rel):
    root = os.path.realpath(root)
    return not os.path.isabs(rel) and os.path.realpath(os.path.join(root, rel)).startswith(root + os.sep)


def _bundle_name(name, model_path):
    what = "--name" if name is not None else model_path
    name = name if name is not None else os.path.splitext(os.path.basename(model_path))[0]
    if not _SAFE_NAME.match(name) or ".." in name:
        raise BadInput(what, f"{name!r} is not a usable bundle name (letters, digits, '.', '_', '-'; "
                             "no path separators)")
    return name


def _report_beside(model_path, source):
    """``report.json`` next to the model when it describes this very model file (same sha256)."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "report.json")
    if not os.path.isfile(path):
        return None, "no report.json beside the model"
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"report.json beside the model is unreadable ({type(e).__name__})"
    recorded = (report.get("model") or {}).get("sha256") if isinstance(report, dict) else None
    if recorded != hashlib.sha256(source).hexdigest():
        return None, "report.json beside the model describes another model file (sha256 differs)"
    return report, "report.json beside the model"


def _labels(labels_path, report, num_classes):
    if labels_path is not None:
        labels_path = os.fspath(labels_path)
        try:
            with open(labels_path, encoding="utf-8") as f:
                names = f.read().splitlines()
        except FileNotFoundError:
            raise BadInput(labels_path, "no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(labels_path, f"cannot read as UTF-8 text ({type(e).__name__})") from e
        source, what = os.path.basename(labels_path), labels_path
    else:
        names, source = _labels_from_report(report), "report.json data.class_names"
        if names is None:
            names, source = [str(i) for i in range(num_classes)], "class ids (no labels file, no class names recorded)"
        what = "class names in report.json"
    if len(names) != num_classes:
        raise BadInput(what, f"has {len(names)} label{'' if len(names) == 1 else 's'} but the model outputs "
                             f"{num_classes} classes")
    empty = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise BadInput(what, f"label line {empty[0]} is empty")
    return [n.strip() for n in names], source


def _labels_from_report(report):
    data = (report or {}).get("data") or {}
    if isinstance(data.get("class_names"), list):
        return [str(n) for n in data["class_names"]]
    if str(data.get("source", "")).startswith("scikit-learn load_digits"):
        return [str(i) for i in range(10)]  # digits' class names are its class ids, 0..9
    return None


def _input_spec(tensor, report, normalization):
    shape = tuple(tensor.shape)
    image = len(shape) == 4 and shape[-1] in (1, 3)
    channels = shape[-1] if image else 1
    if normalization is not None:
        mean, std = normalization
        source = "given"
    else:
        scaling = str(((report or {}).get("data") or {}).get("scaling", ""))
        if "-> [0, 1]" in scaling:
            # The model was trained on values in [0, 1]: an app's 0..255 pixels map there as (p - 0) / 255.
            mean, std, source = 0.0, 255.0, f"report.json data.scaling: {scaling}"
        else:
            mean, std = 0.0, 1.0
            source = f"report.json data.scaling: {scaling}" if scaling else "identity (no data scaling recorded)"
    mean, std = _per_channel(mean, channels, "mean"), _per_channel(std, channels, "std")
    if any(s == 0 for s in std):
        raise BadInput("std", "must not be 0")
    color = ({1: "GRAYSCALE", 3: "RGB"}[channels]) if image else None
    return InputSpec(mean=mean, std=std, color_space=color, height=shape[1] if image else None,
                     width=shape[2] if image else None), source


def _per_channel(value, channels, what):
    values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if len(values) not in (1, channels):
        raise BadInput(what, f"{len(values)} values for {channels} channels")
    return values


def _tensor_spec(tensor):
    return {"name": tensor.name, "dtype": tensor.dtype, "shape": list(tensor.shape),
            "scale": tensor.scales[0] if len(tensor.scales) == 1 else None,
            "zero_point": tensor.zero_points[0] if len(tensor.zero_points) == 1 else None}


def _input_meaning(dtype):
    if dtype == "uint8":
        return "input: the 0..255 pixels as they are; the quantization makes them (pixel - mean) / std"
    if dtype in ("float32", "float16"):
        return "input: (pixel - mean) / std per channel, as floats"
    return "input: (pixel - mean) / std per channel, then quantized"


def _tensor_text(tensor, meaning):
    quant = (f", scale {tensor.scales[0]!r}, zero point {tensor.zero_points[0]}"
             if len(tensor.scales) == 1 else "")
    return f"{meaning} ({tensor.dtype} {list(tensor.shape)}{quant})"


def _description(report):
    if not report:
        return "Image classifier converted with edge_attn."
    return (f"Image classifier ({report.get('source_model', 'model')}) converted with edge_attn, "
            f"recipe {report.get('recipe', '?')}.")


# Measured verdicts (docs/result-shape.md) that keep a delegate out of the order: its outputs cannot be trusted.
_UNUSABLE = ("wrong-numbers", "failed")


def _measured_targets(report):
    """Target results of the shared shape in ``report`` (``accelerator``, ``accelerators``) that were measured on a
    real accelerator: ``{"gpu": result}`` for the GPU accelerator, ``{"npu": [results]}`` for NPU compiles."""
    found = [] if report is None else [report.get("accelerator"), *(report.get("accelerators") or [])]
    measured = {"gpu": None, "npu": []}
    for result in found:
        if not isinstance(result, dict) or "verdict" not in result:
            continue
        if result.get("accelerator") == "gpu":
            measured["gpu"] = result
        elif result.get("accelerator") == "npu" and result.get("verdict") != "unavailable":
            measured["npu"].append(result)
    return measured


def _delegates(model, target, report=None):
    """The delegate order an app should try: by the static rules, corrected by what the report measured.

    A GPU accelerator verdict in the report wins over the GPU rules: ``wrong-numbers``/``failed`` take the GPU out
    of the order, ``partial`` ranks it as not taking the whole model, ``ok`` as taking it. On Android an NPU the
    model compiled for (verdict ``ok`` or ``partial``) goes first, as ``npu``, naming the SoC."""
    from edge_attn.delegates import check_compat

    measured = _measured_targets(report)
    checked, excluded = [], []
    for position, (delegate, api) in enumerate(CANDIDATE_DELEGATES[target]):
        rules = check_compat(model, delegate, android_api=api)
        op_count = len(rules.ops)
        whole = rules.supported_count == op_count and rules.partitions == 1
        entry = {"delegate": delegate, "android_api": api, "supported_ops": rules.supported_count,
                 "ops": op_count, "partitions": rules.partitions, "takes_whole_model": whole,
                 "reason": rules.summary}
        verdict = measured["gpu"] if delegate == "gpu" else None
        if verdict is not None:
            entry["measured"] = {key: verdict.get(key) for key in ("target", "verdict", "symptom")} | {
                "device": (verdict.get("device") or {}).get("name")}
            whole = verdict["verdict"] == "ok"
            entry["takes_whole_model"] = whole
            if verdict["verdict"] in _UNUSABLE:
                excluded.append(entry)
                continue
        entry["_rank"] = (not whole, -rules.supported_count, position)
        checked.append(entry)
    checked.sort(key=lambda d: d.pop("_rank"))
    npus = [r for r in measured["npu"] if r["verdict"] in ("ok", "partial")] if target == "android" else []
    npus.sort(key=lambda r: r["verdict"] != "ok")  # whole-model compiles first
    first = [{"delegate": "npu", "target": r["target"], "soc": (r.get("device") or {}).get("soc"),
              "takes_whole_model": r["verdict"] == "ok",
              "reason": r["symptom"] or f"compiled for {r['target']}: the whole graph on the NPU",
              "measured": {"target": r["target"], "verdict": r["verdict"], "symptom": r["symptom"]}}
             for r in npus[:1]]
    return {"order": [d["delegate"] for d in first + checked] + ["cpu"], "checked": first + checked + excluded,
            "excluded": [{"delegate": d["delegate"], "verdict": d["measured"]["verdict"],
                          "symptom": d["measured"]["symptom"]} for d in excluded],
            "note": "an NPU the model compiled for first (Android), then whole-model delegates (in order gpu, nnapi, "
                    "xnnpack), then by ops taken; measured verdicts in report.json override the rules, and a "
                    "delegate measured giving wrong numbers is left out; cpu always works"}


def _evaluation(report, note):
    if report is None:
        return {"source": note}
    summary = {"source": note, "recipe": report.get("recipe")}
    accuracy = report.get("accuracy") or {}
    summary["accuracy"] = {k: accuracy.get(k) for k in _ACCURACY_KEYS}
    latency = report.get("latency_ms") or {}
    summary["latency_ms"] = {"threads": latency.get("threads"),
                             "reference_p50": (latency.get("reference") or {}).get("p50"),
                             "quantized_p50": (latency.get("quantized") or {}).get("p50")}
    return summary


def _file_entry(data):
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write(staging, rel, data):
    full = os.path.join(staging, rel)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)


def _zip_bytes(files):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in sorted(files):
            entry = zipfile.ZipInfo(rel, ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            # The model stays stored: Android and Xcode copy it as is, and memory-mapping needs it uncompressed.
            entry.compress_type = zipfile.ZIP_STORED if rel.endswith(".tflite") else zipfile.ZIP_DEFLATED
            archive.writestr(entry, files[rel])
    return out.getvalue()
