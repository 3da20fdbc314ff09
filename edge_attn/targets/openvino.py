"""The Intel NPU target, partition only: LiteRT's Intel OpenVINO compiler plug-in says which ops it would take.

The plug-in (``ai_edge_litert/vendors/intel_openvino/compiler``) links the OpenVINO runtime of one release
(``libopenvino.so.2631`` = the ``openvino`` wheel 2026.3.1, ``pip install -e ".[npu-intel]"``) and partitions like
the Qualcomm one (:func:`edge_attn.targets.qnn.placement` reads the result). Compiling for the NPU cannot work
here: OpenVINO's NPU compiler (``libopenvino_intel_npu_compiler``) ships only in Intel's own toolkit, not in the
wheel ("Failed to compile ... for all devices in [NPU]"). So the result is the plug-in's placement with
``compiled`` False, and says so. The plug-in's reason for a refused op names the builtin code only
(``op type 156 is not supported``); the op name is added from the TFLite schema.
"""

import importlib.metadata
import importlib.util
import os
import re
import tempfile

from edge_attn.errors import BadInput
from edge_attn.targets.qnn import QnnResult, QnnOp, placement, plugin_dir, run_plugin

MANUFACTURER = "IntelOpenVINO"
INSTALL_HINT = 'pip install -e ".[npu-intel]" (the openvino wheel this LiteRT links: 2026.3.1)'
_PLUGIN = "vendors/intel_openvino/compiler/libLiteRtCompilerPlugin_IntelOpenvino.so"
_REFUSED = re.compile(r"op type (\d+) is not supported")
PARTITION_ONLY = ("partition only: the Intel NPU compile needs OpenVINO's NPU compiler, which ships in Intel's "
                  "toolkit and not in the openvino wheel; no compiled model")


def soc_models():
    """The Intel NPUs the installed LiteRT knows (``intel_openvino.target.SocModel``, minus ALL)."""
    from ai_edge_litert.aot.vendors.intel_openvino.target import SocModel

    return [m.value for m in SocModel if m is not SocModel.ALL]


def partition_openvino(model, soc, *, timeout_s=600):
    """Which ops of ``model`` (a .tflite path or bytes) the Intel plug-in would put on the ``soc`` NPU."""
    from edge_attn.convert import inspect_tflite
    from edge_attn.convert.inspect import schema
    from edge_attn.convert.verify import verify_tflite

    valid = soc_models()
    if not isinstance(soc, str) or soc.upper() not in valid:
        raise BadInput("--soc", f"{soc!r} is not an Intel NPU LiteRT knows; expected one of {', '.join(valid)}")
    soc = soc.upper()
    what = "<bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
    data = verify_tflite(model, what=what)
    info = inspect_tflite(data)
    libs, version = _openvino_libs()
    with tempfile.TemporaryDirectory(prefix="edge_attn-openvino-") as work:
        source = os.path.join(work, "model.tflite")
        with open(source, "wb") as f:
            f.write(data)
        run = run_plugin((libs,), MANUFACTURER, plugin_dir(_PLUGIN, "--delegate openvino"), "partition", source,
                         os.path.join(work, "partition.tflite"), soc, timeout_s)
    problems = [PARTITION_ONLY]
    if run.ok:
        codes = {name: code for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
        refused_codes = {int(c) for c in _REFUSED.findall(run.log)}
        refused = {op.index: f"op type {codes[op.op]} ({op.op}) is not supported by the Intel OpenVINO plug-in"
                   for op in info.ops if codes.get(op.op) in refused_codes}
        ops, partitions, more = placement(info, run.output, run.log, refused)
        problems += more
    else:
        ops = tuple(QnnOp(op.index, op.op, "cpu", None, f"partitioning failed: {run.failure}") for op in info.ops)
        partitions = 0
        problems.insert(0, f"Intel OpenVINO partitioning for {soc} failed: {run.failure}")
    return QnnResult(target=f"openvino:{soc}", soc=soc, runtime="OpenVINO", runtime_version=version, htp_arch=None,
                     libraries=f"openvino {version}", accelerated_ops=sum(op.placement == "npu" for op in ops),
                     total_ops=len(info.ops), partitions=partitions, ops=tuple(ops), compiled=False,
                     compile_seconds=None, problems=tuple(problems), model=what if what != "<bytes>" else None,
                     failed=not run.ok)


def _openvino_libs():
    spec = importlib.util.find_spec("openvino")  # the folder, without importing the runtime
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("--delegate openvino", f"the OpenVINO runtime is not installed: {INSTALL_HINT}")
    libs = os.path.join(list(spec.submodule_search_locations)[0], "libs")
    if not os.path.isdir(libs):
        raise BadInput("openvino", f"{libs} is missing; reinstall: {INSTALL_HINT}")
    return libs, importlib.metadata.version("openvino")


def compat_openvino(model, soc, *, json_output=False):
    """``edge-attn compat MODEL --delegate openvino --soc LNL``."""
    import json

    from edge_attn.targets.qnn import format_qnn

    if soc is None:
        raise BadInput("--soc", f"--delegate openvino needs an Intel NPU; one of {', '.join(soc_models())}")
    result = partition_openvino(model, soc)
    print(json.dumps(result.to_dict(), indent=2) if json_output else format_qnn(result))
    return 0 if not result.problems[0].startswith("Intel OpenVINO partitioning") else 1
