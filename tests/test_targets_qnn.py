"""Tests of edge_attn.targets.qnn: the real Qualcomm HTP compiler (QNN libraries from the onnxruntime-qnn wheel)
run through LiteRT's AOT plug-in.

Expectations come from outside the code under test: op lists and indices from LiteRT's own flatbuffer reader
(``flatbuffer_utils``) on the input model; the compiled model LiteRT writes (its DISPATCH_OP custom ops, the ops left
between them and its ``LiteRtStamp`` metadata) read back the same way; the SoC list from LiteRT's Qualcomm target
module. Partition counts for the small models are derived by hand from the graph. Where the wheel is absent the
compiler tests skip with the reason — except under CI (``CI`` set), where a missing wheel fails them (.ci/run installs it).
"""

import ctypes
import importlib.util
import json
import os

import numpy as np
import pytest
from ai_edge_litert.aot.vendors.qualcomm.target import SocModel
from ai_edge_litert.tools import flatbuffer_utils

from edge_attn import cli
from edge_attn._keras import tf
from edge_attn.convert import convert_model, load_recipe
from edge_attn.convert.inspect import schema
from edge_attn.models import create_model
from edge_attn.qat import calibrate_ranges, quantize_aware
from edge_attn.targets import qnn_libs
from edge_attn.targets.qnn import compile_qnn

HAVE_QNN = importlib.util.find_spec("onnxruntime_qnn") is not None or bool(os.environ.get("QNN_SDK_ROOT"))
VALID_SOCS = [m.value for m in SocModel if m is not SocModel.ALL]
OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


@pytest.fixture
def qnn():
    """Skip without the QNN libraries, except in CI (CI=true), which must run these tests."""
    if not HAVE_QNN:
        message = 'the onnxruntime-qnn wheel is not installed (pip install -e ".[npu]") and QNN_SDK_ROOT is unset'
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run the Qualcomm compiler tests")
        pytest.skip(message)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """The prepared QNN library folder goes to a per-session cache, not the user's home."""
    monkeypatch.setenv("EDGE_ATTN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def ptq_int8(fn, shape, allow_float_ops=False):
    """A tf function of one float input as post-training int8 .tflite bytes; with ``allow_float_ops`` ops that
    have no int8 kernel stay in float between DEQUANTIZE/QUANTIZE."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(fn).get_concrete_function(tf.TensorSpec(shape))])
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.normal(size=shape).astype("float32")] for _ in range(8))
    if not allow_float_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def models():
    """name → flatbuffer bytes."""
    qat = quantize_aware(create_model("cbam_resnet20", input_shape=(8, 8, 1), classes=10))
    samples = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
    calibrate_ranges(qat.model, qat.float_model, samples)
    return {
        "cbam_resnet20": convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples[:8]]),
        # ATAN2 has no int8 kernel: it stays a float op between int8 MULs/ADDs.
        "atan2": ptq_int8(lambda x: tf.math.atan2(x * 2.0, x + 3.0) * 3.0 + 1.0, [1, 4, 4, 3], allow_float_ops=True),
        # RFFT2D makes a complex64 tensor.
        "rfft2d": ptq_int8(lambda x: tf.abs(tf.signal.rfft2d(x * 2.0)) * 3.0, [1, 4, 4, 4], allow_float_ops=True),
    }


@pytest.fixture(scope="module")
def se_resnet50():
    """se_resnet50 at 32×32 (its smallest input), random init, through edge_attn's own post-training int8 path."""
    model = create_model("se_resnet50", input_shape=(32, 32, 1), classes=10)
    samples = np.random.default_rng(0).normal(size=(2, 1, 32, 32, 1)).astype("float32")
    return convert_model(model, load_recipe("int8-ptq"), list(samples))


def ops_of(data, subgraph=0):
    """[(op name, custom code)] of a subgraph, read by LiteRT's flatbuffer utilities."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    result = []
    for op in model.subgraphs[subgraph].operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
        result.append(f"{name}:{code.customCode.decode()}" if name == "CUSTOM" else name)
    return result


def metadata(data):
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    found = {}
    for entry in model.metadata or []:
        buffer = model.buffers[entry.buffer]
        if buffer.data is not None:
            found[entry.name.decode()] = bytes(buffer.data)
        else:  # buffers stored after the flatbuffer (offset/size), as LiteRT writes large models
            found[entry.name.decode()] = bytes(data[buffer.offset:buffer.offset + buffer.size])
    return found


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cbam_resnet20_int8_placement_from_the_compiler(qnn, models, tmp_path, capsys):
    path = tmp_path / "cbam.tflite"
    path.write_bytes(models["cbam_resnet20"])
    code, out, err = run_cli(capsys, "compat", str(path), "--delegate", "qnn", "--soc", "SM8650", "--json")
    assert code == 0, err
    result = json.loads(out)
    expected_ops = ops_of(models["cbam_resnet20"])
    ops, graph, details = result["details"]["ops"], result["graph"], result["details"]
    assert [(o["index"], o["op"]) for o in ops] == list(enumerate(expected_ops))
    assert result["target"] == "qnn:SM8650" and details["compiled"]
    assert result["device"]["runtime"] == "QNN" and result["device"]["soc"] == "SM8650"
    assert result["device"]["runtime_version"].startswith("2.")  # the wheel's QNN, as the compiler's log states it
    assert details["htp_arch"] == "v75"  # SM8650 is Snapdragon 8 Gen 3: Hexagon v75
    # Every op of an all-int8 SE/CBAM ResNet is an HTP op: one partition, nothing on the CPU.
    assert {o["placement"] for o in ops} == {"npu"} and graph["partitions"] == 1
    assert graph["accelerated_ops"] == graph["total_ops"] == len(expected_ops)
    assert details["compile_seconds"] > 0
    # the common keys: the whole graph on the NPU, nothing run here
    assert graph["fully_accelerated"] is True and graph["on_cpu"] == []
    assert result["verdict"] == "ok" and result["symptom"] is None and result["accelerator"] == "npu"
    assert result["numerics"] is None and result["latency_ms"] is None


def test_se_resnet50_int8_compiles_whole(qnn, se_resnet50):
    result = compile_qnn(se_resnet50, "SM8850")
    assert result.compiled and result.htp_arch == "v81"
    assert [(o.index, o.op) for o in result.ops] == list(enumerate(ops_of(se_resnet50)))
    assert result.accelerated_ops == result.total_ops and result.partitions == 1
    compiled_ops = ops_of(result.compiled_model)
    assert compiled_ops == ["CUSTOM:DISPATCH_OP"]
    assert metadata(result.compiled_model)["LiteRtStamp"].startswith(b"Qualcomm")


def test_refused_op_stays_on_the_cpu_with_the_compilers_reason(qnn, models):
    result = compile_qnn(models["atan2"], "SM8650")
    ops = ops_of(models["atan2"])
    atan2 = ops.index("ATAN2")
    on_cpu = [o for o in result.ops if o.placement == "cpu"]
    assert [(o.index, o.op) for o in on_cpu] == [(atan2, "ATAN2")]
    assert "not supported in Qualcomm Compiler" in on_cpu[0].reason and "Atan2" in on_cpu[0].reason
    # ATAN2 sits in the middle of a chain: the ops before it and after it make two NPU partitions, in order.
    assert [o.partition for o in result.ops if o.placement == "npu"] == [0] * atan2 + [1] * (len(ops) - atan2 - 1)
    assert result.partitions == 2 and result.accelerated_ops == len(ops) - 1 and result.compiled
    # The model LiteRT wrote agrees: one dispatch op per partition, the refused op between them on the CPU.
    assert ops_of(result.compiled_model) == ["CUSTOM:DISPATCH_OP", "ATAN2", "CUSTOM:DISPATCH_OP"]
    d = result.to_dict()  # the common keys: a partial graph, and what stayed on the CPU
    assert d["verdict"] == "partial" and d["graph"]["on_cpu"] == ["ATAN2"] and d["graph"]["fully_accelerated"] is False
    assert d["symptom"] == f"{len(ops) - 1} of {len(ops)} ops on npu, the rest on the CPU; on the CPU: ATAN2"


def test_complex64_fails_the_whole_compile_in_one_line(qnn, models, tmp_path, capsys):
    path = tmp_path / "rfft.tflite"
    path.write_bytes(models["rfft2d"])
    code, out, err = run_cli(capsys, "compat", str(path), "--delegate", "qnn", "--soc", "SM8650")
    assert code == 1
    failure = [line for line in out.splitlines() if "compile for SM8650 failed" in line]
    assert len(failure) == 1 and "Unsupported data type" in failure[0] and "complex64" in failure[0]
    assert "not compiled" in out and "npu:" not in out
    d = json.loads(run_cli(capsys, "compat", str(path), "--delegate", "qnn", "--soc", "SM8650", "--json")[1])
    assert d["verdict"] == "failed" and "complex64" in d["symptom"] and d["details"]["compiled"] is False
    # `compile` refuses too: exit 1, the compiler's message in one line, nothing written.
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "compile", str(path), "--npu", "qnn:SM8650", "--out", str(out_dir))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "complex64" in err
    assert not out_dir.exists()


def test_compile_writes_the_npu_model_and_its_cpu_fallback(qnn, models, tmp_path, capsys):
    path = tmp_path / "atan2.tflite"
    path.write_bytes(models["atan2"])
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "compile", str(path), "--npu", "qnn:SM8650", "--npu", "qnn:sm8850",
                             "--out", str(out_dir), "--json")
    assert code == 0, err
    assert (out_dir / "atan2.tflite").read_bytes() == models["atan2"]  # the fallback is the plain model
    manifest = json.loads((out_dir / "compile.json").read_text())
    assert json.loads(out) == manifest
    for soc in ("SM8650", "SM8850"):
        compiled = (out_dir / f"atan2_Qualcomm_{soc}.tflite").read_bytes()
        assert metadata(compiled)["LiteRtStamp"].startswith(b"Qualcomm") and soc.encode() in metadata(compiled)[
            "LiteRtStamp"]
        assert ops_of(compiled) == ["CUSTOM:DISPATCH_OP", "ATAN2", "CUSTOM:DISPATCH_OP"]
    import hashlib

    assert manifest["sha256"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                  for p in out_dir.iterdir() if p.suffix == ".tflite"}


def test_a_compile_over_its_time_limit_is_a_failure_not_a_hang(qnn, models):
    result = compile_qnn(models["atan2"], "SM8650", timeout_s=0.001)  # no process starts that fast
    assert not result.compiled and result.compiled_model is None
    assert "timed out after 0.001 s" in result.problems[0]


@pytest.mark.parametrize("argv, option", [
    (["--soc", "SM9999"], "--soc"),
    ([], "--soc"),
])
def test_bad_soc_exits_2_listing_the_valid_ones(models, tmp_path, capsys, argv, option):
    path = tmp_path / "m.tflite"
    path.write_bytes(models["atan2"])
    code, out, err = run_cli(capsys, "compat", str(path), "--delegate", "qnn", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert option in err and all(soc in err for soc in VALID_SOCS)


def test_bad_npu_target_exits_2(models, tmp_path, capsys):
    path = tmp_path / "m.tflite"
    path.write_bytes(models["atan2"])
    code, _, err = run_cli(capsys, "compile", str(path), "--npu", "mediatek:MT6989", "--out", str(tmp_path / "o"))
    assert code == 2 and "--npu" in err and "qnn:SOC" in err and not (tmp_path / "o").exists()


def test_missing_qnn_libraries_say_how_to_install(models, tmp_path, capsys, monkeypatch):
    path = tmp_path / "m.tflite"
    path.write_bytes(models["atan2"])
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.setattr(qnn_libs, "_wheel_dir", lambda: None)
    code, out, err = run_cli(capsys, "compat", str(path), "--delegate", "qnn", "--soc", "SM8650")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert 'pip install -e ".[npu]"' in err and "QNN_SDK_ROOT" in err


def test_qnn_sdk_root_without_the_libraries_is_named(models, tmp_path, capsys, monkeypatch):
    path = tmp_path / "m.tflite"
    path.write_bytes(models["atan2"])
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))
    code, _, err = run_cli(capsys, "compat", str(path), "--delegate", "qnn", "--soc", "SM8650")
    assert code == 2 and err.count("QNN_SDK_ROOT") == 1 and "libQnnHtp.so" in err


def test_the_lpai_stand_in_is_an_empty_library(qnn, tmp_path):
    libraries = qnn_libs.find_qnn_libraries(cache_dir=str(tmp_path))
    if not libraries.lpai_stub:
        pytest.skip("the QNN SDK ships its own libQnnLpai.so")
    stub = ctypes.CDLL(os.path.join(libraries.folder, "libQnnLpai.so"))
    # No QNN interface: a plug-in asking it for the LPAI backend gets nothing rather than another backend.
    assert not hasattr(stub, "QnnInterface_getProviders")
    htp = os.path.realpath(os.path.join(libraries.folder, "libQnnHtp.so"))  # its own folder: its RPATH finds libc++
    assert hasattr(ctypes.CDLL(htp), "QnnInterface_getProviders")


def test_without_a_c_compiler_the_stand_in_cannot_be_built(qnn, tmp_path, monkeypatch):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    from edge_attn.errors import BadInput

    with pytest.raises(BadInput) as caught:
        qnn_libs.find_qnn_libraries(cache_dir=str(tmp_path / "cache"))
    assert "no C compiler" in str(caught.value) and "apt-get install gcc" in str(caught.value)
    assert not any((tmp_path / "cache" / "qnn-libs").iterdir())  # no half-built folder left behind


def test_nnapi_deprecation_points_to_the_npu_target():
    from edge_attn.delegates.graph import load_graph
    from edge_attn.delegates.nnapi import warnings
    from edge_attn.delegates.rules import Target

    data = ptq_int8(lambda x: x * 2.0, [1, 2, 2, 1])
    found = [w for w in warnings(load_graph(data), [], Target(android_api=35)) if "deprecated" in w]
    assert len(found) == 1 and "--delegate qnn" in found[0] and "GPU" in found[0]
