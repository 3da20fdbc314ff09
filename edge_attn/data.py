"""Data specs (``--data``): turn ``digits``, a ``.npz`` file or an image folder into train/eval arrays.

``load_data(spec, input_shape)`` returns a :class:`DataSet` whose ``x`` arrays have exactly the model's
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
``digits`` always means the built-in set; write ``./digits`` for a folder of that name.

Resizing is ``tf.image.resize(method="bilinear", antialias=True)``: plain bilinear interpolation when
enlarging, a triangle filter over the footprint when shrinking (no aliasing from skipped pixels).

Data is checked before it is allocated: a ``.npz`` member's header must not declare more bytes than the
member holds (a header can claim any shape), and the float32 samples must fit in this machine's memory
twice over (the whole set, then its train/eval split), for the data as stored or resized to the model.

The train/eval split is stratified and seeded: within every class a ``round(eval_fraction * n)`` share
(at least 1, at most n - 1) goes to evaluation, so every class needs 2 samples or more; the same spec and
seed always give the same split. Training samples come in a seeded random order, evaluation samples in
the order of the source. What was done is recorded in ``DataSet.info`` (JSON-ready, for ``report.json``).

Every problem with the data raises :class:`edge_attn.errors.BadInput` naming the spec or the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_attn.errors import BadInput

DIGITS = "digits"
DIGITS_INPUT_SHAPE = (16, 16, 1)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# ITU-R BT.601 luma weights, the ones tf.image.rgb_to_grayscale and Pillow's "L" conversion use.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
_GRAY_PIL_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")
_SPEC_HELP = "a data spec is 'digits', a .npz file with arrays x and y, or a folder of class sub-folders of images"


@dataclasses.dataclass(frozen=True, eq=False)
class DataSet:
    """A data set shaped for one model input and split into train and eval.

    ``x_*`` are read-only float32 arrays (N, *input_shape); ``y_*`` read-only int32 class ids
    0..num_classes-1. ``info`` says where the data came from and what was done to it (source, scaling,
    resize, channels, labels, split).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    spec: str
    info: dict

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model input shape the samples have, without the batch axis."""
        return tuple(self.x_train.shape[1:])

    def train_dataset(self, batch_size: int, shuffle: bool = True, seed: int = 0):
        """(x, y) batches of the training split, reshuffled every epoch (seeded) unless ``shuffle=False``."""
        from edge_attn._keras import tf

        dataset = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        if shuffle:
            dataset = dataset.shuffle(len(self.y_train), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(_positive_int("batch_size", batch_size)).prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, batch_size: int):
        """(x, y) batches of the evaluation split, in order."""
        from edge_attn._keras import tf

        dataset = tf.data.Dataset.from_tensor_slices((self.x_eval, self.y_eval))
        return dataset.batch(_positive_int("batch_size", batch_size)).prefetch(tf.data.AUTOTUNE)

    def representative(self, n: int) -> list[np.ndarray]:
        """Up to ``n`` training samples as float32 batches of one, shape (1, *input_shape).

        For TFLite calibration: ``converter.representative_dataset = lambda: ([s] for s in ds.representative(n))``.
        The training split is in seeded random order, so the first ``n`` are a random, class-mixed sample.
        """
        count = min(_positive_int("n", n), len(self.x_train))
        return [self.x_train[i : i + 1] for i in range(count)]


def load_data(spec, input_shape: tuple | None = None, eval_fraction: float = 0.2, seed: int = 0) -> DataSet:
    """Load a data spec shaped for a model input ``input_shape`` (no batch axis; ``None`` entries and
    ``input_shape=None`` take the data's default, see :func:`default_input_shape`) and split it."""
    spec = str(spec)
    if not 0 < eval_fraction < 1:
        raise BadInput(f"eval_fraction={eval_fraction}", "must be between 0 and 1 (exclusive)")
    wanted = _model_shape(spec, input_shape)
    kind = _kind(spec)
    if kind == "digits":
        x, labels, class_names, info = _load_digits(wanted)
    elif kind == "npz":
        x, labels, class_names, info = _load_npz(spec, wanted)
    else:
        x, labels, class_names, info = _load_folder(spec, wanted)
    _check_class_counts(spec, labels, class_names)
    train_index, eval_index = _stratified_split(labels, len(class_names), eval_fraction, seed)
    info = {
        **info,
        "samples": len(labels),
        "classes": len(class_names),
        "class_names": list(class_names),  # bundles write them as labels.txt
        "input_shape": list(x.shape[1:]),
        "split": {
            "method": "stratified per class, seeded",
            "eval_fraction": eval_fraction,
            "seed": seed,
            "train": len(train_index),
            "eval": len(eval_index),
        },
    }
    labels = labels.astype(np.int32)
    return DataSet(
        x_train=_read_only(x[train_index]),
        y_train=_read_only(labels[train_index]),
        x_eval=_read_only(x[eval_index]),
        y_eval=_read_only(labels[eval_index]),
        num_classes=len(class_names),
        class_names=class_names,
        spec=spec,
        info=info,
    )


def default_input_shape(spec) -> tuple[int, ...]:
    """The input shape a model trained on ``spec`` gets by default: digits → (16, 16, 1); a .npz → its
    stored sample shape (plus a channel axis for (N, H, W) and (N, L)); a folder → the first image's
    H×W, with 3 channels if any image is in colour, else 1."""
    spec = str(spec)
    kind = _kind(spec)
    if kind == "digits":
        return DIGITS_INPUT_SHAPE
    if kind == "npz":
        x, _ = _read_npz(spec)
        return _npz_sample_shape(spec, x.shape, None)
    files, _ = _scan_folder(spec)
    return _folder_default_shape(files)


# --- the three sources -------------------------------------------------------------------------------


def _load_digits(wanted):
    shape = _fill_unknown(wanted, DIGITS_INPUT_SHAPE)
    _require_image_shape(DIGITS, shape)
    from sklearn.datasets import load_digits

    digits = load_digits()
    _require_memory(DIGITS, len(digits.images), shape)
    raw = digits.images.astype(np.float32)[..., np.newaxis]  # (1797, 8, 8, 1), integers 0..16
    x = _match_channels(_resize(raw / 16.0, shape[:2]), shape[2])
    info = {
        "source": "scikit-learn load_digits (UCI optdigits: 1797 8x8 images, values 0..16)",
        "scaling": "x / 16 -> [0, 1]",
        "resize": _resize_note(raw.shape[1:3], shape[:2]),
        "channels": "gray repeated to 3 channels" if shape[2] == 3 else "1 (gray)",
        "labels": "class ids",
    }
    return x, digits.target.astype(np.int64), tuple(str(name) for name in digits.target_names), info


def _load_npz(spec, wanted):
    x, y = _read_npz(spec)
    if x.ndim == 0 or len(x) == 0 or x.size == 0:
        raise BadInput(spec, f"x is empty (shape {x.shape})")
    if y.ndim == 0 or len(y) != len(x):
        raise BadInput(spec, f"x has {len(x)} samples but y has shape {y.shape}; expected {len(x)} labels")
    x_shape = x.shape
    sample_shape = _npz_sample_shape(spec, x_shape, wanted)
    with np.errstate(over="ignore"):  # values beyond float32 become Inf, reported just below
        x = x.astype(np.float32).reshape((len(x),) + sample_shape)
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        raise BadInput(spec, f"x contains NaN or Inf (as float32), first in sample {int(np.argmin(finite))}")
    labels, num_classes, label_note = _labels_from_y(spec, y)
    info = {
        "source": f"npz {spec}",
        "scaling": "none (x as stored, cast to float32)",
        "resize": "none",
        "channels": "as stored" if x.ndim == len(x_shape) else "channel axis added",
        "labels": label_note,
    }
    return x, labels, tuple(str(i) for i in range(num_classes)), info


def _load_folder(spec, wanted):
    files, class_names = _scan_folder(spec)
    needs_default = wanted is None or None in wanted
    shape = _fill_unknown(wanted, _folder_default_shape(files)) if needs_default else wanted
    _require_image_shape(spec, shape)
    _require_memory(spec, len(files), shape)
    images = [_read_image(path) for path, _ in files]
    converted = sum(image.shape[-1] != shape[2] for image in images)
    resized = sum(image.shape[:2] != tuple(shape[:2]) for image in images)
    x = _resize_each([_match_channels(image, shape[2]) for image in images], shape[:2])
    info = {
        "source": f"image folder {spec} ({len(class_names)} class sub-folders)",
        "scaling": "x / 255 -> [0, 1] (16-bit grayscale PNG: x / 65535)",
        "resize": f"bilinear (tf.image.resize, antialias) to {shape[0]}x{shape[1]}: {resized} of {len(images)} images",
        "channels": f"{shape[2]}: {converted} of {len(images)} images converted"
        + (" (gray repeated)" if shape[2] == 3 else " (BT.601 luma)"),
        "labels": "class = sub-folder name, sorted",
    }
    return x, np.array([label for _, label in files], np.int64), class_names, info


# --- npz ---------------------------------------------------------------------------------------------


def _read_npz(spec):
    """Arrays x and y of a .npz (pickled objects refused), their headers checked before they are read."""
    try:
        empty = os.path.getsize(spec) == 0
        archive = None if empty else np.load(spec, allow_pickle=False)
    except OSError as exc:
        raise BadInput(spec, f"cannot read: {exc.strerror or _one_line(exc)}") from exc
    except Exception as exc:  # a corrupt or foreign file fails in many ways (zip, zlib, pickle, EOF)
        raise BadInput(spec, f"cannot read as .npz ({_one_line(exc)})") from exc
    if empty:
        raise BadInput(spec, "is empty (0 bytes); expected a .npz archive with arrays x and y")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadInput(spec, "is a single .npy array, not a .npz archive with arrays x and y")
    with archive:
        missing = [name for name in ("x", "y") if name not in archive.files]
        if missing:
            present = ", ".join(archive.files) or "nothing"
            raise BadInput(spec, f"array {' and '.join(missing)} missing (has: {present})")
        x_shape, x_dtype = _declared_array(spec, archive, "x")
        _, y_dtype = _declared_array(spec, archive, "y")
        if x_dtype.kind not in "biuf":
            raise BadInput(spec, f"x has dtype {x_dtype}; expected numbers")
        if y_dtype.kind not in "iuf":
            raise BadInput(spec, f"y has dtype {y_dtype}; expected integer class ids or one-hot rows")
        if x_shape:
            _require_memory(spec, x_shape[0], x_shape[1:])
        try:
            return archive["x"], archive["y"]
        except Exception as exc:  # as above: damaged member data fails in many ways (zlib, EOF, CRC)
            raise BadInput(spec, f"cannot read arrays x, y ({_one_line(exc)})") from exc


def _declared_array(spec, archive, name):
    """(shape, dtype) that member ``name`` of an open .npz declares in its .npy header, refused when the
    header claims more bytes than the member holds: the header is read, nothing is allocated."""
    member = f"{name}.npy"
    try:
        with archive.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            # Version 3 differs from 2 only in allowing UTF-8 field names in structured dtypes.
            if version == (1, 0):
                shape, _fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
            header_bytes = f.tell()
        stored = archive.zip.getinfo(member).file_size - header_bytes
    except Exception as exc:  # a damaged member fails in many ways (zip, zlib, header syntax)
        raise BadInput(spec, f"cannot read array {name} ({_one_line(exc)})") from exc
    if dtype.hasobject:  # loading them would unpickle, i.e. run code from the file
        raise BadInput(spec, f"cannot read {name}: it holds pickled Python objects (dtype {dtype}); expected numbers")
    declared = math.prod(shape) * dtype.itemsize
    if declared > stored:
        raise BadInput(spec, f"{name} declares shape {tuple(shape)} of {dtype} ({_size(declared)}) but holds "
                             f"{_size(stored)}: the file is truncated or damaged")
    return tuple(shape), dtype


def _npz_sample_shape(spec, x_shape, wanted):
    """The model-side sample shape of an x stored as ``x_shape``; a channel axis is added to (N, H, W)
    and (N, L). Without ``wanted`` a rank-3 x is taken as (N, H, W) images."""
    stored = tuple(int(d) for d in x_shape[1:])
    if len(stored) not in (1, 2, 3):
        raise BadInput(spec, f"x has shape {tuple(x_shape)}; expected (N, H, W, C), (N, H, W), (N, L, C) or (N, L)")
    if wanted is None:
        return stored + (1,) if len(stored) < 3 else stored
    if len(stored) == len(wanted):
        sample = stored
    elif len(stored) + 1 == len(wanted):
        sample = stored + (1,)
    else:
        raise BadInput(spec, f"x has shape {tuple(x_shape)}: wrong rank for the model input shape {_show(wanted)}")
    if any(w is not None and w != s for w, s in zip(wanted, sample)):
        raise BadInput(
            spec, f"x samples have shape {sample} but the model expects {_show(wanted)} (.npz arrays are not resized)"
        )
    return sample


def _labels_from_y(spec, y):
    """(class ids, number of classes, how y was read) from integer ids or one-hot rows (y's dtype is
    checked by :func:`_read_npz`)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column of class ids
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise BadInput(spec, "y contains NaN or Inf; expected integer class ids")
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise BadInput(spec, f"y has shape {y.shape} but is not one-hot (each row one 1, the rest 0)")
        return y.argmax(axis=1).astype(np.int64), y.shape[1], f"one-hot ({y.shape[1]} columns) -> argmax"
    if y.ndim != 1:
        raise BadInput(spec, f"y has shape {y.shape}; expected (N,) class ids or (N, K) one-hot rows")
    if (y != np.round(y)).any():
        raise BadInput(spec, f"y has non-integer labels (e.g. {y[y != np.round(y)][0]}); expected class ids 0..K-1")
    if y.min() < 0:
        raise BadInput(spec, f"y has negative labels (min {y.min()}); expected class ids 0..K-1")
    if y.max() >= len(y):  # more classes than samples: some class has none (and bincount would blow up)
        raise BadInput(spec, f"label {y.max()} is out of range for {len(y)} samples; expected class ids 0..K-1")
    return y.astype(np.int64), int(y.max()) + 1, "class ids"


# --- image folders -----------------------------------------------------------------------------------


def _scan_folder(spec):
    """[(image path, class id)] and the class names (sorted sub-folder names)."""
    root = Path(spec)
    try:
        entries = [entry for entry in root.iterdir() if not entry.name.startswith(".")]
        class_dirs = sorted((entry for entry in entries if entry.is_dir()), key=lambda entry: entry.name)
        if not class_dirs:
            what = "is empty" if not entries else "has no class sub-folders"
            raise BadInput(spec, f"folder {what}; expected one sub-folder of images per class")
        files = []
        for label, class_dir in enumerate(class_dirs):
            images = sorted(
                (p for p in class_dir.iterdir() if _is_image_file(p)),
                key=lambda p: p.name,
            )
            if not images:
                raise BadInput(class_dir, f"class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files += [(path, label) for path in images]
    except OSError as exc:
        raise BadInput(spec, f"cannot list folder ({_one_line(exc)})") from exc
    return files, tuple(class_dir.name for class_dir in class_dirs)


def _is_image_file(path):
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def _folder_default_shape(files):
    """First image's (H, W) and 3 channels if any image is in colour, else 1 (reads headers only)."""
    from PIL import Image

    sizes, colour = [], False
    for path, _ in files:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
                colour = colour or image.mode not in _GRAY_PIL_MODES
        except Exception as exc:  # Pillow raises many types for damaged files
            raise BadInput(path, f"cannot read image ({_one_line(exc)})") from exc
    width, height = sizes[0]
    return (height, width, 3 if colour else 1)


def _read_image(path):
    """An image as float32 (h, w, 1 or 3) in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode.startswith("I"):  # 16-bit grayscale PNG
                pixels = np.asarray(image, np.float32) / 65535.0
            elif image.mode in _GRAY_PIL_MODES:
                pixels = np.asarray(image.convert("L"), np.float32) / 255.0
            else:
                pixels = np.asarray(image.convert("RGB"), np.float32) / 255.0
    except Exception as exc:  # Pillow raises many types for damaged files
        raise BadInput(path, f"cannot read image ({_one_line(exc)})") from exc
    return pixels.reshape(pixels.shape[:2] + (-1,))


def _resize_each(images, size):
    """Stack images of possibly different sizes, resizing each size group in one call."""
    stacked = np.empty((len(images), *size, images[0].shape[-1]), np.float32)
    groups = defaultdict(list)
    for index, image in enumerate(images):
        groups[image.shape[:2]].append(index)
    for indices in groups.values():
        stacked[indices] = _resize(np.stack([images[i] for i in indices]), size)
    return stacked


# --- shared helpers ----------------------------------------------------------------------------------


def _kind(spec):
    if spec == DIGITS:
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
        raise BadInput(spec, f"model input shape {_show(shape)} has a size below 1")
    if len(shape) not in (2, 3):
        raise BadInput(spec, f"wrong rank for the model input shape {_show(shape)}: expected (H, W, C) or (L, C)")
    return shape


def _fill_unknown(wanted, default):
    """``wanted`` with unknown (None) sizes taken from ``default``; ``default`` when nothing is wanted."""
    if wanted is None:
        return tuple(default)
    if len(wanted) != len(default):
        return wanted
    return tuple(d if w is None else w for w, d in zip(wanted, default))


def _require_image_shape(spec, shape):
    if len(shape) != 3:
        raise BadInput(spec, f"holds images; wrong rank for the model input shape {_show(shape)}, expected (H, W, C)")
    if shape[2] not in (1, 3):
        raise BadInput(spec, f"holds gray or RGB images; the model input {_show(shape)} wants {shape[2]} channels")


def _match_channels(images, channels):
    """(..., 1 or 3) → (..., channels): gray repeated to RGB, RGB reduced to BT.601 luma."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    return (images @ LUMA_WEIGHTS)[..., np.newaxis]


def _resize(images, size):
    """Bilinear resize of (N, h, w, C) to (N, *size, C); the input itself when the size matches."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    from edge_attn._keras import tf

    # antialias=True: identical to bilinear when enlarging; when shrinking it averages the footprint
    # instead of sampling two pixels and skipping the rest.
    return tf.image.resize(images, tuple(size), method="bilinear", antialias=True).numpy()


def _resize_note(source, target):
    if tuple(source) == tuple(target):
        return "none"
    return f"bilinear {source[0]}x{source[1]} -> {target[0]}x{target[1]} (tf.image.resize, antialias)"


def _check_class_counts(spec, labels, class_names):
    """Every class needs one training and one evaluation sample, and there must be 2 classes or more."""
    counts = np.bincount(labels, minlength=len(class_names))
    if len(class_names) < 2 or np.count_nonzero(counts) < 2:
        raise BadInput(spec, f"needs at least 2 classes, found {np.count_nonzero(counts)}")
    empty = [class_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise BadInput(spec, f"labels skip class ids {', '.join(empty)}; expected ids 0..K-1 with samples of each")
    single = [class_names[c] for c in np.flatnonzero(counts == 1)]
    if single:
        raise BadInput(
            spec,
            f"class {', '.join(single)} has only 1 sample; every class needs 2 or more (one to train, one to evaluate)",
        )


def _stratified_split(labels, num_classes, eval_fraction, seed):
    """Train indices (seeded random order) and eval indices (source order), stratified by class."""
    rng = np.random.default_rng(seed)
    train, evaluate = [], []
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_eval = min(max(int(eval_fraction * len(members) + 0.5), 1), len(members) - 1)
        evaluate.append(members[:n_eval])
        train.append(members[n_eval:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(evaluate))


def _require_memory(spec, samples, sample_shape):
    """Refuse, before allocating, a data set whose float32 samples do not fit in memory twice (the whole
    set and its train/eval split exist side by side). No check where the memory size is unknown."""
    needed = 2 * samples * math.prod(sample_shape) * np.dtype(np.float32).itemsize
    memory = _physical_memory()
    if memory and needed > memory:
        raise BadInput(spec, f"{samples} samples of shape {_show(sample_shape)} need {_size(needed)} as float32 "
                             f"(twice: the set and its split), more than this machine's {_size(memory)} of memory")


def _physical_memory():
    """Bytes of physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _size(nbytes):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def _read_only(array):
    array.setflags(write=False)
    return array


def _positive_int(name, value):
    if int(value) < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _show(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _one_line(exc):
    return " ".join(f"{type(exc).__name__}: {exc}".split())
