"""Latency of int8 SE/CBAM ResNets against float and against ONNX Runtime int8, as ratios from one run.

    python -m benchmarks.latency [--depth 50] [--runs 120] [--rounds 12] [--threads 1 2] [--size 224] [--op-profile] [--out benchmarks/latency.json]

In one process, for ``resnet50``, ``se_resnet50`` and ``cbam_resnet50`` (``--depth 20``: the CIFAR-style
``resnet20`` family, for small inputs; random init, 1000 classes, batch 1):

* edge_attn ``int8-qat`` (quantize-aware wrapping + range calibration on random samples, no fine-tune —
  enough for speed) and ``f32``, run in LiteRT with XNNPACK;
* the peer: the float Keras model exported to ONNX (tf2onnx) and quantized with ONNX Runtime's
  ``quantize_static`` (QDQ, per-channel, same calibration samples), run in onnxruntime;
* conversion wall time and peak RSS of the edge_attn int8 conversion, in a child process per model.

Models are measured interleaved in rounds (every model once per round) so machine drift hits all alike.
Each number is the median of all its runs with a 95% bootstrap interval (:mod:`benchmarks.stats`); every
per-run time is kept in the JSON. Each ratio is also computed round by round (both sides timed in the same
round); when those per-round ratios disagree by more than ``--max-spread`` ((max - min) / median) the run
was contended and the row's ratios are withheld — printed as such, recorded with the reason — rather than
reported. The JSON carries the machine record
(:mod:`benchmarks.machine`: CPU model, int8 ISA flags, runtime versions, threads, load average before
and after) and the issue-14 targets, each with its measured ratio and, where missed, the int8 ISA
extensions this machine lacks (read from its flags). ``--op-profile`` adds where the time goes in each int8 model at the largest thread
count: every operator timed on its own (:mod:`edge_attn.evaluate.op_profile`), summed per op type, and
the attention ops' share. Needs the ``bench`` extra (``pip install -e ".[bench]"``). Not a test: timings on
shared machines are noisy, so only ratios measured side by side mean anything.
"""

import argparse
import json
import math
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.machine import load_average, machine_record
from benchmarks.stats import median_ci, ratio_ci, round_spread
from edge_attn.runners.timing import time_runs  # the timing loop edge_attn's runners use

DEPTHS = (50, 20)
CALIBRATION_SAMPLES = 8
MAX_SPREAD = 0.10  # rounds of one measurement may disagree by this fraction before ratios are withheld


def family(depth):
    """(plain, SE, CBAM) model names of one depth; the plain model is every ``/plain`` ratio's denominator."""
    return (f"resnet{depth}", f"se_resnet{depth}", f"cbam_resnet{depth}")


def targets_for(depth):
    """Issue 14's targets for int8 hardware (VNNI/AMX x86 or ARM dot product) at 2 threads, as
    (name, row field, "min" or "max", bound, models it applies to): ResNet-50 at 224x224, and for the
    ResNet-20 family at small inputs CBAM int8 no slower than its float model and at most 1.5x SE int8."""
    plain, se, cbam = family(depth)
    if depth == 20:
        return (("int8/f32 speed-up", "int8_speedup_vs_f32", "min", 1.0, (cbam,)),
                (f"int8 {cbam} / int8 {se}", "int8_vs_se_int8", "max", 1.5, (cbam,)))
    return (("int8/f32 speed-up", "int8_speedup_vs_f32", "min", 7.0, (plain, se, cbam)),
            (f"int8 {se} / int8 {plain}", "int8_vs_plain_int8", "max", 1.03, (se,)),
            (f"int8 {cbam} / int8 {plain}", "int8_vs_plain_int8", "max", 1.08, (cbam,)),
            ("edge_attn int8 / ONNX Runtime int8", "edge_attn_int8_vs_ort_int8", "max", 0.95, (plain, se, cbam)))


def _samples(size, count=CALIBRATION_SAMPLES):
    return np.random.default_rng(0).uniform(0, 1, (count, size, size, 3)).astype("float32")


def _convert_int8(name, size, path, queue):
    """Child process: build, QAT-wrap, calibrate and convert; report wall time and peak RSS."""
    start = time.perf_counter()
    from edge_attn.convert import convert_model, load_recipe
    from edge_attn.models import create_model
    from edge_attn.qat import calibrate_ranges, quantize_aware
    from edge_attn.resources import peak_rss

    model = create_model(name, input_shape=(size, size, 3), classes=1000)
    samples = _samples(size)
    qat = quantize_aware(model)
    calibrate_ranges(qat.model, qat.float_model, samples, batch_size=4)
    data = convert_model(qat.model, load_recipe("int8-qat"), [s[None] for s in samples])
    with open(path, "wb") as f:
        f.write(data)
    model.save(os.path.join(os.path.dirname(path), f"{name}.keras"))  # the float model, for f32 and ONNX
    # VmHWM, not ru_maxrss: an exec'd child inherits its launcher's ru_maxrss (edge_attn.resources)
    queue.put({"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss()["peak_rss_mb"]})


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


def _interleaved_runs(runners, runs, rounds=5, warmup=3):
    """Per runner, its run times (ms) per round; every runner runs ``runs // rounds`` times per round."""
    for run in runners.values():
        time_runs(run, warmup, 0, deadline=math.inf)
    per_round = {key: [] for key in runners}
    per_run = max(1, runs // rounds)
    for _ in range(rounds):
        for key, run in runners.items():
            per_round[key].append(list(time_runs(run, 0, per_run, deadline=math.inf)))
    return per_round


def summarize(rounds):
    """Median with bootstrap interval over all runs, per-round medians and their spread."""
    everything = [t for one in rounds for t in one]
    medians = [statistics.median(one) for one in rounds]
    return {**median_ci(everything), "round_medians": medians, "spread": round_spread(medians), "runs_ms": rounds}


def rows_from(latency, max_spread, models=family(50)):
    """One row per (threads, model) with medians, ratios and their intervals; ratios None when withheld.

    A ratio is withheld when its *per-round* ratios disagree by more than ``max_spread``: both sides of a
    ratio are timed in the same round, so drift that slows a whole round cancels out, while contention that
    hits one side of a round and not the other shows up as spread. (Absolute round medians on a shared
    machine differ far more; their spreads are kept in the JSON as ``time_spread``.)
    """
    rows = []
    for threads, measured in latency.items():
        def runs(key):
            return [t for one in measured[key]["runs_ms"] for t in one]

        plain, se = models[0], models[1]
        for name in models:
            keys = {k: f"{name}/{k}" for k in ("litert_int8", "litert_f32", "ort_int8")}
            row = {"threads": threads, "model": name,
                   "int8_ms": measured[keys["litert_int8"]]["median"], "f32_ms": measured[keys["litert_f32"]]["median"],
                   "ort_int8_ms": measured[keys["ort_int8"]]["median"],
                   "time_spread": {key: round(measured[key]["spread"], 3)
                                   for key in (*keys.values(), f"{plain}/litert_int8")}}
            ratios = {"int8_speedup_vs_f32": (keys["litert_f32"], keys["litert_int8"]),
                      "int8_vs_plain_int8": (keys["litert_int8"], f"{plain}/litert_int8"),
                      "int8_vs_se_int8": (keys["litert_int8"], f"{se}/litert_int8"),
                      "edge_attn_int8_vs_ort_int8": (keys["litert_int8"], keys["ort_int8"])}
            spreads = {field: round(round_spread([statistics.median(a) / statistics.median(b) for a, b in
                                                  zip(measured[top]["runs_ms"], measured[bottom]["runs_ms"])]), 3)
                       for field, (top, bottom) in ratios.items()}
            noisy = {field: spread for field, spread in spreads.items() if spread > max_spread}
            row["ratio_spread"], row["withheld"] = spreads, noisy or None
            for field, (top, bottom) in ratios.items():
                interval = ratio_ci(runs(top), runs(bottom))
                row[field] = None if noisy else interval["ratio"]
                row[field + "_ci"] = None if noisy else [interval["low"], interval["high"]]
            rows.append(row)
    return rows


def check_targets(rows, cpu, threads=2, depth=50):
    """Each issue-14 target per model at ``threads``: measured, met, and the int8 ISA lacked where missed."""
    results = []
    for name, field, kind, bound, models in targets_for(depth):
        for row in rows:
            if row["threads"] != threads or row["model"] not in models:
                continue
            value = row[field]
            met = None if value is None else (value >= bound if kind == "min" else value <= bound)
            results.append({"target": f"{name} {'>=' if kind == 'min' else '<='} {bound}", "model": row["model"],
                            "measured": value, "met": met,
                            "isa_lacking": cpu["lacking"] if met is False else [],
                            "note": "ratios withheld: rounds disagreed" if value is None else None})
    return results


def _op_profiles(workdir, threads, models):
    """Per-op-type time of each int8 model; prints the table and each model's attention-op share."""
    from edge_attn.evaluate.op_profile import profile_ops

    profiles = {}
    for name in models:
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
    parser.add_argument("--depth", type=int, choices=DEPTHS, default=50,
                        help="model family: 50 (resnet50, se_/cbam_resnet50) or 20 (the CIFAR-style resnet20s)")
    parser.add_argument("--runs", type=int, default=120, help="timed runs per model and thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds the runs are split into")
    parser.add_argument("--max-spread", type=float, default=MAX_SPREAD,
                        help="withhold a row's ratios when its per-round ratios differ by more than this fraction")
    parser.add_argument("--op-profile", action="store_true", help="time every op of the int8 models on its own")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "latency.json"))
    args = parser.parse_args(argv)
    models = family(args.depth)

    machine = machine_record(args.threads)
    with tempfile.TemporaryDirectory(prefix="edge_attn_bench_") as workdir:  # models and ONNX files: gone after
        conversion = {}
        for name in models:
            queue = multiprocessing.get_context("spawn").Queue()
            child = multiprocessing.get_context("spawn").Process(
                target=_convert_int8, args=(name, args.size, os.path.join(workdir, f"{name}_int8.tflite"), queue))
            child.start()
            conversion[name] = queue.get()
            child.join()
            print(f"converted {name}: {conversion[name]['seconds']:.1f} s, peak RSS {conversion[name]['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)
        paths = {name: _convert_f32_and_onnx(name, args.size, workdir) for name in models}

        latency = {}
        for threads in args.threads:
            runners = {}
            for name in models:
                f32, onnx_int8 = paths[name]
                runners[(name, "litert_int8")] = _litert_runner(os.path.join(workdir, f"{name}_int8.tflite"), threads)
                runners[(name, "litert_f32")] = _litert_runner(f32, threads)
                runners[(name, "ort_int8")] = _ort_runner(onnx_int8, threads, args.size)
            measured = _interleaved_runs(runners, args.runs, rounds=args.rounds)
            latency[threads] = {f"{name}/{kind}": summarize(r) for (name, kind), r in measured.items()}
        machine["load_average_after"] = load_average()

        rows = rows_from(latency, args.max_spread, models)
        header = (f"{'thr':>3}  {'model':<14} {'int8 ms':>8} {'f32 ms':>8} {'ORT int8':>8}  {'f32/int8':>8}  {'/plain':>6}"
                  f"  {'/SE':>6}  {'/ORT':>5}")
        print(header)
        for r in rows:
            times = f"{r['threads']:>3}  {r['model']:<14} {r['int8_ms']:>8.2f} {r['f32_ms']:>8.2f} {r['ort_int8_ms']:>8.2f}"
            if r["withheld"]:
                print(times + "  ratios withheld: per-round ratios disagree by " +
                      ", ".join(f"{100 * v:.0f}% ({k})" for k, v in r["withheld"].items()) +
                      f" > {100 * args.max_spread:.0f}%")
                continue
            print(times + f"  {r['int8_speedup_vs_f32']:>7.2f}x  {r['int8_vs_plain_int8']:>6.3f}"
                          f"  {r['int8_vs_se_int8']:>6.3f}  {r['edge_attn_int8_vs_ort_int8']:>5.2f}")
        for name, c in conversion.items():
            print(f"conversion {name}: {c['seconds']:.1f} s, peak RSS {c['peak_rss_mb']:.0f} MB")
        cpu = machine["cpu"]
        print(f"machine: {cpu['model']} ({cpu['architecture']}), {machine['cpus']} CPUs; int8 ISA: " +
              ", ".join(flag for flag, here in cpu["int8_isa"].items() if here) + "; lacking: " +
              (", ".join(cpu["lacking"]) or "nothing") +
              f"; load {machine['load_average_before']} -> {machine['load_average_after']}")
        target_threads = 2 if 2 in args.threads else max(args.threads)
        targets = check_targets(rows, cpu, target_threads, args.depth)
        for t in targets:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
            value = "-" if t["measured"] is None else f"{t['measured']:.2f}"
            lacking = f" (this machine lacks {', '.join(t['isa_lacking'])})" if t["isa_lacking"] else ""
            print(f"target {t['target']:<45} {t['model']:<14} {value:>6}  {verdict}{lacking}")
        profiles = _op_profiles(workdir, max(args.threads), models) if args.op_profile else {}
    result = {"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M"), "runs": args.runs, "rounds": args.rounds,
              "models": list(models), "size": args.size, "max_spread": args.max_spread, "rows": rows, "targets": targets,
              "latency": {str(threads): measured for threads, measured in latency.items()},
              "conversion": conversion, "op_profiles": profiles}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
