"""Tests of edge_attn.targets.openvino: LiteRT's real Intel OpenVINO plug-in partitioning a model (partition only).

The op list comes from LiteRT's flatbuffer reader on the input model, the NPU names from LiteRT's Intel target
module, the builtin code of ATAN2 from the TFLite schema; the two partitions around a refused op in a chain are
derived by hand. Without the openvino wheel the plug-in tests skip with the reason, except under CI (``CI``
set), where they fail (.ci/run installs it).
"""

import importlib.util
import json
import os

import numpy as np
import pytest
from ai_edge_litert.aot.vendors.intel_openvino.target import SocModel
from ai_edge_litert.tools import flatbuffer_utils

from edge_attn import cli
from edge_attn._keras import tf
from edge_attn.convert.inspect import schema

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture
def openvino():
    if not HAVE_OPENVINO:
        message = 'the openvino wheel is not installed (pip install -e ".[npu-intel]")'
        if os.environ.get("CI"):
            pytest.fail(message + " — CI must run the Intel plug-in tests")
        pytest.skip(message)


@pytest.fixture(scope="module")
def atan2_model(tmp_path_factory):
    """int8 ops around a float ATAN2 (no int8 kernel), as a .tflite file."""
    spec = tf.TensorSpec([1, 4, 4, 3])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(lambda x: tf.math.atan2(x * 2.0, x + 3.0) * 3.0 + 1.0).get_concrete_function(spec)])
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.normal(size=spec.shape).astype("float32")] for _ in range(8))
    path = tmp_path_factory.mktemp("openvino") / "atan2.tflite"
    path.write_bytes(bytes(converter.convert()))
    return path


def op_names(path):
    model = flatbuffer_utils.read_model(str(path))
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return [names[max(model.operatorCodes[op.opcodeIndex].builtinCode,
                      model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
            for op in model.subgraphs[0].operators]


def test_intel_plugin_leaves_the_refused_op_on_the_cpu_and_says_it_cannot_compile(openvino, atan2_model, capsys):
    code = cli.main(["compat", str(atan2_model), "--delegate", "openvino", "--soc", "LNL", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    ops = op_names(atan2_model)
    atan2 = ops.index("ATAN2")
    placed = result["details"]["ops"]
    assert [(o["index"], o["op"]) for o in placed] == list(enumerate(ops))
    on_cpu = [o for o in placed if o["placement"] == "cpu"]
    assert [o["index"] for o in on_cpu] == [atan2]
    assert f"op type {schema.BuiltinOperator.ATAN2} (ATAN2) is not supported" in on_cpu[0]["reason"]
    assert [o["partition"] for o in placed if o["placement"] == "npu"] == \
        [0] * atan2 + [1] * (len(ops) - atan2 - 1)
    assert result["graph"]["partitions"] == 2 and result["details"]["compiled"] is False
    assert result["details"]["compile_seconds"] is None
    assert result["problems"][0].startswith("partition only") and result["device"]["runtime"] == "OpenVINO"
    assert result["verdict"] == "partial" and result["graph"]["on_cpu"] == ["ATAN2"]


def test_bad_intel_npu_name_lists_the_valid_ones(atan2_model, capsys):
    code = cli.main(["compat", str(atan2_model), "--delegate", "openvino", "--soc", "MTL"])
    _, err = capsys.readouterr()
    valid = [m.value for m in SocModel if m is not SocModel.ALL]
    assert code == 2 and len(err.strip().splitlines()) == 1 and all(v in err for v in valid)


def test_missing_openvino_says_how_to_install(atan2_model, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    code = cli.main(["compat", str(atan2_model), "--delegate", "openvino", "--soc", "LNL"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'pip install -e ".[npu-intel]"' in err
