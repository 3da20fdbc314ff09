"""Bundles read and run by the real tflite-support 0.4.4 (the Task Library Android apps call), and the uint8 /
float32 interfaces a bundle puts around an int8 graph.

Independent references: tflite-support's ``MetadataDisplayer`` (its own flatbuffer reader) for the metadata
and packed labels; its ``vision.ImageClassifier`` (its own image decoding, preprocessing from the metadata and
TFLite runtime) on PNG files, against LiteRT on the same pixels; LiteRT's int8 model against the uint8-I/O one.
tflite-support lives in its own venv (``tests/tflite_support_env.py``): set up on first use; under CI
(``CI=true``) a failed set-up fails these tests, elsewhere they skip with the reason.
"""

import hashlib
import json
import os

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edge_attn._keras import keras
from edge_attn.bundle import bundle, check_bundle
from edge_attn.bundle.interface import with_interface
from edge_attn.convert import convert_model, load_recipe
from edge_attn.errors import BadInput
import tflite_support_env

CLASSES = 10
IMAGES = 12  # PNGs classified by the Task Library


@pytest.fixture(scope="module")
def digits_rgb():
    """scikit-learn's digits as 8×8 RGB pixels 0..255 (grey replicated: the Task Library takes RGB only)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)
    return np.repeat(pixels[..., np.newaxis], 3, axis=-1), digits.target


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, digits_rgb):
    """A small RGB digits classifier trained on pixels / 255, converted int8-ptq, with a report.json beside it."""
    pixels, labels = digits_rgb
    x = pixels.astype("float32") / 255.0
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x[:1400], labels[:1400], epochs=15, batch_size=32, verbose=0)
    tflite = convert_model(model, load_recipe("int8-ptq"), [s[np.newaxis] for s in x[:64]])
    folder = tmp_path_factory.mktemp("rgb")
    (folder / "model.tflite").write_bytes(tflite)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    report = {"recipe": "int8-ptq", "source_model": "tiny-rgb",
              "model": {"path": "model.tflite", "sha256": hashlib.sha256(tflite).hexdigest()},
              "data": {"class_names": names, "scaling": "x / 255 -> [0, 1]"}}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


@pytest.fixture(scope="module")
def bundles(model_dir, tmp_path_factory):
    """Android bundles of the int8 model with each interface: name -> (model file, manifest)."""
    out = {}
    for interface in ("uint8", "float32", "keep"):
        folder = tmp_path_factory.mktemp(f"bundle-{interface}")
        manifest = bundle(model_dir / "model.tflite", target="android", out=folder / "b", interface=interface)
        out[interface] = (folder / "b" / manifest["model"]["file"], manifest)
    return out


@pytest.fixture(scope="module")
def pngs(digits_rgb, tmp_path_factory):
    """Held-out digits written as PNG files (Pillow), with their pixels and labels."""
    from PIL import Image

    pixels, labels = digits_rgb
    chosen = np.arange(1500, 1500 + IMAGES)
    folder = tmp_path_factory.mktemp("png")
    paths = []
    for i in chosen:
        paths.append(folder / f"digit{i}.png")
        Image.fromarray(pixels[i], mode="RGB").save(paths[-1])
    return paths, pixels[chosen], labels[chosen]


@pytest.fixture(scope="module")
def tflite_support_python():
    try:
        return tflite_support_env.ensure_venv()
    except Exception as e:  # pip, the network or the venv: the reason is the message
        reason = f"tflite-support venv could not be set up: {type(e).__name__}: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


# --- the scripts run inside the tflite-support venv ------------------------------------------------------------

_DISPLAY = """
import json, sys
from tflite_support import metadata
d = metadata.MetadataDisplayer.with_model_file(sys.argv[1])
files = d.get_packed_associated_file_list()
print(json.dumps({"metadata": json.loads(d.get_metadata_json()), "files": files,
                  "contents": {f: d.get_associated_file_buffer(f).decode("utf-8") for f in files}}))
"""

_CLASSIFY = """
import json, sys
from tflite_support.task import core, processor, vision
results = {}
for model in sys.argv[2:]:
    try:
        options = vision.ImageClassifierOptions(
            base_options=core.BaseOptions(file_name=model),
            # every class, whatever its score (scores are logits here, most are negative)
            classification_options=processor.ClassificationOptions(max_results=-1, score_threshold=-3.0e38))
        classifier = vision.ImageClassifier.create_from_options(options)
    except Exception as e:
        results[model] = {"error": str(e)}
        continue
    images = []
    for png in sys.argv[1].split(","):
        categories = classifier.classify(vision.TensorImage.create_from_file(png)).classifications[0].categories
        images.append([[c.index, c.category_name, c.score] for c in categories])
    results[model] = {"images": images}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def task_library_results(tflite_support_python, bundles, pngs):
    paths, _, _ = pngs
    models = [str(bundles[k][0]) for k in ("uint8", "float32", "keep")]
    results = tflite_support_env.run_script(tflite_support_python, _CLASSIFY, ",".join(map(str, paths)), *models)
    return {k: results[str(bundles[k][0])] for k in ("uint8", "float32", "keep")}


def _litert_logits(model_path, inputs):
    """LiteRT's dequantized (or float) outputs for each input array, fed as the model's input type."""
    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    logits = []
    for x in inputs:
        interpreter.set_tensor(inp["index"], x[np.newaxis].astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])[0]
        scale, zero_point = out["quantization"]
        logits.append(scale * (y.astype(np.float64) - zero_point) if scale else y.astype(np.float64))
    return np.array(logits), out["quantization"][0]


def _quantize_int8(real, scale, zero_point):
    return np.clip(np.round(real / scale) + zero_point, -128, 127).astype(np.int8)


# --- tests ------------------------------------------------------------------------------------------------------

def test_metadata_displayer_reads_what_we_wrote(tflite_support_python, bundles, model_dir):
    model_file, manifest = bundles["uint8"]
    shown = tflite_support_env.run_script(tflite_support_python, _DISPLAY, model_file)
    md = shown["metadata"]
    assert md["name"] == "model"
    assert md["version"] == hashlib.sha256((model_dir / "model.tflite").read_bytes()).hexdigest()[:12]
    assert md["author"].startswith("edge_attn ")
    image = md["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["content"]["content_properties_type"] == "ImageProperties"
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert image["content"]["content_properties"]["default_size"] == {"width": 8, "height": 8}
    normalization = image["process_units"][0]
    assert normalization["options_type"] == "NormalizationOptions"
    assert normalization["options"] == {"mean": [0.0], "std": [255.0]}  # report.json: x / 255 -> [0, 1]
    output = md["subgraph_metadata"][0]["output_tensor_metadata"][0]
    assert output["associated_files"] == [{"name": "labels.txt", "description": output["associated_files"][0]
                                           ["description"], "type": "TENSOR_AXIS_LABELS"}]
    assert shown["files"] == ["labels.txt"]
    labels = (model_file.parent / "labels.txt").read_text()
    assert shown["contents"]["labels.txt"] == labels
    assert labels.splitlines() == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert manifest["labels"]["count"] == CLASSES


def test_task_library_classifies_like_litert(task_library_results, bundles, pngs):
    """The Task Library decodes each PNG, feeds the uint8 pixels and dequantizes the uint8 logits itself: its
    categories (labels from the packed labels.txt, scores) equal LiteRT's on the same pixels."""
    model_file, manifest = bundles["uint8"]
    assert manifest["interface"]["chosen"] == "uint8"
    _, pixels, truth = pngs
    reference, out_scale = _litert_logits(model_file, pixels)
    names = (model_file.parent / "labels.txt").read_text().splitlines()
    images = task_library_results["uint8"]["images"]
    assert len(images) == IMAGES
    for categories, logits in zip(images, reference):
        assert [c[0] for c in categories][:1] == [int(np.argmax(logits))]
        assert sorted(c[0] for c in categories) == list(range(CLASSES))
        assert all(name == names[index] for index, name, _ in categories)
        scores = np.array([score for index, _, score in sorted(categories)])
        np.testing.assert_allclose(scores, logits, rtol=0, atol=out_scale * 1e-3)
        assert np.ptp(scores) > 10 * out_scale  # the scores carry information
    # a trained model on held-out digits: the Task Library's top labels are mostly the true digits
    top = [names.index(categories[0][1]) for categories in images]
    assert np.mean(np.array(top) == truth) >= 0.75


def test_task_library_float32_interface_matches_the_int8_model(task_library_results, bundles, model_dir, pngs):
    """float32 I/O: the Task Library normalizes (pixel - 0) / 255 from the metadata itself; its scores are the
    int8 model's dequantized logits for those values, quantized by the graph's own input parameters."""
    model_file, manifest = bundles["float32"]
    assert manifest["interface"]["chosen"] == "float32" and manifest["input"]["dtype"] == "float32"
    _, pixels, _ = pngs
    interpreter = Interpreter(model_path=str(model_dir / "model.tflite"))
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    int8_inputs = [_quantize_int8(p / np.float32(255.0), scale, zero_point) for p in pixels.astype(np.float32)]
    reference, out_scale = _litert_logits(model_dir / "model.tflite", int8_inputs)
    for categories, logits in zip(task_library_results["float32"]["images"], reference):
        scores = np.array([score for index, _, score in sorted(categories)])
        # the same int8 values reach the graph (measured: 12 of 12 images; a rounding tie between the Task
        # Library's float normalization and numpy's could move one input a step): float rounding only
        np.testing.assert_allclose(scores, logits, rtol=0, atol=0.01 * out_scale)
        assert categories[0][0] == int(np.argmax(logits))


def test_task_library_refuses_int8_and_check_bundle_says_so(task_library_results, bundles):
    """The real Task Library refuses the int8 interface, and check_bundle's verdicts agree for all three."""
    assert "Requested one of these types: kTfLiteUint8/kTfLiteFloat32, got INT8" in \
        task_library_results["keep"]["error"]
    for interface, (model_file, manifest) in bundles.items():
        check = check_bundle(model_file.parent.parent)
        assert check.problems == []
        verdicts = {c["consumer"]: c for c in check.consumers}
        task_works = "images" in task_library_results[interface]
        assert verdicts["Task Library ImageClassifier"]["works"] is task_works, interface
        assert verdicts["LiteRT Interpreter"]["works"] is True
        assert verdicts["ML Model Binding (image input)"]["works"] is task_works
        assert check.consumers == manifest["consumers"]
    assert "input is int8" in {c["consumer"]: c for c in bundles["keep"][1]["consumers"]}[
        "Task Library ImageClassifier"]["reason"]


@pytest.mark.parametrize("mean, std", [(0, 255), (10, 300)])
def test_uint8_interface_equals_int8_up_to_the_requantization(model_dir, digits_rgb, tmp_path, mean, std):
    """The uint8-I/O model computes exactly what the int8 model computes on the int8 values its QUANTIZE op
    makes from the pixels; those values are the app-side quantization round(((p - mean) / std) / s) + z, except
    where the kernel's fixed-point requantization rounds a tie the other way (at most one step). (0, 255) is
    the model's own normalization (the graph's input scale is close to 1/255: a near-identity requantization);
    (10, 300) makes the uint8 and int8 scales differ by ~15%."""
    manifest = bundle(model_dir / "model.tflite", out=tmp_path / "b", normalization=(mean, std), interface="uint8")
    model_file = tmp_path / "b" / manifest["model"]["file"]
    pixels = digits_rgb[0][1500:1564]
    source = model_dir / "model.tflite"
    int8 = Interpreter(model_path=str(source))
    scale, zero_point = int8.get_input_details()[0]["quantization"]
    out_zero_point = int8.get_output_details()[0]["quantization"][1]

    uint8 = Interpreter(model_path=str(model_file), experimental_preserve_all_tensors=True)
    uint8.allocate_tensors()
    inp, out = uint8.get_input_details()[0], uint8.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    assert inp["quantization"] == (np.float32(1 / std), mean)  # the metadata's (pixel - mean) / std
    requantized = next(t["index"] for t in uint8.get_tensor_details() if t["name"] == inp["name"] + "_int8")
    int8.allocate_tensors()
    steps = []
    for p in pixels:
        uint8.set_tensor(inp["index"], p[np.newaxis])
        uint8.invoke()
        graph_input = uint8.get_tensor(requantized)
        app_side = _quantize_int8((p[np.newaxis] - np.float32(mean)) / np.float32(std), scale, zero_point)
        steps.append(np.abs(graph_input.astype(int) - app_side.astype(int)))
        int8.set_tensor(int8.get_input_details()[0]["index"], graph_input)
        int8.invoke()
        expected = int8.get_tensor(int8.get_output_details()[0]["index"]).astype(int) + 128
        np.testing.assert_array_equal(uint8.get_tensor(out["index"]).astype(int), expected)
    assert out["quantization"][1] == out_zero_point + 128
    steps = np.concatenate([s.ravel() for s in steps])
    print(f"requantization: {steps.size} values, {int((steps > 0).sum())} one step off")
    assert steps.max() <= 1 and steps.mean() < 0.01


def test_explicit_uint8_needs_a_uint8_normalization(model_dir, tmp_path):
    with pytest.raises(BadInput, match="mean 127.5 is not an integer") as error:
        bundle(model_dir / "model.tflite", out=tmp_path / "b", interface="uint8", normalization=(127.5, 127.5))
    assert error.value.what == "--interface" and not (tmp_path / "b").exists()
    # the default (auto) is float32 edges, which any normalization allows; the Task Library takes them
    manifest = bundle(model_dir / "model.tflite", out=tmp_path / "c", normalization=(127.5, 127.5))
    assert manifest["interface"]["chosen"] == "float32" and manifest["interface"]["requested"] == "auto"
    assert {c["consumer"]: c["works"] for c in manifest["consumers"]}["Task Library ImageClassifier"]
    # a float model keeps its tensors
    float_model = tmp_path / "float.tflite"
    float_model.write_bytes(with_interface((model_dir / "model.tflite").read_bytes(), "float32"))
    assert bundle(float_model, out=tmp_path / "d")["interface"]["chosen"] == "keep"


def test_xnnpack_takes_float32_edges_but_not_uint8_ones(bundles):
    """Why auto is float32: edge_attn's XNNPACK rules (it requantizes within one signedness only) keep the
    float32 QUANTIZE/DEQUANTIZE in the delegated graph and leave the uint8 <-> int8 ones to the CPU."""
    def rejected(interface):
        checked = {d["delegate"]: d for d in bundles[interface][1]["delegates"]["checked"]}["xnnpack"]
        return checked["ops"] - checked["supported_ops"], checked["reason"]

    keep, _ = rejected("keep")
    assert rejected("float32")[0] == keep
    uint8_rejected, reason = rejected("uint8")
    assert uint8_rejected == keep + 2 and "requantize uint8 -> int8" in reason


def test_uint8_quantization_that_contradicts_the_metadata_is_a_problem(bundles, tmp_path):
    """Re-bundling a uint8 model with another normalization: raw pixels would not mean (pixel - mean) / std."""
    model_file, _ = bundles["uint8"]
    manifest = bundle(model_file, out=tmp_path / "b", interface="keep", normalization=(127.0, 2.0))
    problems = check_bundle(tmp_path / "b").problems
    assert len(problems) == 1 and "does not mean the metadata's normalization" in problems[0]
    assert not {c["consumer"]: c["works"] for c in manifest["consumers"]}["Task Library ImageClassifier"]


def test_cli_interface_flag_and_verify_bundle_consumers(model_dir, tmp_path, capsys):
    from edge_attn.cli import main

    out = tmp_path / "b"
    assert main(["bundle", str(model_dir / "model.tflite"), "--target", "android", "--out", str(out),
                 "--interface", "keep", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interface"]["chosen"] == "keep"
    assert main(["verify-bundle", str(out)]) == 0
    text = capsys.readouterr().out
    assert "works with: LiteRT Interpreter; not Task Library ImageClassifier (input is int8" in text
    assert main(["verify-bundle", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [c["works"] for c in report["consumers"]] == [True, False, False]
