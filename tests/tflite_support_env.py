"""A separate venv holding tflite-support (the Task Library and the metadata reader), for tests that run it.

tflite-support 0.4.4 pins ``protobuf<4`` and cannot live beside TensorFlow 2.21 (protobuf 7). It is installed
``--no-deps`` into its own venv with the three packages it needs at run time (found by trying: without
protobuf its extension modules fail with "ImportError: initialization failed"; absl-py, pybind11 and
sounddevice, also declared, are not imported by the vision Task Library or the metadata module). Its
extension modules link Debian's ``libusb-1.0-0`` (``.ci/run`` installs it).

The venv is cached under ``$EDGE_ATTN_TFLITE_SUPPORT_VENV`` (default: ``~/.cache/edge-attn/`` keyed by the
pinned versions and the Python version), built in a temporary folder and renamed into place when it imports,
so an interrupted build is never reused. ``python tests/tflite_support_env.py`` builds it ahead of the tests.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv

TFLITE_SUPPORT = "tflite-support==0.4.4"
RUNTIME_DEPS = ("numpy==1.26.4", "flatbuffers==25.12.19", "protobuf==3.20.3")
_CHECK = "from tflite_support.task import vision; from tflite_support import metadata"
PIP_TIMEOUT_S = 900


def venv_dir():
    key = hashlib.sha256(" ".join((TFLITE_SUPPORT,) + RUNTIME_DEPS).encode()).hexdigest()[:10]
    default = os.path.join(os.path.expanduser("~"), ".cache", "edge-attn",
                           f"tflite-support-py{sys.version_info[0]}.{sys.version_info[1]}-{key}")
    return os.environ.get("EDGE_ATTN_TFLITE_SUPPORT_VENV") or default


def python_in(folder):
    return os.path.join(folder, "bin", "python")


def ensure_venv():
    """The venv's python, built when missing. Raises RuntimeError saying what failed."""
    folder = venv_dir()
    if os.path.isfile(os.path.join(folder, ".complete")):
        return python_in(folder)
    parent = os.path.dirname(folder) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        venv.EnvBuilder(with_pip=True).create(staging)
        # the venv's python is run by path: no shell, and pip talks only to the configured package index
        for args in ([TFLITE_SUPPORT, "--no-deps"], list(RUNTIME_DEPS)):
            _run([python_in(staging), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])
        _run([python_in(staging), "-c", _CHECK])
        with open(os.path.join(staging, ".complete"), "w") as f:
            f.write(json.dumps({"packages": [TFLITE_SUPPORT, *RUNTIME_DEPS]}) + "\n")
        try:
            os.rename(staging, folder)
        except OSError:  # another process finished first: use its venv
            if not os.path.isfile(os.path.join(folder, ".complete")):
                raise
        else:
            staging = None
        return python_in(folder)
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)


def _run(cmd):
    # A venv's scripts hard-code its path: the staging venv is only used through "python -m", which works
    # after the rename as well, since python resolves its prefix from where the binary is.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd[1:4])} failed (exit {done.returncode}): {' | '.join(tail)}")


def run_script(python, script, *args, timeout=300):
    """Run ``script`` (Python source) with the venv's ``python``; return its stdout parsed as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([python, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if done.returncode != 0:
        raise AssertionError(f"tflite-support script failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    print(ensure_venv())
