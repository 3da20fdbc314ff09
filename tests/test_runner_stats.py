"""The latency statistics of edge_attn.runners.stats, against independent references: scipy's
Mann-Whitney U, ranks and bootstrap; hand-computable cases; and seeded trials on known distributions
(coverage of the p50 interval, the false-positive and detection rates of the regression test, the
warm-up rule on series with and without a warm-up). No real measurement is timed here."""

import math

import numpy as np
import pytest
import scipy.stats

from edge_attn.runners import stats
from edge_attn.runners.result import WarmLatency


def noisy_runs(rng, n, scale=1.0):
    """Heavy-tailed run times like a phone's: lognormal (sigma 0.2) with 5% of runs caught by load (x3)."""
    times = scale * rng.lognormal(0.0, 0.2, n)
    times[rng.random(n) < 0.05] *= 3
    return times


# ---------------------------------------------------------------- Mann-Whitney U and ranks


def test_ranks_match_scipy_with_ties():
    values = np.random.default_rng(0).integers(0, 6, 40).astype(float)
    np.testing.assert_array_equal(stats.average_ranks(values), scipy.stats.rankdata(values))


def test_u_statistic_by_hand():
    # every x above every y: U = 3 * 3 = 9; interleaved 1 < 2 < 3 < 4: x = (2, 4) beats y = 1 twice and 3 once
    assert stats.mann_whitney_greater([4, 5, 6], [1, 2, 3])[0] == 9
    assert stats.mann_whitney_greater([2, 4], [1, 3])[0] == 3
    assert stats.mann_whitney_greater([1, 1], [1, 1]) == (2.0, 1.0)  # all equal: no evidence


@pytest.mark.parametrize("seed, rounded", [(1, False), (2, True), (3, True)])
def test_p_value_matches_scipy_asymptotic(seed, rounded):
    rng = np.random.default_rng(seed)
    x, y = noisy_runs(rng, 37, 1.1), noisy_runs(rng, 52)
    if rounded:  # a coarse timer: many ties
        x, y = np.round(x, 1), np.round(y, 1)
    u, p = stats.mann_whitney_greater(x, y)
    reference = scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic", use_continuity=True)
    assert u == reference.statistic
    assert p == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_interval_agrees_with_scipy_and_is_seeded():
    samples = noisy_runs(np.random.default_rng(4), 60)
    ours = stats.bootstrap_ci(samples)
    assert ours == stats.bootstrap_ci(samples)  # the same runs give the same interval
    theirs = scipy.stats.bootstrap((samples,), np.median, method="percentile", n_resamples=20000,
                                   random_state=np.random.default_rng(5)).confidence_interval
    # a percentile interval of the median lands on (averages of) order statistics: allow one step of them
    spacing = np.max(np.diff(np.sort(samples)[20:41]))
    assert ours[0] == pytest.approx(theirs.low, abs=spacing) and ours[1] == pytest.approx(theirs.high, abs=spacing)
    assert ours[0] < np.median(samples) < ours[1]
    assert stats.bootstrap_ci([1.0]) is None


def test_bootstrap_interval_covers_the_true_median_about_95_percent():
    """Exponential(1) has median ln 2; over 400 seeded samples of 50 the 95% interval should miss it about
    20 times. The binomial spread of the count is about 4.4: [0.90, 0.99] is more than 2 spreads each way."""
    hits = 0
    for seed in range(400):
        low, high = stats.bootstrap_ci(np.random.default_rng(seed).exponential(1.0, 50), resamples=1000, seed=seed)
        hits += low <= math.log(2) <= high
    assert 0.90 <= hits / 400 <= 0.99


def test_bootstrap_in_chunks_gives_the_interval_of_one_draw(monkeypatch):
    """Memory is bounded by drawing resamples in chunks; the chunking must not change the interval."""
    samples = noisy_runs(np.random.default_rng(6), 1000)
    whole = stats.bootstrap_ci(samples, resamples=300)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 7_000)  # 7 resamples per chunk
    assert stats.bootstrap_ci(samples, resamples=300) == whole


# ---------------------------------------------------------------- warm-up


def test_warmup_by_hand():
    # batches of 5: medians 10, 10, then 1 ...: the first two batches are warm-up
    times = [10.0] * 10 + [1.0] * 30
    assert stats.warmup_runs(times) == 10
    assert stats.warmup_runs([10.0] * 5 + [1.0] * 10) == 0  # 3 batches: too short to tell
    assert stats.warmup_runs([0.5] * 10 + [1.0] * 30) == 0  # a fast start is not warm-up
    spike = [1.0] * 40
    spike[1] = spike[3] = 50.0  # two spikes in the first batch: load, not warm-up (its median is 1)
    assert stats.warmup_runs(spike) == 0


def test_warmup_step_is_found_and_stationary_noise_keeps_its_runs():
    step = [stats.warmup_runs(np.r_[2 * noisy_runs(rng, 15), noisy_runs(rng, 85)])
            for rng in map(np.random.default_rng, range(300))]
    assert np.mean(np.asarray(step) == 15) >= 0.95
    iid = np.asarray([stats.warmup_runs(noisy_runs(np.random.default_rng(seed), 100)) for seed in range(1000)])
    assert np.mean(iid == 0) >= 0.95 and iid.mean() <= 1.0  # measured: 98% none, the rest one batch


def test_warm_latency_summarises_the_runs_after_the_warm_up():
    rng = np.random.default_rng(7)
    times = np.r_[5 * noisy_runs(rng, 10), noisy_runs(rng, 90)]
    warm = WarmLatency.from_times(list(times))
    assert warm.warmup_runs_dropped == 10 and warm.runs == 90
    steady = times[10:]
    assert warm.p50 == pytest.approx(np.median(steady)) and warm.p90 == pytest.approx(np.percentile(steady, 90))
    assert (warm.min, warm.max, warm.mean) == pytest.approx((steady.min(), steady.max(), steady.mean()))
    assert warm.p50_ci[0] <= warm.p50 <= warm.p50_ci[1]


# ---------------------------------------------------------------- regression test


def test_a_30_percent_slowdown_is_flagged_and_noise_is_not():
    """300 seeded trials of 50 runs against 50 baseline runs from the heavy-tailed distribution above."""
    flagged_noise = flagged_slowdown = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        baseline = noisy_runs(rng, 50)
        flagged_noise += stats.compare_runs(noisy_runs(rng, 50), baseline).regressed
        flagged_slowdown += stats.compare_runs(noisy_runs(rng, 50, scale=1.3), baseline).regressed
    assert flagged_slowdown >= 297  # measured: 300 of 300
    assert flagged_noise <= 3  # at most 1%; measured: 1 of 300


def test_a_small_significant_drift_is_below_the_minimum_effect():
    rng = np.random.default_rng(11)
    baseline, current = rng.lognormal(0, 0.05, 2000), rng.lognormal(0, 0.05, 2000) * 1.03
    comparison = stats.compare_runs(current, baseline)
    assert comparison.p_value < 1e-6 and not comparison.regressed  # significant, but 3% < 10%
    assert stats.compare_runs(current, baseline, min_effect=0.02).regressed


def test_a_large_ratio_from_few_noisy_runs_is_not_significant():
    rng = np.random.default_rng(5)
    current, baseline = noisy_runs(rng, 5) * 1.3, noisy_runs(rng, 5)
    comparison = stats.compare_runs(current, baseline)
    assert comparison.p_value >= 0.01 and not comparison.regressed
    assert stats.compare_runs(current[:4], baseline) is None  # too few runs to compare


def test_ratio_interval_brackets_the_ratio_of_medians():
    rng = np.random.default_rng(9)
    current, baseline = noisy_runs(rng, 80, 1.5), noisy_runs(rng, 80)
    comparison = stats.compare_runs(current, baseline)
    low, high = comparison.ratio_ci
    assert comparison.ratio == pytest.approx(np.median(current) / np.median(baseline))
    assert low <= comparison.ratio <= high
    assert low > 1.2 and comparison.regressed and "REGRESSION" in comparison.summary()
