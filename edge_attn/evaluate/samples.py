"""Which samples a check scores: the ``--split`` of ``edge-attn check``.

A data file handed to ``check`` is the user's evaluation set, so by default all of it is scored; the
built-in ``digits`` set is what registry models are trained on, so its held-out eval split is scored
(the split :func:`edge_attn.data.load_data` makes, the one ``convert`` reports). ``--split`` chooses:
``eval`` (the stratified, seeded held-out share), ``train`` (the rest) or ``all``.
"""

import numpy as np

from edge_attn.data import BUILTIN
from edge_attn.errors import BadInput

SPLITS = ("eval", "train", "all")


def default_split(spec):
    """``eval`` for the built-in digits set, ``all`` for a file or folder the user gave."""
    return "eval" if str(spec) in BUILTIN else "all"


def split_arrays(data, split):
    """``(x, y)`` of ``data`` (a :class:`edge_attn.data.DataSet`) for ``split`` (one of :data:`SPLITS`)."""
    if split == "eval":
        return data.x_eval, data.y_eval
    if split == "train":
        return data.x_train, data.y_train
    if split == "all":
        x_eval, x_train = data.x_eval, data.x_train
        x = x_eval.concat(x_train) if hasattr(x_eval, "concat") else np.concatenate([x_eval, x_train])
        return x, np.concatenate([data.y_eval, data.y_train])
    raise BadInput("--split", f"expected one of {', '.join(SPLITS)}, got {split!r}")


def evaluation_info(data, split):
    """What was scored, for reports: ``dict(spec, split, samples, of)`` (``of``: samples in the whole set)."""
    samples = {"eval": len(data.y_eval), "train": len(data.y_train)}
    samples["all"] = samples["eval"] + samples["train"]
    return {"spec": data.spec, "split": split, "samples": samples[split], "of": samples["all"]}


def describe_evaluation(info):
    """One line for the terminal: "all 397 samples of test.npz" or "the eval split of digits: 359 of 1797"."""
    if info["split"] == "all":
        return f"all {info['samples']} samples of {info['spec']} (--split all)"
    return f"the {info['split']} split of {info['spec']}: {info['samples']} of {info['of']} samples (--split {info['split']})"
