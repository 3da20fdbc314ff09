"""Statistics for timings: medians with percentile-bootstrap confidence intervals, and round spread.

A median of run times is robust to the odd preempted run; its uncertainty is estimated by the
percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the runs with replacement, take each
resample's median, and read the interval off the resamples' percentiles. The ratio of two medians gets
its interval the same way, resampling both sets independently. ``round_spread`` is how much the
per-round medians of one measurement disagree, (max - min) / median: on a contended machine rounds
differ far more than the bootstrap interval of one round admits, and ratios from such a run mean little.
"""

import numpy as np

RESAMPLES = 2000


def _bootstrap_medians(values, resamples, rng):
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("need a non-empty 1-D list of values")
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    return np.median(values[picks], axis=1)


def median_ci(values, confidence=0.95, resamples=RESAMPLES, seed=0) -> dict:
    """``{"median", "low", "high", "n"}``: the median of ``values`` and its bootstrap interval."""
    rng = np.random.default_rng(seed)
    medians = _bootstrap_medians(values, resamples, rng)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return {"median": float(np.median(values)), "low": float(low), "high": float(high), "n": len(values)}


def ratio_ci(numerator, denominator, confidence=0.95, resamples=RESAMPLES, seed=0) -> dict:
    """``{"ratio", "low", "high"}``: median(numerator) / median(denominator) and its bootstrap interval."""
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(numerator, resamples, rng) / _bootstrap_medians(denominator, resamples, rng)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return {"ratio": float(np.median(numerator) / np.median(denominator)), "low": float(low), "high": float(high)}


def round_spread(round_medians) -> float:
    """(max - min) / median of per-round medians: 0 when every round agrees."""
    values = np.asarray(round_medians, np.float64)
    return float((values.max() - values.min()) / np.median(values))
