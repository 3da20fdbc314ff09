"""Keeping the terminal to edge_attn's own lines: what TensorFlow, tfmot and LiteRT print goes to a log.

TensorFlow's and LiteRT's C++ code write straight to file descriptor 2 ("oneDNN custom operations are
on", "Could not find cuda drivers", "failed call to cuInit", "Created TensorFlow Lite XNNPACK delegate
for CPU", absl's "All log messages before absl::InitializeLog()"), below Python, so no Python logging
setting reaches them; ``TF_CPP_MIN_LOG_LEVEL`` only silences some of them and only when set before
TensorFlow is imported. :func:`native_output_captured` therefore points descriptor 2 at a temporary
file for the whole command and gives Python a new ``sys.stderr`` on a duplicate of the terminal: edge_attn's
messages and progress bars (which look ``sys.stderr`` up when they write) reach the terminal, native
lines and child processes' stray output land in the file. Python-side chatter is silenced at its source:
the ``absl`` and ``tensorflow`` loggers (the converter's "Please consider providing the trackable_obj
argument") are raised to ERROR and Python warnings are ignored, both restored afterwards.

If the command dies of an unexpected exception (a bug of ours, not a ``BadInput``), the last lines of
the captured log are written to the terminal before the traceback: they often say what went wrong.
``--verbose`` (and ``--debug``) capture nothing: everything is shown as it happens.
"""

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings

NOISY_LOGGERS = ("absl", "tensorflow", "h5py", "matplotlib")
REPLAYED_LINES = 40


class CapturedLog:
    """The temporary file descriptor 2 points at while output is captured."""

    def __init__(self, file):
        self._file = file

    def tail(self, lines=REPLAYED_LINES):
        """The last ``lines`` lines captured so far (text, undecodable bytes replaced)."""
        self._file.flush()
        self._file.seek(0)
        text = self._file.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def native_output_captured(enabled=True):
    """While active, file descriptor 2 goes to a temporary file and ``sys.stderr`` to the terminal (see
    the module notes). Yields a :class:`CapturedLog`, or None when ``enabled`` is false (nothing changes)."""
    if not enabled:
        yield None
        return
    sys.stdout.flush()
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    log = tempfile.TemporaryFile(prefix="edge-attn-native-", suffix=".log")
    previous_stderr = sys.stderr
    loggers = {name: logging.getLogger(name) for name in NOISY_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    terminal = io.TextIOWrapper(io.FileIO(terminal_fd, "w", closefd=False), encoding=_encoding(previous_stderr),
                                errors="backslashreplace", line_buffering=True, write_through=True)
    terminal.edge_attn_terminal = True  # what edge_attn.cli's signal handler looks for
    try:
        os.dup2(log.fileno(), 2)
        if previous_stderr is sys.__stderr__:  # else it does not write to descriptor 2 (pytest's capsys, an IDE)
            sys.stderr = terminal
        for logger in loggers.values():
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                yield CapturedLog(log)
            except (Exception, SystemExit) as error:
                if _unexpected(error):
                    tail = CapturedLog(log).tail()
                    if tail.strip():
                        terminal.write(f"--- last native log lines (all of them with --verbose) ---\n{tail}\n---\n")
                raise
    finally:
        with contextlib.suppress(Exception):
            terminal.flush()
        os.dup2(terminal_fd, 2)
        os.close(terminal_fd)
        sys.stderr = previous_stderr
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
        log.close()


def _unexpected(error):
    from edge_attn.errors import EdgeAttnError

    return not isinstance(error, (EdgeAttnError, SystemExit, KeyboardInterrupt, BrokenPipeError))


def _encoding(stream):
    return getattr(stream, "encoding", None) or "utf-8"
