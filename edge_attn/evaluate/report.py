"""The report files written beside a converted model: ``report.json`` for tools, ``report.html`` for people.

``report.json`` must carry the contract keys of ARCHITECTURE.md ("report.json"); :func:`write_report`
refuses a report without them. JSON has no Infinity or NaN, so non-finite numbers (the SNR of a bit-exact
tensor is +inf) are written as ``null``; the HTML page shows them as ∞.

``report.html`` is one self-contained file (no external scripts, styles or images): a summary table, a
bar chart of float vs quantized top-1 and model size (with any ``report["comparisons"]`` rows, e.g. the
post-training int8 result beside the QAT one), a per-layer SNR chart and the op list. Charts are drawn
with matplotlib's Agg canvas and embedded as base64 PNG; every piece of text is HTML-escaped.
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

# The keys other tools read (ARCHITECTURE.md, "report.json"): top-level key -> required sub-keys.
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

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
"""


def render_html(report):
    """The self-contained HTML page for ``report`` (a string)."""
    accuracy, model, latency = report["accuracy"], report["model"], report["latency_ms"]
    summary = [
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
        summary.append(("output max |error|", _number(accuracy["output_max_abs_err"], "", 4)))
    summary += [
        ("latency threads", latency["threads"]),
        ("float latency p50", _number(latency["reference"]["p50"], " ms", 3)),
        ("quantized latency p50", _number(latency["quantized"]["p50"], " ms", 3)),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>edge_attn report: {_esc(report['recipe'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>edge_attn report: {_esc(report['recipe'])}</h1>",
        "<h2>Summary</h2>",
        _table(["", "value"], summary),
        "<h2>Accuracy and size</h2>",
        _img(_accuracy_size_chart(report), "float vs quantized top-1 and model size"),
    ]
    if report.get("comparisons"):
        parts.append(_table(["recipe", "bytes", "top-1", "agreement", "output SNR", "p50"],
                            [(r["recipe"], _number(r["bytes"], "", 0), _percent(r["top1"]), _percent(r["agreement"]),
                              _number(r["snr_db"], " dB", 1), _number(r["p50"], " ms", 3))
                             for r in _recipe_rows(report)]))
    parts.append("<h2>Per-layer error</h2>")
    layers = report["layers"]
    if layers:
        parts.append(_img(_layer_snr_chart(layers), "per-layer SNR"))
        parts.append(_table(["layer", "op", "RMSE", "SNR", "scale"],
                            [(l["name"], l["op"], _number(l["rmse"], "", 5), _number(l["snr_db"], " dB", 1),
                              _number(l.get("scale"), "", 6)) for l in layers]))
    else:
        parts.append("<p>No TFLite tensor was matched to a layer of the float model.</p>")
    counts = collections.Counter(report["ops"])
    parts += [f"<h2>Ops ({len(report['ops'])})</h2>",
              _table(["op", "count"], [(op, count) for op, count in counts.items()]),
              "</body></html>"]
    return "\n".join(parts) + "\n"


def _esc(value):
    return html.escape(str(value))


def _table(header, rows):
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _number(value, unit="", digits=2):
    if value is None:
        return "—"
    if not math.isfinite(value):
        return ("∞" if value > 0 else "−∞") + unit
    return f"{value:,.{digits}f}{unit}"


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


def _accuracy_size_chart(report):
    rows = _recipe_rows(report)
    figure = _figure(9, 3.2)
    top1_axes, size_axes = figure.subplots(1, 2)
    labels = ["float reference"] + [r["recipe"] for r in rows]
    top1 = [100 * (t or 0) for t in [report["accuracy"]["reference_top1"]] + [r["top1"] for r in rows]]
    bars = top1_axes.bar(labels, top1, color=["#888"] + ["#2a7ab0"] * len(rows))
    top1_axes.bar_label(bars, fmt="%.1f")
    top1_axes.set_ylabel("top-1 (%)")
    top1_axes.set_ylim(0, 110)  # room for the value labels
    top1_axes.set_title("top-1 accuracy")
    bars = size_axes.bar([r["recipe"] for r in rows], [(r["bytes"] or 0) / 1024 for r in rows], color="#2a7ab0")
    size_axes.bar_label(bars, fmt="%.1f")
    size_axes.set_ylabel("KiB")
    size_axes.margins(y=0.15)
    size_axes.set_title("model size")
    for axes in (top1_axes, size_axes):
        axes.tick_params(axis="x", labelrotation=20)
    return _png(figure)


def _layer_snr_chart(layers):
    figure = _figure(8, max(2.0, 0.22 * len(layers) + 1.0))
    axes = figure.subplots()
    snr = [l["snr_db"] if l["snr_db"] is not None and math.isfinite(l["snr_db"]) else np.nan for l in layers]
    positions = np.arange(len(layers))
    axes.bar_label(axes.barh(positions, snr, color="#2a7ab0"), fmt="%.1f", fontsize=7)
    axes.set_yticks(positions, [l["name"] for l in layers], fontsize=7)
    axes.invert_yaxis()  # graph order from the top
    axes.margins(x=0.08)
    axes.set_xlabel("SNR vs float (dB); no bar: infinite, see the table")
    axes.set_title("per-layer SNR")
    return _png(figure)
