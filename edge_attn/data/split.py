"""The train/eval split: stratified per class and seeded, after checking every class can be split.

Within every class a ``round(eval_fraction * n)`` share (at least 1, at most n - 1) goes to evaluation,
so every class needs 2 samples or more; the same labels and seed always give the same split. Training
indices come in a seeded random order, evaluation indices in the order of the source.
"""

import numpy as np

from edge_attn.errors import BadInput


def check_class_counts(spec, labels, class_names):
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


def stratified_split(labels, num_classes, eval_fraction, seed):
    """Train indices (seeded random order) and eval indices (source order), stratified by class."""
    rng = np.random.default_rng(seed)
    train, evaluate = [], []
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_eval = min(max(int(eval_fraction * len(members) + 0.5), 1), len(members) - 1)
        evaluate.append(members[:n_eval])
        train.append(members[n_eval:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(evaluate))
