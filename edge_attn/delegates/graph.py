"""The view of a .tflite model that the delegate rules read: per op its version, builtin options and tensors,
plus the values of small constant inputs (axes, shapes, permutations, paddings).

Tensors (dtype, shape, quantization, constness) come from :func:`edge_attn.convert.inspect_tflite`. What the
inspector does not keep — op versions, builtin options, constant buffer contents — is read lazily from the same
flatbuffer through LiteRT's generated schema accessors: only the ops' option tables and the few constants a rule
asks for are decoded, never the weights.
"""

import dataclasses
import os

import numpy as np

from edge_attn.convert.inspect import TFLiteInfo, inspect_tflite, schema
from edge_attn.convert.verify import verify_tflite
from edge_attn.errors import BadInput

ACTIVATION_NAMES = {code: name for name, code in vars(schema.ActivationFunctionType).items()
                    if not name.startswith("_")}
FLOAT_DTYPES = frozenset({"float32", "float16"})
QUANT8_DTYPES = frozenset({"int8", "uint8"})
# TFLite dtypes (inspect's lower-case names) that are numpy dtypes of the same name and width.
NUMPY_DTYPES = frozenset({"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "uint32", "uint64", "bool", "complex64", "complex128"})


class OpView:
    """One op of the main subgraph as the delegates see it.

    ``inputs``/``outputs`` hold :class:`~edge_attn.convert.TensorInfo` objects; an omitted optional input (index
    -1 in the file) is ``None`` but keeps its slot, because delegates count slots (NNAPI wants CONV_2D to have
    three). ``options`` maps the schema's option field names (``keepDims``, ``fusedActivationFunction``, ...) to
    values; it is empty for ops without options.
    """

    def __init__(self, graph, index, op, version, options, inputs, outputs):
        self.graph = graph
        self.index = index
        self.op = op
        self.version = version
        self.options = options
        self.inputs = inputs
        self.outputs = outputs

    def input(self, position):
        """The input tensor in slot ``position``, or None when the slot is absent or omitted."""
        return self.inputs[position] if position < len(self.inputs) else None

    @property
    def runtime_inputs(self):
        """Inputs computed at runtime (upstream's "runtime inputs"): present and not static — weights stored
        compressed behind a DEQUANTIZE of a constant count as constant, because every delegate folds them
        (GPU and NNAPI remap fp16 weights, XNNPACK folds static DEQUANTIZE nodes)."""
        return [t for t in self.inputs if t is not None and not self.is_static(t)]

    @property
    def constant_inputs(self):
        return [t for t in self.inputs if t is not None and self.is_static(t)]

    @property
    def tensors(self):
        """Every present input and output tensor."""
        return [t for t in self.inputs if t is not None] + list(self.outputs)

    @property
    def activation(self):
        """Name of the fused activation (``"RELU"``, ...), or None when the op has no such option."""
        code = self.options.get("fusedActivationFunction")
        return None if code is None else ACTIVATION_NAMES.get(code, f"ACTIVATION_{code}")

    def ints(self, tensor):
        """The contents of a constant integer tensor (axes, shapes, paddings, ...) as a flat list of ints; None when
        it has none (a runtime tensor, another type, sparse-encoded data)."""
        values = self.graph.constant_value(tensor)
        if values is None or not np.issubdtype(values.dtype, np.integer):
            return None
        return [int(v) for v in values.ravel()]

    def is_static(self, tensor):
        """Constant, or the output of a DEQUANTIZE of a constant (fp16 or int8 weights stored compressed)."""
        if tensor is None:
            return False
        if tensor.is_constant:
            return True
        producer = self.graph.producer(tensor)
        return (producer is not None and producer.op == "DEQUANTIZE"
                and all(t.is_constant for t in producer.inputs if t is not None))


class Graph:
    """The main subgraph: ``info`` (the inspector's :class:`~edge_attn.convert.TFLiteInfo`) and ``ops``
    (:class:`OpView` in execution order)."""

    def __init__(self, info, data):
        self.info = info
        self._root = schema.Model.GetRootAs(data, 0)
        self._subgraph = self._root.Subgraphs(0)
        self._producers = {t: op.index for op in info.ops for t in op.outputs}
        self.ops = tuple(self._op_view(op) for op in info.ops)

    def _op_view(self, op_info):
        operator = schema.OperatorT.InitFromObj(self._subgraph.Operators(op_info.index))
        version = self._root.OperatorCodes(operator.opcodeIndex).Version()
        options = dict(vars(operator.builtinOptions)) if operator.builtinOptions is not None else {}
        tensors = self.info.tensors
        return OpView(self, op_info.index, op_info.op, version, options,
                      inputs=tuple(tensors[i] if i >= 0 else None for i in op_info.inputs),
                      outputs=tuple(tensors[i] for i in op_info.outputs))

    def producer(self, tensor):
        """The op that writes ``tensor``, or None for graph inputs and constants."""
        index = self._producers.get(tensor.index)
        return None if index is None else self.ops[index]

    def constant_value(self, tensor):
        """The values of a constant tensor (a numpy array shaped like it), or None when it has none to give: a
        runtime tensor, a type numpy does not hold (string, int4, ...), or sparse-encoded data, whose buffer holds
        fewer values than the shape."""
        if not tensor.is_constant or tensor.dtype not in NUMPY_DTYPES:
            return None
        buffer = self._root.Buffers(self._subgraph.Tensors(tensor.index).Buffer())
        values = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=np.dtype(tensor.dtype).newbyteorder("<"))
        return values.reshape(tensor.shape) if values.size == np.prod(tensor.shape, dtype=np.int64) else None


def load_graph(model):
    """A :class:`Graph` from a .tflite path, the flatbuffer bytes, or a :class:`~edge_attn.convert.TFLiteInfo`.

    A ``TFLiteInfo`` carries no op versions or options, so its file is read again; one made from bytes has no
    file to read and is refused (pass the bytes instead).
    """
    if isinstance(model, TFLiteInfo):
        if not os.path.isfile(model.source):
            raise BadInput("model", "a TFLiteInfo made from bytes has no op versions or options to check; "
                                    "pass the .tflite path or the flatbuffer bytes")
        data = verify_tflite(model.source)
        if len(data) != model.size_bytes:
            raise BadInput(model.source, "the file changed since it was inspected; inspect it again")
        return Graph(model, data)
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return Graph(inspect_tflite(data), data)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        data = verify_tflite(path)  # names the file in its errors (missing, not TFLite, truncated, inconsistent)
        return Graph(dataclasses.replace(inspect_tflite(data), source=path), data)
    raise BadInput("model", f"expected a .tflite path, flatbuffer bytes or a TFLiteInfo, got {type(model).__name__}")
