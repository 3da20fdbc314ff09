"""A data set as the model sees it, read lazily: samples are decoded and resized per batch, on access.

A :class:`Source` knows its labels and how to read any samples (by index) at the model's input shape;
:class:`Samples` is one split of it that looks like a read-only float32 array — ``len``, ``shape``,
indexing and slicing return real arrays — but holds only indices, so the whole set never exists in
float32 at the model's input size (a 224×224×3 copy of 2,000 images is 1.2 GB; one batch of 32 is 19 MB).
``DataSet.train_dataset``/``eval_dataset`` stream batches through ``tf.data``; ``representative`` yields
calibration samples one at a time, read in small batches.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

READ_BATCH = 32  # samples decoded at a time where the caller does not choose (iteration, representative)


@dataclasses.dataclass(frozen=True)
class Source:
    """Samples of one data spec: ``read(indices)`` returns float32 ``(len(indices), *sample_shape)``."""

    labels: np.ndarray  # int64 class ids, one per sample
    class_names: tuple[str, ...]
    sample_shape: tuple[int, ...]
    read: Callable[[np.ndarray], np.ndarray]
    info: dict


class Samples:
    """The samples of one split, read on access: a lazy, read-only float32 array of shape (N, *sample_shape).

    ``samples[i]`` is one sample, ``samples[a:b]``, ``samples[[i, j]]`` and boolean masks are batches
    (NumPy arrays, freshly read), ``samples[a:b, ..., 0]`` indexes further into the batch read.
    ``np.asarray(samples)`` reads everything: fine for small sets, what streaming code avoids —
    iterate ``batches(n)`` instead.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, source: Source, indices: np.ndarray):
        self._source = source
        self._indices = np.asarray(indices, np.int64)
        self._indices.setflags(write=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._indices), *self._source.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(key, type(Ellipsis)):
            key, rest = slice(None), (Ellipsis, *rest)
        if isinstance(key, (int, np.integer)):
            index = self._indices[key]  # IndexError for out-of-range, negative counts from the end
            batch = self._source.read(np.array([index]))[0]
        else:
            batch = self._source.read(self._indices[key])
        if rest:
            batch = batch[rest] if isinstance(key, (int, np.integer)) else batch[(slice(None), *rest)]
        batch.setflags(write=False)
        return batch

    def concat(self, other: "Samples") -> "Samples":
        """These samples then ``other``'s (of the same source), still lazy."""
        if other._source is not self._source:
            raise ValueError("can only join samples of one data set")
        return Samples(self._source, np.concatenate([self._indices, other._indices]))

    def head(self, count: int) -> "Samples":
        """The first ``count`` samples, still lazy (nothing is read)."""
        return Samples(self._source, self._indices[:max(int(count), 0)])

    def batches(self, batch_size: int = READ_BATCH):
        """Consecutive read-only batches of at most ``batch_size`` samples, in order."""
        batch_size = _positive_int("batch_size", batch_size)
        for start in range(0, len(self), batch_size):
            yield self[start:start + batch_size]

    def __iter__(self):
        for batch in self.batches():
            yield from batch

    def __array__(self, dtype=None, copy=None):
        everything = self[:]
        return everything if dtype is None else everything.astype(dtype)

    def __repr__(self):
        return f"Samples(shape={self.shape}, dtype=float32, read on access)"


class Representative:
    """Re-iterable calibration samples: each iteration yields the first ``count`` training samples again
    as float32 batches of one, shape (1, *input_shape), read ``READ_BATCH`` at a time."""

    def __init__(self, samples: Samples, count: int):
        self._samples = samples
        self._count = count

    def __len__(self):
        return self._count

    def __getitem__(self, index):
        if not -self._count <= index < self._count:
            raise IndexError(f"representative sample {index} of {self._count}")
        index %= self._count
        return self._samples[index:index + 1]

    def __iter__(self):
        for batch in self._batches():
            for i in range(len(batch)):
                yield batch[i:i + 1]

    def _batches(self):
        for start in range(0, self._count, READ_BATCH):
            yield self._samples[start:min(start + READ_BATCH, self._count)]


@dataclasses.dataclass(frozen=True, eq=False)
class DataSet:
    """A data set shaped for one model input and split into train and eval.

    ``x_*`` are :class:`Samples` (lazy read-only float32, (N, *input_shape)); ``y_*`` read-only int32
    class ids 0..num_classes-1 (in memory: one number per sample). ``info`` says where the data came from
    and what was done to it (source, scaling, resize, channels, labels, split).
    """

    x_train: Samples
    y_train: np.ndarray
    x_eval: Samples
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
        """(x, y) batches of the training split, read per batch; a new seeded order every pass over it
        unless ``shuffle=False``."""
        rng = np.random.default_rng(seed)
        count = len(self.y_train)
        order = (lambda: rng.permutation(count)) if shuffle else (lambda: np.arange(count))
        return _streamed(self.x_train, self.y_train, batch_size, order)

    def eval_dataset(self, batch_size: int):
        """(x, y) batches of the evaluation split, in order, read per batch."""
        count = len(self.y_eval)
        return _streamed(self.x_eval, self.y_eval, batch_size, lambda: np.arange(count))

    def representative(self, n: int) -> Representative:
        """Up to ``n`` training samples as float32 batches of one, shape (1, *input_shape), read lazily.

        For TFLite calibration: ``converter.representative_dataset = lambda: ([s] for s in ds.representative(n))``.
        The training split is in seeded random order, so the first ``n`` are a random, class-mixed sample.
        """
        return Representative(self.x_train, min(_positive_int("n", n), len(self.x_train)))


def _streamed(samples, labels, batch_size, order):
    """A ``tf.data`` pipeline over batches read on demand (two prefetched), in the order ``order()`` gives
    at the start of each pass."""
    from edge_attn._keras import tf

    batch_size = _positive_int("batch_size", batch_size)

    def generate():
        indices = order()
        for start in range(0, len(indices), batch_size):
            chosen = indices[start:start + batch_size]
            yield samples[chosen], labels[chosen]

    signature = (tf.TensorSpec((None, *samples.shape[1:]), tf.float32), tf.TensorSpec((None,), tf.int32))
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def _positive_int(name, value):
    if int(value) < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)
