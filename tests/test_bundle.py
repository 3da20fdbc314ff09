"""Tests of edge_attn.bundle: TFLite metadata, Android/iOS bundles, and bundle verification.

The metadata is read back independently of the writer: the model's ``metadata`` list through LiteRT's
generated TFLite schema, the ``ModelMetadata`` tables with raw flatbuffer field access at the vtable slots
of the public ``metadata_schema.fbs`` (tensorflow/tflite-support), the labels with ``zipfile``; and by the real
tflite-support (``MetadataDisplayer``, the Task Library) in tests/test_task_library.py. Model outputs are
compared with LiteRT.
"""

import hashlib
import io
import json
import os
import shutil
import zipfile

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl
from flatbuffers import number_types as nt
from flatbuffers.table import Table

from edge_attn._keras import keras
from edge_attn.bundle import bundle, verify_bundle
from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.errors import BadInput
from edge_attn.litert import make_interpreter, run

INPUT_SHAPE = (8, 8, 1)
CLASSES = 10


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(16, *INPUT_SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, samples):
    """A tiny int8 classifier (post-training int8) with a report.json beside it, as `convert` writes."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    tflite = convert_model(model, load_recipe("int8-ptq"), [s[np.newaxis] for s in samples])
    folder = tmp_path_factory.mktemp("converted")
    (folder / "model.tflite").write_bytes(tflite)
    report = {"recipe": "int8-ptq", "source_model": "tiny",
              "model": {"path": "model.tflite", "bytes": len(tflite), "sha256": hashlib.sha256(tflite).hexdigest()},
              "accuracy": {"samples": 16, "reference_top1": 0.5, "quantized_top1": 0.5, "top1_drop_pt": 0.0,
                           "top1_agreement": 1.0, "output_snr_db": 30.0},
              "latency_ms": {"threads": 2, "reference": {"p50": 0.1}, "quantized": {"p50": 0.2}},
              "data": {"source": "scikit-learn load_digits (UCI optdigits: 1797 8x8 images, values 0..16)",
                       "scaling": "x / 16 -> [0, 1]"}}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


@pytest.fixture(scope="module")
def android(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("android") / "bundle"
    # uint8 I/O (the default is float32): the quantization checks below read the uint8 input's parameters
    return out, bundle(model_dir / "model.tflite", target="android", out=out, interface="uint8")


# --- an independent reader: raw flatbuffer fields at the slots of metadata_schema.fbs -------------------------

def _field(tab, slot):
    return tab.Offset(4 + 2 * slot)


def _string(tab, slot):
    o = _field(tab, slot)
    return tab.String(o + tab.Pos).decode() if o else None


def _scalar(tab, slot, flags):
    o = _field(tab, slot)
    return tab.Get(flags, o + tab.Pos) if o else 0


def _child(tab, slot):
    o = _field(tab, slot)
    return Table(tab.Bytes, tab.Indirect(o + tab.Pos)) if o else None


def _children(tab, slot):
    o = _field(tab, slot)
    start = tab.Vector(o)
    return [Table(tab.Bytes, tab.Indirect(start + 4 * i)) for i in range(tab.VectorLen(o))] if o else []


def _floats(tab, slot):
    o = _field(tab, slot)
    start = tab.Vector(o)
    return [tab.Get(nt.Float32Flags, start + 4 * i) for i in range(tab.VectorLen(o))]


def metadata_buffer(model_bytes):
    """The TFLITE_METADATA buffer, found through the TFLite schema's Model.metadata list."""
    model = tfl.Model.GetRootAs(bytearray(model_bytes), 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    assert "TFLITE_METADATA" in entries
    return model.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()


def decode_metadata(buf):
    """The fields a metadata reader (ML Model Binding, MetadataExtractor) uses, as plain data."""
    assert buf[4:8] == b"M001"  # metadata_schema.fbs file_identifier
    root = Table(bytearray(buf), flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    subgraph = _children(root, 3)[0]  # ModelMetadata.subgraph_metadata
    image = _children(subgraph, 2)[0]  # SubGraphMetadata.input_tensor_metadata
    output = _children(subgraph, 3)[0]  # .output_tensor_metadata
    content = _child(image, 3)  # TensorMetadata.content
    properties = _child(content, 1)  # Content.content_properties (ImageProperties when type == 2)
    size = _child(properties, 1)  # ImageProperties.default_size
    unit = _children(image, 4)[0]  # TensorMetadata.process_units
    norm = _child(unit, 1)  # ProcessUnit.options (NormalizationOptions when type == 1)
    files = _children(output, 6)  # TensorMetadata.associated_files
    return {
        "name": _string(root, 0), "description": _string(root, 1), "version": _string(root, 2),
        "min_parser_version": _string(root, 7),
        "content_type": _scalar(content, 0, nt.Uint8Flags), "color_space": _scalar(properties, 0, nt.Int8Flags),
        "size": (_scalar(size, 1, nt.Uint32Flags), _scalar(size, 0, nt.Uint32Flags)),
        "unit_type": _scalar(unit, 0, nt.Uint8Flags), "mean": _floats(norm, 0), "std": _floats(norm, 1),
        "input_description": _string(image, 1), "output_name": _string(output, 0),
        "files": [(_string(f, 0), _scalar(f, 2, nt.Int8Flags)) for f in files],
    }


def tensor_quantization(model_bytes, which):
    """(dtype name, scale, zero point) of the model's input or output tensor, from the TFLite schema."""
    sub = tfl.Model.GetRootAs(bytearray(model_bytes), 0).Subgraphs(0)
    tensor = sub.Tensors(sub.Inputs(0) if which == "input" else sub.Outputs(0))
    q = tensor.Quantization()
    return tensor.Type(), float(q.Scale(0)), int(q.ZeroPoint(0))


# --- tests --------------------------------------------------------------------------------------------------

def test_metadata_has_image_normalization_quantization_and_labels(android, model_dir):
    out, manifest = android
    bundled = (out / "assets" / "model.tflite").read_bytes()
    md = decode_metadata(metadata_buffer(bundled))
    assert md["name"] == "model" and md["min_parser_version"] == "1.0.0"
    assert md["version"] == hashlib.sha256((model_dir / "model.tflite").read_bytes()).hexdigest()[:12]
    assert md["content_type"] == 2 and md["color_space"] == 2  # ImageProperties, GRAYSCALE
    assert md["size"] == (8, 8)
    # digits are scaled x/16 -> [0, 1]: app pixels 0..255 map there as (p - 0) / 255
    assert md["unit_type"] == 1 and md["mean"] == [0.0] and md["std"] == [255.0]
    assert md["files"] == [("labels.txt", 2)]  # TENSOR_AXIS_LABELS on the output
    assert md["output_name"] == "logits"
    # --interface uint8 gives the int8 image model a uint8 input whose quantization means the metadata's
    # (pixel - 0) / 255 (tests/test_task_library.py runs it); the metadata/manifest repeat that quantization
    dtype, scale, zero_point = tensor_quantization(bundled, "input")
    assert (dtype, scale, zero_point) == (tfl.TensorType.UINT8, float(np.float32(1 / 255)), 0)
    assert tensor_quantization((model_dir / "model.tflite").read_bytes(), "input")[0] == tfl.TensorType.INT8
    assert manifest["interface"]["chosen"] == "uint8" and manifest["interface"]["graph"]["input"] == "int8"
    assert f"scale {scale!r}, zero point {zero_point}" in md["input_description"]
    assert manifest["input"]["scale"] == pytest.approx(scale) and manifest["input"]["zero_point"] == zero_point
    # the .tflite is also a zip holding labels.txt; the copy beside it is identical
    with zipfile.ZipFile(io.BytesIO(bundled)) as archive:
        embedded = archive.read("labels.txt")
    assert embedded.decode().splitlines() == [str(i) for i in range(CLASSES)]
    assert (out / "assets" / "labels.txt").read_bytes() == embedded


def test_bundled_model_computes_the_same(model_dir, samples, tmp_path):
    """With ``interface="keep"`` the bundled model is the source graph plus metadata: identical outputs.
    (The uint8 interface's numerics are tested in tests/test_task_library.py.)"""
    out = tmp_path / "keep"
    manifest = bundle(model_dir / "model.tflite", out=out, interface="keep")
    assert manifest["interface"]["chosen"] == "keep" and manifest["input"]["dtype"] == "int8"
    source = run(make_interpreter(str(model_dir / "model.tflite")), samples)
    bundled = run(make_interpreter(str(out / "assets" / "model.tflite")), samples)
    np.testing.assert_array_equal(bundled, source)
    assert bundled.shape == (len(samples), CLASSES) and np.ptp(bundled) > 0


def test_manifest_hashes_specs_delegates_and_report(android):
    out, manifest = android
    on_disk = json.loads((out / "edge_attn_manifest.json").read_text())
    assert on_disk == manifest
    for rel, entry in manifest["files"].items():
        data = (out / rel).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert set(manifest["files"]) == {"assets/model.tflite", "assets/labels.txt", "INTEGRATION.md"}
    assert manifest["output"]["dtype"] == "uint8" and manifest["output"]["shape"] == [1, CLASSES]
    assert manifest["input"]["normalization"]["std"] == [255.0]
    checked = {d["delegate"]: d for d in manifest["delegates"]["checked"]}
    assert set(checked) == {"gpu", "nnapi", "xnnpack"} and checked["nnapi"]["android_api"] == 30
    assert checked["nnapi"]["reason"].startswith("nnapi at API 30:")
    assert manifest["delegates"]["order"][-1] == "cpu"
    consumers = {c["consumer"]: c for c in manifest["consumers"]}  # a grayscale 8×8×1 input
    assert not consumers["Task Library ImageClassifier"]["works"]
    assert "input shape [1, 8, 8, 1]; it takes 1×H×W×3 (RGB) images" in consumers["Task Library ImageClassifier"]["reason"]
    assert consumers["ML Model Binding (image input)"]["works"] and consumers["LiteRT Interpreter"]["works"]
    assert manifest["evaluation"]["accuracy"]["output_snr_db"] == 30.0
    assert manifest["evaluation"]["latency_ms"]["quantized_p50"] == 0.2
    min_runtime = inspect_tflite(out / "assets" / "model.tflite").min_runtime_version
    assert min_runtime and manifest["model"]["min_runtime_version"] == min_runtime
    text = (out / "INTEGRATION.md").read_text()
    assert "com.google.ai.edge.litert:litert:" in text and 'noCompress += "tflite"' in text
    assert repr(float(manifest["input"]["scale"])) in text
    assert verify_bundle(out) == []


def test_ios_layout(model_dir, tmp_path):
    manifest = bundle(model_dir / "model.tflite", target="ios", out=tmp_path / "ios", name="Digits")
    assert (tmp_path / "ios" / "Resources" / "Digits.tflite").is_file()
    assert "pod 'TensorFlowLiteSwift'" in (tmp_path / "ios" / "INTEGRATION.md").read_text()
    assert "nnapi" not in manifest["delegates"]["order"]
    assert verify_bundle(tmp_path / "ios") == []


def test_one_changed_byte_is_reported(android, tmp_path):
    out, _ = android
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    target = copy / "assets" / "model.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    problems = verify_bundle(copy)
    assert problems and all(p.startswith("assets/model.tflite") for p in problems)
    shutil.copy(out / "assets" / "model.tflite", target)  # intact model again: now only the labels differ
    labels = copy / "assets" / "labels.txt"
    labels.write_text(labels.read_text() + "extra\n")
    assert any(p.startswith("assets/labels.txt: 11 labels") for p in verify_bundle(copy))


def test_wrong_label_count_is_bad_input_and_writes_nothing(model_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = tmp_path / "never"
    with pytest.raises(BadInput) as error:
        bundle(model_dir / "model.tflite", labels=labels, out=out)
    assert error.value.what == str(labels) and "2 labels" in error.value.problem
    assert not out.exists() and os.listdir(tmp_path) == ["labels.txt"]


def test_names_cannot_leave_the_output_folder(model_dir, tmp_path):
    with pytest.raises(BadInput) as error:
        bundle(model_dir / "model.tflite", out=tmp_path / "out", name="../escape")
    assert error.value.what == "--name"
    assert os.listdir(tmp_path) == []


def test_labels_file_is_used(model_dir, tmp_path):
    labels = tmp_path / "names.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(CLASSES)))
    bundle(model_dir / "model.tflite", labels=labels, out=tmp_path / "b")
    bundled = (tmp_path / "b" / "assets" / "model.tflite").read_bytes()
    with zipfile.ZipFile(io.BytesIO(bundled)) as archive:
        assert archive.read("labels.txt").decode().splitlines()[3] == "class 3"


@pytest.mark.parametrize("as_zip", [False, True])
def test_rerun_is_byte_identical(model_dir, tmp_path, as_zip):
    def tree(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = bundle(model_dir / "model.tflite", target="android", out=tmp_path / "a", zip=as_zip)
    second = bundle(model_dir / "model.tflite", target="android", out=tmp_path / "b", zip=as_zip)
    assert first == second and tree(tmp_path / "a") == tree(tmp_path / "b")
    if as_zip:
        archive = tmp_path / "a" / "model-android.zip"
        assert list(tree(tmp_path / "a")) == ["model-android.zip"]
        with zipfile.ZipFile(archive) as z:
            assert z.namelist() == sorted(z.namelist())
            assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert verify_bundle(archive) == []


def test_absurd_class_count_is_refused_before_labels_are_made(model_dir, tmp_path):
    """A damaged output shape (150 million classes) once made bundle build 150 million labels (minutes, GBs)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray((model_dir / "model.tflite").read_bytes()))
    graph = model.subgraphs[0]
    graph.tensors[graph.outputs[0]].shape = np.array([1, 150_000_000], dtype=np.int32)
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    with pytest.raises(BadInput, match="outputs 150000000 classes") as error:
        bundle(damaged, out=tmp_path / "out")
    assert error.value.what == str(damaged) and not (tmp_path / "out").exists()
