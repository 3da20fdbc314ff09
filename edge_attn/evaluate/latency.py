"""Host latency of a TFLite model for ``check`` and ``report.json``: the host runner's own measurement.

It is :func:`edge_attn.runners.host.measure_interpreter` (the LiteRT Interpreter with its default
XNNPACK delegate, :mod:`edge_attn.runners.timing`'s loop, warm-up detection and a bootstrap interval of
p50), so ``check``, ``edge-attn bench`` on the host and the pytest plugin report the same numbers. The
input is random data of the model's input type, which is enough for dense CNN kernels whose run time does
not depend on the values.
"""

import math
import os

from edge_attn.convert.probe import xnnpack_problem
from edge_attn.convert.verify import probe_tflite, verify_tflite
from edge_attn.result_shape import LATENCY_KEYS, Numerics, result_dict
from edge_attn.runners.host import host_fingerprint, measure_interpreter
from edge_attn.runners.result import DeviceInfo, LatencyResult, timed
from edge_attn.runners.settings import check_settings


def measure_latency(tflite_model, runs=50, warmup=5, threads=2):
    """Cold start and ``runs`` timed invokes after ``warmup`` untimed ones, with ``threads`` CPU threads.

    ``tflite_model``: the flatbuffer bytes (from edge_attn's converter) or a path. Returns the
    ``latency_ms`` block of the shared result shape (``docs/result-shape.md``): ``cold_start``, ``warm``
    (``p50``, ``p50_ci``, ``p90``, ``p95``, ``min``, ``max``, ``mean``, ``runs``, ``warmup_runs_dropped``),
    ``threads``, ``times``, ``delegation`` and ``graph``, plus the flat keys of earlier versions (``p50``,
    ``p90``, ``min``, ``max``, ``mean``, ``runs``: timed runs), times in milliseconds.
    """
    check_settings("xnnpack", threads, runs, warmup)
    if isinstance(tflite_model, (str, os.PathLike)):  # a user's file: verified and probed before LiteRT loads it
        path = os.fspath(tflite_model)
        tflite_model = verify_tflite(path)
        probe_tflite(tflite_model, what=path, config="default")
    # edge_attn's own bytes on which the XNNPACK delegate fails or crashes (probed in a child) are timed on builtin
    # kernels, and the block says so: a user's app with the default interpreter would fail the same way.
    problem = None if isinstance(tflite_model, (str, os.PathLike)) else xnnpack_problem(bytes(tflite_model))
    delegate = "cpu" if problem else "xnnpack"
    session, (graph, delegation) = measure_interpreter(tflite_model, delegate, threads, warmup, runs, math.inf)
    result = LatencyResult(device="host", model="<check>", delegate=delegate, threads=threads,
                           cold_start_ms=session["cold_start_ms"], graph=graph, delegation=delegation,
                           **timed(session["times_ms"]))
    block = result.to_dict()
    warm = block["latency_ms"]["warm"]
    return {**block["latency_ms"], "delegation": delegation, "graph": block["graph"],
            **{key: warm[key] for key in ("p50", "p90", "min", "max", "mean")}, "runs": result.runs,
            **({"xnnpack_problem": problem} if problem else {})}


def host_target(model_path, latency, accuracy):
    """``check``'s host result in the shared shape (docs/result-shape.md): LiteRT's default XNNPACK path on this
    machine computed the quantized outputs, scored against the float model (``accuracy``), and ``latency`` (a
    :func:`measure_latency` block) was measured there; when the delegate failed on the model (``latency``'s
    ``xnnpack_problem``) the verdict is "failed", saying so, and the figures come from builtin kernels."""
    info = DeviceInfo.from_fingerprint("host", host_fingerprint())
    problem = latency.get("xnnpack_problem")
    return result_dict(target="host", model=model_path, device=info.to_dict(), delegate="xnnpack",
                       accelerator="xnnpack", available=True, graph=latency["graph"],
                       numerics=Numerics.from_accuracy(accuracy, reference="float"),
                       latency={key: latency[key] for key in LATENCY_KEYS}, delegation=latency["delegation"],
                       failure="failed" if problem else None, problems=[xnnpack_warning(problem)] if problem else (),
                       note="outputs and latency from LiteRT's builtin kernels" if problem else None)


def xnnpack_warning(problem):
    """The one line said when LiteRT's XNNPACK delegate fails on a converted model (``problem``: LiteRT's reason)."""
    return (f"LiteRT's XNNPACK delegate, which its Interpreter applies by default, fails on this model ({problem}): an "
            "app loading it the default way would fail too; edge_attn checked and timed it on builtin kernels "
            "(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES), which run it")
