"""The one timing loop of every latency measurement: cold start (load + first inference), then warm runs.

Self-contained on purpose (standard library, numpy imported where needed): the ssh runner copies this
file beside :mod:`edge_attn.runners.remote_bench` onto a board that has numpy and LiteRT but not
edge_attn, so the board times models with exactly the code the host runner, ``check`` and
``benchmarks/`` use.

What is timed (:func:`timed_session`): ``load()`` (creating the interpreter or compiled model and
allocating its tensors), then, after the input has been filled untimed, the first ``invoke()`` — their
sum is the cold start. Then ``warmup`` untimed invokes, then each of ``runs`` invokes timed alone, as
TFLite's ``benchmark_model`` does; timing stops early once ``deadline`` (a ``time.perf_counter()``
value) has passed, after at least one timed run (a single invoke cannot be interrupted).
"""

import time


def random_input(rng, dtype, shape):
    """Random data of ``dtype`` (integers over the type's whole range, floats standard normal): latency of
    dense kernels does not depend on the values."""
    import numpy as np

    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def fill_interpreter_inputs(interpreter, rng):
    """Set every input of a LiteRT Interpreter to random data of its type; return its invoke function."""
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(rng, detail["dtype"], tuple(detail["shape"])))
    return interpreter.invoke


def fill_compiled_model_inputs(model, rng):
    """Input and output buffers of a LiteRT CompiledModel's first signature (the one
    ``benchmark_litert_model`` runs), inputs filled with random data; return its run function."""
    signature = next(iter(model.get_signature_list()))
    inputs = {}
    for name, detail in model.get_input_tensor_details(signature).items():
        inputs[name] = model.create_input_buffer_by_name(signature, name)
        inputs[name].write(random_input(rng, detail["dtype"], tuple(detail["shape"])))
    outputs = {name: model.create_output_buffer_by_name(signature, name)
               for name in model.get_output_tensor_details(signature)}
    return lambda: model.run_by_name(signature, inputs, outputs)


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


def timed_session(load, fill_inputs, warmup, runs, deadline):
    """Cold start and warm runs of one model, as plain data (JSON-ready, for the board too).

    ``load()`` returns a handle; ``fill_inputs(handle)`` sets the inputs and returns the invoke function.
    Returns the handle and ``{"load_ms", "first_inference_ms", "cold_start_ms", "times_ms"}``.
    """
    start = time.perf_counter()
    handle = load()
    loaded = time.perf_counter()
    invoke = fill_inputs(handle)
    first_start = time.perf_counter()
    invoke()
    first_end = time.perf_counter()
    load_ms, first_ms = (loaded - start) * 1000.0, (first_end - first_start) * 1000.0
    return handle, {"load_ms": load_ms, "first_inference_ms": first_ms, "cold_start_ms": load_ms + first_ms,
                    "times_ms": time_runs(invoke, warmup, runs, deadline)}


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
