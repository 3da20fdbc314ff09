"""Data specs (``--data``): turn ``digits``, a ``.npz`` file or an image folder into streamed train/eval splits.

``load_data(spec, input_shape)`` returns a :class:`DataSet` whose ``x`` samples have exactly the model's
input shape (without the batch axis). The three specs, and what happens to their values:

``digits``
    scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: the UCI optdigits test set,
    1797 8×8 images with integer values 0..16, 10 classes; ships with scikit-learn, no download).
    Scaled by ``x / 16`` to [0, 1], resized bilinearly to the model's H×W (no resize when it already is
    8×8), the single channel repeated when the model wants 3. The default input shape is 16×16×1:
    upsampled ×2 so a CIFAR-style ResNet's two stride-2 stages end on a 4×4 map instead of 2×2.
``path/to/file.npz``
    arrays ``x`` and ``y``. ``x`` reaches the model exactly as stored (only cast to float32: a saved
    model carries its own preprocessing expectations), so its sample shape must equal the model's input
    shape; nothing is resized. ``x`` may be (N, H, W, C), (N, H, W) (a channel axis is added),
    (N, L, C) or (N, L) (for 1D models; a channel axis is added). Without an input shape a rank-3 ``x``
    is read as grayscale images (N, H, W); pass ``input_shape=(L, C)`` for sequences. ``y`` holds
    integer class ids 0..K-1 (a column (N, 1) or integral floats are accepted) or one-hot rows (N, K),
    converted with argmax.
``path/to/folder``
    one sub-folder of images per class (.png, .jpg, .jpeg, .bmp; class names = sub-folder names, sorted;
    hidden entries and other files are ignored; images are read with Pillow). Scaled by ``x / 255``
    (16-bit grayscale PNG: ``x / 65535``) to [0, 1], converted to the model's channel count (gray → RGB by
    repetition, RGB → gray by BT.601 luma; alpha is dropped) and resized bilinearly to its H×W. The
    default input shape is the first image's size, with 3 channels if any image is in colour, else 1.
``digits-glare``
    ``digits`` with a 2×2 highlight of value 64 in the top-left corner of every image: a wide-dynamic-range
    input where plain int8 measurably loses (:mod:`.glare`). Same default shape, scaling and split as ``digits``.
``digits`` and ``digits-glare`` always mean the built-in sets; write ``./digits`` for a folder of that name.

Resizing is ``tf.image.resize(method="bilinear", antialias=True)``: plain bilinear interpolation when
enlarging, a triangle filter over the footprint when shrinking (no aliasing from skipped pixels).

Samples are streamed, never all held in float32 at the model's input size: ``DataSet.x_train`` and
``x_eval`` are lazy :class:`~edge_attn.data.dataset.Samples` that decode, scale and resize a batch when it
is read (an uncompressed ``.npz`` is memory-mapped; a compressed one is held as stored). Memory therefore
grows with the batch, not with the data set. Data is checked before it is allocated: a ``.npz`` member's
header must not declare more bytes than the member holds (a header can claim any shape), every image of
a folder is decoded once up front (a damaged file fails at load, not mid-training), and a batch of
samples must fit in the memory available.

The train/eval split is stratified and seeded: within every class a ``round(eval_fraction * n)`` share
(at least 1, at most n - 1) goes to evaluation, so every class needs 2 samples or more; the same spec and
seed always give the same split. Training samples come in a seeded random order, evaluation samples in
the order of the source. What was done is recorded in ``DataSet.info`` (JSON-ready, for ``report.json``).

Every problem with the data raises :class:`edge_attn.errors.BadInput` naming the spec or the file.
Modules: :mod:`.dataset` (lazy samples, tf.data), :mod:`.images` (digits, image folders), :mod:`.npz`,
:mod:`.split` (the stratified split).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_attn.data._text import shape_text, size_text
from edge_attn.data.dataset import READ_BATCH, DataSet, Representative, Samples, Source
from edge_attn.data.glare import DIGITS_GLARE, digits_glare_source
from edge_attn.data.images import (DIGITS, DIGITS_INPUT_SHAPE, IMAGE_SUFFIXES, LUMA_WEIGHTS, digits_source,
                                   folder_default_shape, folder_source, scan_folder)
from edge_attn.data.npz import npz_sample_shape, npz_source, read_npz
from edge_attn.data.split import check_class_counts, stratified_split
from edge_attn.errors import BadInput

__all__ = ["load_data", "default_input_shape", "DataSet", "Samples", "Representative", "Source", "DIGITS",
           "DIGITS_GLARE", "BUILTIN", "DIGITS_INPUT_SHAPE", "IMAGE_SUFFIXES", "LUMA_WEIGHTS"]

BUILTIN = (DIGITS, DIGITS_GLARE)  # the built-in data sets, by name
_SPEC_HELP = "a data spec is 'digits' (or 'digits-glare'), a .npz file with arrays x and y, or a folder of class sub-folders of images"


def load_data(spec, input_shape: tuple | None = None, eval_fraction: float = 0.2, seed: int = 0) -> DataSet:
    """Load a data spec shaped for a model input ``input_shape`` (no batch axis; ``None`` entries and
    ``input_shape=None`` take the data's default, see :func:`default_input_shape`) and split it."""
    spec = str(spec)
    if not 0 < eval_fraction < 1:
        raise BadInput(f"eval_fraction={eval_fraction}", "must be between 0 and 1 (exclusive)")
    wanted = _model_shape(spec, input_shape)
    kind = _kind(spec)
    if kind == "digits":
        shape = _fill_unknown(wanted, DIGITS_INPUT_SHAPE)
        _require_batch_memory(spec, shape)
        source = digits_source(shape) if spec == DIGITS else digits_glare_source(shape)
    elif kind == "npz":
        source = npz_source(spec, wanted)
        _require_batch_memory(spec, source.sample_shape)
    else:
        files, class_names = scan_folder(spec)
        needs_default = wanted is None or None in wanted
        shape = _fill_unknown(wanted, folder_default_shape(files)) if needs_default else wanted
        if len(shape) == 3:
            _require_batch_memory(spec, shape)
        source = folder_source(spec, files, class_names, shape)
    labels, class_names = source.labels, source.class_names
    check_class_counts(spec, labels, class_names)
    train_index, eval_index = stratified_split(labels, len(class_names), eval_fraction, seed)
    info = {
        **source.info,
        "samples": len(labels),
        "classes": len(class_names),
        "class_names": list(class_names),  # bundles write them as labels.txt
        "input_shape": list(source.sample_shape),
        "split": {
            "method": "stratified per class, seeded",
            "eval_fraction": eval_fraction,
            "seed": seed,
            "train": len(train_index),
            "eval": len(eval_index),
        },
        "streaming": f"read per batch at the input shape (float32); nothing held beyond {_held(source)}",
    }
    labels = labels.astype(np.int32)
    return DataSet(
        x_train=Samples(source, train_index),
        y_train=_read_only(labels[train_index]),
        x_eval=Samples(source, eval_index),
        y_eval=_read_only(labels[eval_index]),
        num_classes=len(class_names),
        class_names=class_names,
        spec=spec,
        info=info,
    )


def default_input_shape(spec) -> tuple[int, ...]:
    """The input shape a model trained on ``spec`` gets by default: digits (and digits-glare) → (16, 16, 1); a .npz → its
    stored sample shape (plus a channel axis for (N, H, W) and (N, L)); a folder → the first image's
    H×W, with 3 channels if any image is in colour, else 1."""
    spec = str(spec)
    kind = _kind(spec)
    if kind == "digits":
        return DIGITS_INPUT_SHAPE
    if kind == "npz":
        x, _ = read_npz(spec)
        return npz_sample_shape(spec, x.shape, None)
    files, _ = scan_folder(spec)
    return folder_default_shape(files)


def _held(source):
    note = source.info.get("source", "")
    if note.startswith("npz"):
        return "the .npz (memory-mapped if stored uncompressed, else as stored)"
    if note.startswith("image folder"):
        return "the file list"
    return "the 8x8 originals"


def _kind(spec):
    if spec in BUILTIN:
        return "digits"
    if not spec.strip():  # Path("") is the current folder: never read it by accident
        raise BadInput(f"data spec {spec!r}", f"is empty; {_SPEC_HELP}")
    path = Path(spec)
    if path.is_dir():
        return "folder"
    if path.suffix.lower() == ".npz":
        if not path.exists():
            raise BadInput(spec, "file not found")
        return "npz"
    if path.exists():
        from edge_attn.filekind import describe  # "is a TFLite model, not a data set": what to pass instead

        kind = describe(spec)
        raise BadInput(spec, (f"is {kind}, not a data set" if kind else "unsupported data file") + f"; {_SPEC_HELP}")
    raise BadInput(spec, f"no such file or folder; {_SPEC_HELP}")


def _model_shape(spec, input_shape):
    """The model input shape as a tuple of positive ints or None (unknown), rank 2 or 3; or None."""
    if input_shape is None:
        return None
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise BadInput(spec, f"model input shape {input_shape!r} is not a tuple of sizes") from None
    if any(d is not None and d < 1 for d in shape):
        raise BadInput(spec, f"model input shape {shape_text(shape)} has a size below 1")
    if len(shape) not in (2, 3):
        raise BadInput(spec, f"wrong rank for the model input shape {shape_text(shape)}: expected (H, W, C) or (L, C)")
    return shape


def _fill_unknown(wanted, default):
    """``wanted`` with unknown (None) sizes taken from ``default``; ``default`` when nothing is wanted."""
    if wanted is None:
        return tuple(default)
    if len(wanted) != len(default):
        return wanted
    return tuple(d if w is None else w for w, d in zip(wanted, default))


def _require_batch_memory(spec, sample_shape):
    """Refuse, before anything is read, samples of which one read batch does not fit in the memory
    available (float32). No check where the available memory is unknown."""
    from edge_attn.resources import available_memory

    if any(d is None for d in sample_shape):
        return
    needed = READ_BATCH * math.prod(sample_shape) * np.dtype(np.float32).itemsize
    memory = available_memory()
    if memory and needed > memory:
        raise BadInput(spec, f"a batch of {READ_BATCH} samples of shape {shape_text(sample_shape)} needs "
                             f"{size_text(needed)} as float32, more than the {size_text(memory)} of memory available")


def _read_only(array):
    array.setflags(write=False)
    return array
