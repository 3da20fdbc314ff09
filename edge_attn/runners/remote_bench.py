"""Runs on a Linux board, copied there by the ssh runner: times a .tflite model with the board's LiteRT,
or runs samples through it and sends the raw outputs back.

The board has Python, numpy and ``ai_edge_litert`` (or the older ``tflite_runtime``), not edge_attn: the
ssh runner copies this file together with the self-contained modules it imports, :mod:`edge_attn.runners.timing`
(the timing loop every runner uses), :mod:`edge_attn.runners.machine` (the machine fingerprint) and
:mod:`edge_attn._compat` (LiteRT's private per-op view), into one folder, and this script imports them from there. The ssh runner (:mod:`edge_attn.runners.ssh`)
computes the statistics and does the (de)quantization on the host.

Command lines (one JSON object, or an .npz, goes to stdout; anything LiteRT prints goes to stderr):

``python remote_bench.py bench MODEL --delegate D --threads N --runs N --warmup N --deadline-s S``
    ``{"times_ms": [...], "cold_start_ms": ..., "peak_memory_mb": ..., "ops": [...], "fully_accelerated":
    ..., "runtime": ..., "machine": {...}}``, or ``{"unavailable": "why", "machine": {...}}`` when the
    delegate cannot run on this board. Timing is :func:`timing.timed_session`, as on the host: cold start,
    ``--warmup`` untimed invokes, then each of ``--runs`` invokes timed alone, stopping early once
    ``--deadline-s`` seconds have passed since loading.
``python remote_bench.py outputs MODEL --delegate D --threads N < inputs.npz > outputs.npz``
    ``inputs.npz`` holds ``x``: samples already in the model's input type, one per row; ``outputs.npz``
    holds ``y``: the model's raw output for each, one invoke per sample.

Exit codes: 0 done, 3 no numpy/LiteRT on this Python, 4 the model cannot be loaded, 2 bad arguments.
"""

import argparse
import io
import json
import os
import re
import sys
import time

if __package__:  # imported on the host, as part of edge_attn
    import edge_attn._compat as _compat
    import edge_attn.runners.machine as machine
    import edge_attn.runners.timing as timing
else:  # run on the board: the siblings were copied into this script's folder (sys.path[0])
    import _compat
    import machine
    import timing

EXIT_NO_LITERT = 3
EXIT_BAD_MODEL = 4
DELEGATES = ("cpu", "xnnpack", "gpu")  # nnapi is Android-only: the runner answers it without the board


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("bench", "outputs"))
    parser.add_argument("model")
    parser.add_argument("--delegate", choices=DELEGATES, default="xnnpack")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--deadline-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    # Results go to the real stdout; file descriptor 1 is pointed at stderr so that native code printing
    # to stdout cannot corrupt them.
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        interpreter_module = _litert()  # imports numpy too
    except ImportError as e:
        print(f"no LiteRT interpreter in this Python ({e}): pip install ai-edge-litert numpy", file=sys.stderr)
        return EXIT_NO_LITERT
    if args.mode == "bench":
        report = _bench(interpreter_module, args)
        results.write(json.dumps(report).encode() + b"\n")
    else:
        results.write(_outputs(interpreter_module, args, sys.stdin.buffer.read()))
    results.flush()
    return 0


def _litert():
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        from tflite_runtime import interpreter
    return interpreter


def _load(interpreter_module, path, delegate, threads):
    kwargs = {"model_path": path, "num_threads": threads}
    if delegate == "cpu":  # LiteRT's builtin kernels, without the XNNPACK delegate applied by default
        kwargs["experimental_op_resolver_type"] = interpreter_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = interpreter_module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        print(f"cannot load {path}: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(EXIT_BAD_MODEL)
    return interpreter


def _bench(interpreter_module, args):
    import numpy as np

    baseline_kib = timing.reset_peak_rss()
    deadline = time.perf_counter() + args.deadline_s
    about = {"runtime": f"{interpreter_module.__name__} on Python {sys.version.split()[0]}",
             "machine": machine.fingerprint(interpreter_module)}
    rng = np.random.default_rng(0)
    if args.delegate == "gpu":
        try:
            model, session = timing.timed_session(lambda: _compiled_model_on_gpu(args.model, args.threads),
                                                  lambda model: timing.fill_compiled_model_inputs(model, rng),
                                                  args.warmup, args.runs, deadline)
        except (ImportError, RuntimeError, ValueError) as e:
            # LiteRT's exceptions are often only source locations ("ERROR: [compiled_model.cc:1036]"); the
            # reason is in its native log on stderr, which the runner reads.
            lines = [re.sub(r"^[\u2514\s]*(ERROR: \[[^\]]*\])?\s*", "", line) for line in str(e).splitlines()]
            reason = "".join(f": {line}" for line in lines[-1:] if line)
            return {"unavailable": "LiteRT CompiledModel with the GPU accelerator could not be created on "
                                   f"the board{reason}", **about}
        return {**session, "peak_memory_mb": timing.peak_rss_growth_mb(baseline_kib), "ops": None,
                "fully_accelerated": model.is_fully_accelerated(), **about}

    interpreter, session = timing.timed_session(
        lambda: _load(interpreter_module, args.model, args.delegate, args.threads),
        lambda interpreter: timing.fill_interpreter_inputs(interpreter, rng), args.warmup, args.runs, deadline)
    nodes = _compat.interpreter_ops(interpreter)
    ops = None if nodes is None else [{"op_name": node["op_name"], "inputs": [int(t) for t in node["inputs"]],
                                       "outputs": [int(t) for t in node["outputs"]]} for node in nodes]
    return {**session, "peak_memory_mb": timing.peak_rss_growth_mb(baseline_kib), "ops": ops,
            "fully_accelerated": None, **about}


def _compiled_model_on_gpu(path, threads):
    """LiteRT's CompiledModel with the GPU accelerator (CPU for what it leaves)."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    options = Options(HardwareAccelerator.GPU | HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=threads))
    return CompiledModel.from_file(path, options=options)


def _outputs(interpreter_module, args, npz_bytes):
    import numpy as np

    x = np.load(io.BytesIO(npz_bytes))["x"]
    interpreter = _load(interpreter_module, args.model, args.delegate, args.threads)
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    outputs = []
    for sample in x:
        interpreter.set_tensor(input_detail["index"], sample[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_detail["index"])[0])
    buffer = io.BytesIO()
    np.savez(buffer, y=np.stack(outputs))
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
