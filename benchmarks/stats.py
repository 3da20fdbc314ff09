"""Benchmark statistics: medians and ratios of medians with their bootstrap intervals, and round spread.

The bootstrap itself is the runners' (``edge_attn.runners.stats``: percentile bootstrap, seeded, bounded
memory), so a benchmark row and an on-device latency test report intervals computed the same way.
``round_spread`` is how much the per-round medians of one measurement disagree, (max - min) / median: on a
contended machine rounds differ far more than the bootstrap interval of one round admits, and ratios from
such a run mean little.
"""

import numpy as np

from edge_attn.runners.stats import bootstrap_ci, ratio_of_medians_ci

RESAMPLES = 2000


def median_ci(values, confidence=0.95, resamples=RESAMPLES, seed=0) -> dict:
    """``{"median", "low", "high", "n"}``: the median of ``values`` and its bootstrap interval."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("need a non-empty 1-D list of values")
    median = float(np.median(values))
    low, high = bootstrap_ci(values, confidence=confidence, resamples=resamples, seed=seed) or (median, median)
    return {"median": median, "low": low, "high": high, "n": len(values)}


def ratio_ci(numerator, denominator, confidence=0.95, resamples=RESAMPLES, seed=0) -> dict:
    """``{"ratio", "low", "high"}``: median(numerator) / median(denominator) and its bootstrap interval."""
    low, high = ratio_of_medians_ci(numerator, denominator, confidence=confidence, resamples=resamples, seed=seed)
    return {"ratio": float(np.median(numerator) / np.median(denominator)), "low": low, "high": high}


def round_spread(round_medians) -> float:
    """(max - min) / median of per-round medians: 0 when every round agrees."""
    values = np.asarray(round_medians, np.float64)
    return float((values.max() - values.min()) / np.median(values))
