"""Security review, as tests: no shell, no code from model files unless trusted, nothing written or read
outside a bundle folder.

Profile values that reach adb/ssh command lines (serials, hosts, users, remote paths, taskset masks) are
checked against injection in tests/test_devices.py, tests/test_adb_runner.py and tests/test_ssh_runner.py
(the last against a real sshd: a refused value never reaches the board).
"""

import ast
import json
import os
import pathlib
import zipfile

import pytest

from edge_attn._keras import keras
from edge_attn.errors import BadInput
from edge_attn.modelio import load_keras_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ("edge_attn", "benchmarks", "tests", ".ci")

# Calls that hand a string to a shell or run data as code. ``subprocess.*(shell=True)`` is checked by keyword.
FORBIDDEN_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "eval", "exec",
                   "pickle.load", "pickle.loads", "marshal.load", "marshal.loads", "yaml.load"}


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def dangerous_calls(source, filename="<source>"):
    """``file:line: call`` for every shell=True (any value but a literal False) or forbidden call in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in FORBIDDEN_CALLS:
            found.append(f"{filename}:{node.lineno}: {name}()")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                found.append(f"{filename}:{node.lineno}: {name}(shell=...)")
    return found


def _python_files():
    for folder in SCANNED:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_the_scanner_finds_what_it_looks_for():
    sample = ("import subprocess, os\nsubprocess.run('ls', shell=True)\nsubprocess.call(x, shell=flag)\n"
              "os.system('ls')\neval('1')\nsubprocess.run(['ls'], shell=False)\n")
    assert [line.split(": ", 1)[1] for line in dangerous_calls(sample)] == [
        "subprocess.run(shell=...)", "subprocess.call(shell=...)", "os.system()", "eval()"]


def test_no_shell_and_no_code_from_data_anywhere():
    files = list(_python_files())
    assert len(files) > 50  # the scan really covers the package, benchmarks and tests
    found = [hit for path in files for hit in dangerous_calls(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []
    ci_script = (ROOT / ".ci" / "run").read_text()
    assert "eval " not in ci_script and "sh -c" not in ci_script


# --- Lambda layers: their Python code must not run unless the user trusts the file ---------------------------

@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory):
    """The same model with a Lambda that touches a marker file when it runs, saved in the three formats."""
    folder = tmp_path_factory.mktemp("lambda")
    marker = folder / "code-ran"
    inputs = keras.Input((4,))
    # Self-contained (defaults, __import__): a Lambda's module globals are not there when it is loaded back.
    touched = keras.layers.Lambda(lambda t, m=str(marker): (__import__("pathlib").Path(m).touch(), t)[1],
                                  name="touch")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(touched))
    paths = {"keras": folder / "m.keras", "h5": folder / "m.h5", "saved_model": folder / "saved"}
    model.save(paths["keras"])
    model.save(paths["h5"])
    model.save(paths["saved_model"], save_format="tf")
    return paths, marker


@pytest.mark.parametrize("fmt", ["keras", "h5", "saved_model"])
def test_lambda_code_never_runs_without_trust(lambda_models, fmt):
    paths, marker = lambda_models
    marker.unlink(missing_ok=True)  # building and saving the model ran the Lambda
    with pytest.raises(BadInput, match=r"Lambda layers \(touch\).*--trust-model-code") as error:
        load_keras_model(paths[fmt])
    assert error.value.what == str(paths[fmt])
    assert not marker.exists()
    # The marker does detect execution: trusting the file loads it and the Lambda runs.
    model = load_keras_model(paths[fmt], trust_model_code=True)
    assert [layer.name for layer in model.layers if type(layer).__name__ == "Lambda"] == ["touch"]
    assert marker.exists()


# --- bundles: nothing written or read outside the bundle folder -------------------------------------------------

@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    from edge_attn.convert import convert_model, load_recipe

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    path = tmp_path_factory.mktemp("tflite") / "model.tflite"
    path.write_bytes(convert_model(model, load_recipe("f32")))
    return path


@pytest.mark.parametrize("name", ["../escape", "/tmp/escape", "sub/escape", "..", ".hidden", "a\nb", ""])
def test_bundle_names_cannot_leave_the_output_folder(tiny_tflite, tmp_path, name):
    from edge_attn.bundle import bundle

    before = set(tmp_path.parent.rglob("*"))
    with pytest.raises(BadInput) as error:
        bundle(tiny_tflite, out=tmp_path / "out", name=name)
    assert error.value.what == "--name"
    assert set(tmp_path.parent.rglob("*")) == before


def test_labels_are_data_never_paths(tiny_tflite, tmp_path):
    from edge_attn.bundle import bundle, verify_bundle

    labels = tmp_path / "labels.txt"
    labels.write_text("../../etc/passwd\n/abs/path\n$(reboot)\n")
    out = tmp_path / "out"
    manifest = bundle(tiny_tflite, out=out, labels=labels, name="m")
    # (dot files: edge_attn's own bookkeeping, e.g. the marker saying it created the folder)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert written == ["INTEGRATION.md", "assets/labels.txt", "assets/m.tflite", "edge_attn_manifest.json"]
    assert (out / "assets" / "labels.txt").read_text().splitlines()[0] == "../../etc/passwd"
    assert manifest["labels"]["count"] == 3 and verify_bundle(out) == []


def _manifest_with_file(folder, rel):
    manifest = {"files": {rel: {"bytes": 1, "sha256": "0" * 64}}, "model": {"file": rel}, "labels": {"file": rel}}
    (folder / "edge_attn_manifest.json").write_text(json.dumps(manifest))


def test_verify_bundle_refuses_paths_leaving_the_folder(tmp_path):
    from edge_attn.bundle import verify_bundle

    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    folder = tmp_path / "bundle"
    folder.mkdir()
    _manifest_with_file(folder, "../secret.txt")
    assert verify_bundle(folder) == ["../secret.txt: path leaves the bundle folder"]
    (folder / "link.txt").symlink_to(secret)  # a symlink inside the folder that points out of it
    _manifest_with_file(folder, "link.txt")
    assert "link.txt: path leaves the bundle folder" in verify_bundle(folder)


def test_verify_bundle_never_extracts_entries_outside(tmp_path):
    from edge_attn.bundle import verify_bundle

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("edge_attn_manifest.json", "{}")
        z.writestr("../../escaped.txt", "x")
    problems = verify_bundle(archive)
    assert problems == [f"{archive}: entry '../../escaped.txt' leaves the bundle folder"]
    for folder in (tmp_path, tmp_path.parent, tmp_path.parent.parent, pathlib.Path(os.getcwd())):
        assert not (folder / "escaped.txt").exists()
