"""``edge-attn demo``: the whole flow on the built-in digits data set, end to end.

For each model (default ``se_resnet20`` and ``cbam_resnet20``): train in float, convert with
``int8-qat`` (calibrate + quantization-aware fine-tune + full int8) and with ``int8-ptq``
(post-training int8, for contrast), check both against the float model on the eval split, measure
latency against the float TFLite model in the same run, and write the reports:

    OUT/<model>/model.tflite, reference.keras, report.json, report.html   (int8-qat; PTQ shown beside it)
    OUT/<model>/int8-ptq/model.tflite, report.json, report.html

With ``auto_precision`` (``--auto-precision``) it also shows the precision fix loop where plain int8 visibly
loses: ``se_resnet20`` on ``digits-glare`` (digits with a constant highlight whose range crowds the strokes),
``int8-ptq`` with ``--auto-precision --min-snr-db 25``, written to ``OUT/se_resnet20-digits-glare/`` with the
recipe the search wrote (``recipe.toml``).

Everything is written at the end in one staged step: an interrupted or failed demo leaves OUT as it was.
"""

import json
import os

from edge_attn.convert import load_recipe
from edge_attn.pipeline import build_report, check, float_tflite, prepare_reference, quantize, staged_outputs, write_run

DATA = "digits"
RECIPES = ("int8-qat", "int8-ptq")
# The precision fix loop: a model, a built-in task where plain int8 loses, and the budget it misses.
FIX_LOOP = {"model": "se_resnet20", "data": "digits-glare", "recipe": "int8-ptq", "budget": {"min_snr_db": 25.0}}


def _row(model, report):
    acc, lat = report["accuracy"], report["latency_ms"]
    return {"model": model, "recipe": report["recipe"], "fully_int8": report["fully_int8"],
            "kib": report["model"]["bytes"] / 1024, "float_top1": acc["reference_top1"],
            "int8_top1": acc["quantized_top1"], "drop_pt": acc["top1_drop_pt"], "agreement": acc["top1_agreement"],
            "snr_db": acc["output_snr_db"], "p50_float_ms": lat["reference"]["p50"], "p50_int8_ms": lat["quantized"]["p50"]}


def _print_table(rows):
    header = ("model", "recipe", "int8", "KiB", "float top-1", "int8 top-1", "drop pt", "agree", "SNR dB",
              "p50 float→int8 ms")
    lines = [header] + [(r["model"], r["recipe"], "yes" if r["fully_int8"] else "no", f"{r['kib']:.0f}",
                         f"{r['float_top1']:.4f}", f"{r['int8_top1']:.4f}", f"{r['drop_pt']:+.2f}",
                         f"{r['agreement']:.4f}", f"{r['snr_db']:.1f}",
                         f"{r['p50_float_ms']:.2f}→{r['p50_int8_ms']:.2f}") for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)))


def run_demo(out, *, models="se_resnet20,cbam_resnet20", float_epochs=None, epochs=None, json_output=False,
             progress=True, threads=2, runs=50, auto_precision=False):
    """Run the demo into ``out``; return the exit code (0)."""
    from edge_attn.pipeline import DEFAULT_FLOAT_EPOCHS

    float_epochs = DEFAULT_FLOAT_EPOCHS if float_epochs is None else float_epochs
    names = [name.strip() for name in models.split(",") if name.strip()]
    recipes = [load_recipe(name) for name in RECIPES]
    rows, html_paths, to_write = [], [], []
    for name in names:
        reference = prepare_reference(name, DATA, float_epochs=float_epochs, progress=progress)
        reference_tflite = float_tflite(reference.model)
        reports = {}
        runs_by_recipe = {}
        for recipe in recipes:
            quantized = quantize(reference, recipe, epochs=epochs, progress=progress)
            accuracy, layers, latency = check(reference.model, quantized.layer_reference, quantized.tflite,
                                              reference.data, threads=threads, runs=runs,
                                              reference_tflite=reference_tflite)
            folder = name if recipe.name == RECIPES[0] else os.path.join(name, recipe.name)
            reports[recipe.name] = build_report(reference, quantized, accuracy, layers, latency,
                                                reference_tflite=reference_tflite,
                                                model_path=os.path.join(os.path.abspath(out), folder, "model.tflite"))
            runs_by_recipe[recipe.name] = (folder, quantized)
        main = reports[RECIPES[0]]
        main["comparisons"] = [{k: reports[r][k] for k in ("recipe", "accuracy", "model", "latency_ms", "fully_int8")}
                               for r in RECIPES[1:]]
        for recipe_name, (folder, quantized) in runs_by_recipe.items():
            to_write.append((folder, reference, quantized, reports[recipe_name], recipe_name == RECIPES[0]))
            rows.append(_row(name, reports[recipe_name]))
        html_paths.append(os.path.abspath(os.path.join(out, name, "report.html")))
    fixed = None
    with staged_outputs(out) as staging:
        for folder, reference, quantized, report, save_reference in to_write:
            os.makedirs(os.path.join(staging, folder), exist_ok=True)
            write_run(os.path.join(staging, folder), reference, quantized, report, save_reference=save_reference)
        if auto_precision:  # inside the staging folder: an interrupted loop leaves OUT as it was too
            fixed = _fix_loop(staging, float_epochs, progress, threads, runs)
    fix_folder = os.path.join(os.path.abspath(out), _fix_loop_folder())
    if json_output:
        result = {"rows": rows, "reports": html_paths}
        if fixed is not None:
            result["auto_precision"] = {"folder": fix_folder, **fixed["auto_precision"]}
        print(json.dumps(result, indent=2))
    else:
        print()
        _print_table(rows)
        print()
        for path in html_paths:
            print(f"report: {path}")
        if fixed is not None:
            _print_fix_loop(fixed, fix_folder)
    return 0


def _fix_loop_folder():
    return f"{FIX_LOOP['model']}-{FIX_LOOP['data']}"


def _fix_loop(staging, float_epochs, progress, threads, runs):
    """``convert FIX_LOOP --auto-precision`` into ``staging``; its report."""
    from edge_attn.pipeline import run_convert

    return run_convert(FIX_LOOP["model"], FIX_LOOP["recipe"], FIX_LOOP["data"],
                       os.path.join(staging, _fix_loop_folder()), float_epochs=float_epochs, threads=threads,
                       runs=runs, progress=progress, budget=FIX_LOOP["budget"], auto_precision=True)


def _print_fix_loop(report, folder):
    from edge_attn.convert.auto_precision import summary_lines

    accuracy = report["accuracy"]
    print()
    print(f"precision fix loop: {FIX_LOOP['model']} on {FIX_LOOP['data']}, {FIX_LOOP['recipe']} "
          f"--auto-precision --min-snr-db {FIX_LOOP['budget']['min_snr_db']:g}")
    for line in summary_lines(report["auto_precision"], folder):
        print(line)
    print(f"result: output SNR {accuracy['output_snr_db']:.1f} dB, agreement {accuracy['top1_agreement']:.4f}")
    print(f"report: {os.path.join(folder, 'report.html')}")
