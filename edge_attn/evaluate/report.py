"""The report files written beside a converted model: ``report.json`` for tools, ``report.html`` for people.

``report.json`` must carry the contract keys of docs/report-json.md (schema: docs/report.schema.json); :func:`write_report`
refuses a report without them. JSON has no Infinity or NaN, so non-finite numbers (the SNR of a bit-exact
tensor is +inf) are written as ``null``; the HTML page shows them as ∞.

``report.html`` is one self-contained file (no external scripts, styles or images) that a person reads in
30 seconds: the verdict against the budgets at the top, then float vs quantized size, top-1, agreement,
SNR and latency, the worst layers first (ranked by local error, cumulative beside it), a size chart (the float bar beside the int8 one, and any
``report["comparisons"]`` rows such as the post-training int8 result beside the QAT one), a latency
chart, a compact per-layer SNR strip (local error as dots over the cumulative bars), the targets (measured results, then the rules), and the details
folded away. Charts are drawn with matplotlib's Agg canvas and embedded as base64 PNG; every piece of text is HTML-escaped.
tests/test_report_html.py renders it in headless Chromium.
"""

import base64
import collections
import hashlib
import html
import io
import json
import math
import os

import numpy as np

from edge_attn.atomic import write_text

# The keys other tools read (docs/report-json.md): top-level key -> required sub-keys.
CONTRACT = {
    "recipe": (),
    "model": ("path", "bytes", "sha256"),
    "ops": (),
    "fully_int8": (),
    "accuracy": ("samples", "reference_top1", "quantized_top1", "top1_drop_pt", "top1_agreement", "output_snr_db"),
    "latency_ms": ("threads", "reference.p50", "quantized.p50"),
    "layers": (),
}


def missing_contract_keys(report):
    """Dotted names of the contract keys ``report`` lacks (empty when it is complete)."""
    missing = []
    for key, sub_keys in CONTRACT.items():
        if key not in report:
            missing.append(key)
            continue
        for dotted in sub_keys:
            node = report[key]
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                missing.append(f"{key}.{dotted}")
    return missing


def model_file_info(path):
    """The report's ``model`` entry for a model file: ``dict(path, bytes, sha256)``."""
    with open(path, "rb") as f:
        data = f.read()
    return {"path": os.fspath(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_report(out_dir, report):
    """Write ``out_dir/report.json`` (atomically, keys sorted) and ``out_dir/report.html``; return both paths.

    Raises ``ValueError`` naming the missing keys if ``report`` lacks any contract key.
    """
    missing = missing_contract_keys(report)
    if missing:
        raise ValueError(f"report lacks contract keys: {', '.join(missing)}")
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, "report.json")
    html_path = os.path.join(out_dir, "report.html")
    write_text(json_path, json.dumps(jsonable(report), sort_keys=True, indent=2, allow_nan=False) + "\n")
    write_text(html_path, render_html(report))
    return json_path, html_path


def jsonable(value):
    """Plain JSON types: numpy scalars and arrays unwrapped, tuples as lists, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------- HTML

LOCAL_COLOUR = "#f39c12"  # the local-SNR dots of the per-layer chart (tests look for this colour)
WORST_LAYERS = 10  # rows of the worst-layers table at the top; the full list is folded below

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em auto; max-width: 74em; color: #222; padding: 0 1em; }
h1 { font-size: 1.4em; margin: 0 0 0.4em; }
h2 { font-size: 1.1em; margin: 1.2em 0 0.3em; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; white-space: nowrap; }
td small { white-space: normal; display: block; }
#targets td:nth-child(2) { white-space: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
img { max-width: 100%; }
.verdict { padding: 0.6em 1em; border-radius: 6px; font-size: 1.1em; margin: 0.4em 0; }
.pass { background: #e3f4e3; border: 2px solid #2e8b2e; }
.fail { background: #fbe3e3; border: 2px solid #c0392b; }
.verdict b { font-size: 1.2em; }
.verdict ul { margin: 0.3em 0 0; padding-left: 1.2em; font-size: 0.95em; }
.ok { color: #2e8b2e; } .bad { color: #c0392b; font-weight: bold; }
.figures { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.figures > * { flex: 0 1 auto; }
.range-note { max-width: 60em; }
details { margin: 0.5em 0; } summary { cursor: pointer; font-weight: bold; }
"""


def render_html(report):
    """The self-contained HTML page for ``report`` (a string): the verdict against the budgets first, then
    the numbers a reader compares (size float vs int8, top-1, agreement, SNR, latency), the worst layers,
    the charts, the delegate targets, and the details folded away."""
    model, latency = report["model"], report["latency_ms"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>edge_attn report: {_esc(report.get('source_model', ''))} {_esc(report['recipe'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>edge_attn report: {_esc(report.get('source_model') or os.path.basename(model['path']))} "
        f"— {_esc(report['recipe'])}</h1>",
        _verdict(report),
        '<div class="figures">',
        '<section id="key-numbers">',
        _table(["", "float", _esc(report["recipe"]), "change"], _key_rows(report), raw=True),
        "</section>",
        f'<div id="sizes">{_img(_size_chart(report), "model size, float vs quantized")}</div>',
        "</div>",
        '<div class="figures">',
        '<section id="worst-layers"><h2>Worst layers (lowest local SNR first: the layer\'s own error, '
        'beside what it inherits)</h2>',
        _worst_layers(report["layers"]),
        "</section>",
        f'<div id="latency"><h2>Latency</h2>{_latency_figure(latency)}</div>',
        "</div>",
        '<section id="layers"><h2>Per-layer SNR: local (dots) and cumulative (bars)</h2>',
        (_img(_layer_snr_chart(report["layers"]), "per-layer local and cumulative SNR in graph order")
         if report["layers"]
         else "<p>No TFLite tensor was matched to a layer of the float model.</p>"),
        "</section>",
        '<section id="targets"><h2>Targets</h2>', _targets(report), "</section>",
    ]
    if report.get("comparisons"):
        parts += ['<section id="comparisons"><h2>Recipes compared</h2>',
                  _img(_accuracy_chart(report), "top-1 float vs each recipe"),
                  _table(["recipe", "bytes", "top-1", "agreement", "output SNR", "p50"],
                         [(r["recipe"], _number(r["bytes"], "", 0), _percent(r["top1"]), _percent(r["agreement"]),
                           _number(r["snr_db"], " dB", 1), _number(r["p50"], " ms", 3))
                          for r in _recipe_rows(report)]),
                  "</section>"]
    if report.get("precision"):
        parts += _precision_section(report["precision"])
    searched = report.get("auto_precision")
    if searched and searched["needed"]:
        chosen = searched["chosen"]
        verdict = ("no candidate met the budget: the plain int8 model was kept" if chosen is None else
                   f"written: {len(chosen['layers'])} layer(s) raised to {chosen['precision']}, recipe in recipe.toml"
                   if chosen["layers"] else "written: no layer raised (float32 inputs and outputs met the budget)")
        base = searched["trials"][0]
        from edge_attn.convert.auto_precision import missed_in_shrink

        hidden = sum(1 for t in searched["trials"] if missed_in_shrink(t))
        parts += ['<section id="auto-precision"><h2>Auto-precision (layers raised, worst local error first)</h2>',
                  f"<p>{_esc(verdict)}</p>",
                  _table(["raised", "precision", "search", "output SNR", "agreement", "size (vs all-int8)", "budget"],
                         [(_raised_layers(t["layers"]), t["precision"] or "int8", t.get("search", ""),
                           _number(t["output_snr_db"], " dB", 1), _percent(t["top1_agreement"]),
                           f"{t['size_bytes'] / 1024:.1f} KiB ({(t['size_bytes'] - base['size_bytes']) / 1024:+.1f})",
                           "met" if t["met"] else "missed") for t in searched["trials"] if not missed_in_shrink(t)]),
                  *([f"<p>{hidden} shrink candidates that missed the budget are not shown (report.json "
                     "<code>auto_precision.trials</code> has them).</p>"] if hidden else []),
                  "</section>"]
    parts += ['<section id="details"><h2>Details</h2>',
              "<details><summary>Summary</summary>", _table(["", "value"], _summary_rows(report)), "</details>"]
    if report["layers"]:
        parts += [f"<details><summary>All {len(report['layers'])} matched layers (graph order)</summary>",
                  _layer_table(report["layers"]), "</details>"]
    counts = collections.Counter(report["ops"])
    parts += [f"<details><summary>Ops ({len(report['ops'])})</summary>",
              _table(["op", "count"], [(op, count) for op, count in counts.items()]), "</details>",
              "</section>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _precision_section(precision):
    """Per-layer precision rules: each island (what, which layers, why) and what the islands cost."""
    cost = precision["cost"]
    rows = [(island["precision"], _raised_layers(island["layers"]), len(island["ops"]), island["why"])
            for island in precision["islands"]]
    delegates = [(d["delegate"], f"{d['delegated_ops']}/{d['op_count']}",
                  f"{d['delegated_ops_without_rules']}/{d['op_count_without_rules']}",
                  f"{d['partitions']} (without rules: {d['partitions_without_rules']})",
                  "yes" if d["splits"] else "no") for d in cost["delegates"]]
    return ['<section id="precision"><h2>Precision islands (per-layer rules)</h2>',
            f"<p>{len(rows)} island(s) computing at another precision than {_esc(precision['base'])}; "
            f"{precision['border_ops']} QUANTIZE/DEQUANTIZE ops at their borders and the model's float I/O; "
            f"{cost['bytes_added']:+,} bytes against the same conversion without rules.</p>",
            _table(["precision", "layers", "ops", "why"], rows),
            _table(["delegate", "ops delegated", "without rules", "partitions", "splits the graph"], delegates),
            *[f"<p>not honoured: {_esc(line)}</p>" for line in precision["not_honoured"]],
            "</section>"]


def _budget(report):
    """``report["budget"]``, or the default budgets applied now for a report written before it existed."""
    if report.get("budget"):
        return report["budget"]
    from edge_attn.evaluate.compare import budget_verdict

    return budget_verdict(report["accuracy"])


def _verdict(report):
    budget, accuracy = _budget(report), report["accuracy"]
    snr = accuracy["output_snr_db"]
    checks = [
        (f"top-1 drop {_number(accuracy['top1_drop_pt'], ' pt')}", f"≤ {budget['max_drop']:g} pt",
         accuracy["top1_drop_pt"] <= budget["max_drop"]),
        (f"top-1 agreement {_agreement(accuracy)}", f"≥ {_percent(budget['min_agreement'])}",
         accuracy["top1_agreement"] >= budget["min_agreement"]),
    ]
    if budget.get("min_snr_db") is not None:
        checks.append((f"output SNR {_number(snr, ' dB', 1)}", f"≥ {budget['min_snr_db']:g} dB",
                       snr is None or snr >= budget["min_snr_db"]))
    checks.append(("fully int8" if report["fully_int8"] else _not_fully_int8(report), "", True))
    evaluation = report.get("evaluation")
    scored = (f"{evaluation['samples']} samples ({evaluation['split']} split of {evaluation['spec']})"
              if evaluation else f"{accuracy['samples']} samples")
    items = "".join(f'<li class="{"ok" if good else "bad"}">{"✓" if good else "✗"} {_esc(what)}'
                    + (f" (budget {_esc(limit)})" if limit else "") + "</li>" for what, limit, good in checks)
    word = "PASSED" if budget["passed"] else "FAILED"
    return (f'<div id="verdict" class="verdict {"pass" if budget["passed"] else "fail"}"><b>{word}</b> '
            f"the accuracy budgets, scored on {_esc(scored)}<ul>{items}</ul></div>")


def _speed(reference_ms, quantized_ms):
    """"2.10× faster" or, when the quantized model is the slower one, "3.05× slower" (never "0.33× faster")."""
    if not reference_ms or not quantized_ms:
        return "—"
    ratio = reference_ms / quantized_ms
    return f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"


def _not_fully_int8(report):
    """Why the graph is not all int8: its float ops, else the converter's own reason (int16 activations)."""
    if report.get("float_ops"):
        return f"NOT fully int8: float ops {', '.join(report['float_ops'])}"
    return f"NOT fully int8: {report.get('why_not_fully_int8') or 'see ops below'}"


def _key_rows(report):
    """(what, float, quantized, change) rows, already HTML."""
    accuracy, latency = report["accuracy"], report["latency_ms"]
    int8_bytes = report["model"]["bytes"]
    float_bytes = (report.get("reference_model") or {}).get("bytes")
    rows = [("size", _kib(float_bytes), _kib(int8_bytes),
             f"{float_bytes / int8_bytes:.1f}× smaller" if float_bytes else "—"),
            ("top-1", _percent(accuracy["reference_top1"]), _percent(accuracy["quantized_top1"]),
             f"{-accuracy['top1_drop_pt']:+.2f} pt"),
            ("agreement with float", "", _agreement(accuracy), ""),
            ("output SNR vs float", "", _number(accuracy["output_snr_db"], " dB", 1), "")]
    reference_p50 = (latency.get("reference") or {}).get("p50")
    quantized_p50 = latency["quantized"]["p50"]
    rows.append((f"latency p50 ({latency['threads']} threads, host)", _number(reference_p50, " ms", 3),
                 _number(quantized_p50, " ms", 3),
                 _speed(reference_p50, quantized_p50)))
    return [tuple(_esc(cell) for cell in row) for row in rows]


def _worst_layers(layers):
    """The culprits first: layers ranked by their own (local) error, their cumulative error beside it."""
    from edge_attn.evaluate.local_error import rank_by_local_error

    from edge_attn.evaluate.per_layer import describe_ranges

    if not layers:
        return "<p>No layer matched.</p>"
    why = "".join(f'<p class="range-note"><b>{_esc(label)}</b>: {_esc(text)}</p>'
                  for label, text in describe_ranges(layers))
    return _layer_table(rank_by_local_error(layers)[:WORST_LAYERS], compact=True) + why


def _raised_layers(layers, shown=2):
    """A trial's raised layers for a table cell: all of a few, else the first ``shown`` and the count."""
    if not layers:
        return "none (all int8)"
    if len(layers) <= shown:
        return ", ".join(layers)
    return ", ".join(layers[:shown]) + f", ... ({len(layers)} layers)"


def _layer_table(layers, compact=False):
    """Every column, or (``compact``, the first screen's worst layers) the SNRs and the range diagnostics."""
    from edge_attn.evaluate.local_error import local_snr

    header = ["layer", "op", "local SNR (own error)", "cumulative SNR (inherited)", "int8 steps", "clipped"]
    rows = [[l["name"], l["op"], _number(local_snr(l), " dB", 1), _number(l["snr_db"], " dB", 1),
             _number(l.get("levels"), "", 0), _clipped(l)] for l in layers]
    if not compact:
        header += ["local RMSE", "cumulative RMSE", "scale"]
        for row, l in zip(rows, layers):
            row += [_number(l.get("local_rmse"), "", 5), _number(l["rmse"], "", 5), _number(l.get("scale"), "", 6)]
    return _table(header, rows)


def _clipped(layer):
    """"0.35% (13.5 dB)": the share of values beyond the int8 range and the SNR that clipping alone leaves."""
    if layer.get("clipped") is None:
        return "—"
    if not layer["clipped"]:
        return "0"
    return f"{100 * layer['clipped']:.2g}% ({_number(layer.get('clipping_snr_db'), ' dB', 1)})"


def _measured(report):
    """Measured targets (docs/result-shape.md: report.json ``accelerator`` and ``accelerators``), one row each with
    the shared keys: what ran where, how much of the graph, numerics, latency, the verdict."""
    results = [report.get("accelerator"), *(report.get("accelerators") or [])]
    results = [r for i, r in enumerate(results) if isinstance(r, dict) and "verdict" in r and r not in results[:i]]
    if not results:
        return ""
    rows = []
    for r in results:
        device, graph, numerics = r.get("device") or {}, r.get("graph") or {}, r.get("numerics")
        runtime = " ".join(str(v) for v in (device.get("runtime"), device.get("runtime_version")) if v)
        where = f"{device.get('name')} ({runtime})" if runtime else str(device.get("name"))
        if device.get("emulated"):
            where += ", EMULATED"
        taken = (f"{graph.get('accelerated_ops')}/{graph.get('total_ops')} ops" if graph.get("total_ops") else "—")
        if graph.get("on_cpu"):
            taken += "; CPU: " + ", ".join(graph["on_cpu"])
        vs = "—" if not numerics else (
            f"vs {numerics['reference']}: SNR {_number(numerics['snr_db'], ' dB', 1)}, top-1 "
            f"{numerics['agreement_count']}/{numerics['samples']}, max |diff| {_number(numerics['max_abs_diff'], '', 4)}")
        warm = ((r.get("latency_ms") or {}).get("warm") or {})
        verdict = r["verdict"] + (f": {r['symptom']}" if r.get("symptom") else "")
        rows.append((r["target"], r.get("accelerator") or "—", where, taken, vs,
                     _number(warm.get("p50"), " ms", 3), verdict))
    return ('<h3>Measured</h3>' + _table(["target", "accelerator", "device", "graph", "numerics", "p50", "verdict"],
                                         rows))


def _targets(report):
    return _measured(report) + _rule_targets(report)


def _rule_targets(report):
    targets = report.get("targets")
    if not targets:
        return "<p>No delegate verdicts in this report (see <code>edge-attn compat MODEL --delegate gpu</code>).</p>"
    rows = [(_esc(t["delegate"]), _esc(t["summary"]),
             "<small>" + "<br>".join(_esc(w) for w in t.get("warnings") or []) + "</small>") for t in targets]
    rules = next((t.get("rules_from") for t in targets if t.get("rules_from")), None)
    return (_table(["delegate", "verdict", "notes"], rows, raw=True)
            + (f"<p>Rules from {_esc(rules)}; a device can still refuse ops: "
               "measure with <code>edge-attn bench --device PROFILE</code>.</p>" if rules else ""))


def _summary_rows(report):
    accuracy, model, latency = report["accuracy"], report["model"], report["latency_ms"]
    rows = [
        ("recipe", report["recipe"]),
        ("model", model["path"]),
        ("size", f"{model['bytes']:,} bytes ({model['bytes'] / 1024:.1f} KiB)"),
        ("sha256", model["sha256"]),
        ("fully int8", "yes" if report["fully_int8"] else "no"),
        ("evaluation samples", accuracy["samples"]),
        ("float top-1", _percent(accuracy["reference_top1"])),
        ("quantized top-1", _percent(accuracy["quantized_top1"])),
        ("top-1 drop", _number(accuracy["top1_drop_pt"], " pt")),
        ("top-1 agreement", _agreement(accuracy)),
        ("output SNR", _number(accuracy["output_snr_db"], " dB", 1)),
    ]
    if "output_max_abs_err" in accuracy:
        rows.append(("output max |error|", _number(accuracy["output_max_abs_err"], "", 4)))
    rows += [
        ("latency threads", latency["threads"]),
        ("float latency p50", _number((latency.get("reference") or {}).get("p50"), " ms", 3)),
        ("quantized latency p50", _number(latency["quantized"]["p50"], " ms", 3)),
    ]
    return rows


def _esc(value):
    return html.escape(str(value))


def _table(header, rows, raw=False):
    """An HTML table; cells are escaped unless ``raw`` (already HTML). Numeric-looking cells align right."""
    head = "".join(f"<th>{h if raw else _esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{_align(c)}>{c if raw else _esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _align(cell):
    text = str(cell).lstrip("+−-")
    return ' class="num"' if text[:1].isdigit() else ""


def _number(value, unit="", digits=2):
    if value is None:
        return "—"
    if not math.isfinite(value):
        return ("∞" if value > 0 else "−∞") + unit
    return f"{value:,.{digits}f}{unit}"


def _kib(size):
    return "—" if size is None else f"{size / 1024:,.1f} KiB"


def _percent(fraction):
    return "—" if fraction is None else f"{100 * fraction:.2f}%"


def _agreement(accuracy):
    text = _percent(accuracy["top1_agreement"])
    if "agreement_count" in accuracy:
        text += f" ({accuracy['agreement_count']}/{accuracy['samples']})"
    return text


def _img(png, alt):
    return f'<p><img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></p>'


def _figure(width, height):
    # Figure + Agg canvas directly (not pyplot): no global backend switch, no state kept between reports.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _recipe_rows(report):
    """This report's recipe, then each ``report["comparisons"]`` entry (whose fields are all optional)."""
    rows = []
    for entry in [report] + list(report.get("comparisons", [])):
        accuracy = entry.get("accuracy", {})
        rows.append({
            "recipe": entry.get("recipe", "?"),
            "bytes": entry.get("model", {}).get("bytes"),
            "top1": accuracy.get("quantized_top1"),
            "agreement": accuracy.get("top1_agreement"),
            "snr_db": accuracy.get("output_snr_db"),
            "p50": entry.get("latency_ms", {}).get("quantized", {}).get("p50"),
        })
    return rows


def _hbars(axes, labels, values, colors, fmt):
    positions = np.arange(len(labels))
    bars = axes.barh(positions, values, color=colors)
    axes.bar_label(bars, labels=[fmt(v) for v in values], padding=3)
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    axes.margins(x=0.25)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _size_chart(report):
    """Horizontal bars: the float (f32 TFLite) model beside each quantized one, in KiB."""
    rows = _recipe_rows(report)
    float_bytes = (report.get("reference_model") or {}).get("bytes")
    labels = (["float (f32)"] if float_bytes else []) + [r["recipe"] for r in rows]
    sizes = ([float_bytes / 1024] if float_bytes else []) + [(r["bytes"] or 0) / 1024 for r in rows]
    figure = _figure(4.2, 0.45 * len(labels) + 0.8)
    axes = figure.subplots()
    _hbars(axes, labels, sizes, (["#999"] if float_bytes else []) + ["#2a7ab0"] * len(rows), lambda v: f"{v:,.0f} KiB")
    axes.set_xlabel("model size (KiB)")
    return _png(figure)


def _latency_figure(latency):
    reference = latency.get("reference") or {}
    quantized = latency["quantized"]
    labels, p50, colors = [], [], []
    if reference.get("p50") is not None:
        labels.append("float (f32)"), p50.append(reference["p50"]), colors.append("#999")
    labels.append("quantized"), p50.append(quantized["p50"]), colors.append("#2a7ab0")
    figure = _figure(4.6, 0.45 * len(labels) + 0.8)
    axes = figure.subplots()
    _hbars(axes, labels, p50, colors, lambda v: f"{v:.3g} ms")
    axes.set_xlabel(f"p50 ms per inference, host, {latency['threads']} threads")
    return _img(_png(figure), "latency p50, float vs quantized")


def _accuracy_chart(report):
    rows = _recipe_rows(report)
    labels = ["float"] + [r["recipe"] for r in rows]
    top1 = [100 * (t or 0) for t in [report["accuracy"]["reference_top1"]] + [r["top1"] for r in rows]]
    figure = _figure(4.6, 0.45 * len(labels) + 0.8)
    axes = figure.subplots()
    _hbars(axes, labels, top1, ["#999"] + ["#2a7ab0"] * len(rows), lambda v: f"{v:.2f}%")
    axes.set_xlabel("top-1 (%)")
    return _png(figure)


SNR_AXIS_CAP_DB = 80.0  # the per-layer chart's y axis; higher values are drawn at the top


def _layer_snr_chart(layers):
    """One compact strip per matched layer in graph order (a fixed height, whatever the depth): the
    cumulative SNR as bars (the worst three in red), the local SNR as orange dots on top, so a layer whose
    dot sits far below the others is a culprit and a low bar under a high dot only inherits."""
    from edge_attn.evaluate.local_error import local_snr

    def finite_or_nan(values):
        return np.array([v if v is not None and math.isfinite(v) else np.nan for v in values], float)

    snr = finite_or_nan([l["snr_db"] for l in layers])
    local = finite_or_nan([local_snr(l) for l in layers])
    figure = _figure(9, 2.6)
    axes = figure.subplots()
    positions = np.arange(len(layers))
    top = np.nanmax(np.concatenate([snr, local])) if np.isfinite(np.concatenate([snr, local])).any() else 0.0
    finite = np.nan_to_num(snr, nan=top)
    # Layers kept in float (or near bit-exact) have local SNRs past 100 dB: drawn as triangles on a capped
    # axis, so the range where int8 layers differ (roughly 10-60 dB) keeps the chart's height.
    cap = min(max(top, 1.0), SNR_AXIS_CAP_DB)
    axes.bar(positions, np.minimum(finite, cap), color=np.where(np.isnan(snr), "#ccc", "#2a7ab0"), width=0.8,
             label="cumulative (inherited) SNR")
    for index in np.argsort(finite)[:3]:
        axes.bar(index, min(finite[index], cap), color="#c0392b", width=0.8)
    below, above = ~np.isnan(local) & (local <= cap), ~np.isnan(local) & (local > cap)
    axes.scatter(positions[below], local[below], color=LOCAL_COLOUR, s=42, zorder=3, edgecolors="#7a3c00",
                 linewidths=0.6, label="local SNR (the layer alone quantized)")
    if above.any():
        axes.scatter(positions[above], np.full(above.sum(), cap), marker="^", color=LOCAL_COLOUR, s=42, zorder=3,
                     edgecolors="#7a3c00", linewidths=0.6, clip_on=False,
                     label=f"local SNR above {cap:g} dB (float or near bit-exact)")
    axes.set_ylim(0, cap)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False, borderaxespad=0.2)
    axes.set_xlim(-1, len(layers))
    axes.set_xlabel(f"{len(layers)} matched layers, graph order (red: the 3 worst cumulative; grey: bit-exact, "
                    "infinite SNR)")
    axes.set_ylabel("SNR (dB)")
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _png(figure)
