"""Every runner's result has exactly the keys of the example in docs/result-shape.md (the contract), is
plain JSON, and its flat keys of earlier versions equal the structured ones."""

import json
import math
import os
import re
import sys

import pytest

from edge_attn._keras import keras
from edge_attn.convert import convert_model, load_recipe
from edge_attn.devices import load_profile
from edge_attn.runners.host import HostRunner

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "result-shape.md")
sys.path.insert(0, os.path.dirname(__file__))


def documented_example():
    text = open(DOC, encoding="utf-8").read()
    block = re.search(r"<!-- result-shape-example -->\s*```json\n(.*?)```", text, re.DOTALL)
    return json.loads(block[1])


def key_tree(value):
    """The nested key structure of a dict (lists and scalars are leaves)."""
    if isinstance(value, dict):
        return {key: key_tree(child) for key, child in value.items()}
    return None


def shape_of_dicts(value, documented):
    """Key structure of ``value``, treating a None where the documented example has a dict as that dict."""
    if isinstance(documented, dict):
        if value is None:
            return key_tree(documented)
        return {key: shape_of_dicts(value.get(key), documented.get(key)) for key in value}
    return None


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("shape") / "tiny.tflite"
    path.write_bytes(convert_model(model, load_recipe("f32")))
    return str(path)


def assert_documented_shape(result_dict):
    documented = documented_example()
    assert shape_of_dicts(result_dict, documented) == key_tree(documented)
    json.dumps(result_dict, allow_nan=False)  # plain JSON, no NaN


@pytest.mark.parametrize("delegate", ["xnnpack", "cpu"])
def test_host_results_have_the_documented_shape(model_path, delegate):
    result = HostRunner(load_profile("host")).benchmark(model_path, delegate=delegate, runs=12, warmup=1)
    d = result.to_dict()
    assert_documented_shape(d)
    warm = d["latency_ms"]["warm"]
    assert [d[f"{k}_ms"] for k in ("p50", "p90", "p95", "min", "max", "mean")] == \
        [warm[k] for k in ("p50", "p90", "p95", "min", "max", "mean")]
    assert d["runs"] == len(d["latency_ms"]["times"]) == warm["runs"] + warm["warmup_runs_dropped"] == 12
    assert d["target"] == "host" and d["device"]["name"] == "host" and d["delegate"] == d["accelerator"] == delegate
    # Conv2D, MEAN, FULLY_CONNECTED: XNNPACK takes all three in one partition; cpu: none
    expected = {"accelerated_ops": 3, "total_ops": 3, "partitions": 1, "on_cpu": []} if delegate == "xnnpack" \
        else {"accelerated_ops": 0, "total_ops": 3, "partitions": 0, "on_cpu": []}
    assert d["graph"] == expected
    assert d["latency_ms"]["cold_start"] > 0 and d["numerics"] is None


def test_unavailable_results_have_the_documented_shape_with_nulls(model_path):
    result = HostRunner(load_profile("host")).benchmark(model_path, delegate="nnapi")
    d = result.to_dict()
    assert_documented_shape(d)
    assert not d["available"] and d["problems"] == [d["note"]] and "Android" in d["note"]
    assert all(value is None for key, value in d["latency_ms"]["warm"].items() if key != "runs")
    assert d["p50_ms"] is None and math.isnan(result.p50_ms)


def test_adb_results_have_the_documented_shape(tmp_path, monkeypatch, model_path):
    from test_adb_runner import FIXTURES, SERIAL, recorded  # the fake phone of the adb runner's tests

    from edge_attn.devices import parse_profile
    from edge_attn.runners.adb import AdbRunner

    state = tmp_path / "state"
    state.mkdir()
    (state / "config.json").write_text(json.dumps({"devices": [SERIAL],
                                                   "benchmark_output": recorded("ti_am62x_xnnpack.txt")}))
    monkeypatch.setenv("FAKE_ADB_STATE", str(state))
    adb = tmp_path / "adb"
    adb.write_text(f"#!/bin/sh\nexec {sys.executable} {os.path.join(FIXTURES, 'fake_adb.py')} \"$@\"\n")
    adb.chmod(0o755)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF stand-in")
    profile = parse_profile({"kind": "adb", "name": "phone", "serial": SERIAL, "benchmark_model": str(binary)},
                            str(tmp_path / "phone.toml"))
    d = AdbRunner(profile, adb=str(adb)).benchmark(model_path, delegate="xnnpack").to_dict()
    assert_documented_shape(d)
    assert d["target"] == "adb" and d["latency_ms"]["times"] == [] and d["latency_ms"]["warm"]["p90"] is None
    # "partially executed by the delegate w/ 1 delegate kernels" of the recorded output, 3 ops in the model
    assert d["graph"] == {"accelerated_ops": None, "total_ops": 3, "partitions": 1, "on_cpu": []}
