"""The ``edge-attn`` command line: argparse subcommands, one function each, returning an exit code.

Exit codes (docs/cli.md): 0 ok, 1 a check ran and failed its budget, 2 bad input or usage. Errors
are one line on stderr naming the input; ``--debug`` shows the traceback instead. Ctrl-C (SIGINT) exits
130 and SIGTERM 143 (128 + the signal number, as shells report them), with one line "interrupted": both
are raised as exceptions, so staged outputs are discarded and previous outputs stay as they were.

Only edge_attn's own lines reach the terminal: what TensorFlow, tfmot and LiteRT print goes to a
temporary log unless ``--verbose`` or ``--debug`` (:mod:`edge_attn.quiet`).

Commands that write to ``--out`` (train, convert, bundle, demo) claim it before any work
(:mod:`edge_attn.outdir`): a non-empty folder edge_attn did not create is refused unless ``--force``.
"""

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import traceback

from edge_attn.version import __version__
from edge_attn.errors import BadInput, EdgeAttnError

from edge_attn.distribute import CPU_REPLICAS_ENV, STRATEGIES  # cheap: no TensorFlow at import
from edge_attn.pipeline import DEFAULT_FLOAT_EPOCHS  # cheap: pipeline imports TensorFlow lazily


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its one-line message but drop the usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _command(sub, name, func, **parser_args):
    """The parser of subcommand ``name``, run by ``func``, with the options every command takes."""
    p = sub.add_parser(name, **parser_args)
    p.set_defaults(func=func)
    _add_common(p)
    return p


def _add_common(p):
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors (and everything --verbose shows)")
    p.add_argument("--verbose", action="store_true",
                   help="also show what TensorFlow, tfmot and LiteRT print (hidden by default, see edge_attn.quiet)")


def cmd_models(args):
    from edge_attn.models import describe_models

    rows = describe_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'dims':>4}  {'depth':>5}  {'block':<10}  attention")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['dims']:>4}  {r['depth']:>5}  {r['block']:<10}  {r['attention'] or '-'}")
    return 0


def _add_model_building(p):
    """Arguments shared by the commands that build (and train) a model: data, output, shape, seed."""
    p.add_argument("--data", required=True, help="digits | digits-glare | file.npz | folder of class folders")
    p.add_argument("--out", required=True, help="output folder")
    _add_force(p)
    p.add_argument("--input-shape", type=_input_shape, help="H,W,C (or L,C) for registry models; default from the data")
    p.add_argument("--seed", type=_seed, default=0, help="random seed for initialisation and shuffling")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_tflite_model(p):
    p.add_argument("model", help="the .tflite model")


def _add_force(p):
    p.add_argument("--force", action="store_true",
                   help="write into an existing non-empty --out that edge_attn did not create (only the files "
                        "this command writes are replaced; nothing else there is touched)")


def _add_trust(p):
    p.add_argument("--trust-model-code", action="store_true",
                   help="allow Keras Lambda layers: they hold Python code that runs when the model is loaded")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="with --trust-model-code: import this module of yours (e.g. your training script) so "
                        "the names its Lambda layers use resolve (repeatable)")
    p.add_argument("--code-path", dest="code_paths", action="append", default=[], metavar="DIR",
                   help="folder to import --import modules from (repeatable)")


def _import_user_code(args):
    if not (getattr(args, "imports", None) or getattr(args, "code_paths", None)):
        return
    if not args.trust_model_code:
        raise BadInput("--import", "runs your module's code; pass --trust-model-code as well")
    from edge_attn.usercode import import_user_code

    import_user_code(args.imports, args.code_paths)


def _input_shape(text):
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers like 16,16,1; Received: {text!r}")
    return dims


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more; Received: {text}")
    return value


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; Received: {text}")
    return value


def _seed(text):
    value = int(text)
    if not 0 <= value < 2**32:  # numpy's and TensorFlow's seed range
        raise argparse.ArgumentTypeError(f"must be 0..{2**32 - 1}; Received: {text}")
    return value


# argparse names the type function in "invalid <name> value: 'two'".
_non_negative.__name__, _positive.__name__, _seed.__name__ = "non-negative integer", "positive integer", "integer seed"


def _int8_verdict(report):
    """``yes``, or ``no (why)`` from report.json's ``why_not_fully_int8`` (int16 activations, float ops, ...)."""
    if report["fully_int8"]:
        return "yes"
    why = report.get("why_not_fully_int8")
    return f"no ({why})" if why else "no"


def _summary_rows(name, report):
    acc, lat = report["accuracy"], report["latency_ms"]
    return [
        ("model", name), ("recipe", report["recipe"]), ("fully int8", _int8_verdict(report)),
        ("size float → quantized", (f"{report['reference_model']['bytes'] / 1024:.1f} → " if report.get("reference_model")
                                    else "") + f"{report['model']['bytes'] / 1024:.1f} KiB"),
        ("top-1 float → quantized", f"{acc['reference_top1']:.4f} → {acc['quantized_top1']:.4f} "
                                    f"({acc['top1_drop_pt']:+.2f} pt drop)"),
        ("top-1 agreement", f"{acc['top1_agreement']:.4f} ({acc.get('agreement_count', '?')}/{acc['samples']})"),
        ("output SNR", f"{acc['output_snr_db']:.1f} dB" + (" (logits)" if acc.get("compared_on") == "logits" else "")),
        *_parity_row(report),
        *_range_rows(report),
        ("latency p50 float → quantized", f"{lat['reference']['p50']:.2f} → {lat['quantized']['p50']:.2f} ms "
                                          f"({lat['threads']} threads)"),
        ("budget", ("passed" if report["budget"]["passed"] else "FAILED: " + "; ".join(report["budget"]["failures"]))
                   + _budget_terms(report["budget"])),
    ]


def _budget_terms(budget):
    terms = [f"drop <= {budget['max_drop']:g} pt", f"agreement >= {budget['min_agreement']:g}"]
    if budget.get("min_snr_db") is not None:
        terms.append(f"SNR >= {budget['min_snr_db']:g} dB")
    return " (" + ", ".join(terms) + ")"


def _range_rows(report):
    from edge_attn.evaluate.per_layer import describe_ranges

    return describe_ranges(report.get("layers") or [])


def _parity_row(report):
    parity = report.get("qat_parity")
    if not parity or parity["snr_db"] is None:
        return []
    text = f"{parity['snr_db']:.1f} dB"
    if not parity["passed"]:
        text += (f" (below {parity['min_snr_db']:.0f} dB: the converter did not compute what QAT modelled"
                 + (f"; first int8 layer below it: {parity['first_layer_below']}" if parity["first_layer_below"] else "")
                 + ")")
    return [("QAT → TFLite parity", text)]


def _print_rows(rows):
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def cmd_train(args):
    from edge_attn.atomic import atomic_path
    from edge_attn.models import create_model, is_registered
    from edge_attn.pipeline import prepare_reference

    if not is_registered(args.model):
        if os.path.exists(args.model):
            raise BadInput(args.model, "train takes a registry name (see `edge-attn models`); "
                                       "a saved model is converted with `edge-attn convert`")
        create_model(args.model)  # raises BadInput with the close registry matches

    reference = prepare_reference(args.model, args.data, input_shape=args.input_shape, float_epochs=args.epochs,
                                  seed=args.seed, progress=not args.no_progress)
    path = os.path.join(args.out, "model.keras")
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(path) as tmp:
        reference.model.save(tmp)
    accuracy = reference.trained["eval_accuracy"][-1] if reference.trained and reference.trained["eval_accuracy"] else None
    result = {"model": path, "source": args.model, "training": reference.trained, "data": reference.data.info}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{args.model}: trained {args.epochs} epochs on {args.data}"
              + (f", eval top-1 {accuracy:.4f}" if accuracy is not None else "") + f"\nwrote {path}")
    return 0


def _add_budget(p):
    p.add_argument("--max-drop", type=float, default=1.0, help="largest allowed top-1 drop in points (default 1.0)")
    p.add_argument("--min-agreement", type=float, default=0.98, help="smallest allowed top-1 agreement (default 0.98)")
    p.add_argument("--min-snr-db", type=float, default=25.0,
                   help="smallest allowed output SNR vs float in dB (default 25: below it ranges are usually wrong)")


def cmd_convert(args):
    from edge_attn.pipeline import run_convert

    report = run_convert(args.model, args.recipe, args.data, args.out, input_shape=args.input_shape,
                         epochs=args.epochs, float_epochs=args.float_epochs, threads=args.threads, runs=args.runs,
                         seed=args.seed, progress=not args.no_progress, trust_model_code=args.trust_model_code,
                         strategy=args.strategy, resume=args.resume,
                         auto_precision=args.auto_precision_delegate or args.auto_precision,
                         budget={"max_drop": args.max_drop, "min_agreement": args.min_agreement,
                                 "min_snr_db": args.min_snr_db})
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    elif "task" in report:  # a multi-worker task other than the chief
        print(f"{report['task']}: fine-tune done; {report['writer']} writes the outputs to {args.out}")
    else:
        _print_rows(_summary_rows(args.model, report))
        _print_auto_precision(report.get("auto_precision"), args.out)
        print(f"report: {os.path.join(os.path.abspath(args.out), 'report.html')}")
    return 0


def _print_auto_precision(searched, out):
    """What --auto-precision tried, and the recipe it wrote (nothing without the flag)."""
    from edge_attn.convert.auto_precision import summary_lines

    for line in summary_lines(searched, out):
        print(line)


def _writes_out(args):
    """False for a multi-worker convert on a task other than the chief: it trains, the chief writes --out."""
    if getattr(args, "strategy", None) != "multi-worker":
        return True
    from edge_attn.distribute import cluster_task

    return cluster_task().is_chief


def cmd_check(args):
    from edge_attn.convert.verify import verify_tflite
    from edge_attn.data import load_data
    from edge_attn.evaluate.per_layer import layer_errors
    from edge_attn.evaluate.results import checked_model
    from edge_attn.evaluate.samples import default_split, describe_evaluation, split_arrays
    from edge_attn.modelio import load_keras_model
    from edge_attn.pipeline import LAYER_SAMPLES, check, float_tflite, lowered_float_model

    tflite = verify_tflite(args.model)  # a bad .tflite fails before anything is loaded
    npu_socs = _npu_socs(args.npu)
    if args.device is not None:
        from edge_attn.devices import load_profile

        kind = load_profile(args.device).kind  # a bad profile fails before the models are loaded
        if kind == "adb":
            raise BadInput("--device", f"{args.device} is an adb phone: check --device computes outputs on a "
                                       "kind = \"ssh\" board (measure phones' latency with bench)")
        if kind == "host":
            args.device = None  # this machine: LiteRT in this process, as without --device
    reference = load_keras_model(args.reference, trust_model_code=args.trust_model_code)
    data = load_data(args.data, input_shape=tuple(reference.input_shape[1:]))
    split = args.split or default_split(args.data)
    x, y = split_arrays(data, split)
    layer_reference, _ = lowered_float_model(reference, args.trust_model_code)
    reference_tflite = None
    if args.device is not None:  # outputs and latency from the device; per-layer error from LiteRT here
        from edge_attn.evaluate.on_device import check_on_device

        accuracy, latency, device, where = check_on_device(reference, args.model, x, y, args.device,
                                                           threads=args.threads, runs=args.runs)
        layers = layer_errors(layer_reference, args.model, x[:LAYER_SAMPLES])
    else:
        reference_tflite = float_tflite(reference)
        # The path, not the bytes: LiteRT runs a user's file only after probing it in a child (edge_attn.litert).
        accuracy, layers, latency = check(reference, layer_reference, args.model, data, threads=args.threads or 2,
                                          runs=args.runs or 50, reference_tflite=reference_tflite, split=split)
        device = None
        from edge_attn.evaluate.latency import host_target

        where = host_target(os.path.abspath(args.model), latency["quantized"], accuracy)
    target = gpu = None
    if args.accelerator == "gpu":  # accuracy from outputs of LiteRT's GPU accelerator (layers, latency: CPU)
        from edge_attn.targets.gpu import gpu_accuracy

        gpu, target = gpu_accuracy(reference, args.model, x, y)
        accuracy = gpu or accuracy
    budget = {"max_drop": args.max_drop, "min_agreement": args.min_agreement, "min_snr_db": args.min_snr_db}
    result = {**checked_model(tflite, os.path.abspath(args.model), accuracy, layers, latency, data, split,
                              reference_tflite=reference_tflite, budget=budget),
              "reference": os.path.abspath(args.reference),
              "accelerator": target.to_dict() if target else where, "device": device}
    if target is not None:  # the GPU's problems fail the budget; no GPU outputs: the CPU figures are not judged
        verdict = result["budget"]
        verdict["failures"] = [f"gpu: {p}" for p in target.problems] + (verdict["failures"] if gpu else [])
        verdict["passed"] = not verdict["failures"]
    if npu_socs:  # what Qualcomm's compiler makes of the model, beside where its outputs were computed
        from edge_attn.targets.qnn import compile_qnn

        npus = [compile_qnn(args.model, soc).to_dict() for soc in npu_socs]
        result["accelerators"] = [result["accelerator"], *npus]
        result["budget"]["failures"] += [f"npu {r['target']}: {r['symptom']}" for r in npus if r["verdict"] == "failed"]
        result["budget"]["passed"] = not result["budget"]["failures"]
    failures = result["budget"]["failures"]
    if args.json:
        print(json.dumps(_jsonable(result), indent=2, allow_nan=False))
    else:
        from edge_attn.evaluate.local_error import describe_worst_layers
        from edge_attn.evaluate.per_layer import describe_ranges

        _print_rows([
            ("model", args.model), ("fully int8", _int8_verdict(result)),
            ("evaluated on", describe_evaluation(result["evaluation"])),
            ("accuracy computed on", "CPU" if not target else f"GPU accelerator, {target.details['adapter']}" if gpu
             else "CPU (the GPU accelerator gave no outputs)"),
            ("top-1 float → quantized", f"{accuracy['reference_top1']:.4f} → {accuracy['quantized_top1']:.4f} "
                                        f"({accuracy['top1_drop_pt']:+.2f} pt drop)"),
            ("top-1 agreement", f"{accuracy['top1_agreement']:.4f} ({accuracy['agreement_count']}/{accuracy['samples']})"),
            ("output SNR", f"{accuracy['output_snr_db']:.1f} dB"),
            *([("outputs computed on", f"{device['name']} ({_board_line(device)})")] if device else []),
            *[(r["target"], r["verdict"] + (f": {r['symptom']}" if r["symptom"] else ""))
              for r in result.get("accelerators", [])[1:]],
            *describe_worst_layers(layers),
            *describe_ranges(layers),
        ])
        print("budget: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


def _npu_socs(targets):
    from edge_attn.targets.qnn import parse_npu_target

    return list(dict.fromkeys(parse_npu_target(t) for t in targets))


def _board_line(device):
    words = [device.get("arch"), device.get("cpu"),
             f"QEMU_CPU={device['emulated_cpu']}" if device.get("emulated_cpu") else None]
    return " ".join(w for w in words if w) + (", EMULATED: latency is not a device figure" if device["emulated"] else "")


def _jsonable(value):
    from edge_attn.evaluate.report import jsonable

    return jsonable(value)


def cmd_compat(args):
    from edge_attn.delegates import check_compat, format_compat

    if args.delegate == "openvino":
        from edge_attn.targets.openvino import compat_openvino

        return compat_openvino(args.model, args.soc, json_output=args.json)
    if args.delegate == "qnn" or args.soc is not None:
        from edge_attn.targets.qnn import compat_qnn

        return compat_qnn(args.model, args.delegate, args.soc, json_output=args.json)
    report = check_compat(args.model, args.delegate, args.android_api, xnnpack_rules=args.xnnpack_rules)
    if args.verify or args.data:
        from edge_attn.targets.gpu import verify_compat

        result, text = verify_compat(report, args.model, args.delegate, args.data, verify=args.verify)
        print(json.dumps(result, indent=2) if args.json else format_compat(report) + "\n" + text)
        return 0 if result["accelerator"]["available"] and not result["accelerator"]["problems"] else 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_compat(report))
    return 0


def cmd_compile(args):
    from edge_attn.targets.qnn import compile_cli

    return compile_cli(args.model, args.npu, args.out, json_output=args.json)


def cmd_bundle(args):
    from edge_attn.bundle import bundle

    manifest = bundle(args.model, target=args.target, labels=args.labels, out=args.out, name=args.name,
                      zip=args.zip, interface=args.interface)
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        where = os.path.join(args.out, f"{manifest['name']}-{manifest['target']}.zip") if args.zip else args.out
        _print_rows([
            ("bundle", where), ("target", manifest["target"]), ("model", manifest["model"]["file"]),
            ("labels", f"{manifest['labels']['count']} ({manifest['labels']['source']})"),
            ("input", f"{manifest['input']['dtype']} {manifest['input']['shape']}" + (
                f", scale {manifest['input']['scale']}, zero point {manifest['input']['zero_point']}"
                if manifest["input"]["scale"] is not None else "")),
            ("interface", f"{manifest['interface']['chosen']} ({manifest['interface']['reason']})"),
            ("delegates", " → ".join(manifest["delegates"]["order"])),
            ("works with", _consumer_text(manifest["consumers"])),
        ])
    return 0


def _consumer_text(consumers):
    works = [c["consumer"] for c in consumers if c["works"]]
    not_with = [f"not {c['consumer']} ({c['reason']})" for c in consumers if not c["works"]]
    return "; ".join([", ".join(works)] + not_with)


def cmd_verify_bundle(args):
    from edge_attn.bundle import check_bundle

    check = check_bundle(args.bundle)
    if args.json:
        print(json.dumps({"bundle": args.bundle} | check.to_dict(), indent=2))
    else:
        print("\n".join(check.problems) if check.problems else f"{args.bundle}: ok")
        if check.consumers:
            print(f"works with: {_consumer_text(check.consumers)}")
    return 1 if check.problems else 0


def cmd_bench(args):
    from edge_attn.bench import format_bench, run_bench

    result = run_bench(args.model, device=args.device, delegates=args.delegate, threads=args.threads,
                       runs=args.runs, reference=args.reference, progress=not args.no_progress,
                       op_profile=args.op_profile, baseline=args.baseline, save_baseline_to=args.save_baseline,
                       alpha=args.alpha, min_effect=args.min_effect)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    failed = [entry for entry in result["delegates"] if entry["within_budget"] is False
              or (entry["baseline"] or {}).get("status") == "regressed"]
    return 1 if failed else 0


def cmd_demo(args):
    from edge_attn.demo import run_demo

    return run_demo(args.out, models=args.models, float_epochs=args.float_epochs, epochs=args.epochs,
                    json_output=args.json, progress=not args.no_progress, auto_precision=args.auto_precision)


def build_parser():
    parser = _Parser(prog="edge-attn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-attn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _command(sub, "models", cmd_models, help="list registered architectures", description="List the model zoo.")

    p = _command(sub, "train", cmd_train, help="train a registry model in float", description=(
        "Train a registry model in float on a data set; writes OUT/model.keras."))
    p.add_argument("model", help="registry name (see `edge-attn models`)")
    _add_model_building(p)
    p.add_argument("--epochs", type=_non_negative, default=DEFAULT_FLOAT_EPOCHS, help="float training epochs")

    p = _command(sub, "convert", cmd_convert, help="quantize and convert a model to TFLite, checked against float",
                 description="Convert a registry model (trained first in float) or a saved Keras model "
                             "to TFLite per a recipe; writes model.tflite, reference.keras, report.json "
                             "and report.html to --out.")
    p.add_argument("model", help="registry name or a .keras/.h5 file or SavedModel folder")
    p.add_argument("--recipe", required=True, help="int8-qat | int8-ptq | fp16 | f32 | dynamic | path.toml")
    _add_model_building(p)
    p.add_argument("--epochs", type=_non_negative, help="QAT fine-tune epochs (default: the recipe's; 0 = calibrate only)")
    p.add_argument("--float-epochs", type=_non_negative, default=DEFAULT_FLOAT_EPOCHS,
                   help=f"float training epochs for registry models (default {DEFAULT_FLOAT_EPOCHS}; 0 = random init)")
    p.add_argument("--threads", type=_positive, default=2, help="interpreter threads for latency")
    p.add_argument("--runs", type=_positive, default=50, help="timed runs for latency")
    p.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="where training runs: default (one device) | mirrored (all GPUs of this machine; without "
                        f"GPUs, ${CPU_REPLICAS_ENV} logical CPUs) | multi-worker (machines named by $TF_CONFIG; "
                        "the chief writes --out)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoints in OUT/checkpoints (same settings)")
    _add_budget(p)
    p.add_argument("--auto-precision", action="store_true",
                   help="when plain int8 misses the budget, raise the fewest layers (worst local error first; "
                        "int16x8, then float) until it is met, and write the recipe to OUT/recipe.toml "
                        "(post-training int8 recipes; needs the mixed extra)")
    p.add_argument("--auto-precision-delegate", choices=("xnnpack", "gpu", "nnapi"),
                   help="with --auto-precision (implies it): the delegate the model is for; candidates that would "
                        "leave it more ops for the CPU than all-int8 does are refused (no delegate takes int16x8)")
    _add_trust(p)

    p = _command(sub, "check", cmd_check, help="check a .tflite against its float reference",
                 description="Accuracy, agreement, output SNR and per-layer error of a TFLite model "
                             "against its float Keras reference; exit 1 when a budget is missed.")
    _add_tflite_model(p)
    p.add_argument("--reference", required=True, help="the float Keras model (.keras/.h5/SavedModel)")
    p.add_argument("--data", required=True, help="digits | digits-glare | file.npz | folder of class folders")
    p.add_argument("--split", choices=("eval", "train", "all"),
                   help="which samples to score: all (default for a file or folder: it is the evaluation set) | "
                        "eval (default for digits: its held-out split) | train")
    _add_budget(p)
    p.add_argument("--device", default=None,
                   help="a kind = \"ssh\" profile (name or .toml): the model's outputs and latency come from that "
                        "board, the float reference runs here (default, or a host profile: LiteRT on this machine)")
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (default 2, or the device profile's)")
    p.add_argument("--runs", type=_positive, default=None, help="timed runs (default 50, or the device profile's)")
    p.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu",
                   help="where the quantized model's accuracy is computed: cpu (LiteRT's CPU kernels) or gpu "
                        "(LiteRT's GPU accelerator, also compared with the CPU; per-layer error stays on CPU)")
    p.add_argument("--npu", action="append", default=[],
                   help="qnn:SOC (repeatable): also compile for that NPU; the results go to `accelerators` "
                        "(the bundle's delegate order reads them); a failed compile fails the check")
    _add_trust(p)

    p = _command(sub, "compat", cmd_compat, help="which ops a delegate (GPU, NNAPI, XNNPACK) would take, and why not",
                 description="Per-op delegate verdicts with reasons, from edge_attn's own rules (TFLite's "
                             "Analyzer claims GPU compatibility for ops the GPU delegate rejects), the "
                             "partitions the delegate would create, and a one-line summary.")
    _add_tflite_model(p)
    p.add_argument("--delegate", required=True, choices=("gpu", "nnapi", "xnnpack", "qnn", "openvino"),
                   help="qnn: Qualcomm's real HTP (NPU) compiler through LiteRT's AOT plug-in, for --soc; "
                        "openvino: the Intel NPU plug-in's partitioning only (it cannot compile here)")
    p.add_argument("--soc", help="SoC for --delegate qnn (SM8650, SM8850, ...) or openvino (LNL, PTL); see "
                                 "docs/targets-npu.md")
    p.add_argument("--android-api", type=int, help="Android API level for NNAPI (27..36; default: judge at 36 "
                                                     "and show each op's minimum level)")
    p.add_argument("--xnnpack-rules", choices=("readme", "litert"), default="readme",
                   help="readme (default): XNNPACK as documented and in older TFLite runtimes (MEAN only over "
                        "spatial axes); litert: current LiteRT, which also takes channel MEAN/REDUCE_MAX/SUM")
    p.add_argument("--verify", action="store_true",
                   help="gpu only: also run the model on LiteRT's real GPU accelerator (software Vulkan without a "
                        "GPU, see scripts/setup_vulkan.sh) and compare its outputs with the CPU's; exit 1 on wrong "
                        "numbers or when the accelerator is unavailable")
    p.add_argument("--data", help="with --verify: inputs to compare on (digits | file.npz | folder; default: "
                                  "seeded random inputs)")

    p = _command(sub, "compile", cmd_compile,
                 help="AOT-compile a .tflite for a Qualcomm NPU (and keep its CPU fallback)",
                 description="Compile with Qualcomm's HTP compiler through LiteRT's AOT plug-in: writes "
                             "MODEL_Qualcomm_SOC.tflite (what an app ships for that SoC), MODEL.tflite (the "
                             "CPU-only fallback, unchanged) and compile.json. Exit 1 when the compile fails.")
    _add_tflite_model(p)
    p.add_argument("--npu", required=True, action="append", help="qnn:SOC, e.g. qnn:SM8650 (repeatable)")
    p.add_argument("--out", required=True, help="output folder")
    _add_force(p)

    p = _command(sub, "bench", cmd_bench, help="latency of a .tflite on a device (host, adb phone, ssh board)",
                 description="Measure latency on a device profile; with --reference, the float model is "
                             "measured in the same run, interleaved, and the speed-up is a ratio. "
                             "Exit 1 when a result is over the profile's latency budget or significantly "
                             "slower than its --baseline.")
    _add_tflite_model(p)
    p.add_argument("--device", default="host", help="profile name (host, android-example, ...) or a .toml path")
    p.add_argument("--delegate", action="append", choices=("cpu", "xnnpack", "gpu", "nnapi"),
                   help="delegate to measure (repeatable; default: the profile's list)")
    p.add_argument("--threads", type=_positive, help="threads (default: the profile's)")
    p.add_argument("--runs", type=_positive, help="timed runs (default: the profile's)")
    p.add_argument("--reference", help="the float model to measure in the same run: a .tflite, or the Keras "
                                         "model (e.g. OUT/reference.keras), converted to float32 TFLite for the run")
    p.add_argument("--op-profile", action="store_true",
                   help="also show where the time goes per op type (host: XNNPACK, each op timed alone; adb: "
                        "benchmark_model's op profiling)")
    p.add_argument("--baseline", metavar="FILE",
                   help="latency baseline JSON: exit 1 on a statistically significant regression against it")
    p.add_argument("--save-baseline", metavar="FILE", help="add this run's results to a latency baseline JSON")
    p.add_argument("--alpha", type=float, help="significance level of the regression test (default 0.01)")
    p.add_argument("--min-effect", type=float, metavar="FRACTION",
                   help="smallest p50 slowdown that counts as a regression (default 0.10: 10%%)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = _command(sub, "bundle", cmd_bundle, help="app-ready Android / iOS assets with TFLite metadata and a manifest",
                 description="Embed TFLite metadata (normalization, labels) in the model and lay it out for "
                             "an Android (assets/) or iOS (Resources/) project, with a manifest (hashes, "
                             "tensor specs, delegate order) and INTEGRATION.md.")
    p.add_argument("model", help="the .tflite model (a report.json beside it supplies labels and accuracy)")
    p.add_argument("--target", required=True, choices=("android", "ios"))
    p.add_argument("--labels", help="class names, one per line (default: from report.json, else class ids)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", help="model file name in the bundle (default: the model file's)")
    p.add_argument("--zip", action="store_true", help="write one reproducible NAME-TARGET.zip instead of a folder")
    p.add_argument("--interface", choices=("auto", "uint8", "float32", "keep"), default="auto",
                   help="input/output tensor types of the bundled model: auto (default: float32 around an int8 image "
                        "model's graph, as the Task Library and ML Model Binding need), uint8 (raw 0..255 pixels in), "
                        "float32, or keep (the model's own; the LiteRT Interpreter takes any)")
    _add_force(p)

    p = _command(sub, "verify-bundle", cmd_verify_bundle, help="re-check a bundle's hashes, metadata and labels",
                 description="Re-check every file of a bundle (folder or .zip) against its manifest, and the "
                             "model's metadata and labels; say which consumers (LiteRT Interpreter, Task "
                             "Library, ML Model Binding) take the model. Exit 1 on any problem.")
    p.add_argument("bundle", help="bundle folder or .zip")

    p = _command(sub, "demo", cmd_demo, help="the whole flow on the built-in digits data set",
                 description="Train se_resnet20 and cbam_resnet20 on digits, convert each with int8-qat "
                             "and int8-ptq (for contrast), check them and write reports.")
    p.add_argument("--out", default="edge-attn-demo", help="output folder (default ./edge-attn-demo)")
    _add_force(p)
    p.add_argument("--models", default="se_resnet20,cbam_resnet20", help="comma-separated registry names")
    p.add_argument("--float-epochs", type=_non_negative, default=DEFAULT_FLOAT_EPOCHS)
    p.add_argument("--epochs", type=_non_negative, help="QAT fine-tune epochs (default: the recipe's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--auto-precision", action="store_true",
                   help="also run the precision fix loop where plain int8 loses: se_resnet20 on digits-glare, "
                        "int8-ptq, --auto-precision --min-snr-db 25 (about 4 more minutes on 2 cores)")
    return parser


class _Received(list):
    """The signals received (at most one), and the terminal stream messages go to after one was."""

    terminal = None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup (``finally``, staged outputs, a claimed --out) runs."""


@contextlib.contextmanager
def _interrupts_raise(show_native_tracebacks=False):
    """SIGINT raises KeyboardInterrupt and SIGTERM :class:`_Terminated`, once: a repeat while the first one
    is cleaning up (milliseconds) is ignored. Signals the caller set to be ignored (``nohup``) stay ignored.
    Yields the list of signals received (at most one).

    Once a signal was received, tracebacks that native code prints through ``sys.excepthook`` (TensorFlow's
    C++ calling ``PyErr_Print`` on the error our KeyboardInterrupt became) go to descriptor 2 -- the native
    log while output is captured -- instead of the terminal, unless ``show_native_tracebacks``."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield []
        return
    raised = _Received()
    previous_hook = sys.excepthook

    def excepthook(kind, value, tb):
        if raised and not show_native_tracebacks:
            traceback.print_exception(kind, value, tb, file=sys.__stderr__)
        else:
            previous_hook(kind, value, tb)

    def handler(signum, _frame):
        if not raised:
            raised.append(signum)
            if not show_native_tracebacks and getattr(sys.stderr, "edge_attn_terminal", False):
                # native code may print the error our interrupt became straight to sys.stderr (PyErr_Display):
                # from now on that goes to descriptor 2, the native log; the "interrupted" line to the terminal
                raised.terminal, sys.stderr = sys.stderr, sys.__stderr__
            raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) != signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
        sys.excepthook = excepthook
        yield raised
    finally:
        sys.excepthook = previous_hook
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _interrupted(command, *, terminated, terminal=None):
    print(f"edge-attn {command}: interrupted" + (" (SIGTERM)" if terminated else ""), file=terminal or sys.stderr)
    return 143 if terminated else 130


def _claimed_out(args, argv):
    """Commands with --out/--force claim the folder before any work (see :mod:`edge_attn.outdir`)."""
    if not hasattr(args, "force") or not _writes_out(args):
        return contextlib.nullcontext()
    from edge_attn.outdir import claimed_out_dir

    command = shlex.join(["edge-attn", *(sys.argv[1:] if argv is None else argv)])
    return claimed_out_dir(args.out, force=args.force, command=command)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from edge_attn.quiet import native_output_captured

    show_everything = args.verbose or args.debug
    with _interrupts_raise(show_everything) as received, native_output_captured(not show_everything):
        try:
            with _claimed_out(args, argv):
                _import_user_code(args)
                return int(args.func(args) or 0)
        except EdgeAttnError as e:
            if args.debug:
                traceback.print_exc()  # the traceback, and still the contract's exit code
            print(f"edge-attn {args.command}: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            return _interrupted(args.command, terminated=isinstance(e, _Terminated), terminal=received.terminal)
        except BrokenPipeError:  # `edge-attn models --json | head`: the reader left; not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception:
            # Native code (TensorFlow's C++ nest utilities, during model.save) can turn the KeyboardInterrupt
            # our handler raised into a SystemError/ValueError: it is still the interrupt.
            if received and not args.debug:
                return _interrupted(args.command, terminated=received[0] == signal.SIGTERM,
                                    terminal=received.terminal)
            raise


if __name__ == "__main__":
    sys.exit(main())
