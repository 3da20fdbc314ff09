"""An answer, independent of edge_attn's runners, to "does LiteRT's CompiledModel run this model with this
accelerator on this machine?": a child process (a native crash cannot take pytest down) creates it with
``hardware_accel`` (the plain API, not the runners' ``Options``) and runs it once on zeros. Tests use it to
decide which outcome a runner must report, instead of accepting either.
"""

import subprocess
import sys

_CHILD = r"""
import sys
import numpy as np
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.hardware_accelerator import HardwareAccelerator

accelerator = HardwareAccelerator.GPU | HardwareAccelerator.CPU if sys.argv[2] == "gpu" else HardwareAccelerator.CPU
model = CompiledModel.from_file(sys.argv[1], hardware_accel=accelerator)
inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
signature = next(iter(model.get_signature_list()))
for buffer, detail in zip(inputs, model.get_input_tensor_details(signature).values()):
    buffer.write(np.zeros(detail["shape"], detail["dtype"]))
model.run_by_index(0, inputs, outputs)
print("ran")
"""


def compiled_model_runs(model_path, accelerator="cpu", timeout_s=120):
    """True when CompiledModel with ``accelerator`` ("cpu" or "gpu") runs ``model_path`` here."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(model_path), accelerator], capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and done.stdout.strip().endswith("ran")
