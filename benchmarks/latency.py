"""Latency of int8 SE/CBAM ResNet-50 against float and against ONNX Runtime int8, as ratios from one run.

    python -m benchmarks.latency [--runs 30] [--threads 1 2] [--size 224] [--op-profile] [--out benchmarks/latency.json]

In one process, for ``resnet50``, ``se_resnet50`` and ``cbam_resnet50`` (random init, 1000 classes, batch 1):

* edge_attn ``int8-qat`` (quantize-aware wrapping + range calibration on random samples, no fine-tune —
  enough for speed) and ``f32``, run in LiteRT with XNNPACK;
* the peer: the float Keras model exported to ONNX (tf2onnx) and quantized with ONNX Runtime's
  ``quantize_static`` (QDQ, per-channel, same calibration samples), run in onnxruntime;
* conversion wall time and peak RSS of the edge_attn int8 conversion, in a child process per model.

Models are measured interleaved in rounds (every model once per round) so machine drift hits all alike;
each reported number is the median of the per-round medians. It prints a table of ratios and writes the
raw numbers as JSON. ``--op-profile`` adds where the time goes in each int8 model at the largest thread
count: every operator timed on its own (:mod:`edge_attn.evaluate.op_profile`), summed per op type, and
the attention ops' share. Needs the ``bench`` extra (``pip install -e ".[bench]"``). Not a test: timings on
shared machines are noisy, so only ratios measured side by side mean anything.
"""

import argparse
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

from edge_attn.runners.timing import time_runs  # the timing loop edge_attn's runners use

MODELS = ("resnet50", "se_resnet50", "cbam_resnet50")
CALIBRATION_SAMPLES = 8


def _samples(size, count=CALIBRATION_SAMPLES):
    return np.random.default_rng(0).uniform(0, 1, (count, size, size, 3)).astype("float32")


def _convert_int8(name, size, path, queue):
    """Child process: build, QAT-wrap, calibrate and convert; report wall time and peak RSS."""
    start = time.perf_counter()
    from edge_attn.convert import convert_model, load_recipe
    from edge_attn.models import create_model
    from edge_attn.qat import calibrate_ranges, quantize_aware

    model = create_model(name, input_shape=(size, size, 3), classes=1000)
    samples = _samples(size)
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, samples, batch_size=4)
    data = convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples])
    with open(path, "wb") as f:
        f.write(data)
    model.save(os.path.join(os.path.dirname(path), f"{name}.keras"))  # the float model, for f32 and ONNX
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    queue.put({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_mb})


def _convert_f32_and_onnx(name, size, workdir):
    from edge_attn.convert import convert_model, load_recipe
    from edge_attn.modelio import load_keras_model

    model = load_keras_model(os.path.join(workdir, f"{name}.keras"))
    f32 = os.path.join(workdir, f"{name}_f32.tflite")
    with open(f32, "wb") as f:
        f.write(convert_model(model, load_recipe("f32")))
    return f32, _onnx_int8(model, size, workdir, name)


def _onnx_int8(model, size, workdir, name):
    import onnx
    import tf2onnx
    from edge_attn._keras import tf
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    spec = (tf.TensorSpec((1, size, size, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    float_path = os.path.join(workdir, f"{name}.onnx")
    onnx.save(proto, float_path)
    samples = _samples(size)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter([{"input": s[None]} for s in samples])

        def get_next(self):
            return next(self._items, None)

    int8_path = os.path.join(workdir, f"{name}_int8.onnx")
    quantize_static(float_path, int8_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return int8_path


def _litert_runner(path, threads):
    from edge_attn.litert import make_interpreter

    interpreter = make_interpreter(path, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    x = np.zeros(detail["shape"], detail["dtype"])
    interpreter.set_tensor(detail["index"], x)
    return interpreter.invoke


def _ort_runner(path, threads, size):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros((1, size, size, 3), np.float32)}
    return lambda: session.run(None, feed)


def _interleaved_p50(runners, runs, rounds=5, warmup=3):
    """Median over rounds of each runner's median latency (ms); every runner runs once per round."""
    for run in runners.values():
        time_runs(run, warmup, 0, deadline=math.inf)
    per_round = {key: [] for key in runners}
    per_run = max(1, runs // rounds)
    for _ in range(rounds):
        for key, run in runners.items():
            per_round[key].append(statistics.median(time_runs(run, 0, per_run, deadline=math.inf)))
    return {key: statistics.median(values) for key, values in per_round.items()}


def _op_profiles(workdir, threads):
    """Per-op-type time of each int8 model; prints the table and each model's attention-op share."""
    from edge_attn.evaluate.op_profile import profile_ops

    profiles = {}
    for name in MODELS:
        profile = profile_ops(os.path.join(workdir, f"{name}_int8.tflite"), threads=threads).to_dict()
        profiles[name] = profile
        # Attention ops carry their layer's name (``..._se_...``, ``..._cbam_...``) in their output tensor.
        attention_ms = sum(op["ms"] for op in profile["ops"] if re.search(r"_(se|cbam)(_|/|;|$)", op["output"]))
        profile["attention_ms"] = round(attention_ms, 4)
        print(f"\nop profile {name} int8, {threads} threads: model {profile['model_ms']:.2f} ms, "
              f"sum of ops alone {profile['sum_of_ops_ms']:.2f} ms, attention ops {attention_ms:.2f} ms "
              f"({100 * attention_ms / max(profile['sum_of_ops_ms'], 1e-9):.1f}%)")
        for row in profile["by_type"]:
            print(f"  {row['op']:<18} x{row['count']:<4} {row['ms']:>8.3f} ms  {row['percent']:>5.1f}%")
    return profiles


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model and thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--op-profile", action="store_true", help="time every op of the int8 models on its own")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "latency.json"))
    args = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="edge_attn_bench_")
    conversion = {}
    for name in MODELS:
        queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=_convert_int8, args=(name, args.size, os.path.join(workdir, f"{name}_int8.tflite"), queue))
        child.start()
        conversion[name] = queue.get()
        child.join()
        print(f"converted {name}: {conversion[name]['seconds']:.1f} s, peak RSS {conversion[name]['peak_rss_mb']:.0f} MB",
              file=sys.stderr)
    paths = {name: _convert_f32_and_onnx(name, args.size, workdir) for name in MODELS}

    latency = {}
    for threads in args.threads:
        runners = {}
        for name in MODELS:
            f32, onnx_int8 = paths[name]
            runners[(name, "litert_int8")] = _litert_runner(os.path.join(workdir, f"{name}_int8.tflite"), threads)
            runners[(name, "litert_f32")] = _litert_runner(f32, threads)
            runners[(name, "ort_int8")] = _ort_runner(onnx_int8, threads, args.size)
        p50 = _interleaved_p50(runners, args.runs)
        latency[threads] = {f"{name}/{kind}": ms for (name, kind), ms in p50.items()}

    rows = []
    for threads, p50 in latency.items():
        for name in MODELS:
            int8, f32, ort = (p50[f"{name}/{k}"] for k in ("litert_int8", "litert_f32", "ort_int8"))
            rows.append({"threads": threads, "model": name, "int8_ms": int8, "f32_ms": f32, "ort_int8_ms": ort,
                         "int8_speedup_vs_f32": f32 / int8,
                         "int8_vs_plain_int8": int8 / p50["resnet50/litert_int8"],
                         "edge_attn_int8_vs_ort_int8": int8 / ort})
    header = f"{'thr':>3}  {'model':<14} {'int8 ms':>8} {'f32 ms':>8} {'ORT int8':>8}  {'f32/int8':>8}  {'/plain':>6}  {'/ORT':>5}"
    print(header)
    for r in rows:
        print(f"{r['threads']:>3}  {r['model']:<14} {r['int8_ms']:>8.2f} {r['f32_ms']:>8.2f} {r['ort_int8_ms']:>8.2f}"
              f"  {r['int8_speedup_vs_f32']:>7.2f}x  {r['int8_vs_plain_int8']:>6.3f}  {r['edge_attn_int8_vs_ort_int8']:>5.2f}")
    for name, c in conversion.items():
        print(f"conversion {name}: {c['seconds']:.1f} s, peak RSS {c['peak_rss_mb']:.0f} MB")
    profiles = _op_profiles(workdir, max(args.threads)) if args.op_profile else {}
    import onnxruntime
    from edge_attn._keras import tf
    from edge_attn.litert import Interpreter

    result = {"machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "versions": {"tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__,
                           "litert": Interpreter.__module__},
              "date": time.strftime("%Y-%m-%d"), "runs": args.runs, "size": args.size,
              "rows": rows, "conversion": conversion, "op_profiles": profiles}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
