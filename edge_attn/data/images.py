"""Image sources: the built-in ``digits`` set and folders of class sub-folders, read and resized per batch.

Only small things stay in memory: digits' 8×8 originals (1797 × 64 floats) and a folder's file list.
Samples are scaled, converted to the model's channel count and resized when a batch is read.
"""

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge_attn.data._text import one_line, shape_text
from edge_attn.data.dataset import Source
from edge_attn.errors import BadInput

DIGITS = "digits"
DIGITS_INPUT_SHAPE = (16, 16, 1)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# ITU-R BT.601 luma weights, the ones tf.image.rgb_to_grayscale and Pillow's "L" conversion use.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
_GRAY_PIL_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")


# --- digits ------------------------------------------------------------------------------------------


def digits_source(shape) -> Source:
    """scikit-learn's digits at ``shape`` (H, W, 1 or 3): the 8×8 originals kept, resized per batch."""
    require_image_shape(DIGITS, shape)
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = digits.images.astype(np.float32)[..., np.newaxis] / np.float32(16.0)  # (1797, 8, 8, 1), 0..1
    raw.setflags(write=False)

    def read(indices):
        return match_channels(resize(raw[indices], shape[:2]), shape[2])

    info = {
        "source": "scikit-learn load_digits (UCI optdigits: 1797 8x8 images, values 0..16)",
        "scaling": "x / 16 -> [0, 1]",
        "resize": resize_note(raw.shape[1:3], shape[:2]),
        "channels": "gray repeated to 3 channels" if shape[2] == 3 else "1 (gray)",
        "labels": "class ids",
    }
    return Source(digits.target.astype(np.int64), tuple(str(name) for name in digits.target_names),
                  tuple(shape), read, info)


# --- image folders -----------------------------------------------------------------------------------


def scan_folder(spec):
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
            images = sorted((p for p in class_dir.iterdir() if _is_image_file(p)), key=lambda p: p.name)
            if not images:
                raise BadInput(class_dir, f"class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files += [(path, label) for path in images]
    except OSError as exc:
        raise BadInput(spec, f"cannot list folder ({one_line(exc)})") from exc
    return files, tuple(class_dir.name for class_dir in class_dirs)


def folder_default_shape(files):
    """First image's (H, W) and 3 channels if any image is in colour, else 1 (reads headers only)."""
    headers = _headers(files)
    width, height = headers[0][0]
    return (height, width, 3 if any(colour for _, colour in headers) else 1)


def folder_source(spec, files, class_names, shape) -> Source:
    """The images of ``files`` at ``shape``. Every image is decoded once here (and dropped) so a damaged
    file fails now, naming it, not in the middle of training; batches decode again when read."""
    require_image_shape(spec, shape)
    headers = _headers(files)
    for path, _ in files:
        _read_image(path)
    converted = sum((3 if colour else 1) != shape[2] for _, colour in headers)
    resized = sum((height, width) != tuple(shape[:2]) for (width, height), _ in headers)
    paths = [path for path, _ in files]

    def read(indices):
        batch = np.empty((len(indices), *shape), np.float32)
        groups = defaultdict(list)  # images of one size are resized in one call
        images = {}
        for position, index in enumerate(np.asarray(indices).reshape(-1)):
            image = match_channels(_read_image(paths[index]), shape[2])
            images[position] = image
            groups[image.shape[:2]].append(position)
        for positions in groups.values():
            batch[positions] = resize(np.stack([images[p] for p in positions]), shape[:2])
        return batch

    info = {
        "source": f"image folder {spec} ({len(class_names)} class sub-folders)",
        "scaling": "x / 255 -> [0, 1] (16-bit grayscale PNG: x / 65535)",
        "resize": f"bilinear (tf.image.resize, antialias) to {shape[0]}x{shape[1]}: {resized} of {len(files)} images",
        "channels": f"{shape[2]}: {converted} of {len(files)} images converted"
        + (" (gray repeated)" if shape[2] == 3 else " (BT.601 luma)"),
        "labels": "class = sub-folder name, sorted",
    }
    return Source(np.array([label for _, label in files], np.int64), class_names, tuple(shape), read, info)


def _is_image_file(path):
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")


def _headers(files):
    """[((width, height), is colour)] per file, from the image headers (pixels are not decoded)."""
    from PIL import Image

    headers = []
    for path, _ in files:
        try:
            with Image.open(path) as image:
                headers.append((image.size, image.mode not in _GRAY_PIL_MODES))
        except Exception as exc:  # Pillow raises many types for damaged files
            raise BadInput(path, f"cannot read image ({one_line(exc)})") from exc
    return headers


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
        raise BadInput(path, f"cannot read image ({one_line(exc)})") from exc
    return pixels.reshape(pixels.shape[:2] + (-1,))


# --- shared image operations ---------------------------------------------------------------------------


def require_image_shape(spec, shape):
    if len(shape) != 3:
        raise BadInput(spec, f"holds images; wrong rank for the model input shape {shape_text(shape)}, expected (H, W, C)")
    if shape[2] not in (1, 3):
        raise BadInput(spec, f"holds gray or RGB images; the model input {shape_text(shape)} wants {shape[2]} channels")


def match_channels(images, channels):
    """(..., 1 or 3) → (..., channels): gray repeated to RGB, RGB reduced to BT.601 luma."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    return (images @ LUMA_WEIGHTS)[..., np.newaxis]


def resize(images, size):
    """Bilinear resize of (N, h, w, C) to (N, *size, C); the input itself when the size matches."""
    if tuple(images.shape[1:3]) == tuple(size):
        return images
    if math.prod(images.shape) == 0:
        return np.zeros((images.shape[0], *size, images.shape[3]), np.float32)
    from edge_attn._keras import tf

    # antialias=True: identical to bilinear when enlarging; when shrinking it averages the footprint
    # instead of sampling two pixels and skipping the rest.
    return tf.image.resize(images, tuple(size), method="bilinear", antialias=True).numpy()


def resize_note(source, target):
    if tuple(source) == tuple(target):
        return "none"
    return f"bilinear {source[0]}x{source[1]} -> {target[0]}x{target[1]} (tf.image.resize, antialias)"
