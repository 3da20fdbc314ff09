"""Output folders edge_attn may write into: a marker file claims them, so a user's own folder is never written over.

``edge-attn train|convert|bundle|demo --out DIR`` claims DIR before any work (before training starts):

* DIR missing, empty, or holding the marker ``DIR/.edge_attn`` → used; the marker is written if missing;
* DIR non-empty without the marker → refused (:class:`~edge_attn.errors.BadInput`, exit 2, nothing
  changed) unless ``force``: then edge_attn writes its marker and its own files into DIR, replacing only
  files of the same names and never deleting anything else;
* DIR an existing file → refused, with or without ``force``.

The marker is a small JSON file (tool version, the command that first claimed the folder). A claim that a
run then fails to use is undone: :func:`claimed_out_dir` removes the marker it wrote and the folder it
created when the failed run left nothing else there (a run that keeps checkpoints for ``--resume`` keeps
both).
"""

import contextlib
import json
import os

from edge_attn.version import __version__
from edge_attn.atomic import interrupts_deferred, write_text
from edge_attn.errors import BadInput

MARKER = ".edge_attn"


def claim_out_dir(path, *, force=False, command=None):
    """Make ``path`` an edge_attn output folder, or raise :class:`BadInput` without changing anything.

    Idempotent: a folder that already holds the marker is left as it is. ``command`` (e.g. the command
    line) is recorded in a marker this call writes. Returns True when this call wrote the marker.
    """
    what = os.fspath(path)
    folder = os.path.abspath(what)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise BadInput(what, "exists and is not a directory")
    marker = os.path.join(folder, MARKER)
    if os.path.isdir(folder):
        if os.path.lexists(marker):
            return False
        if not force and _names(folder):
            raise BadInput(what, "is not empty and was not created by edge_attn; pass --force to write into it")
    record = {"tool": "edge_attn", "version": __version__, "command": command}
    try:
        os.makedirs(folder, exist_ok=True)
        write_text(marker, json.dumps(record, indent=2) + "\n")
    except OSError as error:
        raise BadInput(what, f"cannot write there: {error.strerror or error}") from error
    return True


@contextlib.contextmanager
def claimed_out_dir(path, *, force=False, command=None):
    """:func:`claim_out_dir` for the length of a run; yields the folder's absolute path.

    When the run fails (any exception, Ctrl-C included) and left no file of its own in the folder, the
    claim is undone: the marker this claim wrote is removed, and the folder too if this claim created it.
    """
    folder = os.path.abspath(os.fspath(path))
    existed = os.path.lexists(folder)
    names_before = _names(folder) if os.path.isdir(folder) else set()
    had_marker = MARKER in names_before
    try:
        claim_out_dir(path, force=force, command=command)
        yield folder
    except BaseException:
        with interrupts_deferred():  # a second Ctrl-C must not leave the claim half undone
            _undo_claim(folder, existed, names_before, had_marker)
        raise


def _undo_claim(folder, existed, names_before, had_marker):
    if not os.path.isdir(folder) or _names(folder) - {MARKER} != names_before - {MARKER}:
        return  # the run left something (e.g. checkpoints to resume from): the folder stays edge_attn's
    if not had_marker:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, MARKER))
    if not existed and not _names(folder):
        os.rmdir(folder)


def _names(folder):
    return set(os.listdir(folder))
