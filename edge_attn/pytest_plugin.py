"""pytest plugin: latency budgets as tests, on the device a profile describes.

Registered through the ``pytest11`` entry point ``edge_attn``. ``--edge-device=PROFILE`` (a shipped
profile name or a path to a .toml; default ``host``) chooses the device, and the ``edge_device`` fixture
measures on it::

    def test_se_resnet20_is_fast_enough(edge_device):
        edge_device.assert_within_budget("build/se_resnet20-int8.tflite")

``assert_within_budget`` fails the test when the model's p50 is over the profile's budget for it
(``[budgets_ms]`` by file name, else ``default``) and skips it when the profile has no budget for it.
The plugin loads in every pytest session of an environment where edge_attn is installed, so it imports
nothing of edge_attn until the fixture is used or a non-default device is given.
"""

import os

import pytest

DEFAULT_DEVICE = "host"
_PROFILE = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("edge_attn", "edge_attn latency budgets")
    group.addoption("--edge-device", default=DEFAULT_DEVICE, metavar="PROFILE",
                    help="device profile the edge_device fixture measures on: a shipped name (host, "
                         "android-example, ...) or a path to a .toml (default: host)")


def pytest_configure(config):
    device = config.getoption("edge_device")
    if device != DEFAULT_DEVICE:  # a typo is a usage error up front, not an error in every test
        config.stash[_PROFILE] = _load_profile(device)


def pytest_report_header(config):
    if _PROFILE in config.stash:
        profile = config.stash[_PROFILE]
        return f"edge_attn device: {profile.name} (kind {profile.kind}, {profile.source})"
    return None


@pytest.fixture(scope="session")
def edge_device(pytestconfig):
    """An :class:`EdgeDevice` for the profile given with ``--edge-device``."""
    from edge_attn.runners import make_runner

    profile = pytestconfig.stash.get(_PROFILE, None) or _load_profile(pytestconfig.getoption("edge_device"))
    return EdgeDevice(profile, make_runner(profile))


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

    def __init__(self, profile, runner):
        self.profile = profile
        self.runner = runner

    def benchmark(self, model_path, **settings):
        """The LatencyResult of ``model_path``; ``settings`` (delegate, threads, runs, warmup, ...) override
        the profile's."""
        profile = self.profile
        settings = {"delegate": profile.delegates[0], "threads": profile.threads, "runs": profile.runs,
                    "warmup": profile.warmup, **settings}
        return self.runner.benchmark(os.fspath(model_path), **settings)

    def assert_within_budget(self, model_path, **settings):
        """Measure ``model_path`` and fail the test if its p50 is over the profile's budget for it; skip the
        test when the profile has none. Returns the LatencyResult."""
        profile = self.profile
        model = os.fspath(model_path)
        budget = profile.budget_for(model)
        if budget is None:
            pytest.skip(f"device profile {profile.name!r} has no latency budget for {os.path.basename(model)} "
                        f"(add it, or a default, to [budgets_ms] in {profile.source})")
        result = self.benchmark(model, **settings)
        where = f"on device {profile.name!r} with delegate {result.delegate!r}"
        if not result.available:
            pytest.fail(f"{model}: cannot check the {budget:g} ms budget {where}: {result.note}", pytrace=False)
        if result.p50_ms > budget:
            pytest.fail(f"{model}: p50 {result.p50_ms:.4g} ms is over the budget of {budget:g} ms {where} "
                        f"({result.threads} threads, {result.runs} runs; p90 {result.p90_ms:.4g} ms, "
                        f"min {result.min_ms:.4g} ms)", pytrace=False)
        return result
