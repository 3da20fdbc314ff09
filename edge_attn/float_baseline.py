"""The float baseline ``edge-attn bench --reference`` measures: a float .tflite, or a Keras model converted
to one for the run.

``edge-attn convert`` writes ``OUT/reference.keras`` beside ``OUT/model.tflite``; the latency baseline is
that model as float32 TFLite (the same conversion ``convert`` times its float latency with,
:func:`edge_attn.pipeline.float_tflite`). A Keras reference is converted in memory and written to a
temporary file only for the runners, which take paths (adb and ssh push the file); it is removed afterwards
and nothing is saved beside the user's files.
"""

import contextlib
import os
import tempfile

from edge_attn.filekind import is_keras_model


@contextlib.contextmanager
def tflite_baseline(reference):
    """Yield ``(path of a float .tflite or None, note or None)`` for ``reference`` (None, a .tflite path or a
    Keras model path). The note says when a Keras model was converted for this run."""
    if reference is None:
        yield None, None
        return
    reference = os.fspath(reference)
    if not is_keras_model(reference):
        yield reference, None  # the runners verify it as a .tflite and say what it is when it is not
        return
    from edge_attn.modelio import load_keras_model
    from edge_attn.pipeline import float_tflite

    flatbuffer = float_tflite(load_keras_model(reference))
    with tempfile.TemporaryDirectory(prefix="edge-attn-reference-") as folder:
        name = os.path.splitext(os.path.basename(reference.rstrip(os.sep)))[0] + "-f32.tflite"
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        yield path, (f"{reference} is a Keras model: converted to float32 TFLite ({len(flatbuffer) / 1024:.1f} KiB) "
                     "for this run, not saved")
