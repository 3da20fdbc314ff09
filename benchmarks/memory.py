"""Peak memory of ``edge-attn convert`` on a real-size model and data set, with the machine recorded.

    python -m benchmarks.memory [--model cbam_resnet50] [--size 224] [--images 2000] [--epochs 0]
                                [--limit-mb 10000] [--out benchmarks/memory.json]

Writes a folder of ``--images`` small random PNGs in 10 classes (resized to ``--size`` on the fly, as
a user's image folder would be), then runs ``edge-attn convert MODEL --recipe int8-qat --float-epochs 0
--epochs N`` in a child process, sampling the resident memory of its whole process tree every 0.1 s
(:func:`edge_attn.resources.run_watched`) and killing it above ``--limit-mb`` so a regression cannot
take a shared machine down. Prints and records the peak, the run's own ``report.json`` resources
(``getrusage`` high-water mark), the time, the memory timeline and the machine (:mod:`benchmarks.machine`).
Not a test: ``tests/test_memory_budget.py`` is the gate; this is the number for the README.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import load_average, machine_record
from edge_attn.resources import available_memory, run_watched


def write_image_folder(root, images=2000, classes=10, size=32, seed=0):
    """``images`` random RGB PNGs of ``size``x``size`` in ``classes`` sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in range(images):
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cbam_resnet50")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=0, help="QAT fine-tune epochs (0: calibrate and convert)")
    parser.add_argument("--limit-mb", type=float, default=10000, help="kill the run above this resident memory")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "memory.json"))
    args = parser.parse_args(argv)

    machine = machine_record([2])
    machine["memory_available_mb"] = round((available_memory() or 0) / 2**20)
    with tempfile.TemporaryDirectory(prefix="edge_attn_memory_") as work:
        data = write_image_folder(Path(work) / "images", images=args.images)
        out = os.path.join(work, "out")
        command = [sys.executable, "-m", "edge_attn.cli", "convert", args.model, "--recipe", "int8-qat",
                   "--data", str(data), "--input-shape", f"{args.size},{args.size},3", "--float-epochs", "0",
                   "--epochs", str(args.epochs), "--runs", "3", "--no-progress", "--out", out]
        run = run_watched(command, args.limit_mb, interval=0.1,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        report = {}
        if run.returncode == 0:
            with open(os.path.join(out, "report.json")) as f:
                report = json.load(f)
    machine["load_average_after"] = load_average()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(command[1:]).replace(str(data), "IMAGES"),
        "model": args.model, "size": args.size, "images": args.images, "epochs": args.epochs,
        "returncode": run.returncode, "killed_over_limit": run.killed_over_limit, "limit_mb": args.limit_mb,
        "peak_tree_rss_mb": run.peak_rss_mb, "wait4_maxrss_mb": run.maxrss_mb, "seconds": run.seconds,
        "report_resources": report.get("resources"), "report_seconds": report.get("seconds"),
        "timeline_mb": run.samples[::10], "machine": machine,
        "stderr_tail": None if run.returncode == 0 else run.stderr[-1500:],
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    verdict = "killed at the limit" if run.killed_over_limit else f"exit {run.returncode}"
    print(f"{args.model} {args.size}x{args.size} int8-qat, {args.images} images, {args.epochs} QAT epochs: "
          f"peak RSS {run.peak_rss_mb:.0f} MB (process tree), {run.seconds:.0f} s, {verdict}")
    if report:
        print(f"report.json resources: {report['resources']}")
    print(f"machine: {machine['cpu']['model']}, {machine['cpus']} CPUs, load {machine['load_average_before']} -> "
          f"{machine['load_average_after']}; wrote {args.out}")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
