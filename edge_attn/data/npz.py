"""``.npz`` sources: arrays ``x`` and ``y``, headers checked before anything is read, ``x`` read per batch.

An uncompressed member (``np.savez``) is memory-mapped: only the batches read are paged in, and cast
to float32 then. A compressed member (``np.savez_compressed``) cannot be mapped, so it is decompressed
into memory once, as stored (a uint8 set stays uint8: a quarter of its float32 size), and cast per batch.
"""

import math
import os
import struct
import zipfile

import numpy as np

from edge_attn.data._text import one_line, shape_text, size_text
from edge_attn.data.dataset import Source
from edge_attn.errors import BadInput

_CHECK_CHUNK_BYTES = 64 * 1024 * 1024  # stored bytes checked for NaN/Inf at a time


def npz_source(spec, wanted) -> Source:
    """The samples of a .npz shaped for the model input ``wanted`` (None: as stored)."""
    x, y = read_npz(spec)
    if x.ndim == 0 or len(x) == 0 or x.size == 0:
        raise BadInput(spec, f"x is empty (shape {x.shape})")
    if y.ndim == 0 or len(y) != len(x):
        raise BadInput(spec, f"x has {len(x)} samples but y has shape {y.shape}; expected {len(x)} labels")
    sample_shape = npz_sample_shape(spec, x.shape, wanted)
    _check_finite(spec, x)
    labels, num_classes, label_note = labels_from_y(spec, y)

    def read(indices):
        batch = np.asarray(x[indices])
        return batch.astype(np.float32).reshape((len(batch),) + sample_shape)

    info = {
        "source": f"npz {spec}",
        "scaling": "none (x as stored, cast to float32)",
        "resize": "none",
        "channels": "as stored" if len(sample_shape) == x.ndim - 1 else "channel axis added",
        "labels": label_note,
    }
    return Source(labels, tuple(str(i) for i in range(num_classes)), sample_shape, read, info)


def read_npz(spec):
    """Arrays x (memory-mapped where stored uncompressed) and y of a .npz (pickled objects refused), their
    headers checked before they are read."""
    try:
        empty = os.path.getsize(spec) == 0
        archive = None if empty else np.load(spec, allow_pickle=False)
    except OSError as exc:
        raise BadInput(spec, f"cannot read: {exc.strerror or one_line(exc)}") from exc
    except Exception as exc:  # a corrupt or foreign file fails in many ways (zip, zlib, pickle, EOF)
        raise BadInput(spec, f"cannot read as .npz ({one_line(exc)})") from exc
    if empty:
        raise BadInput(spec, "is empty (0 bytes); expected a .npz archive with arrays x and y")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadInput(spec, "is a single .npy array, not a .npz archive with arrays x and y")
    with archive:
        missing = [name for name in ("x", "y") if name not in archive.files]
        if missing:
            present = ", ".join(archive.files) or "nothing"
            raise BadInput(spec, f"array {' and '.join(missing)} missing (has: {present})")
        x_header = _declared_array(spec, archive, "x")
        _, y_dtype, _, _ = _declared_array(spec, archive, "y")
        x_shape, x_dtype, _, _ = x_header
        if x_dtype.kind not in "biuf":
            raise BadInput(spec, f"x has dtype {x_dtype}; expected numbers")
        if y_dtype.kind not in "iuf":
            raise BadInput(spec, f"y has dtype {y_dtype}; expected integer class ids or one-hot rows")
        try:
            x = _mapped(spec, archive, "x", x_header)
            if x is None:
                _require_memory_as_stored(spec, x_shape, x_dtype)
                x = archive["x"]
            return x, archive["y"]
        except BadInput:
            raise
        except Exception as exc:  # as above: damaged member data fails in many ways (zlib, EOF, CRC)
            raise BadInput(spec, f"cannot read arrays x, y ({one_line(exc)})") from exc


def _declared_array(spec, archive, name):
    """(shape, dtype, Fortran order, header bytes) that member ``name`` of an open .npz declares in its
    .npy header, refused when the header claims more bytes than the member holds: the header is read,
    nothing is allocated."""
    member = f"{name}.npy"
    try:
        with archive.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            # Version 3 differs from 2 only in allowing UTF-8 field names in structured dtypes.
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
            header_bytes = f.tell()
        stored = archive.zip.getinfo(member).file_size - header_bytes
    except Exception as exc:  # a damaged member fails in many ways (zip, zlib, header syntax)
        raise BadInput(spec, f"cannot read array {name} ({one_line(exc)})") from exc
    if dtype.hasobject:  # loading them would unpickle, i.e. run code from the file
        raise BadInput(spec, f"cannot read {name}: it holds pickled Python objects (dtype {dtype}); expected numbers")
    declared = math.prod(shape) * dtype.itemsize
    if declared > stored:
        raise BadInput(spec, f"{name} declares shape {tuple(shape)} of {dtype} ({size_text(declared)}) but holds "
                             f"{size_text(stored)}: the file is truncated or damaged")
    return tuple(shape), dtype, fortran_order, header_bytes


def _mapped(spec, archive, name, header):
    """Member ``name`` memory-mapped read-only when it is stored uncompressed and not empty, else None."""
    shape, dtype, fortran_order, header_bytes = header
    info = archive.zip.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or math.prod(shape) == 0:
        return None
    with open(spec, "rb") as f:  # the member's data starts after its local header (variable length)
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_length + extra_length + header_bytes
    return np.memmap(spec, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def _require_memory_as_stored(spec, shape, dtype):
    from edge_attn.resources import available_memory

    needed = math.prod(shape) * dtype.itemsize
    memory = available_memory()
    if memory and needed > memory:
        raise BadInput(spec, f"compressed x of shape {tuple(shape)} ({dtype}) needs {size_text(needed)} decompressed, "
                             f"more than the {size_text(memory)} of memory available; save it with np.savez "
                             "(uncompressed: read per batch)")


def _check_finite(spec, x):
    """NaN/Inf (as float32) anywhere in x, checked a chunk at a time."""
    per_sample = max(math.prod(x.shape[1:]) * x.dtype.itemsize, 1)
    chunk = max(1, _CHECK_CHUNK_BYTES // per_sample)
    for start in range(0, len(x), chunk):
        with np.errstate(over="ignore"):  # values beyond float32 become Inf, reported just below
            part = np.asarray(x[start:start + chunk]).astype(np.float32).reshape(min(chunk, len(x) - start), -1)
        finite = np.isfinite(part).all(axis=1)
        if not finite.all():
            raise BadInput(spec, f"x contains NaN or Inf (as float32), first in sample {start + int(np.argmin(finite))}")


def npz_sample_shape(spec, x_shape, wanted):
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
        raise BadInput(spec, f"x has shape {tuple(x_shape)}: wrong rank for the model input shape {shape_text(wanted)}")
    if any(w is not None and w != s for w, s in zip(wanted, sample)):
        raise BadInput(
            spec, f"x samples have shape {sample} but the model expects {shape_text(wanted)} (.npz arrays are not resized)"
        )
    return sample


def labels_from_y(spec, y):
    """(class ids, number of classes, how y was read) from integer ids or one-hot rows (y's dtype is
    checked by :func:`read_npz`)."""
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
