"""Latency and outputs of a .tflite model on a Linux board over ssh, with LiteRT in the board's own Python.

The runner copies the model and :mod:`edge_attn.runners.remote_bench` with the self-contained modules it
imports (:mod:`~edge_attn.runners.timing`, :mod:`~edge_attn.runners.machine`, :mod:`edge_attn._compat`: numpy
and ``ai_edge_litert`` on the board are all they need) into the profile's ``remote_dir`` with OpenSSH's
``scp`` (which speaks SFTP since OpenSSH 9: the board's sshd needs its sftp subsystem, as stock Debian and
Raspberry Pi OS have), runs the script with the profile's ``python`` over ``ssh`` and reads back its JSON
(or .npz).
The board times the model with the host runner's own timing loop (cold start, warm-up, each invoke
timed alone) and describes itself with the host's fingerprint code; the statistics (warm-up detection,
p50 and its interval) are computed here as for the host, so host and board numbers mean the same thing.
A profile with ``emulated = true`` (or a board found running under qemu) gives results marked emulated
(``device.emulated``, the problem :data:`EMULATED_PROBLEM`, a note starting ``EMULATED``): such latency is
not a device figure. ``cpu`` and ``xnnpack`` use the LiteRT Interpreter, ``gpu`` LiteRT's
CompiledModel GPU accelerator (``available=False`` with the reason where the board has none), ``nnapi``
is Android-only and answered without contacting the board. ``peak_memory_mb`` is the growth of the
board process's peak resident memory while loading and running the model (Linux ``VmHWM``).

:meth:`SshRunner.run_outputs` sends samples and brings back the model's outputs, so accuracy can be
checked against the float reference with the numbers the board computed. Samples are quantized with the
model's input parameters here and outputs dequantized here (:mod:`edge_attn.litert`), so the board only
runs ``set_tensor``/``invoke``/``get_tensor``.

Every ssh/scp call is an argument list with ``-o BatchMode=yes`` (never a password prompt),
``StrictHostKeyChecking=accept-new`` against a known_hosts file of edge_attn's own (``state_dir``,
default ``$XDG_STATE_HOME/edge_attn`` or ``~/.local/state/edge_attn``; not the user's
``~/.ssh/known_hosts``), ``ConnectTimeout`` and a subprocess timeout. The remote command is one string
that the board's shell splits, so host, user, python and remote paths are checked against strict
patterns first and every word is quoted. An unreachable board, a refused key, a missing remote Python or
LiteRT is a one-line :class:`BadInput`.
"""

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile

import numpy as np

from edge_attn.convert import inspect_tflite
from edge_attn.errors import BadInput
from edge_attn.litert import check_samples, dequantize, make_interpreter, quantize
import edge_attn._compat as _compat
import edge_attn.runners.machine as machine
import edge_attn.runners.remote_bench as remote_bench
import edge_attn.runners.timing as timing
from edge_attn.runners.command_line import COMMAND, HOST, USER, checked, checked_remote_dir
from edge_attn.runners.delegation import NATIVE_ERROR, compiled_model_placement, no_delegate, xnnpack_placement
from edge_attn.runners.host import NNAPI_ELSEWHERE
from edge_attn.runners.result import DeviceInfo, LatencyResult, timed
from edge_attn.runners.settings import check_delegate, check_settings

HOST_PATTERN, USER_PATTERN, COMMAND_PATTERN = HOST, USER, COMMAND  # the names of earlier versions
# Seconds beyond the profile's timeout_s for the board's Python to start and load the model, and for
# the last invoke after the deadline (the board stops timing at timeout_s by itself).
STARTUP_GRACE_S = 60
REMOTE_SCRIPT = remote_bench.__file__
# The script and the self-contained modules it imports, copied together into one folder on the board.
REMOTE_FILES = (REMOTE_SCRIPT, timing.__file__, machine.__file__, _compat.__file__)
EMULATED_PROBLEM = "emulated board: the latency is not a device figure"
_SSH_FAILURE = re.compile(r"ssh:|Permission denied|Host key|Connection|Could not resolve|timed out|refused",
                          re.IGNORECASE)


def default_state_dir():
    """Where edge_attn keeps the board host keys it has seen: ``$XDG_STATE_HOME/edge_attn``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "edge_attn")


class SshRunner:
    """Measures models on the Linux board of a ``kind = "ssh"`` profile.

    ``ssh``/``scp`` are the OpenSSH client executables; ``state_dir`` holds the known_hosts file (first
    contact records the board's host key, later contacts must match it).
    """

    def __init__(self, profile, *, ssh="ssh", scp="scp", state_dir=None):
        if profile.kind != "ssh":
            raise BadInput(profile.source or profile.name,
                           f"kind: the ssh runner needs kind = \"ssh\", not {profile.kind!r}")
        self.name = profile.name
        self._ssh, self._scp = ssh, scp
        host = checked(profile.host, HOST_PATTERN, f"{profile.name}: host")
        user = checked(profile.user, USER_PATTERN, f"{profile.name}: user") if profile.user else None
        port = profile.port or 22
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise BadInput(f"{profile.name}: port", f"expected 1..65535, got {port!r}")
        self._port = str(port)
        self._python = checked(profile.python or "python3", COMMAND_PATTERN, f"{profile.name}: python")
        self._remote_dir = checked_remote_dir(profile.remote_dir, f"{profile.name}: remote_dir")
        self._identity = profile.identity_file
        if self._identity and not os.path.isfile(self._identity):
            raise BadInput(f"{profile.name}: identity_file", f"no such file: {self._identity}")
        connect_timeout = profile.connect_timeout_s or 10
        self._call_timeout_s = connect_timeout + profile.timeout_s + STARTUP_GRACE_S
        self._deadline_s = profile.timeout_s
        self._destination = f"{user}@{host}" if user else host
        # scp writes IPv6 literals in brackets: user@[::1]:path
        self._scp_destination = (f"{user}@" if user else "") + (f"[{host}]" if ":" in host else host)
        self._where = f"board {profile.name} (ssh {self._destination}, port {port})"
        state_dir = os.fspath(state_dir) if state_dir is not None else default_state_dir()
        known_hosts = os.path.join(state_dir, "known_hosts")
        if '"' in known_hosts:
            raise BadInput("state_dir", f"{state_dir!r} contains a double quote")
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self._options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                         "-o", f'UserKnownHostsFile="{known_hosts}"', "-o", f"ConnectTimeout={connect_timeout}",
                         "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self._identity:
            self._options += ["-o", "IdentitiesOnly=yes", "-i", self._identity]
        self._emulated = bool(profile.emulated)
        self._on_board = set()  # remote paths copied this session

    def benchmark(self, model_path, *, delegate="xnnpack", threads=2, runs=50, warmup=5,
                  op_profile=False) -> LatencyResult:
        """Latency of ``model_path`` on the board with ``delegate``."""
        check_settings(delegate, threads, runs, warmup)
        settings = dict(device=self.name, model=os.fspath(model_path), delegate=delegate, threads=threads,
                        target="ssh")
        total_ops = len(inspect_tflite(model_path).ops)  # a missing or corrupt model is BadInput before the board is contacted
        if delegate == "nnapi":
            return LatencyResult.unavailable(**settings, reason=NNAPI_ELSEWHERE)
        remote_model, remote_script = self._upload(model_path)
        completed = self._run_script([remote_script, "bench", remote_model, "--delegate", delegate,
                                      "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup),
                                      "--deadline-s", f"{self._deadline_s:g}"], model_path)
        report = _last_json(completed.stdout, self._where)
        info = DeviceInfo.from_fingerprint(self.name, report.get("machine") or {}, emulated=self._emulated)
        if "unavailable" in report:
            native = NATIVE_ERROR.search(completed.stderr)  # LiteRT's own log says why, on the board's stderr
            reason = report["unavailable"] + (f" ({native[1].strip()})" if native else "")
            return LatencyResult.unavailable(**settings, reason=reason, device_info=info)
        times_ms = report["times_ms"]
        if delegate == "cpu":
            graph, delegation = no_delegate(total_ops)
        elif delegate == "gpu":
            graph, delegation = compiled_model_placement(report.get("fully_accelerated"), total_ops, "GPU")
        elif report.get("ops"):
            graph, delegation = xnnpack_placement(report["ops"])
        else:
            graph, delegation = None, None
        notes = [f"measured on the board with {report['runtime']}"]
        problems = []
        if info.emulated:
            problems.append(EMULATED_PROBLEM)
        if len(times_ms) < runs:
            problems.append(f"stopped after {len(times_ms)} of {runs} runs: timeout_s = {self._deadline_s:g} "
                            f"of profile {self.name!r} passed")
        if op_profile:
            notes.append("per-op profiles are not available from LiteRT's Python API")
        return LatencyResult(**settings, **timed(times_ms), cold_start_ms=report.get("cold_start_ms"),
                             device_info=info, graph=graph,
                             peak_memory_mb=report.get("peak_memory_mb"), delegation=delegation,
                             note="; ".join(([emulated_note(info)] if info.emulated else []) + notes
                                            + [p for p in problems if p != EMULATED_PROBLEM]),
                             problems=tuple(problems))

    def run_outputs(self, model_path, x, *, delegate="xnnpack", threads=2) -> np.ndarray:
        """The model's float outputs (N, ...) for float samples ``x`` (N, ...), computed on the board.

        Like :func:`edge_attn.litert.run`: one sample per invoke, integer inputs quantized with the model's
        input scale and zero point, integer outputs dequantized.
        """
        check_delegate(delegate, allowed=("cpu", "xnnpack"))  # run_outputs runs the LiteRT Interpreter
        check_settings(delegate, threads, 1, 0)
        interpreter = make_interpreter(model_path)
        input_detail, output_detail = _single_io(interpreter)
        x = check_samples(x, input_detail, os.fspath(model_path))
        samples = io.BytesIO()
        np.savez(samples, x=_to_model_input(input_detail, x))
        remote_model, remote_script = self._upload(model_path)
        completed = self._run_script([remote_script, "outputs", remote_model, "--delegate", delegate,
                                      "--threads", str(threads)], model_path, stdin=samples.getvalue())
        try:
            raw = np.load(io.BytesIO(completed.stdout))["y"]
        except (OSError, ValueError, KeyError) as e:
            raise BadInput(self._where, f"sent back no outputs ({e})") from None
        return _to_float_output(output_detail, raw)

    # ---------------------------------------------------------------- transport

    def _upload(self, model_path):
        """Copy the model and the measuring scripts to the board (once per session); the remote paths of the
        model and of the script.

        Both are named by content (the scripts' folder by all three files), so a changed model or script
        is copied again and nothing collides.
        """
        model_name = f"model-{_digest(model_path)}.tflite"
        scripts_name = f"scripts-{_digest(*REMOTE_FILES)}"
        wanted = [name for name in (model_name, scripts_name) if f"{self._remote_dir}/{name}" not in self._on_board]
        if wanted:
            if not self._on_board:
                self._call([self._ssh, *self._options, "-p", self._port, "--", self._destination,
                            shlex.join(["mkdir", "-p", self._remote_dir])])
            with tempfile.TemporaryDirectory(prefix="edge_attn-upload-") as staging:
                # scp keeps the source's name: stage a link carrying the model's remote name and a folder of scripts
                if model_name in wanted:
                    os.symlink(os.path.abspath(model_path), os.path.join(staging, model_name))
                if scripts_name in wanted:
                    os.mkdir(os.path.join(staging, scripts_name))
                    for source in REMOTE_FILES:
                        shutil.copyfile(source, os.path.join(staging, scripts_name, os.path.basename(source)))
                self._call([self._scp, *self._options, "-q", "-r", "-P", self._port, "--",
                            *(os.path.join(staging, name) for name in wanted),
                            f"{self._scp_destination}:{self._remote_dir}/"])
            self._on_board.update(f"{self._remote_dir}/{name}" for name in wanted)
        return (f"{self._remote_dir}/{model_name}",
                f"{self._remote_dir}/{scripts_name}/{os.path.basename(REMOTE_SCRIPT)}")

    def _run_script(self, arguments, model_path, stdin=None):
        command = shlex.join([self._python, *arguments])
        completed = self._call([self._ssh, *self._options, "-p", self._port, "--", self._destination, command],
                               stdin=stdin, check=False)
        if completed.returncode == 0:
            return completed
        error = _last_line(completed.stderr)
        if completed.returncode == 127:  # the remote shell's "command not found"
            raise BadInput(f"{self._where}: python", f"{self._python!r} not found on the board ({error})")
        if completed.returncode == remote_bench.EXIT_NO_LITERT:
            raise BadInput(self._where, error)
        if completed.returncode == remote_bench.EXIT_BAD_MODEL:
            raise BadInput(os.fspath(model_path), f"on {self._where}: {error}")
        raise BadInput(self._where, f"the measuring script failed (exit {completed.returncode}): {error}")

    def _call(self, argv, stdin=None, check=True):
        """Run one ssh/scp command; a connection failure (ssh's exit 255), or any failure if ``check``: BadInput."""
        try:
            completed = subprocess.run(argv, input=stdin if stdin is not None else b"", capture_output=True,
                                       timeout=self._call_timeout_s)
        except FileNotFoundError:
            raise BadInput(argv[0], "not found: install the OpenSSH client (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise BadInput(self._where, f"no answer within {self._call_timeout_s:g} s") from None
        completed.stderr = completed.stderr.decode("utf-8", "replace")
        if completed.returncode == 255 or (check and completed.returncode != 0):
            raise BadInput(self._where, f"{os.path.basename(argv[0])} failed: {_connection_problem(completed.stderr)}")
        return completed


def _single_io(interpreter):
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise BadInput("TFLite model", f"has {len(inputs)} inputs and {len(outputs)} outputs; "
                                       "run_outputs runs single-input, single-output models")
    return inputs[0], outputs[0]


def _to_model_input(detail, x):
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        return quantize(x, scale, zero_point, dtype)
    return np.asarray(x, dtype)


def _to_float_output(detail, raw):
    scale, zero_point = detail["quantization"]
    if np.issubdtype(raw.dtype, np.integer) and scale:
        return dequantize(raw, scale, zero_point)
    return raw.astype(np.float32)


def emulated_note(info):
    """The note an emulated board's results lead with: what ran under emulation, and that its latency is
    the emulator's (the outputs are still those of the emulated CPU's kernels)."""
    cpu = info.cpu or info.emulated_cpu or "unknown CPU"
    qemu = f", QEMU_CPU={info.emulated_cpu}" if info.emulated_cpu else ""
    return (f"EMULATED: {info.arch or 'unknown arch'} ({cpu}{qemu}), kernel {info.kernel_arch or 'unknown'}; "
            "the latency is the emulator's, not a device figure")


def _last_json(stdout, where):
    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.startswith("{")]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise BadInput(where, "the measuring script printed no result") from None


def _digest(*paths):
    """First 16 hex digits of the SHA-256 of the files' contents, one after the other."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _connection_problem(stderr):
    """The line of ssh's complaint that says what went wrong ("Connection refused", "Permission denied ...")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if _SSH_FAILURE.search(line):
            return line
    return lines[-1] if lines else "no message"


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
