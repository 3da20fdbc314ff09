"""Memory budget: a ResNet-50-class model at 224x224 converts on 2,000 images within a bounded peak RSS.

``edge-attn convert cbam_resnet50 --recipe int8-qat`` (calibrate + convert + check, no training: the
budget is about memory growing with the data set and the layer count, and training memory is the
batch's, checked by the preflight) runs in a child process whose whole process tree is sampled
(:func:`edge_attn.resources.run_watched`) and killed above the budget, so a regression fails the test
instead of pushing a shared machine into its OOM killer. The data is a folder of 2,000 small PNGs
resized to 224x224 on the fly: in float32 at the model's size they would be 1.2 GB, so a loader
that materializes them shows up here. Takes ~4-6 minutes on 2 cores.

Before the fix (one probe returning every layer's activation for batches of 64) this run was
killed at the budget after ~90 s; with ``MEMORY_BUDGET_MB`` it fails the same way whenever a step
starts holding memory per sample or per layer again.
"""

import json
import os
import sys

from benchmarks.memory import write_image_folder
from edge_attn.resources import run_watched

MEMORY_BUDGET_MB = 4096  # issue 14's target for cbam_resnet50 at 224x224, int8-qat, 2,000 images
IMAGES = 2000


def test_cbam_resnet50_at_224_converts_2000_images_within_the_budget(tmp_path):
    data = write_image_folder(tmp_path / "images", images=IMAGES)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edge_attn.cli", "convert", "cbam_resnet50", "--recipe", "int8-qat",
               "--data", str(data), "--input-shape", "224,224,3", "--float-epochs", "0", "--epochs", "0",
               "--runs", "3", "--no-progress", "--out", str(out)]
    run = run_watched(command, MEMORY_BUDGET_MB, interval=0.1, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert not run.killed_over_limit, (f"killed above the {MEMORY_BUDGET_MB} MB budget after {run.seconds:.0f} s "
                                       f"(peak seen {run.peak_rss_mb:.0f} MB)")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.peak_rss_mb <= MEMORY_BUDGET_MB
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["samples"] == IMAGES
    # convert's own record (getrusage) against the sampler's independent reading of /proc: the process's
    # high-water mark is at least what any sample saw of it, and the tree total never less than it.
    recorded = report["resources"]["peak_rss_mb"]
    assert 0 < recorded <= run.peak_rss_mb + 1
    assert recorded >= 0.8 * max(rss for _, rss in run.samples)
    print(f"\npeak RSS {run.peak_rss_mb:.0f} MB (budget {MEMORY_BUDGET_MB} MB), {run.seconds:.0f} s")

