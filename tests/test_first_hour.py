"""A new user's first hour, as real processes: the README's convert → bench → check flow prints only
edge_attn's lines, ``bench`` takes the reference ``convert`` wrote, ``check`` scores all of a given file,
wrong kinds of files are named, and ``report.html`` renders in headless Chromium with the verdict, the
float-vs-int8 sizes and the worst layers on its first screen. report.json and ``check --json`` are
validated against docs/report.schema.json.

One convert runs per module (se_resnet20 on digits at 8×8, int8-ptq after 2 float epochs); the other
commands run as ``python -m edge_attn.cli`` children so that what reaches the terminal is what a user sees.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_attn.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "docs", "report.schema.json")
# What TensorFlow, tfmot and LiteRT print on this stack (seen with --verbose): none of it may reach the terminal.
NATIVE_NOISE = ("oneDNN", "cuda", "cuInit", "XNNPACK delegate", "absl", "trackable_obj", "I0000", "E0000",
                "W0000", "WARNING")
TEST_SAMPLES = 97


def cli(*argv, timeout=600):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "edge_attn.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_quiet(done):
    for stream in (done.stdout, done.stderr):
        noisy = [line for line in stream.splitlines() if any(word in line for word in NATIVE_NOISE)]
        assert not noisy, f"native log lines reached the terminal: {noisy}"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("first-hour") / "out"
    code = main(["convert", "se_resnet20", "--recipe", "int8-ptq", "--data", "digits", "--input-shape", "8,8,1",
                 "--float-epochs", "2", "--runs", "5", "--out", str(folder), "--no-progress"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def test_npz(tmp_path_factory):
    """A user's dedicated test file: the first digits at 8×8 (what the model was trained on, as stored)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path_factory.mktemp("data") / "test.npz"
    np.savez(path, x=(digits.images[:TEST_SAMPLES] / 16.0).astype(np.float32)[..., None],
             y=digits.target[:TEST_SAMPLES])
    return path


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    with open(SCHEMA) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, document):
    """Readable schema violations: for the top-level oneOf (report.json | check --json), the reasons inside."""
    found = []
    for error in validator.iter_errors(document):
        for e in error.context or [error]:
            found.append(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:160]}")
    return found


def test_bench_takes_the_keras_reference_convert_wrote_and_prints_only_its_own_lines(out):
    done = cli("bench", str(out / "model.tflite"), "--reference", str(out / "reference.keras"), "--runs", "10",
               "--delegate", "xnnpack", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_quiet(done)
    assert "reference.keras is a Keras model: converted to float32 TFLite" in done.stdout
    assert done.stderr == ""
    xnnpack = next(line for line in done.stdout.splitlines() if line.startswith("xnnpack"))
    assert xnnpack.split()[-1] != "unavailable" and "x" in xnnpack  # a speed-up ratio was measured


def test_verbose_shows_the_native_lines_the_default_hides(out):
    # The same command with --verbose: the noise exists, so the quiet assertion above can fail.
    done = cli("bench", str(out / "model.tflite"), "--reference", str(out / "reference.keras"), "--runs", "2",
               "--delegate", "xnnpack", "--no-progress", "--verbose")
    assert done.returncode == 0, done.stderr
    assert any(word in done.stderr for word in NATIVE_NOISE)


def test_check_scores_all_of_a_given_file_and_says_so(out, test_npz, validator):
    done = cli("check", str(out / "model.tflite"), "--reference", str(out / "reference.keras"), "--data",
               str(test_npz), "--runs", "3", "--json")
    assert done.returncode in (0, 1), done.stderr  # 1: a budget missed after 2 float epochs; both are results
    assert_quiet(done)
    result = json.loads(done.stdout)
    assert result["accuracy"]["samples"] == TEST_SAMPLES
    assert result["evaluation"] == {"spec": str(test_npz), "split": "all", "samples": TEST_SAMPLES,
                                    "of": TEST_SAMPLES}
    assert errors(validator, result) == []
    assert (done.returncode == 1) == bool(result["budget"]["failures"])

    text = cli("check", str(out / "model.tflite"), "--reference", str(out / "reference.keras"), "--data",
               str(test_npz), "--runs", "3", "--split", "eval")
    assert_quiet(text)
    evaluated = next(line for line in text.stdout.splitlines() if "evaluated on" in line)
    # load_data's stratified 20% share: round(0.2 * n) per class (at least 1), summed over the 10 classes
    counts = np.bincount(np.load(test_npz)["y"], minlength=10)
    expected = int(sum(min(max(int(0.2 * n + 0.5), 1), n - 1) for n in counts))
    assert f"the eval split of {test_npz}: {expected} of {TEST_SAMPLES} samples" in evaluated


def test_check_of_digits_keeps_its_eval_split(out):
    done = cli("check", str(out / "model.tflite"), "--reference", str(out / "reference.keras"), "--data", "digits",
               "--runs", "3", "--json")
    result = json.loads(done.stdout)
    assert result["evaluation"]["split"] == "eval"
    assert result["evaluation"]["of"] == 1797 and result["accuracy"]["samples"] == 359  # 20% of each class


@pytest.mark.parametrize("argv, what, says", [
    (["bench", "{out}/reference.keras"], "reference.keras",
     "is a Keras model (.keras archive), not a TFLite model: pass the .tflite file"),
    (["check", "{out}/model.tflite", "--reference", "{out}/model.tflite", "--data", "digits"], "model.tflite",
     "is a TFLite model; here a float Keras model is expected"),
    (["compat", "{out}/report.json", "--delegate", "gpu"], "report.json", "not a TFLite model"),
    (["check", "{out}/model.tflite", "--reference", "{out}/reference.keras", "--data", "{out}/model.tflite"],
     "model.tflite", "is a TFLite model, not a data set"),
    (["check", "{out}/model.tflite", "--reference", "{npz}", "--data", "digits"], "test.npz",
     "is a NumPy archive (.npz), not a Keras model"),
])
def test_a_wrong_kind_of_file_is_named_with_what_to_pass(out, test_npz, argv, what, says):
    done = cli(*[a.format(out=out, npz=test_npz) for a in argv])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and what in lines[0] and says in lines[0], done.stderr


def test_report_json_follows_the_schema(out, validator):
    with open(out / "report.json") as f:
        report = json.load(f)
    assert errors(validator, report) == []
    broken = {**report, "accuracy": {k: v for k, v in report["accuracy"].items() if k != "output_snr_db"}}
    assert errors(validator, broken)  # the schema does reject a report without a contract key


# ------------------------------------------------------------------------------------------- report.html

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium(html_path, profile, *args):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, html_path.as_uri()],
                          capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def rendered(out, tmp_path_factory):
    """(the DOM Chromium built from report.html, the first screen as an RGB array 1280×900)."""
    folder = tmp_path_factory.mktemp("chromium")
    dom = chromium(out / "report.html", folder / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout.decode(), screenshot(out / "report.html", folder)


def test_report_page_states_verdict_sizes_and_worst_layers(out, rendered):
    dom, _ = rendered
    with open(out / "report.json") as f:
        report = json.load(f)
    verdict = dom[dom.index('id="verdict"'):]
    assert ("PASSED" if report["budget"]["passed"] else "FAILED") in verdict[:400]
    # float (f32 TFLite) and int8 sizes, as the page prints them, from report.json's byte counts
    for size in (report["reference_model"]["bytes"], report["model"]["bytes"]):
        assert f"{size / 1024:,.1f} KiB" in dom
    # worst layers first: the lowest local-SNR layer (computed here from report.json) heads the table
    worst = min((l for l in report["layers"] if l["local_snr_db"] is not None), key=lambda l: l["local_snr_db"])
    table = dom[dom.index('id="worst-layers"'):]
    header = table[:table.index("</tr>")]
    assert header.index("local SNR") < header.index("cumulative SNR")
    assert table.index(worst["name"]) < table.index("</table>")
    first_row = table[table.index("<td>"):table.index("</tr>", table.index("<td>"))]
    assert worst["name"] in first_row
    # order on the page: verdict, key numbers, worst layers, then the charts and targets
    positions = [dom.index(f'id="{name}"') for name in ("verdict", "key-numbers", "sizes", "worst-layers",
                                                        "latency", "layers", "targets")]
    assert positions == sorted(positions)
    assert all(t["delegate"] in dom[dom.index('id="targets"'):] for t in report["targets"])
    assert dom.count("data:image/png;base64,") >= 3  # size, latency and per-layer charts


def first_screen_problems(screen, passed):
    """What is wrong with a 1280×900 screenshot of a report's first screen (empty: nothing)."""
    problems = []
    ink = np.any(screen < 200, axis=2).mean()  # text, borders and bars
    if not 0.02 < ink < 0.6:
        problems.append(f"{ink:.3f} of the first screen is drawn")
    # the verdict box's fill (#e3f4e3 passed, #fbe3e3 failed) is on the first screen, near the top
    fill = np.array([0xE3, 0xF4, 0xE3] if passed else [0xFB, 0xE3, 0xE3])
    if np.all(np.abs(screen[:300].astype(int) - fill) <= 2, axis=2).mean() < 0.05:
        problems.append("no verdict box at the top")
    # the size chart's bars (#2a7ab0 int8, #999 float) are drawn within the first screen
    for name, colour in (("int8", [0x2A, 0x7A, 0xB0]), ("float", [0x99, 0x99, 0x99])):
        if np.all(np.abs(screen.astype(int) - colour) <= 3, axis=2).sum() < 2000:
            problems.append(f"no {name} bar on the first screen")
    return problems


def screenshot(html_path, folder, height=900, name="first-screen"):
    """Headless Chromium's RGB screenshot of ``html_path``, 1280 pixels wide and ``height`` high, saved as
    ``folder/name.png``."""
    from PIL import Image

    shot = folder / f"{name}.png"
    done = chromium(html_path, folder / f"profile-{name}", f"--window-size=1280,{height}", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB"))


def test_report_first_screen_is_not_blank_and_shows_the_verdict_box(out, rendered):
    _, screen = rendered
    with open(out / "report.json") as f:
        passed = json.load(f)["budget"]["passed"]
    assert screen.shape[:2] == (900, 1280)
    assert first_screen_problems(screen, passed) == []


def test_a_broken_page_is_caught(out, tmp_path):
    """The screenshot check fails on a page whose styles and images did not make it: the same report.html
    without its <style> and with its PNGs cut short."""
    page = (out / "report.html").read_text()
    broken = page[:page.index("<style>")] + page[page.index("</style>") + len("</style>"):]
    broken = broken.replace("data:image/png;base64,iVBOR", "data:image/png;base64,XXXX")
    (tmp_path / "broken.html").write_text(broken)
    with open(out / "report.json") as f:
        passed = json.load(f)["budget"]["passed"]
    problems = first_screen_problems(screenshot(tmp_path / "broken.html", tmp_path), passed)
    assert "no verdict box at the top" in problems and "no int8 bar on the first screen" in problems


LOCAL_DOTS = [0xF3, 0x9C, 0x12]  # edge_attn.evaluate.report.LOCAL_COLOUR, written out: the page is the reference
CUMULATIVE_BARS = [0x2A, 0x7A, 0xB0]


def local_vs_cumulative_problems(screen):
    """What is missing from a full-page screenshot's per-layer chart: the local-SNR dots over the
    cumulative bars (both colours drawn), or an empty list."""
    problems = []
    for name, colour, least in (("local-SNR dots", LOCAL_DOTS, 300), ("cumulative bars", CUMULATIVE_BARS, 2000)):
        if np.all(np.abs(screen.astype(int) - colour) <= 3, axis=2).sum() < least:
            problems.append(f"no {name} on the page")
    return problems


def full_page(html_path, folder):
    return screenshot(html_path, folder, height=4000, name="full-page")


def test_report_page_shows_local_beside_inherited_error(out, tmp_path):
    """A screenshot of the whole page shows the per-layer chart with local-SNR dots over cumulative bars
    (saved as full-page.png beside the test's files to look at); the same page with its PNGs
    cut short shows neither."""
    screen = full_page(out / "report.html", tmp_path)
    assert local_vs_cumulative_problems(screen) == []
    page = (out / "report.html").read_text()
    (tmp_path / "broken.html").write_text(page.replace("data:image/png;base64,iVBOR", "data:image/png;base64,XXXX"))
    (tmp_path / "broken").mkdir()
    broken = full_page(tmp_path / "broken.html", tmp_path / "broken")
    assert local_vs_cumulative_problems(broken) == ["no local-SNR dots on the page", "no cumulative bars on the page"]
