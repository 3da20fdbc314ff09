"""Every target's result — host runner, check's host result, the GPU accelerator, Qualcomm's compiler, the adb and
ssh runners, each built by its real producer — has exactly the keys of the examples in docs/result-shape.md (the
contract), is plain JSON, and its flat keys of earlier versions equal the structured ones."""

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


def documented_examples():
    text = open(DOC, encoding="utf-8").read()
    return [json.loads(block) for block in re.findall(r"<!-- result-shape-example -->\s*```json\n(.*?)```", text,
                                                        re.DOTALL)]


def documented_example():
    """The documented examples merged: a block that is null in one (numerics of a latency-only result) is taken
    from another."""
    merged = {}
    for example in documented_examples():
        for key, value in example.items():
            if merged.get(key) is None:
                merged[key] = value
    return merged


def key_tree(value):
    """The nested key structure of a dict (lists, scalars and free-form ``{}`` — ``details`` — are leaves)."""
    if isinstance(value, dict) and value:
        return {key: key_tree(child) for key, child in value.items()}
    return None


def shape_of_dicts(value, documented):
    """Key structure of ``value``, treating a None where the documented example has a dict as that dict."""
    if isinstance(documented, dict) and documented:
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
    expected = {"accelerated_ops": 3, "total_ops": 3, "partitions": 1, "on_cpu": [], "fully_accelerated": True} \
        if delegate == "xnnpack" else \
        {"accelerated_ops": 0, "total_ops": 3, "partitions": 0, "on_cpu": [], "fully_accelerated": False}
    assert d["graph"] == expected
    assert d["latency_ms"]["cold_start"] > 0 and d["numerics"] is None
    assert d["verdict"] == "ok" and d["symptom"] is None  # cpu: no accelerator, so nothing is "partial"


def test_unavailable_results_have_the_documented_shape_with_nulls(model_path):
    result = HostRunner(load_profile("host")).benchmark(model_path, delegate="nnapi")
    d = result.to_dict()
    assert_documented_shape(d)
    assert not d["available"] and d["problems"] == [d["note"]] and "Android" in d["note"]
    assert d["verdict"] == "unavailable" and d["symptom"] == d["note"]
    assert all(value is None for key, value in d["latency_ms"]["warm"].items() if key != "runs")
    assert d["p50_ms"] is None and math.isnan(result.p50_ms)


def test_adb_results_have_the_documented_shape(adb_result):
    d = adb_result
    assert_documented_shape(d)
    assert d["target"] == "adb" and d["latency_ms"]["times"] == [] and d["latency_ms"]["warm"]["p90"] is None
    # "partially executed by the delegate w/ 1 delegate kernels" of the recorded output, 3 ops in the model
    assert d["graph"] == {"accelerated_ops": None, "total_ops": 3, "partitions": 1, "on_cpu": [],
                          "fully_accelerated": None}


# --- one shape for every target --------------------------------------------------------------------------------

def test_the_documented_examples_share_their_keys_with_the_code():
    examples = documented_examples()
    assert len(examples) == 2
    assert all(list(example) == list(examples[0]) for example in examples)
    from edge_attn.result_shape import COMMON_KEYS, GRAPH_KEYS, LATENCY_KEYS, NUMERICS_KEYS

    merged = documented_example()
    assert tuple(merged) == COMMON_KEYS
    assert tuple(merged["graph"]) == GRAPH_KEYS and tuple(merged["numerics"]) == NUMERICS_KEYS
    assert tuple(merged["latency_ms"]) == LATENCY_KEYS


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory):
    """The tiny model as post-training int8 (what the NPU compiles and the GPU mishandles)."""
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1), batch_size=1), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    samples = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("shape-int8") / "tiny-int8.tflite"
    path.write_bytes(convert_model(model, load_recipe("int8-ptq"), representative=(s[None] for s in samples)))
    return str(path), model, samples


def gpu_result(model_path):
    from edge_attn.targets.gpu import verify_gpu

    result, _ = verify_gpu(model_path)
    if not result.available:
        message = f"LiteRT's GPU accelerator is unavailable: {result.details.get('error')}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI sets up software Vulkan)")
        pytest.skip(message)
    return result


def qnn_result(model_path):
    import importlib.util

    if importlib.util.find_spec("onnxruntime_qnn") is None and not os.environ.get("QNN_SDK_ROOT"):
        if os.environ.get("CI"):
            pytest.fail("the onnxruntime-qnn wheel is not installed; CI must run the Qualcomm compiler")
        pytest.skip('the onnxruntime-qnn wheel is not installed (pip install -e ".[npu]")')
    from edge_attn.targets.qnn import compile_qnn

    return compile_qnn(model_path, "SM8650")


@pytest.fixture(scope="module")
def every_producer(model_path, int8_path, tmp_path_factory):
    """target name → to_dict() of a result from each real producer that runs here (a cheap model each)."""
    from edge_attn.evaluate.compare import compare
    from edge_attn.evaluate.latency import host_target, measure_latency

    import numpy as np

    found = {"host": HostRunner(load_profile("host")).benchmark(model_path, runs=6, warmup=1).to_dict()}
    path, model, samples = int8_path
    labels = np.arange(len(samples)) % 3
    accuracy = compare(model, path, samples, labels)
    found["check host"] = host_target(path, measure_latency(path, runs=6, warmup=1), accuracy)
    found["gpu"] = gpu_result(model_path).to_dict()
    found["gpu int8"] = gpu_result(path).to_dict()
    found["qnn"] = qnn_result(path).to_dict()
    return found


def test_every_producer_has_exactly_the_common_keys(every_producer, adb_result, ssh_result):
    from edge_attn.result_shape import COMMON_KEYS

    results = {**every_producer, "adb": adb_result, "ssh": ssh_result}
    assert set(results) == {"host", "check host", "gpu", "gpu int8", "qnn", "adb", "ssh"}
    for name, result in results.items():
        assert list(result) == list(COMMON_KEYS), name
        assert_documented_shape(result)


def test_check_host_result_has_numerics_against_the_float_model(every_producer, int8_path):
    import numpy as np

    from edge_attn.litert import make_interpreter, run

    path, model, samples = int8_path
    d = every_producer["check host"]
    assert d["target"] == "host" and d["verdict"] == "ok" and d["numerics"]["reference"] == "float"
    # the formula, written out here: the int8 model's outputs on LiteRT against the float Keras model's
    quantized = run(make_interpreter(open(path, "rb").read()), samples).reshape(len(samples), -1)
    reference = model.predict(samples, verbose=0)
    assert d["numerics"]["max_abs_diff"] == pytest.approx(np.abs(quantized - reference).max(), rel=1e-5)
    assert d["numerics"]["agreement_count"] == int(np.sum(quantized.argmax(1) == reference.argmax(1)))
    assert d["latency_ms"]["warm"]["p50"] == d["p50_ms"] > 0 and d["device"]["name"] == "host"


def test_gpu_results_in_the_common_shape_say_what_ran_where(every_producer):
    good, bad = every_producer["gpu"], every_producer["gpu int8"]
    for d in good, bad:
        assert d["target"] == d["accelerator"] == "gpu" and d["available"]
        assert d["device"]["runtime"] == "ai-edge-litert" and d["device"]["runtime_version"]
        assert d["device"]["name"] == d["details"]["adapter"]
        # lavapipe is a software rasterizer: latency there is the CPU's, flagged as emulated
        assert d["device"]["emulated"] == ("CPU / Software" in d["details"]["adapter"])
        assert d["graph"]["total_ops"] == 3 and d["graph"]["fully_accelerated"] is True
        assert d["numerics"]["reference"] == "cpu" and d["numerics"]["samples"] == 32
        assert d["runs"] == len(d["latency_ms"]["times"]) == 32 and d["latency_ms"]["warm"]["warmup_runs_dropped"] >= 1
        assert d["latency_ms"]["cold_start"] > d["latency_ms"]["times"][0]  # set-up + the first run
    assert good["verdict"] == "ok" and good["symptom"] is None and good["numerics"]["top1_agreement"] == 1.0
    # this tiny int8 model happens to come out right on the GPU (the int8 CBAM's wrong numbers: test_targets_gpu.py)
    assert (bad["verdict"], bad["symptom"]) == (("wrong-numbers", bad["problems"][0]) if bad["problems"] else
                                                ("ok", None))


def test_qnn_result_in_the_common_shape(every_producer):
    d = every_producer["qnn"]
    assert d["target"] == "qnn:SM8650" and d["delegate"] == "qnn" and d["accelerator"] == "npu"
    assert d["device"]["soc"] == "SM8650" == d["details"]["soc"] and d["device"]["runtime"] == "QNN"
    assert d["device"]["runtime_version"].startswith("2.")
    ops = d["details"]["ops"]
    assert d["graph"]["total_ops"] == len(ops) and d["graph"]["accelerated_ops"] == sum(
        o["placement"] == "npu" for o in ops)
    assert d["details"]["compiled"] and d["verdict"] in ("ok", "partial")
    assert d["numerics"] is None and d["latency_ms"] is None and d["p50_ms"] is None  # nothing runs here


@pytest.fixture
def adb_result(tmp_path, monkeypatch, model_path):
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
    return AdbRunner(profile, adb=str(adb)).benchmark(model_path, delegate="xnnpack").to_dict()


@pytest.fixture
def ssh_result(tmp_path, model_path):
    from sshd import require_openssh, running_sshd

    from edge_attn.devices import parse_profile
    from edge_attn.runners.ssh import SshRunner

    require_openssh()
    (tmp_path / "sshd").mkdir()
    with running_sshd(tmp_path / "sshd") as server:
        profile = parse_profile({"kind": "ssh", "name": "loopback-board", "host": server.host, "user": server.user,
                                 "port": server.port, "identity_file": server.key, "python": sys.executable,
                                 "remote_dir": str(tmp_path / "board"), "connect_timeout_s": 5, "timeout_s": 60.0},
                                str(tmp_path / "board.toml"))
        return SshRunner(profile, state_dir=tmp_path / "state").benchmark(model_path, threads=1, runs=5,
                                                                          warmup=1).to_dict()


def test_every_producer_follows_the_report_schema(every_producer, adb_result, ssh_result):
    """docs/report.schema.json's target_result (what report.json ``accelerator``/``accelerators`` hold)."""
    jsonschema = pytest.importorskip("jsonschema")
    from edge_attn.evaluate.report import jsonable

    schema = json.load(open(os.path.join(os.path.dirname(DOC), "report.schema.json")))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator({**schema, "oneOf": [{"$ref": "#/$defs/target_result"}]})
    for name, result in {**every_producer, "adb": adb_result, "ssh": ssh_result}.items():
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                    for error in validator.iter_errors(jsonable(result)) for e in error.context or [error]]
        assert not problems, (name, problems)
    broken = {**every_producer["host"], "verdict": "fine"}  # the schema can fail
    assert any("verdict" in str(e.absolute_path) for error in validator.iter_errors(jsonable(broken))
               for e in error.context or [error])


def test_the_html_targets_section_shows_the_common_keys(every_producer):
    """The report page's Targets section: one row per measured target, read back with html.parser."""
    from html.parser import HTMLParser

    from edge_attn.evaluate.report import _targets, jsonable

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.cell)
                self.cell = None

    measured = [every_producer[name] for name in ("check host", "gpu int8", "qnn")]
    report = jsonable({"accelerator": measured[0], "accelerators": measured, "targets": []})
    parser = Rows()
    parser.feed(_targets(report))
    header, *rows = parser.rows
    assert header == ["target", "accelerator", "device", "graph", "numerics", "p50", "verdict"]
    assert len(rows) == 3  # the accelerator is listed once, though in both keys
    for row, result in zip(rows, measured):
        assert row[0] == result["target"] and row[1] == result["accelerator"]
        assert row[2].startswith(result["device"]["name"]) and result["device"]["runtime"] in row[2]
        assert ("EMULATED" in row[2]) == result["device"]["emulated"]
        assert row[3].startswith(f"{result['graph']['accelerated_ops']}/{result['graph']['total_ops']} ops")
        assert row[6].startswith(result["verdict"])
        if result["numerics"]:
            n = result["numerics"]
            assert f"vs {n['reference']}" in row[4] and f"top-1 {n['agreement_count']}/{n['samples']}" in row[4]
        else:
            assert row[4] == "—" and row[5] == "—"
