"""The real LiteRT interpreter as an independent reference for tests: a .tflite run on float samples (input
quantized, output dequantized with the model's own parameters) and the numpy SNR formula to compare it by."""

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def xnnpack_loads(tflite):
    """Whether LiteRT's default Interpreter (XNNPACK applied) can allocate the model: the delegate fails the
    whole model when it refuses one op's parameters."""
    try:
        Interpreter(model_content=tflite).allocate_tensors()
    except RuntimeError:
        return False
    return True


def snr_db(reference, test):
    """10 log10(signal energy / error energy) of ``test`` against ``reference``."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - test) ** 2))


def run_on_float_samples(tflite, x, input_of_op=None):
    """Outputs of the flatbuffer ``tflite`` (bytes) for each float sample of ``x``, stacked, as float.

    ``input_of_op`` (an op name such as ``"SOFTMAX"``): read the first input of the last such op instead of
    the graph output (all tensors preserved, which runs without XNNPACK) — a head's logits."""
    interpreter = Interpreter(model_content=tflite, experimental_preserve_all_tensors=input_of_op is not None)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    if input_of_op is not None:
        index = [op for op in interpreter._get_ops_details() if op["op_name"] == input_of_op][-1]["inputs"][0]
        out = next(t for t in interpreter.get_tensor_details() if t["index"] == index)
    results = []
    for sample in x:
        value = sample[np.newaxis]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            value = np.clip(np.round(value / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float64) - zero) * scale
        results.append(y[0])
    return np.stack(results)
