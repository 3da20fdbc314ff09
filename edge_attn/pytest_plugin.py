"""pytest plugin: latency budgets and baseline regressions as tests, on the device a profile describes.

Registered through the ``pytest11`` entry point ``edge_attn``. ``--edge-device=PROFILE`` (a shipped
profile name or a path to a .toml; default ``host``) chooses the device, and the ``edge_device`` fixture
measures on it::

    def test_se_resnet20_is_fast_enough(edge_device):
        edge_device.assert_within_budget("build/se_resnet20-int8.tflite")

    def test_se_resnet20_did_not_get_slower(edge_device):
        edge_device.assert_no_regression("build/se_resnet20-int8.tflite")

``assert_within_budget`` fails the test when the model's warm p50 is over the profile's budget for it
(``[budgets_ms]`` by file name, else ``default``) and skips it when the profile has no budget for it.
``assert_no_regression`` compares the warm runs with the entry of ``--edge-baseline FILE`` for this
device, model file name, delegate and threads, and fails only on a statistically significant regression
(one-sided Mann–Whitney U at ``--edge-alpha``, default 0.01, *and* a p50 ratio of at least 1 +
``--edge-min-effect``, default 0.10: :mod:`edge_attn.runners.stats`); it skips when there is nothing to
compare with (no file, no entry, another CPU/SoC, no per-run times) and says why. With a baseline given,
``assert_within_budget`` checks it too. ``--edge-save-baseline FILE`` records every model measured in the
session into FILE at the end (added to its entries), to commit as the device's baseline.

Every measurement separates the cold start (load + first inference) from the warm runs, leaves out the
detected warm-up and reports p50 with a bootstrap interval and the device fingerprint
(:class:`~edge_attn.runners.result.LatencyResult`); failure messages quote them. The plugin loads in
every pytest session of an environment where edge_attn is installed, so it imports nothing of edge_attn
until the fixture is used or a non-default option is given.
"""

import os

import pytest

DEFAULT_DEVICE = "host"
_PROFILE = pytest.StashKey()
_RECORDED = pytest.StashKey()  # LatencyResults measured this session, for --edge-save-baseline


def pytest_addoption(parser):
    group = parser.getgroup("edge_attn", "edge_attn latency budgets and baselines")
    group.addoption("--edge-device", default=DEFAULT_DEVICE, metavar="PROFILE",
                    help="device profile the edge_device fixture measures on: a shipped name (host, "
                         "android-example, ...) or a path to a .toml (default: host)")
    group.addoption("--edge-baseline", metavar="FILE",
                    help="latency baseline JSON to test for significant regressions against")
    group.addoption("--edge-save-baseline", metavar="FILE",
                    help="record the session's measurements into this baseline JSON at the end")
    group.addoption("--edge-alpha", type=float, default=None, metavar="P",
                    help="significance level of the regression test (default 0.01)")
    group.addoption("--edge-min-effect", type=float, default=None, metavar="FRACTION",
                    help="smallest p50 slowdown that counts as a regression (default 0.10: 10%%)")


def pytest_configure(config):
    device = config.getoption("edge_device")
    if device != DEFAULT_DEVICE:  # a typo is a usage error up front, not an error in every test
        config.stash[_PROFILE] = _load_profile(device)
    config.stash[_RECORDED] = []
    alpha, min_effect = config.getoption("edge_alpha"), config.getoption("edge_min_effect")
    if alpha is not None and not 0 < alpha < 1:
        raise pytest.UsageError(f"--edge-alpha: expected a significance level between 0 and 1, got {alpha:g}")
    if min_effect is not None and min_effect < 0:
        raise pytest.UsageError(f"--edge-min-effect: expected a fraction >= 0 (0.10 is 10%), got {min_effect:g}")
    baseline = config.getoption("edge_baseline")
    if baseline is not None:
        from edge_attn.errors import BadInput
        from edge_attn.runners.baseline import load_baseline

        try:
            load_baseline(baseline)
        except BadInput as e:
            if "no such baseline file" not in e.problem:  # a missing file skips the comparisons instead
                raise pytest.UsageError(f"--edge-baseline: {e}") from None


def pytest_report_header(config):
    if _PROFILE in config.stash:
        profile = config.stash[_PROFILE]
        return f"edge_attn device: {profile.name} (kind {profile.kind}, {profile.source})"
    return None


def pytest_sessionfinish(session):
    config = session.config
    path = config.getoption("edge_save_baseline")
    recorded = config.stash.get(_RECORDED, [])
    if path and recorded:
        from edge_attn.runners.baseline import save_baseline

        save_baseline(path, recorded)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"edge_attn: latency baseline of {len(recorded)} measurement(s) saved to {path}")


@pytest.fixture(scope="session")
def edge_device(pytestconfig):
    """An :class:`EdgeDevice` for the profile given with ``--edge-device``."""
    from edge_attn.runners import make_runner

    profile = pytestconfig.stash.get(_PROFILE, None) or _load_profile(pytestconfig.getoption("edge_device"))
    return EdgeDevice(profile, make_runner(profile), baseline=pytestconfig.getoption("edge_baseline"),
                      alpha=pytestconfig.getoption("edge_alpha"), min_effect=pytestconfig.getoption("edge_min_effect"),
                      recorded=pytestconfig.stash.get(_RECORDED, []))


def _load_profile(device):
    from edge_attn.devices import load_profile
    from edge_attn.errors import BadInput

    try:
        return load_profile(device)
    except BadInput as e:
        raise pytest.UsageError(f"--edge-device: {e}") from None


class EdgeDevice:
    """A device profile and its runner; measurements default to the profile's settings and its first
    delegate."""

    def __init__(self, profile, runner, baseline=None, alpha=None, min_effect=None, recorded=None):
        self.profile = profile
        self.runner = runner
        self.baseline = baseline
        self._test_settings = {key: value for key, value in (("alpha", alpha), ("min_effect", min_effect))
                               if value is not None}
        self._recorded = recorded if recorded is not None else []

    def benchmark(self, model_path, **settings):
        """The LatencyResult of ``model_path``; ``settings`` (delegate, threads, runs, warmup, ...) override
        the profile's."""
        profile = self.profile
        settings = {"delegate": profile.delegates[0], "threads": profile.threads, "runs": profile.runs,
                    "warmup": profile.warmup, **settings}
        result = self.runner.benchmark(os.fspath(model_path), **settings)
        self._recorded.append(result)
        return result

    def assert_within_budget(self, model_path, **settings):
        """Measure ``model_path`` and fail the test if its warm p50 is over the profile's budget for it (skip
        the test when the profile has none); with ``--edge-baseline``, also fail on a significant
        regression. Returns the LatencyResult."""
        profile = self.profile
        model = os.fspath(model_path)
        budget = profile.budget_for(model)
        if budget is None:
            pytest.skip(f"device profile {profile.name!r} has no latency budget for {os.path.basename(model)} "
                        f"(add it, or a default, to [budgets_ms] in {profile.source})")
        result = self.benchmark(model, **settings)
        where = self._where(result)
        if not result.available:
            pytest.fail(f"{model}: cannot check the {budget:g} ms budget {where}: {result.note}", pytrace=False)
        if result.p50_ms > budget:
            pytest.fail(f"{model}: p50 {result.p50_ms:.4g} ms is over the budget of {budget:g} ms {where} "
                        f"({_describe(result)})", pytrace=False)
        if self.baseline is not None:
            check = self._check(result)
            if check.regressed:
                pytest.fail(f"{model}: {check.reason} {where} ({_describe(result)})", pytrace=False)
        return result

    def assert_no_regression(self, model_path, **settings):
        """Measure ``model_path`` and fail the test only on a statistically significant regression against
        its ``--edge-baseline`` entry; skip (saying why) when there is nothing to compare with. Returns the
        LatencyResult."""
        model = os.fspath(model_path)
        if self.baseline is None:
            pytest.skip("no --edge-baseline FILE given: nothing to compare with (record one with "
                        "--edge-save-baseline FILE)")
        result = self.benchmark(model, **settings)
        where = self._where(result)
        if not result.available:
            pytest.fail(f"{model}: cannot compare with the baseline {where}: {result.note}", pytrace=False)
        check = self._check(result)
        if check.regressed:
            pytest.fail(f"{model}: {check.reason} {where} ({_describe(result)})", pytrace=False)
        if check.status == "not compared":
            pytest.skip(f"{model}: {check.reason}")
        return result

    def _check(self, result):
        from edge_attn.runners.baseline import check_against, load_baseline

        if not os.path.exists(self.baseline):
            from edge_attn.runners.baseline import BaselineCheck

            return BaselineCheck("not compared", f"no baseline file {self.baseline} yet (record one with "
                                                 "--edge-save-baseline)")
        return check_against(result, load_baseline(self.baseline), **self._test_settings)

    def _where(self, result):
        return f"on device {self.profile.name!r} with delegate {result.delegate!r}"


def _describe(result):
    """The numbers a failure message quotes: threads, runs, the interval, p90, min, cold start, the device."""
    warm = result.warm
    parts = [f"{result.threads} threads, {result.runs} runs"]
    if warm.warmup_runs_dropped:
        parts.append(f"first {warm.warmup_runs_dropped} dropped as warm-up")
    if warm.p50_ci:
        parts.append(f"p50 95% CI {warm.p50_ci[0]:.4g}-{warm.p50_ci[1]:.4g} ms")
    if warm.p90 is not None:
        parts.append(f"p90 {warm.p90:.4g} ms")
    parts.append(f"min {result.min_ms:.4g} ms")
    if result.cold_start_ms is not None:
        parts.append(f"cold start {result.cold_start_ms:.4g} ms")
    info = result.device_info
    if info is not None:
        parts.append("device " + ", ".join(filter(None, (info.cpu, info.soc, info.governor and f"governor {info.governor}",
                                                         info.runtime and f"{info.runtime} {info.runtime_version or ''}".strip(),
                                                         info.emulated and "EMULATED"))))
    return "; ".join(parts)
