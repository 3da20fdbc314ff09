"""``edge-attn bench``: latency of a .tflite model per delegate on a device, optionally against its float
reference measured in the same run.

With a reference, the runs are split into rounds and the two models alternate round by round (model,
reference, model, reference, ...), so that drift of the machine (thermal throttling, other load) hits
both alike; the speed-up is the ratio of their p50s (reference / model: above 1 the model is faster).
Each round is one ``runner.benchmark`` call with its own cold start and warm-up, so this works with
every runner of the protocol in :mod:`edge_attn.runners.base`. The rounds are combined by pooling the
warm runs of every round (each round's detected warm-up left out) and summarising them as one sample;
the cold start is the first round's (later rounds load a file already in the page cache). Where a
runner reports no per-run times (adb), p50 and p90 are the median over rounds of each round's value.
Without a reference there is one round.

``baseline``: a baseline file (:mod:`edge_attn.runners.baseline`); each delegate's warm runs are tested
against the entry for this device, model name, delegate and threads, and a statistically significant
regression (Mann–Whitney U and a minimum effect, :mod:`edge_attn.runners.stats`) is a failed check.
``save_baseline``: write this run's results into a baseline file (added to the entries already there).
"""

import dataclasses
import os
import statistics

from tqdm.auto import tqdm

from edge_attn.convert import inspect_tflite
from edge_attn.devices import load_profile
from edge_attn.errors import BadInput
from edge_attn.float_baseline import tflite_baseline
from edge_attn.runners import make_runner
from edge_attn.runners.baseline import check_against, load_baseline, save_baseline
from edge_attn.runners.result import WarmLatency
from edge_attn.runners.settings import check_count, check_delegates

MAX_ROUNDS = 5


def run_bench(model, device="host", delegates=None, threads=None, runs=None, reference=None, progress=True,
              op_profile=False, baseline=None, save_baseline_to=None, alpha=None, min_effect=None):
    """Measure ``model`` on ``device`` (a profile name or path) with each delegate.

    ``delegates``, ``threads`` and ``runs`` default to the profile's. Returns plain data: ``device``,
    ``kind``, ``model``, ``reference``, ``threads``, ``runs``, ``warmup``, ``rounds``, ``budget_ms`` (the
    profile's p50 budget for this model, or None) and ``delegates``: one entry per delegate with
    ``model`` and ``reference`` (LatencyResult dicts, with None for the timings of an unavailable
    delegate; ``reference`` None without one), ``speedup`` (reference p50 / model p50, None unless both
    ran), ``within_budget`` (None without a budget or a measurement) and ``baseline`` (the
    :class:`~edge_attn.runners.baseline.BaselineCheck` as a dict, None without ``baseline``).
    ``reference`` may be a Keras model (``OUT/reference.keras``): it is converted to float32 TFLite for the
    run, and ``reference_note`` says so (None otherwise).
    ``op_profile``: the model's first round per delegate also records where the time goes, per op type
    (the entry's ``model.op_profile``; a note where the runner cannot profile). ``save_baseline_to``: a
    baseline file this run's model results are added to (the result's ``baseline_saved`` names it).
    ``alpha``, ``min_effect``: the regression test's settings (:mod:`edge_attn.runners.stats` defaults).
    ``emulated``: True when any result's device fingerprint says so (a qemu board): the timings are an
    emulator's, never to be compared with a device's.
    """
    with tflite_baseline(reference) as (reference_tflite, converted):
        result = _run_bench(model, device, delegates, threads, runs, reference_tflite, progress, op_profile,
                            baseline, save_baseline_to, alpha, min_effect)
    if reference is not None:
        result["reference"] = os.fspath(reference)
    result["reference_note"] = converted
    return result


def _run_bench(model, device, delegates, threads, runs, reference, progress, op_profile, baseline, save_baseline_to,
               alpha, min_effect):
    profile = load_profile(device)
    delegates = check_delegates(profile.delegates if delegates is None else delegates)
    threads = check_count("threads", profile.threads if threads is None else threads)
    runs = check_count("runs", profile.runs if runs is None else runs)
    test_settings = _check_test_settings(alpha, min_effect)
    baseline_entries = load_baseline(baseline) if baseline is not None else None  # a bad file fails first
    if save_baseline_to is not None:
        load_baseline(save_baseline_to, must_exist=False)
    models = [os.fspath(model)] + ([os.fspath(reference)] if reference is not None else [])
    for path in models:
        inspect_tflite(path)  # a bad model fails before any device is contacted
    runner = make_runner(profile)
    rounds = min(MAX_ROUNDS, runs) if reference is not None else 1
    round_runs = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
    budget = profile.budget_for(model)

    entries, model_results = [], []
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
            model_results.append(results[0])
            check = check_against(results[0], baseline_entries, **test_settings) if baseline_entries is not None else None
            entries.append(_entry(delegate, results[0], results[1] if reference is not None else None, budget, check))
    if save_baseline_to is not None:
        save_baseline(save_baseline_to, model_results)
    return {
        "device": profile.name, "kind": profile.kind, "model": models[0],
        "reference": models[1] if reference is not None else None,
        "threads": threads, "runs": runs, "warmup": profile.warmup, "rounds": rounds, "budget_ms": budget,
        "baseline": os.fspath(baseline) if baseline is not None else None,
        "baseline_saved": os.fspath(save_baseline_to) if save_baseline_to is not None else None,
        "delegates": entries,
        "emulated": any(result.device_info is not None and result.device_info.emulated for result in model_results),
    }


def combine_rounds(results):
    """One LatencyResult from the rounds of one model and delegate (see the module notes)."""
    first = results[0]
    if len(results) == 1 or not first.available:
        return first
    memory = [r.peak_memory_mb for r in results if r.peak_memory_mb is not None]
    combined = dict(times_ms=sum((r.times_ms for r in results), ()),
                    steady_times_ms=sum((r.steady_times_ms for r in results), ()),
                    peak_memory_mb=max(memory) if memory else None)
    if all(r.steady_times_ms for r in results):
        dropped = sum(r.warm.warmup_runs_dropped or 0 for r in results)
        return dataclasses.replace(first, warm=WarmLatency.from_steady(list(combined["steady_times_ms"]), dropped),
                                   **combined)
    runs = sum(r.warm.runs for r in results)
    warm = dataclasses.replace(
        first.warm, runs=runs, p50=statistics.median(r.warm.p50 for r in results),
        p90=_median_or_none(r.warm.p90 for r in results), p95=_median_or_none(r.warm.p95 for r in results),
        min=min(r.warm.min for r in results), max=max(r.warm.max for r in results),
        mean=sum(r.warm.mean * r.warm.runs for r in results) / runs)
    return dataclasses.replace(first, warm=warm, **combined)


def _check_test_settings(alpha, min_effect):
    settings = {}
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise BadInput("alpha", f"expected a significance level between 0 and 1, got {alpha!r}")
        settings["alpha"] = float(alpha)
    if min_effect is not None:
        if isinstance(min_effect, bool) or not isinstance(min_effect, (int, float)) or not 0 <= min_effect < 100:
            raise BadInput("min-effect", f"expected a fraction >= 0 (0.10 is 10%), got {min_effect!r}")
        settings["min_effect"] = float(min_effect)
    return settings


def _median_or_none(values):
    values = list(values)
    return None if None in values else statistics.median(values)


def _entry(delegate, model, reference, budget, check):
    both = model.available and reference is not None and reference.available
    return {
        "delegate": delegate,
        "model": model.to_dict(),
        "reference": reference.to_dict() if reference is not None else None,
        "speedup": reference.warm.p50 / model.warm.p50 if both else None,
        "within_budget": model.warm.p50 <= budget if budget is not None and model.available else None,
        "baseline": check.to_dict() if check is not None else None,
    }


def format_bench(result):
    """The bench result as a table for the terminal."""
    reference = result["reference"]
    lines = [f"{result['model']} on {result['device']} ({result['kind']}): {result['threads']} threads, "
             f"{result['runs']} runs after {result['warmup']} warm-up"
             + (f", {result['rounds']} rounds alternating with reference {reference}" if reference else "")]
    device = next((e["model"]["device"] for e in result["delegates"] if e["model"].get("device")), None)
    if device:
        lines.append(_device_line(device) + (": EMULATED, latency is not a device figure"
                                             if result.get("emulated") else ""))
    header = ["delegate", "cold ms", "p50 ms", "p50 95% CI", "p90 ms", "min ms", "max ms", "peak MiB"]
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
        latency = model["latency_ms"]
        warm = latency["warm"]
        ci = "-" if warm["p50_ci"] is None else f"{_ms(warm['p50_ci'][0])}-{_ms(warm['p50_ci'][1])}"
        row = [entry["delegate"], _ms(latency["cold_start"]), _ms(warm["p50"]), ci,
               *(_ms(warm[key]) for key in ("p90", "min", "max"))]
        row.append("-" if model["peak_memory_mb"] is None else f"{model['peak_memory_mb']:.1f}")
        if reference:
            ref = entry["reference"]
            row.append(_ms(ref["latency_ms"]["warm"]["p50"]) if ref["available"] else "unavailable")
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
    for entry in result["delegates"]:
        model = entry["model"]
        if model["available"] and model["latency_ms"]["warm"]["warmup_runs_dropped"]:
            lines.append(f"warm-up {entry['delegate']}: the first {model['latency_ms']['warm']['warmup_runs_dropped']} "
                         f"timed runs were still warming up (running median not yet settled) and are left out of the warm statistics")
        if entry.get("baseline"):
            lines.append(f"baseline {entry['delegate']}: {entry['baseline']['reason']}")
    if result.get("baseline_saved"):
        lines.append(f"baseline saved to {result['baseline_saved']}")
    budget = result["budget_ms"]
    if budget is not None:
        verdicts = [f"{e['delegate']} {'ok' if e['within_budget'] else 'OVER'}"
                    for e in result["delegates"] if e["within_budget"] is not None]
        lines.append(f"budget p50 <= {budget:g} ms: " + (", ".join(verdicts) or "nothing measured"))
    return "\n".join(lines)


def _device_line(device):
    """``device: aarch64 Cortex-A72 x4 (QEMU_CPU=cortex-a72, x86_64 kernel), ai-edge-litert 2.3.0``."""
    details = [f"QEMU_CPU={device['emulated_cpu']}" if device.get("emulated_cpu") else None,
               f"{device['kernel_arch']} kernel" if device.get("kernel_arch") not in (None, device.get("arch")) else None]
    details = [d for d in details if d]
    runtime = " ".join(w for w in (device.get("runtime"), device.get("runtime_version")) if w)
    return (f"device: {device.get('arch') or 'unknown arch'} {device.get('cpu') or 'unknown CPU'}"
            + (f" ({', '.join(details)})" if details else "") + (f", {runtime}" if runtime else ""))


def _ms(value):
    if value is None:
        return "-"
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
