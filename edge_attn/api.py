"""The Python API: ``edge_attn.convert(model, ...)`` for a model in the user's own Python session.

Users mostly hold their model in a training script, not in a file. :func:`convert` runs the same
pipeline as ``edge-attn convert`` (the same output folder rules, the same files, the same report) on a
``tf_keras.Model`` the caller just trained, a saved model's path, or a registry name, and returns a
:class:`ConversionResult` instead of printing.
"""

import contextlib
import dataclasses
import os
import tempfile

import numpy as np

from edge_attn.errors import BadInput
from edge_attn.pipeline import DEFAULT_FLOAT_EPOCHS


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert` wrote and measured. ``report`` is ``report.json``'s content."""

    out_dir: str
    model_path: str
    reference_path: str
    report_path: str
    html_path: str
    report: dict

    @property
    def fully_int8(self) -> bool:
        return bool(self.report["fully_int8"])

    @property
    def accuracy(self) -> dict:
        """samples, reference/quantized top-1, drop (points), agreement, output SNR (dB), compared_on."""
        return self.report["accuracy"]

    def to_dict(self):
        return dataclasses.asdict(self)


def convert(model, *, data, out, recipe="int8-qat", epochs=None, float_epochs=DEFAULT_FLOAT_EPOCHS, threads=2,
            runs=50, seed=0, progress=False, force=False, trust_model_code=False):
    """Quantize and convert ``model`` per ``recipe``; write ``model.tflite``, ``reference.keras``,
    ``report.json`` and ``report.html`` to ``out``; return a :class:`ConversionResult`.

    ``model``: a ``tf_keras.Model`` (functional or Sequential; Keras 2 — tfmot cannot take Keras 3), a
    path to a saved Keras model, or a registry name (trained first for ``float_epochs``).
    ``data``: a data spec (``"digits"``, a ``.npz`` path, an image folder) or an ``(x, y)`` pair of arrays
    (``x`` shaped like the model input, ``y`` integer labels or one-hot rows), split 80/20 like a spec.
    ``out`` follows the command line's rules: a non-empty folder edge_attn did not create is refused
    unless ``force``. Bad input raises :class:`edge_attn.errors.BadInput`.
    """
    from edge_attn.outdir import claimed_out_dir
    from edge_attn.pipeline import run_convert

    with claimed_out_dir(out, force=force, command="edge_attn.convert(...)") as folder, _data_spec(data) as spec:
        report = run_convert(model, recipe, spec, folder, epochs=epochs, float_epochs=float_epochs,
                             threads=threads, runs=runs, seed=seed, progress=progress,
                             trust_model_code=trust_model_code)
    return ConversionResult(out_dir=folder, model_path=os.path.join(folder, "model.tflite"),
                            reference_path=os.path.join(folder, "reference.keras"),
                            report_path=os.path.join(folder, "report.json"),
                            html_path=os.path.join(folder, "report.html"), report=report)


@contextlib.contextmanager
def _data_spec(data):
    """A spec string as it is, or ``(x, y)`` arrays written to a temporary ``.npz`` the loader reads."""
    if isinstance(data, (str, os.PathLike)):
        yield os.fspath(data)
        return
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise BadInput("data", f"expected a data spec string or an (x, y) pair of arrays; Received: "
                               f"{type(data).__name__}")
    with tempfile.TemporaryDirectory(prefix="edge-attn-data-") as folder:
        path = os.path.join(folder, "data.npz")
        np.savez(path, x=np.asarray(data[0]), y=np.asarray(data[1]))
        yield path
