"""Resumable ``convert`` runs: ``OUT/checkpoints`` holds what an interrupted run needs to continue.

    OUT/checkpoints/fingerprint.json         what the run is: model, recipe, data, seed, epochs, input shape
    OUT/checkpoints/float/reference.keras    the trained float reference (registry models), + training.json
    OUT/checkpoints/qat/                     tf.train.CheckpointManager: QAT model, optimizer, loop state

``--resume`` continues from them when the fingerprint matches (else ``BadInput`` naming ``--resume``):
float training is skipped when its reference is there, QAT continues after the last finished epoch.
A run that finishes removes the folder. A run without ``--resume`` starts over: when it saves its first
checkpoint (not before, so a run that fails early changes nothing) it replaces an earlier run's folder.

Nothing here is ever half-written when it is read. ``fingerprint.json``, ``training.json`` and
``reference.keras`` are written to a temporary file and renamed. A QAT checkpoint is found through the
manager's ``checkpoint`` state file, which TensorFlow 2.21 rewrites only after the checkpoint's data
and ``.index`` are complete (``CheckpointManager.save`` → ``Checkpoint._write`` → the saver writes the
shards to ``<prefix>_temp/`` and ``MergeV2Checkpoints`` produces ``<prefix>.index`` → only then the
write callback ``_record_and_sweep_state`` → ``update_checkpoint_state_internal`` →
``file_io.atomic_write_string_to_file``: temp file + rename; older checkpoints are deleted after that).
A kill at any point leaves the state file naming the previous complete checkpoint.

Multi-worker (:mod:`edge_attn.distribute`): only the chief writes here. Every worker still calls
``save``, because reading distributed variables for a checkpoint can involve collective ops all
workers must join; the others save into a private temporary folder and delete it (the pattern of
TensorFlow's multi-worker custom-training-loop tutorial). Resuming a multi-worker run needs ``--out`` on
storage every worker can read.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile

from edge_attn.atomic import atomic_path, interrupts_deferred, write_text
from edge_attn.errors import BadInput

FOLDER = "checkpoints"
FINGERPRINT = "fingerprint.json"


def fingerprint(*, model, recipe, data, seed, epochs, input_shape, float_epochs=None):
    """The settings a run's checkpoints depend on, JSON-ready. Files are identified by content (sha256)."""
    return {"model": _identify(model), "recipe": recipe.to_dict(), "data": _identify(data), "seed": seed,
            "epochs": epochs, "input_shape": list(input_shape) if input_shape else None,
            "float_epochs": float_epochs}


def _identify(spec):
    if not os.path.isfile(spec):
        return os.path.abspath(spec) if os.path.exists(spec) else spec
    digest = hashlib.sha256()
    with open(spec, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": os.path.abspath(spec), "sha256": digest.hexdigest()}


class RunCheckpoints:
    """``OUT/checkpoints`` of one run. Use :meth:`open`; only the chief (``chief=True``) writes."""

    def __init__(self, directory, settings, *, resume, chief):
        self.directory = directory
        self.settings = settings
        self.resume = resume
        self.chief = chief
        self._started = resume  # a resumed run's folder is already this run's

    @classmethod
    def open(cls, out_dir, settings, *, resume=False, chief=True):
        """Check (``resume``) or start (otherwise) the checkpoints of a run with ``settings`` (a fingerprint)."""
        directory = os.path.join(os.path.abspath(out_dir), FOLDER)
        run = cls(directory, settings, resume=resume, chief=chief)
        path = os.path.join(directory, FINGERPRINT)
        if resume:
            try:
                with open(path, encoding="utf-8") as f:
                    stored = json.load(f)
            except (OSError, ValueError):
                where = "" if chief else " (with multi-worker, --out must be on storage every worker can read)"
                raise BadInput("--resume", f"no checkpoints to resume from in {directory}{where}") from None
            changed = _differences(stored, json.loads(json.dumps(settings)))
            if changed:
                raise BadInput("--resume", f"the checkpoints in {directory} are from a run with other settings "
                                           f"({'; '.join(changed)}); run without --resume to start over")
            if run.float_reference_path() is None and run.latest_qat_checkpoint() is None:
                raise BadInput("--resume", f"{directory} has no checkpoint yet (the run stopped before float "
                                           "training or the first QAT epoch ended); run without --resume")
        elif chief and os.path.exists(directory) and not os.path.isfile(path):
            # Checked before any work: an earlier run's folder is replaced, but never one that is not ours
            # (an --out given with --force may hold the user's own "checkpoints").
            raise BadInput(directory, "exists and is not an edge_attn checkpoints folder (no fingerprint.json); "
                                      "move it or choose another --out")
        return run

    def _start(self):
        """Make the folder this run's (chief, fresh run, once): drop an earlier run's, write the fingerprint."""
        if self._started or not self.chief:
            return
        with interrupts_deferred():  # never half of an earlier run's folder, or one without its fingerprint
            if os.path.exists(self.directory):
                print(f"discarding the checkpoints of an earlier run in {self.directory} (--resume continues them)",
                      file=sys.stderr)
                shutil.rmtree(self.directory)
            try:
                write_text(os.path.join(self.directory, FINGERPRINT),
                           json.dumps(self.settings, indent=2, sort_keys=True))
            except OSError as error:
                raise BadInput(self.directory, f"cannot write checkpoints there: {error.strerror}") from None
        self._started = True

    @property
    def qat_directory(self):
        return os.path.join(self.directory, "qat")

    def training_directory(self):
        """Where QAT saves its checkpoints (:attr:`qat_directory`); starts this run's checkpoints first."""
        self._start()
        return self.qat_directory

    def latest_qat_checkpoint(self):
        from edge_attn._keras import tf

        return tf.train.latest_checkpoint(self.qat_directory) if os.path.isdir(self.qat_directory) else None

    def float_reference_path(self):
        """The saved float reference when resuming and it is complete, else None."""
        path = os.path.join(self.directory, "float", "reference.keras")
        complete = os.path.isfile(path) and os.path.isfile(os.path.join(self.directory, "float", "training.json"))
        return path if self.resume and complete else None

    def load_float_reference(self):
        """(model, float training history) from a previous run's checkpoint, or None."""
        path = self.float_reference_path()
        if path is None:
            return None
        from edge_attn.modelio import load_keras_model

        with open(os.path.join(os.path.dirname(path), "training.json"), encoding="utf-8") as f:
            history = json.load(f)
        return load_keras_model(path), history

    def save_float_reference(self, model, history):
        """Keep the trained float reference so a resumed run skips float training (chief only)."""
        if not self.chief:
            return
        self._start()
        folder = os.path.join(self.directory, "float")
        write_text(os.path.join(folder, "training.json"), json.dumps(history))
        with atomic_path(os.path.join(folder, "reference.keras")) as tmp:  # written last: marks completeness
            model.save(tmp)

    def finish(self):
        """The run is complete: nothing is left to resume (chief only)."""
        if self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)


def _differences(stored, current):
    changed = []
    for key in sorted(set(stored) | set(current)):
        before, now = stored.get(key), current.get(key)
        if before != now:
            if isinstance(before, dict) and isinstance(now, dict):
                keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                changed.append(f"{key}: {', '.join(keys)} changed")
            else:
                changed.append(f"{key}: {before!r} then, {now!r} now")
    return changed


class TrainingCheckpoints:
    """Per-epoch checkpoints of ``checkpoint`` (a ``tf.train.Checkpoint``) in ``directory``; the latest is kept.

    The chief saves into ``directory``; other workers save into a temporary folder that is deleted at once.
    """

    def __init__(self, checkpoint, directory, *, chief=True):
        self.checkpoint = checkpoint
        self.directory = directory
        self.chief = chief
        self._manager = None

    def restore(self):
        """Restore the latest checkpoint in ``directory``; return False when there is none."""
        from edge_attn._keras import tf

        latest = tf.train.latest_checkpoint(self.directory) if os.path.isdir(self.directory) else None
        if latest is None:
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return True

    def save(self):
        """Save a checkpoint; Ctrl-C/SIGTERM wait for it (an interrupted save would leave its ``*_temp`` shards)."""
        with interrupts_deferred():
            self._save()

    def _save(self):
        from edge_attn._keras import tf

        if self.chief:
            if self._manager is None:
                os.makedirs(self.directory, exist_ok=True)
                self._manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=1)
            self._manager.save()  # its state file is rewritten last, atomically (see the module docstring)
            return
        scratch = tempfile.mkdtemp(prefix="edge-attn-worker-checkpoint-")
        try:
            tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
