"""Host latency of a TFLite model with the LiteRT interpreter: percentiles of single-sample invoke times.

Only ``invoke()`` is timed (the input is set once beforehand): this is the number a device runner's
``benchmark_model`` reports too. The input is random data of the model's input type, which is enough
for dense CNN kernels whose run time does not depend on the values.
"""

import math

import numpy as np

from edge_attn.errors import BadInput
from edge_attn.litert import make_interpreter
from edge_attn.runners.remote_bench import random_input, time_runs  # what the device runners use


def measure_latency(tflite_model, runs=50, warmup=5, threads=2):
    """Time ``runs`` invokes after ``warmup`` untimed ones, with ``threads`` CPU threads (default delegates on).

    Returns ``dict(p50, p90, min, max, mean, runs, threads)``, times in milliseconds.
    """
    for name, value, least in (("runs", runs, 1), ("warmup", warmup, 0), ("threads", threads, 1)):
        if not isinstance(value, int) or value < least:
            raise BadInput(name, f"expected an integer >= {least}, got {value!r}")
    interpreter = make_interpreter(tflite_model, num_threads=threads)
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(rng, detail["dtype"], tuple(detail["shape"])))
    times_ms = np.asarray(time_runs(interpreter.invoke, warmup, runs, deadline=math.inf))
    return {
        "p50": float(np.percentile(times_ms, 50)),
        "p90": float(np.percentile(times_ms, 90)),
        "min": float(times_ms.min()),
        "max": float(times_ms.max()),
        "mean": float(times_ms.mean()),
        "runs": runs,
        "threads": threads,
    }

