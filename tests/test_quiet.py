"""edge_attn.quiet in real processes (no TensorFlow needed): what native code writes to file descriptor 2
stays off the terminal, Python's own stderr still reaches it, and the captured lines are shown when edge_attn
itself crashes."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import os, sys, logging, warnings
from edge_attn.quiet import native_output_captured
from edge_attn.errors import BadInput

with native_output_captured({enabled}):
    os.write(2, b"I0000 native line written to fd 2\n")  # what C++ logging does
    subprocess_line = __import__("subprocess").run([sys.executable, "-c", "import os; os.write(2, b'child stderr\\n')"])
    print("edge_attn line", file=sys.stderr)
    logging.getLogger("absl").warning("Please consider providing the trackable_obj argument")
    warnings.warn("a library warning")
    {then}
print("after", file=sys.stderr)
"""


def run(enabled=True, then="pass"):
    code = CHILD.format(enabled=enabled, then=then)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": REPO})


def test_only_python_stderr_reaches_the_terminal():
    done = run()
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["edge_attn line", "after"]


def test_disabled_shows_everything():
    done = run(enabled=False)
    for line in ("I0000 native line written to fd 2", "child stderr", "edge_attn line", "trackable_obj",
                 "a library warning"):
        assert line in done.stderr


def test_a_crash_of_ours_shows_the_captured_lines_before_the_traceback():
    done = run(then='raise RuntimeError("bug")')
    assert done.returncode == 1
    replay = done.stderr.index("--- last native log lines")
    assert done.stderr.index("I0000 native line written to fd 2") > replay
    assert done.stderr.index("Traceback") > replay and "RuntimeError: bug" in done.stderr


def test_a_bad_input_shows_no_native_lines():
    done = run(then='raise BadInput("x.npz", "bad")')
    assert "I0000" not in done.stderr and "last native log lines" not in done.stderr
    assert "BadInput: x.npz: bad" in done.stderr  # uncaught here; the CLI prints it as one line
