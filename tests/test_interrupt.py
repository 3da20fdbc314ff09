"""Interrupted runs lose nothing: real ``edge-attn`` processes get SIGINT/SIGTERM at chosen moments.

Each case runs the CLI (``python -m edge_attn.cli``) in a sandbox folder whose every file is hashed
before: after the signal the process must exit promptly with 130 (SIGINT) or 143 (SIGTERM) and one
"interrupted" line, and the sandbox must hold exactly what it held before (no staging folder, no
temporary file, previous outputs byte-identical) or, when the signal came during the final move,
exactly the complete new set. The one addition allowed is ``OUT/checkpoints/``: what an interrupted
convert keeps on purpose for ``--resume`` (:mod:`edge_attn.checkpoints`), itself free of temporary files.
Signals are timed on the process's own progress lines and on the staging folder appearing, not on sleeps.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from edge_attn.outdir import MARKER

OUTPUTS = {"model.tflite", "reference.keras", "report.json", "report.html", MARKER}
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
PROMPT_SECONDS = 30  # signal → exit; generous for a shared 2-core machine (typically 1-3 s)
QAT_SETTLE = 2.0
RESUMABLE = "out/checkpoints"
TINY = ["--input-shape", "8,8,1", "--runs", "2", "--data", "digits"]


class Cli:
    """A running ``edge-attn`` process whose stderr lines are collected as they come."""

    def __init__(self, *argv, cwd, python_prelude=None):
        # One TensorFlow thread per pool: the scenarios run side by side on a small shared machine.
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1",
                   TF_NUM_INTEROP_THREADS="1")
        if python_prelude is None:
            command = [sys.executable, "-m", "edge_attn.cli", *argv]
        else:  # a real signal at an exact point: the prelude patches a function to send it
            command = [sys.executable, "-c", python_prelude + "\nfrom edge_attn.cli import main\n"
                       f"sys.exit(main({list(argv)!r}))"]
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def wait_for(self, ready, timeout=240):
        """Poll ``ready()`` every 5 ms until it is true; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"ended early ({self.proc.returncode}):\n{''.join(self.lines)}"
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.005)

    def saw(self, prefix):
        return lambda: any(line.startswith(prefix) for line in self.lines)

    def interrupt(self, signum):
        """Send ``signum``; return (exit code, seconds to exit, stderr)."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        return self.finish(sent)

    def finish(self, since=None):
        since = time.monotonic() if since is None else since
        try:
            code = self.proc.wait(PROMPT_SECONDS + 60)
        finally:
            self.proc.kill()
        self._reader.join(10)
        return code, time.monotonic() - since, "".join(self.lines)


def tree(root):
    """{relative path: sha256 (files) or "dir"} of everything under ``root``, hidden files included."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in root.rglob("*")}


def assert_no_leftovers(paths):
    """No staging folder or temporary file (ours: ``.NAME.staging-*``, ``.NAME.*`` from mkstemp; TensorFlow's
    checkpoint shards: ``*_temp``) anywhere; the marker is the only hidden file."""
    for path in paths:
        for part in path.split("/"):
            assert not (part.startswith(".") and part != MARKER or part.endswith((".tmp", "_temp"))), path


def assert_same_outputs(root, before):
    """``root`` holds what it held ``before``, plus at most resumable state in ``out/checkpoints``."""
    after = tree(root)
    assert_no_leftovers(after)
    assert {k: v for k, v in after.items() if not k.startswith(RESUMABLE)} == before
    return after


def assert_interrupted(code, seconds, stderr, signum, command):
    assert code == EXIT_CODES[signum], stderr
    assert seconds < PROMPT_SECONDS, f"took {seconds:.1f} s to exit"
    assert "Traceback" not in stderr
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0].startswith(f"edge-attn {command}: interrupted"), stderr
    assert stderr.strip().splitlines()[-1] == said[0]


def is_complete_new_set(out, before):
    """The files of a finished convert, all of them new, and the report describing this model."""
    names = {p.name for p in out.iterdir()}
    if names != OUTPUTS:
        return False
    report = json.loads((out / "report.json").read_text())
    model = (out / "model.tflite").read_bytes()
    changed = all(hashlib.sha256((out / n).read_bytes()).hexdigest() != before[f"out/{n}"] for n in OUTPUTS - {MARKER})
    return changed and report["model"]["sha256"] == hashlib.sha256(model).hexdigest()


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """Complete outputs of an earlier convert run (cheapest recipe and settings): the folder to protect."""
    out = tmp_path_factory.mktemp("previous") / "out"
    code, _, stderr = Cli("convert", "resnet20", "--recipe", "f32", "--float-epochs", "0", *TINY, "--out", str(out),
                          "--no-progress", cwd=out.parent).finish()
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == OUTPUTS
    return out


def sandbox(previous, root):
    """``root`` with a copy of the previous outputs as ``out``; returns the tree of ``root``."""
    shutil.copytree(previous, root / "out")
    return tree(root)


def after_line(prefix, settle=0.0):
    """Trigger: the process printed a line starting with ``prefix`` (and ``settle`` more seconds passed)."""
    def wait(run, _root):
        run.wait_for(run.saw(prefix))
        settled = time.monotonic() + settle
        run.wait_for(lambda: time.monotonic() > settled)
    return wait


def when_present(predicate):
    """Trigger: ``predicate(root)`` holds (a file or folder appeared), polled every 5 ms."""
    return lambda run, root: run.wait_for(lambda: predicate(root))


def staging_appeared(root):
    return any(".staging-" in name for name in os.listdir(root))


def model_keras_being_saved(root):
    return any(name.startswith(".model.keras.") for name in os.listdir(root / "out"))


QAT = ["convert", "resnet20", "--recipe", "int8-qat", "--epochs", "2", *TINY]
# name: (argv, trigger, signal, start from a copy of the previous outputs)
SCENARIOS = {
    "float training": ([*QAT, "--float-epochs", "3", "--out", "out"], after_line("float 1/3:"), signal.SIGINT, True),
    # After float training the QAT stage (wrap, calibrate, trace, two epochs) lasts far longer than
    # QAT_SETTLE seconds on any machine; waiting for its own first epoch line would double the run time.
    "qat": ([*QAT, "--float-epochs", "1", "--out", "out"], after_line("float 1/1:", QAT_SETTLE), signal.SIGINT, True),
    "final writes": (["convert", "resnet20", "--recipe", "f32", "--float-epochs", "0", "--seed", "1", *TINY,
                      "--out", "out"], when_present(staging_appeared), signal.SIGINT, True),
    "fresh out": ([*QAT, "--float-epochs", "3", "--out", "fresh"], after_line("float 1/3:"), signal.SIGTERM, False),
    "train": (["train", "resnet20", "--epochs", "3", "--input-shape", "8,8,1", "--data", "digits", "--out", "out"],
              after_line("float 1/3:"), signal.SIGINT, True),
    "train save": (["train", "resnet20", "--epochs", "0", "--input-shape", "8,8,1", "--data", "digits",
                    "--out", "out"], when_present(model_keras_being_saved), signal.SIGINT, True),
}


@pytest.fixture(scope="module")
def interrupted(previous, tmp_path_factory):
    """Every scenario played at once (each waits on its own process): {name: result dict}."""
    results = {}

    def play(name, argv, trigger, signum, from_previous):
        root = tmp_path_factory.mktemp(name.replace(" ", "_"))
        result = results[name] = {"root": root, "signal": signum,
                                  "before": sandbox(previous, root) if from_previous else {}}
        run = Cli(*argv, cwd=root)
        try:
            trigger(run, root)
            result["claimed early"] = os.path.isfile(root / argv[argv.index("--out") + 1] / MARKER)
            result["code"], result["seconds"], result["stderr"] = run.interrupt(signum)
        except BaseException as error:  # reported by the scenario's test
            result["error"] = error
            run.proc.kill()

    threads = [threading.Thread(target=play, args=(name, *spec)) for name, spec in SCENARIOS.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def played(interrupted, name, command="convert"):
    """The scenario's result, after the checks every interrupted run must pass."""
    result = interrupted[name]
    if "error" in result:
        raise result["error"]
    assert_interrupted(result["code"], result["seconds"], result["stderr"], result["signal"], command)
    return result["root"], result["before"]


def test_sigint_during_float_training_keeps_previous_outputs(interrupted):
    root, before = played(interrupted, "float training")
    assert_same_outputs(root, before)


def test_sigint_during_qat_keeps_previous_outputs(interrupted):
    root, before = played(interrupted, "qat")
    assert_same_outputs(root, before)


def test_sigint_during_the_final_writes_leaves_one_complete_set(interrupted):
    root, before = played(interrupted, "final writes")
    after = tree(root)
    assert_no_leftovers(after)
    # Almost always the signal lands while files are written to the staging folder: nothing changes. If it
    # lands during the final move, that move completes first (it is never split) and the set is all new.
    assert after == before or (set(after) == set(before) and is_complete_new_set(root / "out", before))


def test_sigterm_into_a_fresh_out_leaves_nothing(interrupted):
    root, _ = played(interrupted, "fresh out")
    assert interrupted["fresh out"]["claimed early"]  # the marker was there while training ran
    assert tree(root) == {}  # not even the marker now: the claim made for this run is undone


def test_train_interrupted_while_training_keeps_previous_outputs(interrupted):
    root, before = played(interrupted, "train", "train")
    assert tree(root) == before


def test_train_interrupted_while_saving_leaves_no_temporary_file(interrupted):
    root, before = played(interrupted, "train save", "train")
    after = tree(root)
    assert_no_leftovers(after)
    assert after == before or set(after) == set(before) | {"out/model.keras"}


def test_signals_wait_for_the_end_of_a_deferred_block():
    """In-process: a signal inside ``interrupts_deferred`` is acted on only when the block is done, by the
    handler that was in place before (Python's default SIGINT handler raises KeyboardInterrupt)."""
    from edge_attn.atomic import interrupts_deferred

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")
            time.sleep(0.05)  # a pending Python-level handler would have run by now
            steps.append("block done")
    assert steps == ["after the signal", "block done"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _bundle_prelude(patch):
    return ("import os, signal, sys\nimport edge_attn.bundle.bundle\n"
            "bundle_module = sys.modules['edge_attn.bundle.bundle']\n" + patch)


# SIGINT to itself right after the first file of the bundle is written into the staging folder.
SIGINT_WHILE_WRITING = """
original_write = bundle_module._write
def _write(*args):
    original_write(*args)
    os.kill(os.getpid(), signal.SIGINT)
bundle_module._write = _write
"""
# SIGTERM to itself just after the final move has moved its first file.
SIGTERM_DURING_THE_MOVE = """
original_replace, moved = os.replace, []
def replace(source, target, **kw):
    original_replace(source, target, **kw)
    if ".staging-" in os.fspath(source) and not moved:
        moved.append(target)
        os.kill(os.getpid(), signal.SIGTERM)
os.replace = replace
"""


def test_bundle_interrupted_while_writing_keeps_the_previous_bundle(previous, tmp_path):
    model = previous / "model.tflite"
    assert Cli("bundle", str(model), "--target", "android", "--out", "b", cwd=tmp_path).finish()[0] == 0
    before = tree(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(10)))
    before["labels.txt"] = hashlib.sha256(labels.read_bytes()).hexdigest()
    run = Cli("bundle", str(model), "--target", "android", "--labels", str(labels), "--out", "b", cwd=tmp_path,
              python_prelude=_bundle_prelude(SIGINT_WHILE_WRITING))
    assert_interrupted(*run.finish(), signal.SIGINT, "bundle")
    assert tree(tmp_path) == before


def test_bundle_sigterm_during_the_final_move_completes_the_move_first(previous, tmp_path):
    from edge_attn.bundle import verify_bundle

    model = previous / "model.tflite"
    assert Cli("bundle", str(model), "--target", "android", "--out", "b", cwd=tmp_path).finish()[0] == 0
    before = tree(tmp_path / "b")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(10)))
    run = Cli("bundle", str(model), "--target", "android", "--labels", str(labels), "--out", "b", cwd=tmp_path,
              python_prelude=_bundle_prelude(SIGTERM_DURING_THE_MOVE))
    assert_interrupted(*run.finish(), signal.SIGTERM, "bundle")
    after = tree(tmp_path / "b")
    assert set(after) == set(before) and verify_bundle(tmp_path / "b") == []
    assert (tmp_path / "b" / "assets" / "labels.txt").read_text().startswith("class 0\n")  # the new set, all of it
    assert after["edge_attn_manifest.json"] != before["edge_attn_manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "labels.txt"]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_that_native_code_turned_into_another_error_is_still_an_interrupt(monkeypatch, capsys,
                                                                                      signum, code):
    """Seen in a real run: SIGINT during model.save reached TensorFlow's C++ nest utilities, which turned the
    KeyboardInterrupt into SystemError and then ValueError. The user still pressed Ctrl-C: one line, no
    traceback. Without a signal the same error is a bug and keeps its traceback."""
    import edge_attn.cli as cli

    def interrupted_inside_native_code(args):
        try:
            signal.raise_signal(signum)
        except KeyboardInterrupt as error:
            raise ValueError("The target structure is of type TensorShape") from error

    monkeypatch.setattr(cli, "cmd_models", interrupted_inside_native_code)
    assert cli.main(["models"]) == code
    assert capsys.readouterr().err.strip().splitlines() == [
        "edge-attn models: interrupted" + (" (SIGTERM)" if signum == signal.SIGTERM else "")]

    monkeypatch.setattr(cli, "cmd_models", lambda args: int("not a number"))
    with pytest.raises(ValueError):
        cli.main(["models"])


def test_a_traceback_native_code_prints_while_an_interrupt_unwinds_stays_off_the_terminal(monkeypatch, capsys):
    """Seen in CI (stop 22): Ctrl-C during model.save, and TensorFlow's C++ code printed the SystemError the
    KeyboardInterrupt became (``PyErr_Print``, which goes through ``sys.excepthook``) before failing on. The
    user pressed Ctrl-C: one line. ``PyRun_SimpleString`` is C code that prints an error exactly that way."""
    import ctypes

    import edge_attn.cli as cli

    def native_code_prints_then_fails(args):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            ctypes.pythonapi.PyRun_SimpleString(b"raise SystemError('returned a result with an exception set')")
            raise ValueError("The target structure is of type TensorShape")

    monkeypatch.setattr(cli, "cmd_models", native_code_prints_then_fails)
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["edge-attn models: interrupted"]

    # Without an interrupt the same native print is shown: it may be the only word on a real failure.
    native_print = ctypes.pythonapi.PyRun_SimpleString
    monkeypatch.setattr(cli, "cmd_models", lambda args: native_print(b"raise SystemError('x')") and 0)
    assert cli.main(["models"]) == 0
    assert "SystemError: x" in capsys.readouterr().err


def test_a_traceback_native_code_writes_to_sys_stderr_after_an_interrupt_stays_off_the_terminal():
    """Seen in CI (2026-12-03): Ctrl-C while ``train`` saved model.keras, and a SystemError traceback from
    TensorFlow's C++ ``nest`` Flatten still reached the terminal. C code can print an error with
    ``PyErr_Display``, which writes to ``sys.stderr`` itself (not through ``sys.excepthook``). A real process
    (no pytest capture: the CLI's own terminal stream is in place) must still print one line."""
    script = textwrap.dedent("""
        import ctypes, signal, sys
        import edge_attn.cli as cli

        def native_code_prints_then_fails(args):
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                error = SystemError("returned a result with an exception set")
                display = ctypes.pythonapi.PyErr_Display
                display.argtypes = (ctypes.py_object, ctypes.py_object, ctypes.py_object)
                display(SystemError, error, None)
                raise ValueError("The target structure is of type TensorShape")

        cli.cmd_models = native_code_prints_then_fails
        sys.exit(cli.main(["models"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["edge-attn models: interrupted"], done.stderr
