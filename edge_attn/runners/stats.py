"""Statistics of run times: warm-up detection, the median's bootstrap confidence interval, and the test
that tells a real slowdown from a noisy device.

**Warm-up** (:func:`warmup_runs`): MSER-5, the Marginal Standard Error Rule of White (1997) on batch
means of 5 runs, the truncation rule Hoad, Robinson & Davies (2010, "Automating warm-up length
estimation", J. Oper. Res. Soc. 61) found the most reliable of 42 they compared. For each candidate
number ``d`` of leading batches dropped, it computes the squared standard error of the mean of the
remaining batches, ``sum((z_j - mean)^2) / (k - d)^2``, and drops the ``d`` that minimises it, searching
only the first half (a minimum later means the series is too short to tell). Dropping runs that are
slower than the rest lowers the numerator more than the shrinking denominator costs; on a series with no
warm-up the minimum is at or near zero. Fewer than 4 batches: nothing is dropped.

**Confidence interval of p50** (:func:`bootstrap_ci`): the percentile bootstrap of the median with a
seeded generator (the same runs always give the same interval), 2,000 resamples drawn in chunks so memory
stays bounded for long series.

**Regression test** (:func:`compare_runs`): the current runs are a regression of the baseline runs when
both (a) the one-sided Mann–Whitney U test says the current times are stochastically larger at level
``alpha`` (normal approximation with tie and continuity correction, as ``scipy.stats.mannwhitneyu(...,
alternative="greater", method="asymptotic")``) and (b) the ratio of medians is at least ``1 +
min_effect``. (a) alone would flag a 1% drift with thousands of runs; (b) alone would flag noise when
runs are few. The runs of one session are treated as independent samples, which a phone's thermal state
or background load violates between sessions: ``min_effect`` (default 10%) is the allowance for that, so
set it above the session-to-session spread of your device. The bootstrap interval of the ratio of
medians is reported beside the verdict.
"""

import dataclasses
import math

import numpy as np

MSER_BATCH = 5
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
ALPHA = 0.01
MIN_EFFECT = 0.10
MIN_RUNS_TO_COMPARE = 5
_CHUNK_ELEMENTS = 1 << 20  # resampled values held at once


def percentile(values, q):
    """The ``q``-th percentile with numpy's linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def warmup_runs(times, batch=MSER_BATCH):
    """How many leading runs of ``times`` are warm-up, by MSER-``batch`` (see the module notes); a multiple
    of ``batch``."""
    times = np.asarray(times, dtype=np.float64)
    k = len(times) // batch
    if k < 4:
        return 0
    z = times[:k * batch].reshape(k, batch).mean(axis=1)
    candidates = np.arange(k // 2 + 1)
    # sum over j >= d of (z_j - mean_d)^2 from suffix sums of z and z^2
    suffix_sum = np.cumsum(z[::-1])[::-1]
    suffix_sq = np.cumsum((z * z)[::-1])[::-1]
    remaining = k - candidates
    sse = suffix_sq[candidates] - suffix_sum[candidates] ** 2 / remaining
    mser = np.maximum(sse, 0.0) / remaining.astype(np.float64) ** 2
    return int(np.argmin(mser)) * batch


def bootstrap_ci(samples, statistic=np.median, confidence=CONFIDENCE, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """Percentile-bootstrap interval ``(low, high)`` of ``statistic`` (a numpy reduction taking ``axis``);
    None for fewer than 2 samples."""
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < 2:
        return None
    values = _bootstrap(samples, statistic, resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def _bootstrap(samples, statistic, resamples, rng):
    chunk = max(1, _CHUNK_ELEMENTS // len(samples))
    values = []
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        values.append(statistic(samples[rng.integers(0, len(samples), size=(count, len(samples)))], axis=1))
    return np.concatenate(values)


def ratio_of_medians_ci(current, baseline, confidence=CONFIDENCE, resamples=BOOTSTRAP_RESAMPLES, seed=0):
    """Bootstrap interval of median(current) / median(baseline), each sample resampled on its own."""
    rng = np.random.default_rng(seed)
    top = _bootstrap(np.asarray(current, dtype=np.float64), np.median, resamples, rng)
    bottom = _bootstrap(np.asarray(baseline, dtype=np.float64), np.median, resamples, rng)
    tail = (1 - confidence) / 2 * 100
    ratios = top / bottom
    return float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def average_ranks(values):
    """1-based ranks of ``values``, ties given the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def mann_whitney_greater(x, y):
    """One-sided Mann–Whitney U test that ``x`` tends to be larger than ``y``: ``(U of x, p-value)``.

    Normal approximation with the tie correction of the variance and a continuity correction of 0.5.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = len(x), len(y)
    n = n1 + n2
    ranks = average_ranks(np.concatenate([x, y]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    _, tie_counts = np.unique(np.concatenate([x, y]), return_counts=True)
    tie_term = float(np.sum(tie_counts ** 3 - tie_counts)) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0:  # every value equal: no evidence either way
        return u, 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / sigma
    return u, 0.5 * math.erfc(z / math.sqrt(2))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The current runs against the baseline's (see the module notes for the test)."""

    ratio: float  # median(current) / median(baseline)
    ratio_ci: tuple  # bootstrap interval of the ratio
    p_value: float  # one-sided Mann-Whitney U: current slower
    alpha: float
    min_effect: float
    current_runs: int
    baseline_runs: int
    regressed: bool

    def summary(self):
        low, high = self.ratio_ci
        verdict = "REGRESSION" if self.regressed else "no significant regression"
        return (f"{verdict}: p50 x{self.ratio:.3f} of the baseline (95% CI {low:.3f}-{high:.3f}), "
                f"Mann-Whitney p = {self.p_value:.2g} (fails at p < {self.alpha:g} and x >= {1 + self.min_effect:g}; "
                f"{self.current_runs} vs {self.baseline_runs} runs)")

    def to_dict(self):
        return dataclasses.asdict(self) | {"ratio_ci": list(self.ratio_ci)}


def compare_runs(current, baseline, alpha=ALPHA, min_effect=MIN_EFFECT, seed=0):
    """A :class:`Comparison` of warm run times ``current`` against ``baseline`` (both in the same unit);
    None when either has fewer than MIN_RUNS_TO_COMPARE runs."""
    current, baseline = np.asarray(current, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if min(len(current), len(baseline)) < MIN_RUNS_TO_COMPARE:
        return None
    ratio = float(np.median(current) / np.median(baseline))
    _, p_value = mann_whitney_greater(current, baseline)
    return Comparison(ratio=ratio, ratio_ci=ratio_of_medians_ci(current, baseline, seed=seed), p_value=p_value,
                      alpha=alpha, min_effect=min_effect, current_runs=len(current), baseline_runs=len(baseline),
                      regressed=bool(p_value < alpha and ratio >= 1 + min_effect))
