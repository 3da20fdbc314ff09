"""Runs on a Linux board, copied there by the ssh runner: times a .tflite model with the board's LiteRT,
or runs samples through it and sends the raw outputs back.

Self-contained on purpose: the board has Python, numpy and ``ai_edge_litert`` (or the older
``tflite_runtime``), not edge_attn, so this file imports nothing else. The ssh runner
(:mod:`edge_attn.runners.ssh`) computes the statistics and does the (de)quantization on the host.

Command lines (one JSON object, or an .npz, goes to stdout; anything LiteRT prints goes to stderr):

``python remote_bench.py bench MODEL --delegate D --threads N --runs N --warmup N --deadline-s S``
    ``{"times_ms": [...], "peak_memory_mb": ..., "ops": [...], "delegation": ..., "runtime": ...,
    "board": {...}}`` (``board``: :func:`describe_board`), or
    ``{"unavailable": "why"}`` when the delegate cannot run on this board. Timing is as on the host
    runner: random input of the model's type set once, ``--warmup`` untimed invokes, then each of
    ``--runs`` invokes timed alone, stopping early once ``--deadline-s`` seconds have passed since loading.
``python remote_bench.py outputs MODEL --delegate D --threads N < inputs.npz > outputs.npz``
    ``inputs.npz`` holds ``x``: samples already in the model's input type, one per row; ``outputs.npz``
    holds ``y``: the model's raw output for each, one invoke per sample.

Exit codes: 0 done, 3 no numpy/LiteRT on this Python, 4 the model cannot be loaded, 2 bad arguments.
"""

import argparse
import io
import json
import os
import platform
import re
import sys
import time

# CPU part numbers of Arm Ltd (implementer 0x41) cores (MIDR, from Arm's Technical Reference Manuals).
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710"}
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


def random_input(rng, dtype, shape):
    """Random data of ``dtype`` (integers over the type's whole range, floats standard normal): latency of
    dense kernels does not depend on the values."""
    import numpy as np

    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _bench(interpreter_module, args):
    import numpy as np

    baseline_kib = reset_peak_rss()
    deadline = time.perf_counter() + args.deadline_s
    rng = np.random.default_rng(0)
    ops = None
    if args.delegate == "gpu":
        try:
            invoke, delegation = _compiled_model_on_gpu(args.model, args.threads, rng)
        except (ImportError, RuntimeError, ValueError) as e:
            # LiteRT's exceptions are often only source locations ("ERROR: [compiled_model.cc:1036]"); the
            # reason is in its native log on stderr, which the runner reads.
            lines = [re.sub(r"^[\u2514\s]*(ERROR: \[[^\]]*\])?\s*", "", line) for line in str(e).splitlines()]
            reason = "".join(f": {line}" for line in lines[-1:] if line)
            return {"unavailable": "LiteRT CompiledModel with the GPU accelerator could not be created on "
                                   f"the board{reason}"}
    else:
        interpreter = _load(interpreter_module, args.model, args.delegate, args.threads)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], random_input(rng, detail["dtype"], tuple(detail["shape"])))
        invoke, delegation = interpreter.invoke, None
        if args.delegate == "xnnpack" and hasattr(interpreter, "_get_ops_details"):
            ops = [{"op_name": node["op_name"], "inputs": [int(t) for t in node["inputs"]],
                    "outputs": [int(t) for t in node["outputs"]]} for node in interpreter._get_ops_details()]
    times_ms = time_runs(invoke, args.warmup, args.runs, deadline)
    return {"times_ms": times_ms, "peak_memory_mb": peak_rss_growth_mb(baseline_kib), "ops": ops,
            "delegation": delegation, "runtime": f"{interpreter_module.__name__} on Python {sys.version.split()[0]}",
            "board": describe_board()}


def describe_board():
    """This machine as it describes itself: ``arch`` (what Python runs as), ``kernel_arch``, ``cpu`` (the
    first core of ``/proc/cpuinfo``: an Arm core's name, else its model name), ``qemu_cpu`` and ``emulated``.

    ``emulated`` is True when user-mode emulation is evident: ``QEMU_CPU`` is set (qemu-user reads it), or
    the kernel's own architecture (``/proc/sys/kernel/arch``, which qemu-user does not translate) is not
    the one Python runs as (qemu-user answers ``uname`` with the guest's). Timings from an emulated board
    are not device timings.
    """
    arch = platform.machine()
    try:
        with open("/proc/sys/kernel/arch") as f:
            kernel_arch = f.read().strip() or None
    except OSError:
        kernel_arch = None
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the first core is enough
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
    except OSError:
        pass
    part = fields.get("cpu part", "").lower()
    cpu = (ARM_PARTS.get(part) if fields.get("cpu implementer", "").lower() == "0x41" else None) or \
        fields.get("model name") or (f"CPU part {part}" if part else None)
    qemu_cpu = os.environ.get("QEMU_CPU") or None
    aliases = {"arm64": "aarch64", "amd64": "x86_64"}
    foreign_kernel = kernel_arch is not None and aliases.get(kernel_arch, kernel_arch) != aliases.get(arch, arch)
    return {"arch": arch, "kernel_arch": kernel_arch, "cpu": cpu, "cpu_features": fields.get("features"),
            "qemu_cpu": qemu_cpu, "emulated": bool(qemu_cpu) or foreign_kernel}


def _compiled_model_on_gpu(path, threads, rng):
    """An invoke function for LiteRT's CompiledModel with the GPU accelerator (CPU for what it leaves)."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    options = Options(HardwareAccelerator.GPU | HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=threads))
    model = CompiledModel.from_file(path, options=options)
    signature = next(iter(model.get_signature_list()))
    inputs = {}
    for name, detail in model.get_input_tensor_details(signature).items():
        inputs[name] = model.create_input_buffer_by_name(signature, name)
        inputs[name].write(random_input(rng, detail["dtype"], tuple(detail["shape"])))
    outputs = {name: model.create_output_buffer_by_name(signature, name)
               for name in model.get_output_tensor_details(signature)}
    delegation = ("completely executed by the GPU" if model.is_fully_accelerated()
                  else "partially executed by the GPU (the rest on CPU)")
    return (lambda: model.run_by_name(signature, inputs, outputs)), delegation


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


def time_runs(invoke, warmup, runs, deadline):
    """Milliseconds of each timed ``invoke()`` after ``warmup`` untimed ones, stopping after ``deadline``
    (a ``time.perf_counter()`` value)."""
    for _ in range(warmup):
        invoke()
    times_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        invoke()
        end = time.perf_counter()
        times_ms.append((end - start) * 1000.0)
        if end > deadline:
            break
    return times_ms


def reset_peak_rss():
    """Reset this process's peak resident memory (Linux ``VmHWM``) and return the resident memory in KiB,
    or None where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5": reset the resident-set high-water mark (Linux >= 4.0, proc(5))
        return proc_status_kib("VmRSS")
    except (OSError, ValueError):
        return None


def peak_rss_growth_mb(baseline_kib):
    """Growth of the peak resident memory since the reset: loading the model, its arena and the runs."""
    if baseline_kib is None:
        return None
    try:
        return max(0, proc_status_kib("VmHWM") - baseline_kib) / 1024.0
    except (OSError, ValueError):
        return None


def proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise ValueError(f"/proc/self/status has no {field}")


if __name__ == "__main__":
    sys.exit(main())
