"""Tests of the pytest plugin: generated test files using the ``edge_device`` fixture, run by pytester on
the host, pass under a generous budget, fail with a message naming p50, budget, device and delegate
under a tiny one, and skip without a budget."""

from importlib import metadata

import pytest

from edge_attn._keras import keras
from edge_attn.convert import convert_model, load_recipe

pytest_plugins = ["pytester"]

TEST_FILE = """
MODEL = {model!r}

def test_model_meets_its_budget(edge_device):
    result = edge_device.assert_within_budget(MODEL)
    assert result.p50_ms <= edge_device.profile.budget_for(MODEL)
"""


def plugin_args():
    """Load the plugin by module name unless its pytest11 entry point is installed (loading it twice under
    two names is an error)."""
    installed = any(ep.value == "edge_attn.pytest_plugin" for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "edge_attn.pytest_plugin"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("plugin") / "tiny.tflite"
    path.write_bytes(convert_model(model, load_recipe("f32")))
    return str(path)


def run_with_budget(pytester, model_path, budgets):
    pytester.makefile(".toml", budgeted=f'name = "budgeted"\nkind = "host"\nruns = 5\nwarmup = 1\n'
                                         f"[budgets_ms]\n{budgets}\n")
    pytester.makepyfile(TEST_FILE.format(model=model_path))
    return pytester.runpytest(*plugin_args(), "--edge-device", str(pytester.path / "budgeted.toml"), "-rs")


def test_generous_budget_passes(pytester, model_path):
    result = run_with_budget(pytester, model_path, '"tiny.tflite" = 1e6')
    result.assert_outcomes(passed=1)


def test_tiny_budget_fails_naming_p50_budget_device_and_delegate(pytester, model_path):
    result = run_with_budget(pytester, model_path, 'default = 1e-9')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tiny.tflite: p50 * ms is over the budget of 1e-09 ms on device 'budgeted' "
                                 "with delegate 'xnnpack' (2 threads, 5 runs*"])


def test_no_budget_skips_with_the_reason(pytester, model_path):
    result = run_with_budget(pytester, model_path, '"other.tflite" = 1e6')
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no latency budget for tiny.tflite*budgeted.toml*"])


def test_default_device_is_the_host_profile(pytester, model_path):
    pytester.makepyfile(f"""
        def test_benchmark(edge_device):
            result = edge_device.benchmark({model_path!r}, runs=3, delegate="cpu")
            assert (result.device, result.delegate, result.runs) == ("host", "cpu", 3)
            assert result.min_ms <= result.p50_ms <= result.max_ms
    """)
    pytester.runpytest(*plugin_args()).assert_outcomes(passed=1)


def test_bad_device_profile_is_a_usage_error(pytester):
    result = pytester.runpytest(*plugin_args(), "--edge-device", "pixel-9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--edge-device: pixel-9: unknown device profile*"])


# ---------------------------------------------------------------- baselines

REGRESSION_FILE = """
MODEL = {model!r}

def test_model_did_not_get_slower(edge_device):
    result = edge_device.assert_no_regression(MODEL)
    assert result.warm.runs >= 5
"""


def scale_baseline(path, factor):
    import json

    data = json.loads(path.read_text())
    for entry in data["entries"]:
        entry["warm_times_ms"] = [t * factor for t in entry["warm_times_ms"]]
    path.write_text(json.dumps(data))


def test_save_baseline_then_fail_only_on_a_significant_regression(pytester, model_path):
    pytester.makefile(".toml", dev='name = "dev"\nkind = "host"\nruns = 20\nwarmup = 1\n')
    pytester.makepyfile(REGRESSION_FILE.format(model=model_path))
    device = ["--edge-device", str(pytester.path / "dev.toml")]
    baseline = pytester.path / "dev-baseline.json"

    first = pytester.runpytest(*plugin_args(), *device, "--edge-baseline", str(baseline),
                               "--edge-save-baseline", str(baseline), "-rs")
    first.assert_outcomes(skipped=1)  # nothing to compare with yet, and it says so
    first.stdout.fnmatch_lines(["*baseline of 1 measurement(s) saved to*dev-baseline.json"])
    first.stdout.fnmatch_lines(["*SKIPPED*no baseline file*dev-baseline.json yet*"])
    assert baseline.exists()

    scale_baseline(baseline, 0.02)  # the baseline made 50x faster than what was measured: a clear regression
    slower = pytester.runpytest(*plugin_args(), *device, "--edge-baseline", str(baseline))
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines(["*tiny.tflite: REGRESSION: p50 x* of the baseline*Mann-Whitney p = *"
                                 "on device 'dev' with delegate 'xnnpack'*cold start*device *ai-edge-litert*"])

    scale_baseline(baseline, 2500)  # now 50x slower than measured: faster is not a regression
    pytester.runpytest(*plugin_args(), *device, "--edge-baseline", str(baseline)).assert_outcomes(passed=1)


def test_no_baseline_given_skips_and_a_bad_file_is_a_usage_error(pytester, model_path):
    pytester.makepyfile(REGRESSION_FILE.format(model=model_path))
    result = pytester.runpytest(*plugin_args(), "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no --edge-baseline FILE given*"])
    bad = pytester.makefile(".json", bad="{nope")
    result = pytester.runpytest(*plugin_args(), "--edge-baseline", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--edge-baseline: *bad.json: not a latency baseline file*"])


def test_a_budget_test_also_fails_on_a_regression_when_a_baseline_is_given(pytester, model_path):
    pytester.makefile(".toml", dev='name = "dev"\nkind = "host"\nruns = 20\nwarmup = 1\n[budgets_ms]\ndefault = 1e6\n')
    pytester.makepyfile(TEST_FILE.format(model=model_path))
    device = ["--edge-device", str(pytester.path / "dev.toml")]
    baseline = pytester.path / "b.json"
    pytester.runpytest(*plugin_args(), *device, "--edge-save-baseline", str(baseline)).assert_outcomes(passed=1)
    scale_baseline(baseline, 0.02)
    within_budget_but_slower = pytester.runpytest(*plugin_args(), *device, "--edge-baseline", str(baseline))
    within_budget_but_slower.assert_outcomes(failed=1)
    within_budget_but_slower.stdout.fnmatch_lines(["*tiny.tflite: REGRESSION: p50 x*"])


@pytest.mark.parametrize("option, value, message", [("--edge-alpha", "1.5", "between 0 and 1"),
                                                     ("--edge-min-effect", "-0.1", "fraction >= 0")])
def test_bad_test_settings_are_usage_errors(pytester, option, value, message):
    result = pytester.runpytest(*plugin_args(), option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}: expected*{message}*"])
