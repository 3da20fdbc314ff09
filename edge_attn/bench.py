"""``edge-attn bench``: latency of a .tflite model per delegate on a device, optionally against its float
reference measured in the same run.

With a reference, the runs are split into rounds and the two models alternate round by round (model,
reference, model, reference, ...), so that drift of the machine (thermal throttling, other load) hits
both alike; the speed-up is the ratio of their p50s (reference / model: above 1 the model is faster).
Each round is one ``runner.benchmark`` call with its own warm-up, so this works with every runner of
the protocol in :mod:`edge_attn.runners.base`. The rounds' statistics are combined: min of the minima,
max of the maxima, the run-weighted mean, and for p50 and p90 the median over rounds of each round's
value (robust to a round that caught a burst of load). Without a reference there is one round and the
statistics are exact.
"""

import dataclasses
import math
import os
import statistics

from tqdm.auto import tqdm

from edge_attn.convert import inspect_tflite
from edge_attn.devices import load_profile
from edge_attn.errors import BadInput
from edge_attn.float_baseline import tflite_baseline
from edge_attn.runners import DELEGATES, make_runner

MAX_ROUNDS = 5


def run_bench(model, device="host", delegates=None, threads=None, runs=None, reference=None, progress=True,
              op_profile=False):
    """Measure ``model`` on ``device`` (a profile name or path) with each delegate.

    ``delegates``, ``threads`` and ``runs`` default to the profile's. Returns plain data: ``device``,
    ``kind``, ``model``, ``reference``, ``threads``, ``runs``, ``warmup``, ``rounds``, ``budget_ms`` (the
    profile's p50 budget for this model, or None) and ``delegates``: one entry per delegate with
    ``model`` and ``reference`` (LatencyResult dicts, with None for the timings of an unavailable
    delegate; ``reference`` None without one), ``speedup`` (reference p50 / model p50, None unless both
    ran) and ``within_budget`` (None without a budget or a measurement). ``reference`` may be a Keras model
    (``OUT/reference.keras``): it is converted to float32 TFLite for the run, and ``reference_note`` says so
    (None otherwise). ``op_profile``: the model's
    first round per delegate also records where the time goes, per op type (the entry's
    ``model.op_profile``; a note where the runner cannot profile).
    """
    with tflite_baseline(reference) as (baseline, converted):
        result = _run_bench(model, device, delegates, threads, runs, baseline, progress, op_profile)
    if reference is not None:
        result["reference"] = os.fspath(reference)
    result["reference_note"] = converted
    return result


def _run_bench(model, device, delegates, threads, runs, reference, progress, op_profile):
    profile = load_profile(device)
    delegates = _check_delegates(profile.delegates if delegates is None else delegates)
    threads = _check_count("threads", profile.threads if threads is None else threads)
    runs = _check_count("runs", profile.runs if runs is None else runs)
    models = [os.fspath(model)] + ([os.fspath(reference)] if reference is not None else [])
    for path in models:
        inspect_tflite(path)  # a bad model fails before any device is contacted
    runner = make_runner(profile)
    rounds = min(MAX_ROUNDS, runs) if reference is not None else 1
    round_runs = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
    budget = profile.budget_for(model)

    entries = []
    with tqdm(total=len(delegates) * rounds * len(models), desc=f"bench {os.path.basename(models[0])}",
              unit="round", disable=not progress, leave=False) as bar:
        for delegate in delegates:
            bar.set_postfix_str(delegate)
            measured = [[] for _ in models]
            for n in round_runs:
                for index, (path, done) in enumerate(zip(models, measured)):
                    if not done or done[0].available:  # an unavailable delegate is not retried
                        profiled = op_profile and index == 0 and not done
                        done.append(runner.benchmark(path, delegate=delegate, threads=threads, runs=n,
                                                     warmup=profile.warmup, op_profile=profiled))
                    bar.update()
            results = [combine_rounds(done) for done in measured]
            entries.append(_entry(delegate, results[0], results[1] if reference is not None else None, budget))
    return {
        "device": profile.name, "kind": profile.kind, "model": models[0],
        "reference": models[1] if reference is not None else None,
        "threads": threads, "runs": runs, "warmup": profile.warmup, "rounds": rounds, "budget_ms": budget,
        "delegates": entries,
    }


def combine_rounds(results):
    """One LatencyResult from the rounds of one model and delegate (see the module notes)."""
    first = results[0]
    if len(results) == 1:
        return first
    runs = sum(r.runs for r in results)
    memory = [r.peak_memory_mb for r in results if r.peak_memory_mb is not None]
    return dataclasses.replace(
        first,
        runs=runs,
        p50_ms=statistics.median(r.p50_ms for r in results),
        p90_ms=statistics.median(r.p90_ms for r in results),
        min_ms=min(r.min_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        mean_ms=sum(r.mean_ms * r.runs for r in results) / runs,
        peak_memory_mb=max(memory) if memory else None,
    )


def _entry(delegate, model, reference, budget):
    both = model.available and reference is not None and reference.available
    return {
        "delegate": delegate,
        "model": _plain(model),
        "reference": _plain(reference) if reference is not None else None,
        "speedup": reference.p50_ms / model.p50_ms if both else None,
        "within_budget": model.p50_ms <= budget if budget is not None and model.available else None,
    }


def _plain(result):
    """A LatencyResult as a dict for JSON: the NaN timings of an unavailable delegate become None (JSON has
    no NaN)."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in result.to_dict().items()}


def _check_delegates(delegates):
    if isinstance(delegates, str):
        delegates = [delegates]
    chosen = list(dict.fromkeys(delegates))  # drop repeats, keep order
    if not chosen:
        raise BadInput("delegate", "no delegate to measure")
    for delegate in chosen:
        if delegate not in DELEGATES:
            raise BadInput("delegate", f"expected one of {', '.join(DELEGATES)}, got {delegate!r}")
    return chosen


def _check_count(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadInput(name, f"expected an integer >= 1, got {value!r}")
    return value


def format_bench(result):
    """The bench result as a table for the terminal."""
    reference = result["reference"]
    lines = [f"{result['model']} on {result['device']} ({result['kind']}): {result['threads']} threads, "
             f"{result['runs']} runs after {result['warmup']} warm-up"
             + (f", {result['rounds']} rounds alternating with reference {reference}" if reference else "")]
    header = ["delegate", "p50 ms", "p90 ms", "min ms", "max ms", "peak MiB"]
    if reference:
        header += ["ref p50 ms", "speed-up"]
    header.append("delegation")
    rows, notes = [header], []
    for entry in result["delegates"]:
        model = entry["model"]
        if not model["available"]:
            rows.append([entry["delegate"], "unavailable"])
            notes.append(f"{entry['delegate']}: {model['note']}")
            continue
        row = [entry["delegate"]] + [_ms(model[key]) for key in ("p50_ms", "p90_ms", "min_ms", "max_ms")]
        row.append("-" if model["peak_memory_mb"] is None else f"{model['peak_memory_mb']:.1f}")
        if reference:
            ref = entry["reference"]
            row.append(_ms(ref["p50_ms"]) if ref["available"] else "unavailable")
            row.append("-" if entry["speedup"] is None else f"{entry['speedup']:.2f}x")
        row.append(model["delegation"] or "-")
        rows.append(row)
        if model["note"]:
            notes.append(f"{entry['delegate']}: {model['note']}")
    lines += _table(rows)
    if result.get("reference_note"):
        lines.append(f"note reference: {result['reference_note']}")
    for entry in result["delegates"]:
        by_type = entry["model"].get("op_profile") or []
        if by_type:
            lines.append(f"op profile {entry['delegate']} (time per inference by op type):")
            lines += [f"  {row['op']:<20} x{row['count']:<4} {_ms(row['avg_ms']):>8} ms  {row['percent']:5.1f}%"
                      for row in by_type]
    lines += [f"note {note}" for note in notes]
    budget = result["budget_ms"]
    if budget is not None:
        verdicts = [f"{e['delegate']} {'ok' if e['within_budget'] else 'OVER'}"
                    for e in result["delegates"] if e["within_budget"] is not None]
        lines.append(f"budget p50 <= {budget:g} ms: " + (", ".join(verdicts) or "nothing measured"))
    return "\n".join(lines)


def _ms(value):
    return f"{value:.3g}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _table(rows):
    """Columns padded to their widest cell: numbers right-aligned, the first and last (text) columns
    left-aligned. A short row (an unavailable delegate) is its name and then its message."""
    full = [row for row in rows if len(row) == len(rows[0])]
    widths = [max(len(row[i]) for row in full) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        if len(row) < len(widths):
            lines.append("  ".join([row[0].ljust(widths[0]), *row[1:]]))
            continue
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1])] + [row[-1]]
        lines.append("  ".join(cells))
    return lines
