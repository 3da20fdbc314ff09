"""Atomic file output: write beside the target, then rename over it.

A failed or interrupted run therefore never leaves a half-written ``model.tflite`` or ``report.json``:
the target either keeps its previous complete content or does not exist. :func:`interrupts_deferred`
holds Ctrl-C and SIGTERM back for the few system calls that must not be split (creating a temporary
file and remembering it; moving a set of finished files into place).
"""

import contextlib
import os
import signal
import tempfile
import threading

_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's directory; on success rename it to ``path``.

    Use for writers that want a file name (``model.save(tmp)``); on any exception (Ctrl-C included) the
    temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    tmp = None
    try:
        with interrupts_deferred():  # no Ctrl-C between creating the file and knowing its name
            fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(base)[1] or ".tmp", dir=directory)
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        raise


@contextlib.contextmanager
def interrupts_deferred():
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the handlers in place before.

    For short critical sections only (a few system calls): a signal arriving inside is acted on when the
    block is done, so the block either completes or never starts. Outside the main thread (where Python
    cannot set signal handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {}
    try:
        for signum in _DEFERRED_SIGNALS:
            previous[signum] = signal.signal(signum, lambda received, _frame: pending.append(received))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if pending:
            signal.raise_signal(pending[0])  # runs the restored handler now (e.g. raises KeyboardInterrupt)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    """Atomically write ``data`` (bytes) to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path, text):
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))
