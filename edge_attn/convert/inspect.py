"""Read a .tflite flatbuffer: its ops, tensors, quantization parameters, and whether it is all-int8.

The model is read from the flatbuffer itself (LiteRT's ``flatbuffer_utils`` and schema), not from an
``Interpreter``: the default interpreter applies XNNPACK, so ``_get_ops_details()`` shows DELEGATE nodes
and scratch tensors instead of the ops in the file. The main subgraph (subgraph 0, the model's entry
point in the TFLite schema) is inspected; control-flow subgraphs are counted but not listed.

"All-int8" follows the TFLite 8-bit quantization spec
(https://ai.google.dev/edge/litert/models/quantization_spec): int8 activations, int8 weights, int32
biases; int32 constants such as axes and shapes are fine. "All-integer" generalises it to TFLite's 16x8
mode (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``, same page, "16-bit activations with
8-bit weights"): activations int8 or int16, weights int8, biases int32 or int64 (the 16x8 kernels' bias).
"""

import dataclasses
import hashlib
import os

from edge_attn.convert.verify import schema, verify_tflite

try:
    from ai_edge_litert.tools import flatbuffer_utils
except ImportError:  # pragma: no cover - ai-edge-litert is a declared dependency
    from tensorflow.lite.tools import flatbuffer_utils

_DESCRIBED_KEPT = 64
_described = {}  # (sha256 of the file, source) -> TFLiteInfo, for the files inspected in this process
_DTYPE_NAMES = {code: name.lower() for name, code in vars(schema.TensorType).items() if not name.startswith("_")}
_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
_FLOAT_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
# Constant dtypes an all-int8 model may hold: int8 weights, int32 biases and int32 axes/shapes.
_INT8_MODEL_CONSTANT_DTYPES = frozenset({"int8", "int32"})
# ... and an all-integer one (int16x8): int64 biases and int16 constants (e.g. a 16x8 op's second operand) too.
_INTEGER_MODEL_CONSTANT_DTYPES = frozenset({"int8", "int16", "int32", "int64"})
_ACTIVATION_INTEGERS = frozenset({"int8", "uint8", "int16"})


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of the main subgraph. ``scales``/``zero_points`` are empty for unquantized tensors."""

    index: int
    name: str
    dtype: str  # "int8", "int32", "float32", ...
    shape: tuple
    scales: tuple
    zero_points: tuple
    quantized_dimension: int
    is_constant: bool

    def to_dict(self):
        return dataclasses.asdict(self) | {"shape": list(self.shape), "scales": list(self.scales),
                                           "zero_points": list(self.zero_points)}


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One operator: its builtin name and tensor indices (-1 marks an omitted optional input)."""

    index: int
    op: str  # builtin name such as "CONV_2D"; custom ops are "CUSTOM:<code>"
    inputs: tuple
    outputs: tuple

    def to_dict(self):
        return {"index": self.index, "op": self.op, "inputs": list(self.inputs), "outputs": list(self.outputs)}


@dataclasses.dataclass(frozen=True)
class TFLiteInfo:
    """What a .tflite file contains; ``source`` is the path, or ``"<bytes>"``."""

    source: str
    size_bytes: int
    ops: tuple  # of OpInfo, in execution order
    tensors: tuple  # of TensorInfo, indexed by tensor index
    inputs: tuple  # of TensorInfo
    outputs: tuple  # of TensorInfo
    min_runtime_version: str | None
    num_subgraphs: int

    @property
    def op_names(self):
        """Sorted unique op names."""
        return sorted({op.op for op in self.ops})

    @property
    def fully_int8(self):
        """Every op computes in int8: non-constant tensors (graph inputs and outputs included) are int8,
        constants are int8 (weights) or int32 (biases, axes, shapes), and there is no other subgraph."""
        if self.num_subgraphs != 1:
            return False
        for op in self.ops:
            for tensor in self._tensors_of(op):
                allowed = _INT8_MODEL_CONSTANT_DTYPES if tensor.is_constant else {"int8"}
                if tensor.dtype not in allowed:
                    return False
        return all(t.dtype == "int8" for t in self.inputs + self.outputs)

    @property
    def fully_integer(self):
        """:attr:`fully_int8` with int16 activations allowed too: runtime tensors (graph inputs and outputs
        included) are int8 or int16, constants int8/int16/int32/int64; one subgraph. True for an all-int8
        model, an int16x8 one, and a mix of the two."""
        if self.num_subgraphs != 1:
            return False
        for op in self.ops:
            for tensor in self._tensors_of(op):
                allowed = _INTEGER_MODEL_CONSTANT_DTYPES if tensor.is_constant else {"int8", "int16"}
                if tensor.dtype not in allowed:
                    return False
        return all(t.dtype in ("int8", "int16") for t in self.inputs + self.outputs)

    @property
    def activation_types(self):
        """Sorted dtypes of the quantizable runtime tensors (float, int8, uint8, int16 activations; int32
        index/shape tensors left out): ``["int8"]`` for an all-int8 model, ``["int16"]`` for int16x8, several
        for a mixed one."""
        found = set()
        for op in self.ops:
            for tensor in self._tensors_of(op):
                if not tensor.is_constant and (tensor.dtype in _ACTIVATION_INTEGERS or tensor.dtype in _FLOAT_DTYPES):
                    found.add(tensor.dtype)
        return sorted(found)

    def why_not_fully_int8(self):
        """One line saying why the model is not all-int8, or None when it is."""
        if self.fully_int8:
            return None
        reasons = []
        float_ops = self.float_ops()
        if float_ops:
            names = sorted({op.op for op in float_ops})
            reasons.append(f"{len(float_ops)} op(s) compute in float ({', '.join(names)})")
        int16 = sum(1 for op in self.ops if any(t.dtype == "int16" and not t.is_constant for t in self._tensors_of(op)))
        if int16:
            reasons.append(f"{int16} op(s) have int16 activations (16x8)")
        if self.num_subgraphs != 1:
            reasons.append(f"{self.num_subgraphs} subgraphs (control flow)")
        io = [t.dtype for t in self.inputs + self.outputs if t.dtype != "int8"]
        if io and not reasons:
            reasons.append(f"{', '.join(sorted(set(io)))} graph inputs/outputs")
        return "; ".join(reasons) or "non-int8 tensors"

    def float_ops(self):
        """The ops that compute in float: any float input or output tensor (constants included).

        A QUANTIZE that only reads float graph inputs and a DEQUANTIZE that only writes float graph
        outputs are the edges of an int8 model with float I/O, not float computation, and are left out.
        """
        graph_inputs = {t.index for t in self.inputs}
        graph_outputs = {t.index for t in self.outputs}
        result = []
        for op in self.ops:
            float_in = {i for i in op.inputs if i >= 0 and self.tensors[i].dtype in _FLOAT_DTYPES}
            float_out = {i for i in op.outputs if self.tensors[i].dtype in _FLOAT_DTYPES}
            if not float_in and not float_out:
                continue
            if op.op == "QUANTIZE" and not float_out and float_in <= graph_inputs:
                continue
            if op.op == "DEQUANTIZE" and not float_in and float_out <= graph_outputs:
                continue
            result.append(op)
        return result

    def _tensors_of(self, op):
        return [self.tensors[i] for i in op.inputs + op.outputs if i >= 0]

    def to_dict(self):
        """Plain JSON-serialisable data."""
        return {
            "source": self.source,
            "size_bytes": self.size_bytes,
            "op_names": self.op_names,
            "fully_int8": self.fully_int8,
            "fully_integer": self.fully_integer,
            "activation_types": self.activation_types,
            "float_ops": [op.index for op in self.float_ops()],
            "min_runtime_version": self.min_runtime_version,
            "num_subgraphs": self.num_subgraphs,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "ops": [op.to_dict() for op in self.ops],
            "tensors": [t.to_dict() for t in self.tensors],
        }


def inspect_tflite(path_or_bytes):
    """Read a .tflite file (a path, or the flatbuffer bytes) into a :class:`TFLiteInfo`.

    The model is checked first (:func:`~edge_attn.convert.verify.verify_tflite`): anything that is not a complete,
    consistent TFLite flatbuffer (missing, empty, truncated, another format, indices out of range) is a
    :class:`~edge_attn.errors.BadInput` naming the file.
    """
    source = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else os.fspath(path_or_bytes)
    data = verify_tflite(path_or_bytes, what=source)
    key = (hashlib.sha256(data).digest(), source)
    if key not in _described:  # compat, bundle and check each inspect the same file; TFLiteInfo is immutable
        if len(_described) >= _DESCRIBED_KEPT:
            _described.clear()
        _described[key] = _describe(flatbuffer_utils.read_model_from_bytearray(bytearray(data)), source, len(data))
    return _described[key]


def _describe(model, source, size):
    subgraph = model.subgraphs[0]
    buffers = model.buffers
    tensors = tuple(_tensor_info(i, t, buffers) for i, t in enumerate(subgraph.tensors or []))
    ops = tuple(
        OpInfo(index=i, op=_op_name(model.operatorCodes[op.opcodeIndex]), inputs=_ints(op.inputs),
               outputs=_ints(op.outputs))
        for i, op in enumerate(subgraph.operators or [])
    )
    return TFLiteInfo(
        source=source,
        size_bytes=size,
        ops=ops,
        tensors=tensors,
        inputs=tuple(tensors[i] for i in _ints(subgraph.inputs)),
        outputs=tuple(tensors[i] for i in _ints(subgraph.outputs)),
        min_runtime_version=_metadata_string(model, "min_runtime_version"),
        num_subgraphs=len(model.subgraphs),
    )


def _tensor_info(index, tensor, buffers):
    quant = tensor.quantization
    has_scales = quant is not None and quant.scale is not None
    buffer = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
    return TensorInfo(
        index=index,
        name=(tensor.name or b"").decode("utf-8", "replace"),
        dtype=_DTYPE_NAMES.get(tensor.type, f"type{tensor.type}"),
        shape=_ints(tensor.shape),
        scales=tuple(float(s) for s in quant.scale) if has_scales else (),
        zero_points=tuple(int(z) for z in quant.zeroPoint) if has_scales and quant.zeroPoint is not None else (),
        quantized_dimension=int(quant.quantizedDimension) if quant is not None else 0,
        is_constant=buffer is not None and buffer.data is not None and len(buffer.data) > 0,
    )


def _ints(values):
    """A flatbuffer int vector (list, numpy array or None when absent) as a tuple of ints."""
    return () if values is None else tuple(int(v) for v in values)


def _op_name(opcode):
    # Builtin codes above 127 live in `builtinCode`; older files use `deprecatedBuiltinCode` (schema v3a).
    code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    if code == schema.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{(opcode.customCode or b'').decode('utf-8', 'replace')}"
    return builtin_name(code)


def builtin_name(code):
    """``CONV_2D`` for the builtin code of CONV_2D."""
    return _OP_NAMES.get(code, f"BUILTIN_{code}")


def _metadata_string(model, name):
    """A metadata entry as text (``min_runtime_version`` is a NUL-padded ASCII string), or None."""
    for entry in model.metadata or []:
        if entry.name is not None and entry.name.decode("utf-8", "replace") == name:
            data = model.buffers[entry.buffer].data
            if data is None:
                return None
            return bytes(data).split(b"\0", 1)[0].decode("ascii", "replace") or None
    return None
