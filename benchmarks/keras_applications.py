"""Keras Applications coverage: the SE models that ship on phones (MobileNetV3, EfficientNet) and two
classics, built with ``weights=None`` (no download), trained briefly on digits, converted by edge_attn.

For each model and recipe (int8-qat, int8-ptq): fully int8 or not, top-1 agreement and logit SNR of the
int8 model against the float one on a held-out split (never trained on, never used for calibration or
fine-tuning), and what normalization rewrote. A peer row per model, ``tf-converter-ptq``: the same float
model through TensorFlow's own converter (full-integer int8, int8 I/O, the same number of calibration
samples as ``int8-ptq``), scored the same way — what a user gets today without edge_attn. Writes ``benchmarks/keras_applications.json`` and prints
the README table. Re-measured, not copied: run ``python -m benchmarks.keras_applications`` (about an hour
on 2 cores; ``--models MobileNetV3Small`` for one). Rows are merged into the JSON model by model as each
finishes (a model re-measured replaces its old rows), so a long run can be split or resumed; the JSON
keeps the machine record (:mod:`benchmarks.machine`) of each model's run.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

DEFAULT_MODELS = ("MobileNetV3Small", "MobileNetV3Large", "MobileNetV3Large-no-preprocessing", "EfficientNetB0",
                  "EfficientNetV2B0", "ResNet50", "MobileNetV2")
RECIPES = ("int8-qat", "int8-ptq")
PEER = "tf-converter-ptq"
INPUT_SHAPE = (32, 32, 3)


def build(name, classes):
    from edge_attn._keras import keras

    apps = keras.applications
    common = {"input_shape": INPUT_SHAPE, "weights": None, "classes": classes}
    if name == "MobileNetV3Large-no-preprocessing":
        return apps.MobileNetV3Large(include_preprocessing=False, **common)
    return getattr(apps, name)(**common)


def input_scale(name):
    """What the [0, 1] digits are multiplied by for ``name``: 255 for the models whose built-in preprocessing
    expects [0, 255] pixels (MobileNetV3 and EfficientNetV2 with ``include_preprocessing``, EfficientNet),
    1 for those that take already-preprocessed inputs."""
    built_in = name.startswith(("MobileNetV3", "EfficientNet")) and not name.endswith("-no-preprocessing")
    return 255.0 if built_in else 1.0


def train(model, x, y, epochs, seed=0):
    """Adam with cosine decay on the softmax outputs, then BN statistics recomputed over the training set
    (these models trained briefly from scratch lean on batch statistics)."""
    from edge_attn._keras import keras

    keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(x) / 32))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in batch_norms]
    # Chunk k of n enters the moving statistics with weight 1/k: they end as the mean over the chunks.
    for k, start in enumerate(range(0, len(x), 256), 1):
        for layer in batch_norms:
            layer.momentum = (k - 1) / k
        model(x[start:start + 256], training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum
    return model


def tf_converter_ptq(model, x_train, samples):
    """The float ``model`` as TensorFlow's converter makes it full-integer int8 on its own (int8 inputs and
    outputs, ``samples`` seeded training samples, one per calibration step), or None if it refuses."""
    import tensorflow as tf

    picked = x_train[np.random.default_rng(0).permutation(len(x_train))[:samples]]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[None]] for sample in picked)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _row(name, recipe, float_top1, held_out, tflite_bytes, rewritten, seconds):
    from edge_attn.convert.inspect import inspect_tflite

    return {
        "model": name, "recipe": recipe, "fully_int8": inspect_tflite(tflite_bytes).fully_int8,
        "float_top1": float_top1, "held_out_samples": held_out["samples"], "agreement": held_out["top1_agreement"],
        "agreement_count": held_out["agreement_count"], "snr_db": held_out["output_snr_db"],
        "compared_on": held_out["compared_on"], "int8_top1": held_out["quantized_top1"],
        "kib": round(len(tflite_bytes) / 1024, 1), "rewritten": rewritten, "seconds": round(seconds, 1),
    }


def measure(name, data, epochs, out_root, qat_epochs=None):
    import edge_attn
    from edge_attn.convert import load_recipe
    from edge_attn.evaluate.compare import compare

    # Models with built-in preprocessing (a Rescaling to [-1, 1] or [0, 1]) take pixels in [0, 255], as their
    # documentation says; the digits are in [0, 1]. Fed [0, 1], that layer's output is a band ~0.008 wide far
    # from 0, which int8 (whose range contains 0) keeps in ~2 steps (`few int8 steps` in convert's summary).
    scale = input_scale(name)
    x_train, y_train = np.asarray(data.x_train) * scale, np.asarray(data.y_train)
    x_eval, y_eval = np.asarray(data.x_eval) * scale, np.asarray(data.y_eval)
    model = train(build(name, data.num_classes), x_train, y_train, epochs)
    float_top1 = float(np.mean(model.predict(x_eval, verbose=0).argmax(1) == y_eval))
    rows = []
    for recipe in RECIPES:
        start = time.perf_counter()
        result = edge_attn.convert(model, recipe=recipe, data=(x_train, y_train),
                                   out=os.path.join(out_root, f"{name}-{recipe}"), runs=5,
                                   epochs=qat_epochs)
        held_out = compare(model, result.model_path, x_eval, y_eval)
        with open(result.model_path, "rb") as f:
            tflite_bytes = f.read()
        rows.append(_row(name, recipe, float_top1, held_out, tflite_bytes,
                         sorted({f"{r['from']}→{r['to']}" for r in result.report["rewrites"]}),
                         time.perf_counter() - start))
        print(json.dumps(rows[-1]), file=sys.stderr)
    start = time.perf_counter()
    peer = tf_converter_ptq(model, x_train, load_recipe("int8-ptq").calibration_samples)
    rows.append(_row(name, PEER, float_top1, compare(model, peer, x_eval, y_eval), peer, [],
                     time.perf_counter() - start))
    print(json.dumps(rows[-1]), file=sys.stderr)
    for row in rows:
        row["input_range"] = [0.0, scale]
    return rows


def table(rows):
    lines = ["| model | recipe | fully int8 | float top-1 | agreement (held out) | logit SNR dB | rewritten |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rewritten = ", ".join(r["rewritten"]) or "-"
        lines.append(f"| {r['model']} | {r['recipe']} | {'yes' if r['fully_int8'] else 'no'} | {r['float_top1']:.3f} | "
                     f"{r['agreement']:.4f} ({r['agreement_count']}/{r['held_out_samples']}) | {r['snr_db']:.1f} | "
                     f"{rewritten} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--epochs", type=int, default=6, help="float training epochs on digits")
    parser.add_argument("--qat-epochs", type=int, default=None, help="QAT fine-tune epochs (default: the recipe's)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "keras_applications.json"))
    args = parser.parse_args(argv)
    from edge_attn.data import load_data

    from benchmarks.machine import machine_record

    data = load_data("digits", input_shape=INPUT_SHAPE)  # stratified 80/20: eval = the held-out split
    record = {"input_shape": list(INPUT_SHAPE), "float_epochs": args.epochs, "data": "digits (sklearn), 32x32x3",
              "rows": []}
    if os.path.exists(args.out):
        with open(args.out) as f:
            record = json.load(f)
    with tempfile.TemporaryDirectory(prefix="edge-attn-apps-") as out_root:
        for name in args.models.split(","):
            machine = machine_record([1])
            rows = measure(name, data, args.epochs, out_root, args.qat_epochs)
            for row in rows:
                row["machine"] = {"cpu": machine["cpu"]["model"], "cpus": machine["cpus"],
                                  "load_average": machine["load_average_before"], "float_epochs": args.epochs,
                                  "date": time.strftime("%Y-%m-%d %H:%M")}
            order = {m: i for i, m in enumerate(DEFAULT_MODELS)}
            record["rows"] = sorted([r for r in record["rows"] if r["model"] != name] + rows,
                                    key=lambda r: (order.get(r["model"], len(order)), r["model"], r["recipe"]))
            with open(args.out + ".tmp", "w") as f:
                json.dump(record, f, indent=2)
            os.replace(args.out + ".tmp", args.out)
    print(table(record["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
