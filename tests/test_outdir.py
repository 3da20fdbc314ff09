"""``--out`` ownership: train, convert, bundle and demo refuse a folder edge_attn did not create, before any work.

The refusals and the accepted-but-failing cases are cheap by construction: the command line would go on to
train or convert if the check let it through, so a broken check shows up as a changed folder (and, in
the subprocess test, as TensorFlow having been imported).
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from edge_attn import __version__
from edge_attn.cli import main
from edge_attn.outdir import MARKER

# Each command as it would really run (cheapest settings), and a variant that passes the --out check and
# then fails fast on another input, named in the error.
COMMANDS = {
    "train": (["train", "resnet20", "--data", "digits", "--input-shape", "8,8,1", "--epochs", "0"],
              ["train", "resnet20", "--data", "missing.npz"], "missing.npz"),
    "convert": (["convert", "resnet20", "--recipe", "f32", "--data", "digits", "--input-shape", "8,8,1",
                 "--float-epochs", "0", "--runs", "1"],
                ["convert", "resnet20", "--recipe", "int9", "--data", "digits"], "int9"),
    "bundle": (["bundle", "model.tflite", "--target", "android"],
               ["bundle", "missing.tflite", "--target", "android"], "missing.tflite"),
    "demo": (["demo", "--models", "resnet20", "--float-epochs", "0", "--epochs", "0"],
             ["demo", "--models", "nonesuch"], "nonesuch"),
}
REFUSED = "is not empty and was not created by edge_attn; pass --force to write into it"


def tree(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in root.rglob("*")}


def run_cli(capsys, argv):
    code = main([*argv, "--no-progress"] if argv[0] in ("train", "convert", "demo") else argv)
    out, err = capsys.readouterr()
    return code, out, err


def users_folder(root):
    folder = root / "mine"
    (folder / "photos").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


@pytest.mark.parametrize("command", COMMANDS)
def test_a_foreign_non_empty_folder_is_refused_and_left_alone(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = users_folder(tmp_path)
    before = tree(tmp_path)
    code, _, err = run_cli(capsys, [*COMMANDS[command][0], "--out", str(out)])
    assert code == 2
    assert err.strip().splitlines() == [f"edge-attn {command}: error: {out}: {REFUSED}"]
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_as_out_is_refused_even_with_force(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results"
    out.write_text("a file, not a folder\n")
    for force in ([], ["--force"]):
        code, _, err = run_cli(capsys, [*COMMANDS[command][0], "--out", str(out), *force])
        assert code == 2
        assert err.strip().splitlines() == [f"edge-attn {command}: error: {out}: exists and is not a directory"]
        assert out.read_text() == "a file, not a folder\n" and [p.name for p in tmp_path.iterdir()] == ["results"]


@pytest.mark.parametrize("command", COMMANDS)
def test_marked_empty_and_forced_folders_are_accepted_and_a_failed_run_changes_nothing(command, tmp_path, capsys,
                                                                                      monkeypatch):
    """The run gets past the --out check (its error names the next bad input, not --out), then fails:
    every folder is as it was before (a marker written for the run is removed again; a folder created
    for it too)."""
    monkeypatch.chdir(tmp_path)
    _, failing, named = COMMANDS[command]
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / MARKER).write_text("{}\n")
    (marked / "report.json").write_text("{}\n")
    (tmp_path / "empty").mkdir()
    users_folder(tmp_path)
    before = tree(tmp_path)
    for out, force in (("marked", []), ("empty", []), ("mine", ["--force"]), ("new", [])):
        code, _, err = run_cli(capsys, [*failing, "--out", str(tmp_path / out), *force])
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "--out" not in lines[0] and REFUSED not in lines[0]
        assert tree(tmp_path) == before, out


def test_refusal_comes_before_tensorflow_is_even_imported(tmp_path):
    out = users_folder(tmp_path)
    script = (
        "import json, sys\nfrom edge_attn.cli import main\n"
        f"codes = [main(argv + ['--out', {str(out)!r}]) for argv in {[argv for argv, _, _ in COMMANDS.values()]!r}]\n"
        "print(json.dumps({'codes': codes, 'tensorflow': 'tensorflow' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout) == {"codes": [2, 2, 2, 2], "tensorflow": False}, done.stderr
    assert done.stderr.count(REFUSED) == 4


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A real convert into an existing empty folder (accepted): its model feeds the bundle tests."""
    out = tmp_path_factory.mktemp("converted")
    assert main([*COMMANDS["convert"][0], "--out", str(out), "--no-progress"]) == 0
    return out


def test_a_run_marks_its_folder_and_the_next_run_needs_no_force(converted, capsys):
    assert sorted(p.name for p in converted.iterdir()) == sorted(
        [MARKER, "model.tflite", "reference.keras", "report.html", "report.json"])
    marker = json.loads((converted / MARKER).read_text())
    assert marker["tool"] == "edge_attn" and marker["version"] == __version__
    assert marker["command"].startswith("edge-attn convert resnet20 --recipe f32")
    code, _, err = run_cli(capsys, [*COMMANDS["train"][0], "--out", str(converted)])
    assert code == 0, err
    assert (converted / "model.keras").is_file() and json.loads((converted / MARKER).read_text()) == marker


def test_force_writes_its_files_beside_the_users_and_replaces_only_its_own(tmp_path, capsys):
    out = users_folder(tmp_path)
    (out / "model.keras").write_bytes(b"the user's old model.keras: replaced, since train writes that name")
    users = {k: v for k, v in tree(out).items() if k != "model.keras"}
    code, _, err = run_cli(capsys, [*COMMANDS["train"][0], "--out", str(out), "--force"])
    assert code == 0, err
    after = tree(out)
    assert {k: after[k] for k in users} == users
    assert set(after) == set(users) | {"model.keras", MARKER}
    from edge_attn.modelio import load_keras_model

    assert load_keras_model(out / "model.keras").output_shape == (None, 10)


def test_force_never_deletes_a_users_own_checkpoints_folder(tmp_path, capsys):
    """convert replaces an earlier run's OUT/checkpoints; a user's folder of that name (no fingerprint.json)
    is refused before any work, untouched."""
    out = users_folder(tmp_path)
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "weights.ckpt").write_bytes(b"the user's own training checkpoint")
    before = tree(out)
    code, _, err = run_cli(capsys, [*COMMANDS["convert"][0], "--out", str(out), "--force"])
    assert code == 2 and "not an edge_attn checkpoints folder" in err and len(err.strip().splitlines()) == 1
    assert tree(out) == before


@pytest.mark.parametrize("as_zip", [False, True])
def test_bundle_folder_and_zip_follow_the_same_rules(converted, tmp_path, capsys, as_zip):
    zip_flag = ["--zip"] if as_zip else []
    argv = ["bundle", str(converted / "model.tflite"), "--target", "android", *zip_flag]
    out = users_folder(tmp_path)
    before = tree(out)
    code, _, err = run_cli(capsys, [*argv, "--out", str(out)])
    assert code == 2 and REFUSED in err and tree(out) == before
    code, _, err = run_cli(capsys, [*argv, "--out", str(out), "--force"])
    assert code == 0, err
    after = tree(out)
    assert {k: after[k] for k in before} == before and MARKER in after
    bundled = out / "model-android.zip" if as_zip else out
    code, text, _ = run_cli(capsys, ["verify-bundle", str(bundled)])
    if as_zip:
        assert code == 0
    else:  # the user's files are reported (they are not part of the bundle), the marker is not
        assert code == 1 and "notes.txt: not listed in the manifest" in text and MARKER not in text
        clean = tmp_path / "clean"
        assert run_cli(capsys, [*argv, "--out", str(clean)])[0] == 0
        code, text, _ = run_cli(capsys, ["verify-bundle", str(clean)])
        assert code == 0 and text.startswith(f"{clean}: ok\nworks with: "), text  # then who can load it


def test_a_failing_final_move_puts_back_what_it_replaced(tmp_path):
    """A --force'd folder with a folder where an output file goes: the move fails naming it, and the files it
    had already replaced (in whatever order it got to them) are the previous ones again."""
    from edge_attn.errors import BadInput
    from edge_attn.pipeline import staged_outputs

    out = tmp_path / "out"
    (out / "report.json").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "z.txt"):
        (out / name).write_text(f"old {name}\n")
    before = tree(tmp_path)
    with pytest.raises(BadInput) as error:
        with staged_outputs(out) as staging:
            for name in ("a.txt", "b.txt", "report.json", "z.txt", "sub/new.txt"):
                os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
                with open(os.path.join(staging, name), "w") as f:
                    f.write(f"new {name}\n")
    assert error.value.what == str(out / "report.json")
    assert tree(tmp_path) == before  # no new file, no "sub" folder, no staging folder
