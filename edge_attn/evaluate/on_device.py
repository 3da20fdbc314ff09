"""``edge-attn check --device PROFILE``: the quantized model's outputs computed on a device, scored on the host.

The float reference runs here; the .tflite runs on the profile's device through its runner (an ssh board:
:meth:`edge_attn.runners.ssh.SshRunner.run_outputs`, which quantizes the samples here and dequantizes the
outputs here, so the device runs exactly set_tensor/invoke/get_tensor). Top-1, agreement and SNR are then
those of the device's kernels (ARM's on an ARM board), not of this machine's. Latency is measured on the
device in the same run; when the device is emulated (its fingerprint, :func:`edge_attn.runners.machine.fingerprint`,
or the profile's ``emulated = true``) the latency is marked ``emulated`` and is not a device figure.
"""

import dataclasses
import math

from edge_attn.devices import load_profile
from edge_attn.errors import BadInput
from edge_attn.evaluate.compare import compare
from edge_attn.result_shape import Numerics
from edge_attn.runners import make_runner
from edge_attn.runners.result import DeviceInfo

OUTPUT_DELEGATES = ("xnnpack", "cpu")  # what run_outputs can run: the LiteRT Interpreter's CPU paths


def check_on_device(reference_model, tflite_path, x, y, device, *, threads=None, runs=None):
    """Accuracy of ``tflite_path`` with outputs from ``device`` (a profile name or path), and its latency there.

    The delegate is the profile's first CPU one (``xnnpack`` or ``cpu``); ``threads`` and ``runs`` default
    to the profile's. Returns ``(accuracy, latency, device_info, target)``: ``accuracy`` as
    :func:`edge_attn.evaluate.compare.accuracy_from_outputs`, ``latency`` with p50/p90/min/max/mean in ms,
    ``runs``, ``threads``, ``delegate``, ``emulated``, ``note`` and ``problems``; ``device_info``: the
    result's device fingerprint (:class:`edge_attn.runners.result.DeviceInfo` as a dict: ``name``, ``arch``,
    ``kernel_arch``, ``cpu``, ``emulated``, ``emulated_cpu``, ...) and the profile's ``kind``; ``target``: the
    board's result in the shared shape (docs/result-shape.md), its numerics against the float model.
    """
    profile = load_profile(device)
    if profile.kind != "ssh":
        raise BadInput("--device", f"profile {profile.name!r} is kind = {profile.kind!r}: check --device runs the "
                                   "model's outputs on a kind = \"ssh\" board (leave --device out for this machine)")
    delegate = next((d for d in profile.delegates if d in OUTPUT_DELEGATES), None)
    if delegate is None:
        raise BadInput(profile.source or profile.name,
                       f"delegates: check --device needs 'xnnpack' or 'cpu' among {list(profile.delegates)}")
    threads = profile.threads if threads is None else threads
    runs = profile.runs if runs is None else runs
    runner = make_runner(profile)
    accuracy = compare(reference_model, tflite_path, x, y,
                       run_quantized=lambda model, samples: runner.run_outputs(model, samples, delegate=delegate,
                                                                               threads=threads))
    result = runner.benchmark(tflite_path, delegate=delegate, threads=threads, runs=runs, warmup=profile.warmup)
    info = result.device_info or DeviceInfo(name=profile.name)
    latency = {key: (None if math.isnan(getattr(result, f"{key}_ms")) else getattr(result, f"{key}_ms"))
               for key in ("p50", "p90", "min", "max", "mean")}
    latency.update(runs=result.runs, threads=threads, delegate=delegate, emulated=info.emulated, note=result.note,
                   problems=list(result.problems))
    target = dataclasses.replace(result, numerics=Numerics.from_accuracy(accuracy, reference="float")).to_dict()
    return accuracy, latency, {**info.to_dict(), "kind": profile.kind}, target
