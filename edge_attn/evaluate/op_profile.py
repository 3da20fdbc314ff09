"""Per-op latency on this machine, by timing every operator of a .tflite model on its own.

LiteRT's Python API has no op profiler (``benchmark_model --enable_op_profiling`` does, on a device: the
adb runner parses it). Here each operator is cut out of the model into a single-op model — its input
tensors (constants copied with their buffers, quantization parameters kept) and outputs — and timed in
the same interpreter configuration as the whole model (XNNPACK by default, same thread count), with
every op measured in interleaved rounds so machine drift hits all of them alike. The result says where
the time goes; the sum of the per-op medians is reported beside the whole model's median, so a reader
sees how much is lost or gained by cutting the graph (cache effects between ops, per-invoke overhead).

Ops that call other subgraphs (WHILE, IF, CALL_ONCE) or carry intermediate tensors cannot be cut out
and are listed as not profiled.
"""

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from edge_attn.convert.inspect import inspect_tflite
from edge_attn.litert import make_interpreter
from edge_attn.runners.timing import random_input, time_runs

_NOT_ISOLABLE = ("WHILE", "IF", "CALL_ONCE", "CALL")


@dataclass
class OpProfile:
    """Per-op medians in ms (``ops``: one entry per operator, in execution order) and per-type totals."""

    threads: int
    model_ms: float  # median latency of the whole model in the same rounds
    ops: list = field(default_factory=list)  # [{"index", "op", "output", "ms", "output_shape"}]
    not_profiled: list = field(default_factory=list)  # ["WHILE #3", ...]

    @property
    def by_type(self):
        """[{"op", "count", "ms", "percent"}], slowest type first; percent of the sum over all ops."""
        totals = {}
        for entry in self.ops:
            count, ms = totals.get(entry["op"], (0, 0.0))
            totals[entry["op"]] = (count + 1, ms + entry["ms"])
        whole = sum(ms for _, ms in totals.values()) or 1.0
        return [{"op": op, "count": count, "ms": round(ms, 4), "percent": round(100.0 * ms / whole, 2)}
                for op, (count, ms) in sorted(totals.items(), key=lambda item: -item[1][1])]

    def to_dict(self):
        return {"threads": self.threads, "model_ms": round(self.model_ms, 4),
                "sum_of_ops_ms": round(sum(e["ms"] for e in self.ops), 4), "by_type": self.by_type,
                "ops": self.ops, "not_profiled": self.not_profiled}


def single_op_models(tflite_model):
    """[(operator index, op name, single-op .tflite bytes or None when it cannot be cut out)], subgraph 0."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    names = [op.op for op in inspect_tflite(tflite_model).ops]  # also rejects what is not a TFLite model
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(_read(tflite_model)))
    graph = model.subgraphs[0]
    result = []
    for index, (op, name) in enumerate(zip(graph.operators, names)):
        code = model.operatorCodes[op.opcodeIndex]
        if name in _NOT_ISOLABLE or (op.intermediates is not None and len(op.intermediates)):
            result.append((index, name, None))
            continue
        single = schema.ModelT()
        single.version = model.version
        single.description = f"op {index} ({name})"
        single.operatorCodes = [code]
        single.buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel
        sub = schema.SubGraphT()
        sub.tensors, sub.inputs = [], []
        remap = {}
        for tensor_index in [*op.inputs, *op.outputs]:
            if tensor_index < 0 or tensor_index in remap:
                continue
            tensor = graph.tensors[tensor_index]
            copy = _copy_tensor(tensor)
            data = model.buffers[tensor.buffer].data if tensor.buffer else None
            if data is not None and len(data):
                copy.buffer = len(single.buffers)
                buffer = schema.BufferT()
                buffer.data = data
                single.buffers.append(buffer)
            else:
                copy.buffer = 0
                if tensor_index in op.inputs:
                    sub.inputs.append(len(sub.tensors))
            remap[tensor_index] = len(sub.tensors)
            sub.tensors.append(copy)
        new_op = schema.OperatorT()
        new_op.opcodeIndex = 0
        new_op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
        new_op.outputs = [remap[i] for i in op.outputs]
        new_op.builtinOptionsType, new_op.builtinOptions = op.builtinOptionsType, op.builtinOptions
        new_op.customOptions = op.customOptions
        sub.operators = [new_op]
        sub.outputs = list(new_op.outputs)
        single.subgraphs = [sub]
        result.append((index, name, bytes(flatbuffer_utils.convert_object_to_bytearray(single))))
    return result


def _read(tflite_model):
    if isinstance(tflite_model, (bytes, bytearray, memoryview)):
        return bytes(tflite_model)
    with open(tflite_model, "rb") as f:
        return f.read()


def _copy_tensor(tensor):
    from ai_edge_litert import schema_py_generated as schema

    copy = schema.TensorT()
    for key in ("shape", "type", "name", "quantization", "isVariable", "sparsity", "shapeSignature"):
        setattr(copy, key, getattr(tensor, key))
    return copy


def profile_ops(tflite_model, *, threads=2, rounds=10, runs_per_round=10, progress=None):
    """Time every operator of ``tflite_model`` alone and the whole model, interleaved; an :class:`OpProfile`.

    ``progress``: optional callable(done, total) after each round.
    """
    singles = single_op_models(tflite_model)
    runners = {"model": _runner(tflite_model, threads)}
    not_profiled = []
    for index, name, data in singles:
        if data is None:
            not_profiled.append(f"{name} #{index}")
        else:
            runners[index] = _runner(data, threads)
    medians = {key: [] for key in runners}
    for done in range(rounds):
        for key, run in runners.items():
            medians[key].append(run(runs_per_round))
        if progress is not None:
            progress(done + 1, rounds)
    ops = []
    for index, name, data in singles:
        if data is not None:
            output = make_interpreter(data).get_output_details()[0]
            ops.append({"index": index, "op": name, "output": output["name"],
                        "ms": round(statistics.median(medians[index]), 4),
                        "output_shape": output["shape"].tolist()})
    return OpProfile(threads, statistics.median(medians["model"]), ops, not_profiled)


def _runner(tflite_model, threads):
    """A callable(runs) → median ms of ``runs`` invokes on fixed random inputs (the runners' timing loop)."""
    interpreter = make_interpreter(tflite_model, num_threads=threads)
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(rng, detail["dtype"], tuple(detail["shape"])))
    interpreter.invoke()  # warm-up: first invoke prepares XNNPACK's packed weights
    return lambda runs: statistics.median(time_runs(interpreter.invoke, 0, runs, deadline=math.inf))
