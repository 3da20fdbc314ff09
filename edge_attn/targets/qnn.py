"""The Qualcomm NPU target: Qualcomm's HTP compiler, run through LiteRT's AOT compiler plug-in, decides.

``ai_edge_litert.aot.aot_compile(model, target=qualcomm.target.Target(SocModel(...)))`` boils down, for Qualcomm,
to one call of LiteRT's ``tools/apply_plugin_main --cmd=apply`` with the Qualcomm plug-in folder (its MLIR step is
an identity in ai-edge-litert 2.3, see ``aot/core/tflxx_util.py``). We call that binary ourselves, the same way
(``aot/core/apply_plugin.py``), for three reasons: the plug-in needs ``LD_LIBRARY_PATH`` set before its process
starts (:mod:`edge_attn.targets.qnn_libs`), we need a timeout, and we need the whole compiler log — it names every
op the compiler refused, which ``aot_compile`` only keeps when the compile fails.

Two runs, each a child process with an argument list and a timeout:

* ``--cmd=partition``: the model with each NPU partition moved into its own subgraph (1..K) and a dispatch op
  in its place in subgraph 0. Ops are matched back to the input model by their output tensors' names, which
  the partitioner keeps: exact per-op placement. Refused ops stay in subgraph 0; the log line
  ``LiteRT Op #5 'Atan2' (code=156) is not supported in Qualcomm Compiler.`` is each one's reason.
* ``--cmd=apply``: the real offline HTP compile (graph optimisation, VTCM allocation, a context binary per
  partition). Its output is the ``.tflite`` an app ships: ``DISPATCH_OP`` custom ops, refused ops left as ordinary
  ops between them, the NPU bytecode appended, and ``LiteRtStamp`` metadata naming the SoC.

The compiled model cannot run here (no Qualcomm runtime on x86): this target proves what compiles and where each
op lands, not numerics or latency (docs/targets-npu.md).
"""

import dataclasses
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from edge_attn.errors import BadInput, CheckFailed

MANUFACTURER = "Qualcomm"
DEFAULT_TIMEOUT_S = 600
# The line LiteRT's own wrapper parses (ai_edge_litert/aot/core/apply_plugin.py, _RE_PARTITION_STATS).
_PARTITION_STATS = re.compile(r"Partitioned subgraph<(\d+)>, selected (\d+) ops, from a total of (\d+) ops\. "
                              r"resulted in (\d+) partitions\.")
_SDK_VERSION = re.compile(r"(?:Applying plugin with SDK version: v|hexnn_ver_v)(\d+\.\d+\.\d+)")
_HTP_ARCH = re.compile(r"will overwrite it to (\d+)")


@dataclasses.dataclass(frozen=True)
class QnnOp:
    """Where one op of the input model's main subgraph lands: ``placement`` "npu" (in NPU partition
    ``partition``, 0-based as the compiler names them: ``qnn_partition_0``...) or "cpu", with the compiler's reason
    for a refused op."""

    index: int
    op: str
    placement: str
    partition: int | None = None
    reason: str | None = None

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QnnResult:
    """What Qualcomm's compiler (or Intel's partitioner) made of a model for one SoC.

    ``runtime_version`` is the QNN SDK version the compiler reported in its log; ``compiled`` whether the whole
    compile succeeded (``compile_seconds`` is that run's wall time, ``compiled_model`` its output bytes, not
    serialised). ``problems`` are one line each: a failed compile with the compiler's message, version
    mismatches, anything the placement could not account for. ``to_dict()`` is the shared result shape
    (:mod:`edge_attn.result_shape`): nothing runs here, so ``numerics`` and ``latency_ms`` are null, and the
    SoC, HTP architecture, libraries, compile time and per-op placement are in ``details``.
    """

    target: str
    soc: str
    runtime_version: str | None
    htp_arch: str | None
    libraries: str
    accelerated_ops: int
    total_ops: int
    partitions: int
    ops: tuple
    compiled: bool
    compile_seconds: float | None
    problems: tuple
    runtime: str = "QNN"
    compiled_model: bytes | None = dataclasses.field(default=None, repr=False)
    model: str | None = None
    failed: bool | None = None  # None: failed when not compiled (Intel's plug-in never compiles: set it)

    def to_dict(self):
        from edge_attn.result_shape import graph_dict, result_dict
        from edge_attn.runners.result import DeviceInfo

        failed = not self.compiled if self.failed is None else self.failed
        on_cpu = tuple(dict.fromkeys(op.op for op in self.ops if op.placement == "cpu"))
        graph = graph_dict(self.accelerated_ops, self.total_ops, self.partitions, on_cpu)
        device = DeviceInfo(name=self.target, soc=self.soc, runtime=self.runtime,
                            runtime_version=self.runtime_version)
        details = {"soc": self.soc, "htp_arch": self.htp_arch, "libraries": self.libraries,
                   "compiled": self.compiled, "compile_seconds": self.compile_seconds,
                   "compiled_bytes": len(self.compiled_model) if self.compiled_model is not None else None,
                   "ops": [op.to_dict() for op in self.ops]}
        return result_dict(target=self.target, model=self.model, device=device.to_dict(),
                           delegate=self.target.partition(":")[0], accelerator="npu", available=True, graph=graph,
                           failure="failed" if failed else None, problems=self.problems, details=details,
                           note="compiled ahead of time on this machine; not run (no NPU here)" if self.compiled
                           else None)


def soc_models():
    """The Qualcomm SoCs the installed LiteRT can compile for (its ``qualcomm.target.SocModel``, minus ALL)."""
    from ai_edge_litert.aot.vendors.qualcomm.target import SocModel

    return [m.value for m in SocModel if m is not SocModel.ALL]


def check_soc(soc, what="--soc"):
    """``soc`` in LiteRT's spelling (case-insensitive), or :class:`BadInput` listing the valid ones."""
    valid = soc_models()
    if soc is None:
        raise BadInput(what, f"a Qualcomm SoC is needed; one of {', '.join(valid)}")
    if not isinstance(soc, str) or soc.upper() not in valid:
        raise BadInput(what, f"{soc!r} is not a Qualcomm SoC LiteRT can compile for; expected one of "
                             f"{', '.join(valid)}")
    return soc.upper()


def parse_npu_target(text):
    """``"qnn:SM8650"`` → ``"SM8650"`` (the ``--npu`` option's syntax), or :class:`BadInput`."""
    kind, _, soc = str(text).partition(":")
    if kind.lower() != "qnn" or not soc:
        raise BadInput("--npu", f"{text!r}: expected qnn:SOC, e.g. qnn:SM8650 (Qualcomm; SoCs: "
                                f"{', '.join(soc_models())})")
    return check_soc(soc, "--npu")


def compile_qnn(model, soc, *, timeout_s=DEFAULT_TIMEOUT_S, libraries=None):
    """Partition and compile ``model`` (a .tflite path or flatbuffer bytes) for the Qualcomm ``soc``.

    Raises :class:`BadInput` for a bad model, an unknown SoC or missing QNN libraries; a model the compiler
    refuses is a result (``compiled`` False, the compiler's message in ``problems``), not an exception.
    """
    from edge_attn.convert import inspect_tflite
    from edge_attn.convert.verify import verify_tflite
    from edge_attn.targets.qnn_libs import find_qnn_libraries

    soc = check_soc(soc)
    what = "<bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
    data = verify_tflite(model, what=what)  # untrusted files are checked before native code reads them
    info = inspect_tflite(data)
    libraries = libraries or find_qnn_libraries()
    with tempfile.TemporaryDirectory(prefix="edge_attn-qnn-") as work:
        source = os.path.join(work, "model.tflite")
        with open(source, "wb") as f:
            f.write(data)
        plugin = _qualcomm_plugin_dir()
        partitioned, applied = (run_plugin(libraries.search_path, MANUFACTURER, plugin, command, source,
                                           os.path.join(work, f"{command}.tflite"), soc, timeout_s)
                                for command in ("partition", "apply"))
    log = partitioned.log + "\n" + applied.log
    problems = []
    if partitioned.ok:
        ops, partitions, placement_problems = placement(info, partitioned.output, partitioned.log,
                                                        _refusals(partitioned.log))
        problems += placement_problems
    else:
        reason = f"the whole compile failed: {partitioned.failure}"
        ops = tuple(QnnOp(op.index, op.op, "cpu", None, reason) for op in info.ops)
        partitions = 0
    if not applied.ok:
        problems.insert(0, f"{MANUFACTURER} compile for {soc} failed: {applied.failure}")
    problems += _version_problems(log, libraries)
    if info.num_subgraphs > 1:
        problems.append(f"the model has {info.num_subgraphs} subgraphs: only the main one's placement is listed")
    version = _first(_SDK_VERSION, log)
    arch = _first(_HTP_ARCH, log)
    return QnnResult(
        target=f"qnn:{soc}", soc=soc, runtime_version=version, htp_arch=f"v{arch}" if arch else None,
        libraries=libraries.source + (" (libQnnLpai.so: empty stand-in)" if libraries.lpai_stub else ""),
        accelerated_ops=sum(op.placement == "npu" for op in ops), total_ops=len(info.ops), partitions=partitions,
        ops=tuple(ops), compiled=applied.ok, compile_seconds=round(applied.seconds, 3) if applied.ran else None,
        problems=tuple(problems), compiled_model=applied.output if applied.ok else None,
        model=what if what != "<bytes>" else None)


@dataclasses.dataclass
class _Run:
    ok: bool
    ran: bool
    log: str
    seconds: float
    output: bytes | None
    failure: str | None


def _qualcomm_plugin_dir():
    from ai_edge_litert.aot.vendors.qualcomm import qualcomm_backend

    return plugin_dir(qualcomm_backend.COMPILER_PLUGIN_LIB_PATH, "--delegate qnn")


def plugin_dir(plugin_path, what):
    """The folder of a LiteRT compiler plug-in (a path relative to the ai_edge_litert package)."""
    from ai_edge_litert.aot.core import common

    try:
        return str(common.get_resource(Path(plugin_path)).parent)
    except FileNotFoundError as error:
        raise BadInput(what, f"the installed ai-edge-litert has no such compiler plug-in here ({error})") from error


def run_plugin(search_path, manufacturer, plugin_folder, command, source, output, soc, timeout_s):
    """One run of LiteRT's ``apply_plugin_main`` (``command`` "partition" or "apply") in a child process with
    ``search_path`` in front of its ``LD_LIBRARY_PATH``; a timeout or a non-zero exit is a failed run."""
    from ai_edge_litert.aot.core import common

    try:
        binary = str(common.get_resource(Path("tools/apply_plugin_main")))
    except FileNotFoundError as error:
        raise BadInput("ai-edge-litert", "has no AOT compiler (apply_plugin_main) for this platform") from error
    args = [binary, f"--cmd={command}", f"--model={source}", f"--o={output}", f"--soc_manufacturer={manufacturer}",
            f"--soc_model={soc}", "--err=--", f"--libs={plugin_folder}"]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*search_path, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    start = time.perf_counter()
    try:
        result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=timeout_s,
                                check=False)
    except subprocess.TimeoutExpired as expired:
        log = (expired.output or b"").decode("utf-8", "replace")
        return _Run(False, False, log, time.perf_counter() - start, None, f"timed out after {timeout_s} s ({command})")
    seconds = time.perf_counter() - start
    log = result.stdout.decode("utf-8", "replace")
    produced = os.path.isfile(output) and os.path.getsize(output) > 0
    if result.returncode == 0 and produced:
        with open(output, "rb") as f:
            return _Run(True, True, log, seconds, f.read(), None)
    return _Run(False, True, log, seconds, None, failure_message(log, result.returncode))


_ERROR_LINE = re.compile(r"^ERROR: \[[^\]]+\]\s*(.*)$")
# Lines the compiler prints as errors on every successful compile with QNN 2.51 (LiteRT 2.3 expects 2.50):
# not a reason for anything.
_NOISE = ("unexpected GraphHtpSettings option",)


def failure_message(log, returncode):
    """The compiler's own message for a failed run, in one line."""
    for line in log.splitlines():
        match = _ERROR_LINE.match(line.strip())
        message = match and match.group(1).strip()
        if message and not message.startswith("ERROR:") and not any(n in message for n in _NOISE):
            return _name_element_type(message)
    if "Loaded 0 plugins" in log:
        return "LiteRT's compiler plug-in did not load (a vendor library it needs is missing or unloadable)"
    tail = [line.strip() for line in log.splitlines() if line.strip()][-1:]
    signal_note = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    return f"{signal_note}" + (f"; last log line: {tail[0]}" if tail else "")


# LiteRT reports element types as LiteRtElementType, whose values are TfLiteType's
# (tensorflow/lite/core/c/c_api_types.h; litert/c/litert_model_types.h) — not the schema's TensorType numbers.
_TFLITE_TYPES = {0: "no type", 1: "float32", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
                 8: "complex64", 9: "int8", 10: "float16", 11: "float64", 12: "complex128", 13: "uint64",
                 14: "resource", 15: "variant", 16: "uint32", 17: "uint16", 18: "int4", 19: "bfloat16"}


def _name_element_type(message):
    return re.sub(r"litert type: (\d+)",
                  lambda m: f"litert type: {m.group(1)} ({_TFLITE_TYPES.get(int(m.group(1)), 'unknown')})", message)


# The compiler's line for an op it leaves on the CPU, and the validator message that can precede it.
_REFUSED = re.compile(r"LiteRT Op #(\d+) '([^']*)' \(code=(\d+)\) (.+)")
_VALIDATION = re.compile(r"QNN op validation failed: (.+)")


def _refusals(log):
    """op index → the compiler's reason, from its ``LiteRT Op #N ...`` lines and any validator message just before."""
    reasons, pending = {}, []
    for raw in log.splitlines():
        line = raw.strip()
        validation = _VALIDATION.search(line)
        if validation:
            pending.append(validation.group(1).strip())
            continue
        match = _REFUSED.search(line)
        if match:
            index, name, code, rest = match.groups()
            reason = f"'{name}' (code={code}) {rest.strip()}"
            if pending:
                reason += " (" + "; ".join(pending) + ")"
            reasons.setdefault(int(index), reason)
            pending = []
    return reasons


def placement(info, partitioned_bytes, log, refused):
    """Per-op placement from the partitioned model: ops of new subgraph k (1-based) are in NPU partition k-1;
    ``refused`` maps op index → the compiler's reason for an op left on the CPU."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(partitioned_bytes))
    partition_of = {}
    new_subgraphs = model.subgraphs[info.num_subgraphs:]
    for number, subgraph in enumerate(new_subgraphs):
        for op in subgraph.operators or []:
            for t in op.outputs if op.outputs is not None else []:
                partition_of[(subgraph.tensors[t].name or b"").decode("utf-8", "replace")] = number
    ops, problems = [], []
    for op in info.ops:
        names = [info.tensors[t].name for t in op.outputs]
        numbers = {partition_of[n] for n in names if n in partition_of}
        if numbers:
            ops.append(QnnOp(op.index, op.op, "npu", min(numbers)))
        else:
            ops.append(QnnOp(op.index, op.op, "cpu", None,
                             refused.get(op.index, "not selected by the partitioner (no message in its log)")))
    stats = [m for m in _PARTITION_STATS.findall(log) if m[0] == "0"]
    if stats:
        selected, total, count = int(stats[0][1]), int(stats[0][2]), int(stats[0][3])
        placed = sum(op.placement == "npu" for op in ops)
        if (selected, total, count) != (placed, len(info.ops), len(new_subgraphs)):
            problems.append(f"the compiler reports {selected}/{total} ops in {count} partition(s); matched by tensor "
                            f"name: {placed}/{len(info.ops)} in {len(new_subgraphs)}")
    return tuple(ops), len(new_subgraphs), problems


_VERSION_MISMATCH = re.compile(r"(Qnn (?:System |backend )?library) version ([\d.]+) is used\. "
                               r"The version LiteRT using is ([\d.]+)\.")


def _version_problems(log, libraries):
    found = []
    mismatches = list(dict.fromkeys(_VERSION_MISMATCH.findall(log)))
    if mismatches:
        found.append("QNN libraries differ from the ones this LiteRT was built against: " + ", ".join(
            f"{library.replace('Qnn ', '').replace('library', '').strip() or 'API'} {used} (expects {expected})"
            for library, used, expected in mismatches) + "; the compiler warns and continues")
    reported = _first(_SDK_VERSION, log)
    if libraries.declared_version and reported and not reported.startswith(libraries.declared_version):
        found.append(f"{libraries.source} declares QNN {libraries.declared_version}, the compiler reports {reported}")
    return found


def _first(pattern, text):
    match = pattern.search(text)
    return match.group(1) if match else None


def format_qnn(result):
    """The human-readable report of :func:`compile_qnn`'s result."""
    if result.runtime == "QNN":
        head = (f"{result.target} ({MANUFACTURER} HTP {result.htp_arch or '?'}, QNN {result.runtime_version or '?'}; "
                f"libraries: {result.libraries})")
    else:
        head = f"{result.target} ({result.runtime} {result.runtime_version or '?'})"
    if result.compiled:
        summary = (f"{result.accelerated_ops}/{result.total_ops} ops on the NPU in {result.partitions} partition(s); "
                   f"compiled in {result.compile_seconds:.2f} s ({len(result.compiled_model)} bytes)")
    elif result.partitions:
        summary = (f"{result.accelerated_ops}/{result.total_ops} ops would go to the NPU in {result.partitions} "
                   "partition(s); not compiled")
    else:
        summary = "not compiled: the model cannot be AOT-compiled for this SoC (it would run on the CPU only)"
    width = max([len(op.op) for op in result.ops] + [2])
    lines = [head, summary, f"{'#':>4}  {'op':<{width}}  {'placement':<9}  reason"]
    for op in result.ops:
        where = f"npu:{op.partition}" if op.placement == "npu" else "cpu"
        lines.append(f"{op.index:>4}  {op.op:<{width}}  {where:<9}  {op.reason or ''}".rstrip())
    lines += [f"problem: {p}" for p in result.problems]
    return "\n".join(lines)


def write_compiled(model, socs, out_dir, *, timeout_s=DEFAULT_TIMEOUT_S):
    """``edge-attn compile``: the AOT-compiled model per SoC and its CPU-only fallback (the input, unchanged) in
    ``out_dir``, with ``compile.json``; all files or none. A compile failure raises :class:`CheckFailed` (exit 1)
    with the compiler's message, and nothing is written. Returns the manifest written to ``compile.json``."""
    import hashlib
    import json

    from edge_attn.convert.verify import verify_tflite
    from edge_attn.pipeline import staged_outputs

    what = os.fspath(model)
    data = verify_tflite(model, what=what)
    stem = Path(what).stem
    results = [compile_qnn(data, soc, timeout_s=timeout_s) for soc in socs]
    failed = [r for r in results if not r.compiled]
    if failed:
        raise CheckFailed("; ".join(f"{what}: {r.problems[0]}" for r in failed))
    files = {f"{stem}.tflite": data}
    for result in results:
        files[f"{stem}_{MANUFACTURER}_{result.soc}.tflite"] = result.compiled_model
    manifest = {
        "model": what, "fallback": {"file": f"{stem}.tflite", "runs_on": "cpu (any LiteRT)"},
        "compiled": [{"file": f"{stem}_{MANUFACTURER}_{r.soc}.tflite", **r.to_dict()} for r in results],
        "sha256": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
    }
    with staged_outputs(out_dir) as staging:
        for name, blob in files.items():
            with open(os.path.join(staging, name), "wb") as f:
                f.write(blob)
        with open(os.path.join(staging, "compile.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")
    return manifest


def compat_qnn(model, delegate, soc, *, json_output=False):
    """``edge-attn compat MODEL --delegate qnn --soc SOC``: prints the placement; exit 1 when the compile failed."""
    import json

    if delegate != "qnn":
        raise BadInput("--soc", f"applies to --delegate qnn and openvino only, not {delegate}")
    if soc is None:
        raise BadInput("--soc", f"--delegate qnn needs a Qualcomm SoC; one of {', '.join(soc_models())}")
    result = compile_qnn(model, soc)
    print(json.dumps(result.to_dict(), indent=2) if json_output else format_qnn(result))
    return 0 if result.compiled else 1


def compile_cli(model, npu_targets, out_dir, *, json_output=False):
    """``edge-attn compile MODEL --npu qnn:SOC --out DIR``."""
    import json

    socs = list(dict.fromkeys(parse_npu_target(t) for t in npu_targets))
    manifest = write_compiled(model, socs, out_dir)
    if json_output:
        print(json.dumps(manifest, indent=2))
    else:
        for entry in manifest["compiled"]:
            graph, details = entry["graph"], entry["details"]
            print(f"{entry['target']}: {graph['accelerated_ops']}/{graph['total_ops']} ops on the NPU in "
                  f"{graph['partitions']} partition(s), compiled in {details['compile_seconds']:.2f} s (QNN "
                  f"{entry['device']['runtime_version']}) → {os.path.join(out_dir, entry['file'])}")
        print(f"CPU-only fallback: {os.path.join(out_dir, manifest['fallback']['file'])}")
    return 0
