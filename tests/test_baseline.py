"""Per-device latency baselines through ``edge-attn bench --save-baseline/--baseline`` and the result shape.

Verdicts are never asserted on two real measurements compared with each other (that would be a timed
assertion): the regression case compares a real run with a baseline made 50x faster than a real run, the
no-regression case with one made 100x slower (runs of a tiny model are ~1 µs: the margins are wide); everything else is about files, keys and devices."""

import json
import os

import pytest

from edge_attn._keras import keras
from edge_attn.cli import main
from edge_attn.convert import convert_model, load_recipe
from edge_attn.errors import BadInput
from edge_attn.runners.baseline import FORMAT, check_against, load_baseline, save_baseline
from edge_attn.runners.host import HostRunner
from edge_attn.devices import load_profile

RUNS = "20"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("baseline") / "tiny.tflite"
    path.write_bytes(convert_model(model, load_recipe("f32")))
    return str(path)


def bench(capsys, *args):
    code = main(["bench", *args, "--runs", RUNS, "--delegate", "xnnpack", "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def scaled(path, factor, out, **device_changes):
    """A copy of the baseline at ``path`` with every run time multiplied by ``factor``."""
    data = json.loads(open(path).read())
    for entry in data["entries"]:
        entry["warm_times_ms"] = [t * factor for t in entry["warm_times_ms"]]
        entry["device"].update(device_changes)
    out.write_text(json.dumps(data))
    return str(out)


def test_save_then_compare_flags_only_a_real_slowdown(model_path, tmp_path, capsys):
    saved = tmp_path / "host-baseline.json"
    code, out, _ = bench(capsys, model_path, "--save-baseline", str(saved))
    assert code == 0 and f"baseline saved to {saved}" in out
    data = json.loads(saved.read_text())
    assert data["format"] == FORMAT and data["version"] == 1
    (entry,) = data["entries"]
    assert (entry["model"], entry["delegate"], entry["threads"]) == ("tiny.tflite", "xnnpack", 2)
    assert entry["device"]["name"] == "host" and entry["device"]["runtime"] == "ai-edge-litert"
    assert 5 <= len(entry["warm_times_ms"]) <= int(RUNS) and entry["p50_ms"] > 0

    code, out, _ = bench(capsys, model_path, "--baseline", scaled(saved, 0.02, tmp_path / "fast.json"), "--json")
    result = json.loads(out)
    check = result["delegates"][0]["baseline"]
    assert code == 1 and check["status"] == "regressed" and check["comparison"]["ratio"] > 1.1
    assert check["comparison"]["p_value"] < 0.01

    code, out, _ = bench(capsys, model_path, "--baseline", scaled(saved, 100.0, tmp_path / "slow.json"))
    assert code == 0 and "baseline xnnpack: no significant regression" in out
    # 50x slower than the baseline is still below a minimum effect of 100x
    code, out, _ = bench(capsys, model_path, "--baseline", str(tmp_path / "fast.json"), "--min-effect", "99")
    assert code == 0 and "fails at p < 0.01 and x >= 100" in out
    code, _, err = bench(capsys, model_path, "--baseline", str(saved), "--alpha", "2")
    assert code == 2 and "alpha" in err and "between 0 and 1" in err


def test_another_device_or_no_entry_is_not_compared_and_not_a_failure(model_path, tmp_path, capsys):
    saved = tmp_path / "b.json"
    bench(capsys, model_path, "--save-baseline", str(saved))
    other_cpu = scaled(saved, 0.01, tmp_path / "other.json", cpu="Cortex-A76 x4")
    code, out, _ = bench(capsys, model_path, "--baseline", other_cpu, "--json")
    check = json.loads(out)["delegates"][0]["baseline"]
    assert code == 0 and check["status"] == "not compared" and "another device" in check["reason"]
    code, out, _ = main(["bench", model_path, "--runs", RUNS, "--delegate", "cpu", "--no-progress", "--baseline",
                         str(saved)]), capsys.readouterr().out, None
    assert code == 0 and "no baseline entry for tiny.tflite on host (cpu, 2 threads)" in out


def test_saving_adds_to_the_entries_and_replaces_the_same_key(model_path, tmp_path):
    runner = HostRunner(load_profile("host"))
    saved = tmp_path / "b.json"
    first = runner.benchmark(model_path, delegate="cpu", runs=10, warmup=1)
    save_baseline(saved, [first, runner.benchmark(model_path, delegate="xnnpack", runs=10, warmup=1)])
    again = runner.benchmark(model_path, delegate="cpu", runs=12, warmup=1)
    assert save_baseline(saved, [again]) == 2
    entries = load_baseline(saved)
    assert len(entries["host", "tiny.tflite", "cpu", 2]["warm_times_ms"]) == len(again.steady_times_ms)
    assert entries["host", "tiny.tflite", "cpu", 2]["warm_times_ms"] == list(again.steady_times_ms)
    assert check_against(again, entries).comparison.ratio == pytest.approx(1.0)  # itself: ratio 1
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a latency baseline file"),
    ('{"format": "something-else"}', "not a latency baseline file"),
    (json.dumps({"format": FORMAT, "version": 99, "entries": []}), "version 99"),
    (json.dumps({"format": FORMAT, "version": 1, "entries": [{"model": "x"}]}), "entries[0]"),
])
def test_bad_baseline_files_are_bad_input_before_anything_is_measured(model_path, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(BadInput, match=message.replace("[", r"\[")):
        load_baseline(bad)
    for flag in ("--baseline", "--save-baseline"):
        code, out, err = bench(capsys, model_path, flag, str(bad))
        assert code == 2 and "bad.json" in err and message in err and "Traceback" not in err and out == ""
        assert bad.read_text() == content  # left as it was
    code, _, err = bench(capsys, model_path, "--baseline", str(tmp_path / "none.json"))
    assert code == 2 and "record one with --save-baseline" in err


def synthetic(model_path, times):
    """A host result with the given warm run times (no real measurement), for the session arithmetic."""
    from edge_attn.runners.result import LatencyResult, timed

    return LatencyResult(device="host", model=model_path, delegate="xnnpack", threads=2, **timed(list(times)))


def test_recorded_sessions_spread_raises_the_minimum_effect(model_path, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    runs = lambda scale: scale * rng.lognormal(0, 0.02, 40)  # noqa: E731 - tight runs: every shift is significant
    saved = tmp_path / "b.json"
    save_baseline(saved, [synthetic(model_path, runs(1.0))])
    current = synthetic(model_path, runs(1.2))
    one_session = check_against(current, load_baseline(saved))
    assert one_session.regressed and one_session.comparison.min_effect == pytest.approx(0.10)

    save_baseline(saved, [synthetic(model_path, runs(1.3))])  # a second session 30% apart: a noisy device
    entries = load_baseline(saved)
    (entry,) = entries.values()
    assert len(entry["session_p50s_ms"]) == 2 and entry["session_p50s_ms"][1] / entry["session_p50s_ms"][0] > 1.25
    # against the latest session (1.3) the current run is faster; against the spread, 20% slower than the
    # first session is within what the device did between recorded sessions
    save_baseline(saved, [synthetic(model_path, runs(1.0))])
    spread = check_against(current, load_baseline(saved))
    assert not spread.regressed and spread.comparison.min_effect > 0.25 and "recorded sessions' spread" in spread.reason
    assert check_against(synthetic(model_path, runs(1.6)), load_baseline(saved)).regressed  # beyond the spread
