"""Check a user's .tflite file before LiteRT or edge_attn's own flatbuffer readers touch it.

``verify_tflite`` turns a corrupt, truncated or hostile model into one :class:`~edge_attn.errors.BadInput` line;
``probe_tflite`` then loads what passed in a child process, so a model that still kills LiteRT costs a child, not
the command.

What LiteRT does with damaged models (ai-edge-litert 2.3; found by fuzzing a small int8 model with truncations,
bit flips, overwritten and swapped flatbuffer words and edits through LiteRT's object API, plus hand-made hostile
models). The cases named here are rebuilt and run against a bare LiteRT process in tests/test_verify_tflite.py;
tests/test_fuzz_tflite.py runs 2,000 seeded mutants through every entry point, each of which must end in success
or BadInput:

* LiteRT refuses most damage cleanly: its loader runs the flatbuffers verifier and checks indices, buffer sizes
  and element-count overflow.
* Killed by SIGSEGV: MEAN's op code turned into SPLIT (the XNNPACK delegate reads the int8 activations as the split
  axis); an IF whose branch is its own subgraph, or two subgraphs calling each other (unbounded recursion in
  ``allocate_tensors``; ``CompiledModel`` too); a constant STRING tensor whose offsets point outside its buffer
  (in ``get_tensor``).
* Hung: a graph input declared 1×8×16777216×1 (a convolution that runs for minutes).
* edge_attn's pure-Python readers (inspect, compat, bundle) raised IndexError (tensor indices out of range),
  ValueError (constant buffers that do not match their shape), AttributeError (ops missing operands, metadata
  without a name) or UnicodeDecodeError (names that are not UTF-8), and could be made to hang (a mutated output
  shape asking ``bundle`` for 150 million labels). LiteRT's own Python API raises UnicodeDecodeError for a tensor
  name that is not UTF-8 (``_get_tensor_details``, used by per-layer error).

So the checks are: the flatbuffers ``Verifier`` rules (``flatbuffers/verifier.h``: every offset, vector and
string in bounds and aligned, vtables well formed, nesting and table count bounded) over every table reachable from
the root, with the layouts read from LiteRT's generated schema module; then the model's meaning after TFLite's own
``tflite/core/tools/verifier.cc`` (which LiteRT's loader does not run): opcode, tensor, buffer and subgraph indices
in range, constant buffers exactly shape × dtype (sparse ones per their sparsity parameters), well-formed STRING
buffers, data flow (an op reads only constants, variables, graph inputs or earlier outputs, and writes none of
them twice), schema version 3, operator and buffer lists present; plus what the measurements added: no recursion
between subgraphs, shapes not negative and within LiteRT's int32 limits (2³¹ elements or bytes per tensor),
quantization scales and zero points that match the tensor, known dtypes, UTF-8 tensor, metadata and signature names,
metadata and signatures naming real buffers and tensors, out-of-file data within the file. Verification passes
MEAN-as-SPLIT and the huge input: those are the probe's, as are other kernel-level crashes of structurally sound
graphs (tests/test_verify_tflite.py runs the MEAN→SPLIT model through ``bench`` and ``check``: one BadInput line).
"""

import functools
import hashlib
import os
import signal
import struct
import subprocess
import sys

from edge_attn.errors import BadInput

from ai_edge_litert import schema_py_generated as schema

__all__ = ["verify_tflite", "probe_tflite", "PROBE_TIMEOUT_S"]

FILE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer, after the root table offset
SCHEMA_VERSION = 3  # TFLITE_SCHEMA_VERSION; LiteRT refuses other versions
MAX_DEPTH, MAX_TABLES = 64, 1_000_000  # flatbuffers' Verifier defaults
MAX_TENSOR_ELEMENTS = 2**31 - 1  # LiteRT kernels count elements (and bytes) in int32
PROBE_TIMEOUT_S = 60.0  # load + allocate + one invoke; generous for a large model on a busy 2-core machine

# Sub-byte types may be stored packed (what current converters write) or one element per byte (what
# verifier.cc assumes); both are accepted.
_ELEMENT_BITS = {
    "FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8, "INT64": 64, "BOOL": 8, "INT16": 16, "COMPLEX64": 64,
    "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128, "UINT64": 64, "UINT32": 32, "UINT16": 16, "INT4": 4,
    "BFLOAT16": 16, "INT2": 2, "UINT4": 4, "FLOAT8_E4M3FN": 8, "FLOAT8_E5M2": 8,
}
_DTYPES = {code: name for name, code in vars(schema.TensorType).items() if not name.startswith("_")}
_OPTION_TYPES = {code: name for name, code in vars(schema.BuiltinOptions).items() if not name.startswith("_")}
_OPTION2_TYPES = {code: name for name, code in vars(schema.BuiltinOptions2).items() if not name.startswith("_")}
# Option fields that name subgraphs (control flow). Their calls must not recurse: LiteRT prepares a called
# subgraph inside the caller's prepare, so a cycle overflows the stack (measured: SIGSEGV).
_SUBGRAPH_FIELDS = {
    "IfOptions": ("ThenSubgraphIndex", "ElseSubgraphIndex"),
    "WhileOptions": ("CondSubgraphIndex", "BodySubgraphIndex"),
    "CallOnceOptions": ("InitSubgraphIndex",),
    "CallOptions": ("Subgraph",),
    "StablehloWhileOptions": ("CondSubgraphIndex", "BodySubgraphIndex"),
    "StablehloReduceOptions": ("BodySubgraphIndex",),
    "StablehloReduceWindowOptions": ("BodySubgraphIndex",),
    "StablehloSortOptions": ("ComparatorSubgraphIndex",),
    "StablehloScatterOptions": ("UpdateComputationSubgraphIndex",),
    "StableHLOCompositeOptions": ("DecompositionSubgraphIndex",),
    "StablehloCaseOptions": ("BranchSubgraphIndices",),
    "StablehloCustomCallOptions": ("CalledComputations",),
}
_VERDICTS_KEPT = 4096
_verdicts = {}  # sha256 digest of a model checked in this process -> its problem, or None


class _Corrupt(Exception):
    """A violated rule; the message says where."""


def verify_tflite(model, *, what=None):
    """Check ``model`` (a path, or the flatbuffer bytes) and return its bytes.

    Raises :class:`~edge_attn.errors.BadInput` naming ``what`` (default: the path, or ``"TFLite model"`` for
    bytes) with a one-line problem: missing, unreadable, empty or not a TFLite file; a structurally broken
    flatbuffer (truncated, offsets out of bounds); or a model whose contents would crash or mislead LiteRT or
    edge_attn's readers (see the module notes for the list).
    """
    data, what = _read(model, what)
    digest = hashlib.sha256(data).digest()
    if digest not in _verdicts:  # inspect, compat and check each verify the same file: once is enough
        if len(_verdicts) >= _VERDICTS_KEPT:
            _verdicts.clear()
        _verdicts[digest] = _problem(data)
    if _verdicts[digest]:
        raise BadInput(what, _verdicts[digest])
    return data


def _problem(data):
    """What is wrong with the flatbuffer ``data`` (one line), or None."""
    if len(data) < 8:
        return f"not a TFLite model: {len(data)} bytes is too short for a flatbuffer"
    if data[4:8] != FILE_IDENTIFIER:
        return _wrong_kind(data)
    try:
        _Structure(data).verify()
    except _Corrupt as e:
        return f"corrupt or truncated TFLite flatbuffer: {e}"
    try:
        _check_contents(schema.Model.GetRootAs(data, 0), data)
    except _Corrupt as e:
        return f"invalid TFLite model: {e}"
    return None


def _wrong_kind(data):
    """The problem with a file that is not a flatbuffer: what it is instead, when that is recognisable."""
    from edge_attn.filekind import describe_bytes

    kind = describe_bytes(data)
    if kind and kind.startswith("a Keras model"):
        return (f"is {kind}, not a TFLite model: pass the .tflite file (`edge-attn convert` writes OUT/model.tflite "
                "beside OUT/reference.keras), or convert this model first with `edge-attn convert`")
    if kind:
        return f"is {kind}, not a TFLite model: expected a .tflite file"
    return f"not a TFLite model: file identifier is {data[4:8]!r}, expected {FILE_IDENTIFIER!r}"


def _read(model, what):
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), what or "TFLite model"
    if not isinstance(model, (str, os.PathLike)):
        raise BadInput(what or "model", f"expected a .tflite path or the flatbuffer bytes, got {type(model).__name__}")
    path = os.fspath(model)
    what = what or path
    if os.path.isdir(path):
        raise BadInput(what, "is a directory, not a .tflite file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadInput(what, "no such file") from None
    except OSError as e:
        raise BadInput(what, f"cannot read: {e.strerror or e}") from None
    if not data:
        raise BadInput(what, "not a TFLite model: empty file")
    return data, what


# ---------------------------------------------------------------- structure (flatbuffers' verifier rules)


class _Recorder:
    """Stands in for ``flatbuffers.Builder`` to learn a table's layout from the generated ``<Table>Add<Field>``
    functions: each records its slot and kind (``PrependInt32Slot(2, ...)``, ``PrependUOffsetTRelativeSlot``)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, method):
        return lambda *args: self.calls.append((method, args)) or 0


# Offset fields of the tables on the path from the root that hold tables, vectors of tables or unions. The
# generated module does not say what an offset points to; every other offset field is a vector of scalars (it
# has a ``Start<Field>Vector`` function giving the element size) or else a string.
_POINTS_TO = {
    ("Model", "OperatorCodes"): ("tables", "OperatorCode"),
    ("Model", "Subgraphs"): ("tables", "SubGraph"),
    ("Model", "Buffers"): ("tables", "Buffer"),
    ("Model", "Metadata"): ("tables", "Metadata"),
    ("Model", "SignatureDefs"): ("tables", "SignatureDef"),
    ("Model", "ExternalBufferGroups"): ("tables", "ExternalBufferGroup"),
    ("Model", "ExternalBuffers"): ("tables", "ExternalBuffer"),
    ("SubGraph", "Tensors"): ("tables", "Tensor"),
    ("SubGraph", "Operators"): ("tables", "Operator"),
    ("Tensor", "Quantization"): ("table", "QuantizationParameters"),
    ("Tensor", "Sparsity"): ("table", "SparsityParameters"),
    ("Tensor", "VariantTensors"): ("tables", "VariantSubType"),
    ("SparsityParameters", "DimMetadata"): ("tables", "DimensionMetadata"),
    ("SignatureDef", "Inputs"): ("tables", "TensorMap"),
    ("SignatureDef", "Outputs"): ("tables", "TensorMap"),
    ("Operator", "BuiltinOptions"): ("union", "BuiltinOptions"),
    ("Operator", "BuiltinOptions2"): ("union", "BuiltinOptions2"),
    ("QuantizationParameters", "Details"): ("union", "QuantizationDetails"),
    ("DimensionMetadata", "ArraySegments"): ("union", "SparseIndexVector"),
    ("DimensionMetadata", "ArrayIndices"): ("union", "SparseIndexVector"),
}
_SCALAR_SIZES = {"Bool": 1, "Int8": 1, "Uint8": 1, "Int16": 2, "Uint16": 2, "Int32": 4, "Uint32": 4, "Float32": 4,
                 "Int64": 8, "Uint64": 8, "Float64": 8}


@functools.lru_cache(maxsize=None)
def _layout(table):
    """``((slot, field, kind, detail), ...)`` for one schema table: kind ``"scalar"`` (detail: byte size),
    ``"vector"`` (element size), ``"string"``, ``"table"``/``"tables"`` (table name) or ``"union"`` (detail:
    (union enum name, slot of its type field))."""
    prefix = f"{table}Add"
    slots = {}
    for name in dir(schema):
        if not name.startswith(prefix):
            continue
        recorder = _Recorder()
        getattr(schema, name)(recorder, 0)
        (method, args), = recorder.calls
        slots[name[len(prefix):]] = (args[0], method[len("Prepend"):-len("Slot")])
    fields = []
    for field, (slot, kind) in sorted(slots.items(), key=lambda item: item[1][0]):
        if kind != "UOffsetTRelative":
            fields.append((slot, field, "scalar", _SCALAR_SIZES[kind]))
        elif (table, field) in _POINTS_TO:
            target_kind, target = _POINTS_TO[(table, field)]
            detail = (target, slots[f"{field}Type"][0]) if target_kind == "union" else target
            fields.append((slot, field, target_kind, detail))
        elif hasattr(schema, f"{table}Start{field}Vector"):
            recorder = _Recorder()
            getattr(schema, f"{table}Start{field}Vector")(recorder, 0)
            fields.append((slot, field, "vector", recorder.calls[0][1][0]))
        else:
            fields.append((slot, field, "string", None))
    return tuple(fields)


@functools.lru_cache(maxsize=None)
def _union_members(union):
    return {code: name for name, code in vars(getattr(schema, union)).items()
            if not name.startswith("_") and name != "NONE"}


class _Structure:
    """The flatbuffers ``Verifier`` over the TFLite schema, from the root ``Model`` table down."""

    def __init__(self, data):
        self.data = data
        self.size = len(data)
        # A file of n bytes without shared tables holds at most n/4 offsets, so at most n/4 table visits; more
        # means tables reached many times over (a DAG), which multiplies every reader's work.
        self.tables_left = min(MAX_TABLES, self.size // 4 + 1)

    def verify(self):
        self.table(self.offset(0, "root table offset"), "Model", 1)

    def need(self, position, length, align, what):
        if position < 0 or position + length > self.size:
            raise _Corrupt(f"{what} at byte {position} (+{length}) lies outside the file ({self.size} bytes)")
        if position % align:
            raise _Corrupt(f"{what} at byte {position} is not {align}-byte aligned")

    def scalar(self, fmt, position, what):
        self.need(position, struct.calcsize(fmt), struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, position)[0]

    def offset(self, position, what, element=False):
        """Follow the uoffset stored at ``position`` to a place inside the file. A field's offset must be non-zero
        and below 2^31 (``VerifyOffset``); a vector element's is only followed (``Vector::Get``), and what it
        reaches is verified in turn."""
        value = self.scalar("<I", position, what)
        if not element and (value == 0 or value >= 2**31):
            raise _Corrupt(f"{what} at byte {position} is {value}, not a forward offset")
        self.need(position + value, 1, 1, what)
        return position + value

    def table(self, position, name, depth):
        if depth > MAX_DEPTH:
            raise _Corrupt(f"tables nested deeper than {MAX_DEPTH}")
        self.tables_left -= 1
        if self.tables_left < 0:
            raise _Corrupt("more tables than a file of this size holds without sharing them")
        vtable = position - self.scalar("<i", position, f"{name} table")
        vtable_size = self.scalar("<H", vtable, f"{name} vtable")
        if vtable_size % 2:
            raise _Corrupt(f"{name} vtable at byte {vtable} has an odd size {vtable_size}")
        self.need(vtable, vtable_size, 2, f"{name} vtable")  # a vtable under 4 bytes lists no fields: all default
        for slot, field, kind, detail in _layout(name):
            entry = 4 + 2 * slot
            field_offset = self.scalar("<H", vtable + entry, f"{name} vtable") if entry < vtable_size else 0
            if field_offset:
                self.field(position, vtable, vtable_size, position + field_offset, f"{name}.{field}", kind, detail,
                           depth)

    def field(self, table, vtable, vtable_size, position, what, kind, detail, depth):
        if kind == "scalar":
            self.need(position, detail, detail, what)
            return
        target = self.offset(position, what)
        if kind == "table":
            self.table(target, detail, depth + 1)
        elif kind == "union":
            union, type_slot = detail
            entry = 4 + 2 * type_slot
            type_offset = self.scalar("<H", vtable + entry, what) if entry < vtable_size else 0
            member = _union_members(union).get(self.scalar("<B", table + type_offset, what)) if type_offset else None
            if member is not None:  # an unknown member type is skipped, as flatbuffers' generated verifiers do
                self.table(target, member, depth + 1)
        elif kind == "string":
            length = self.vector(target, 1, what)
            self.need(target + 4 + length, 1, 1, f"{what} terminator")
            if self.data[target + 4 + length] != 0:
                raise _Corrupt(f"{what} at byte {target} is not NUL-terminated")
        elif kind == "vector":
            self.vector(target, detail, what)
        else:  # a vector of tables
            for i in range(self.vector(target, 4, what)):
                element = target + 4 + 4 * i
                self.table(self.offset(element, f"{what}[{i}]", element=True), detail, depth + 1)

    def vector(self, position, element_size, what):
        length = self.scalar("<I", position, f"{what} length")
        self.need(position + 4, length * element_size, 1, f"{what} ({length} elements)")
        return length


# ---------------------------------------------------------------- contents (after tflite/core/tools/verifier.cc)


def _check_contents(model, data):
    if model.Version() != SCHEMA_VERSION:
        raise _Corrupt(f"schema version {model.Version()}, LiteRT reads version {SCHEMA_VERSION}")
    if model.SubgraphsLength() == 0:
        raise _Corrupt("no subgraphs")
    if model.BuffersIsNone():
        raise _Corrupt("no buffers list")
    buffers = [_buffer_data(model, i, data) for i in range(model.BuffersLength())]
    calls = [_check_subgraph(model, s, buffers, len(data)) for s in range(model.SubgraphsLength())]
    _check_no_recursion(calls)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        try:
            name = (entry.Name() or b"").decode("utf-8")  # readers find entries by name (TFLITE_METADATA, ...)
        except UnicodeDecodeError:
            name = ""
        if not name:
            raise _Corrupt(f"metadata entry {i} has no UTF-8 name")
        if entry.Buffer() >= len(buffers):
            raise _Corrupt(f"metadata {name!r} names buffer {entry.Buffer()} of {len(buffers)}")
    for i in range(model.SignatureDefsLength()):
        _check_signature(model, model.SignatureDefs(i), i)


def _buffer_data(model, index, data):
    """The bytes of buffer ``index`` (empty: no data). A buffer may keep its data after the flatbuffer, at
    ``offset`` with ``size`` bytes (models over 2 GB); offsets 0 and 1 mean it has none."""
    buffer = model.Buffers(index)
    offset, size = buffer.Offset(), buffer.Size()
    if offset > 1:
        if offset + size > len(data):
            raise _Corrupt(f"buffer {index} places {size} bytes at byte {offset}, past the end of the file")
        return memoryview(data)[offset:offset + size]
    return memoryview(buffer.DataAsNumpy()) if buffer.DataLength() else memoryview(b"")


def _check_subgraph(model, s, buffers, file_size):
    """Check subgraph ``s``; return the subgraph indices its control-flow ops call."""
    subgraph = model.Subgraphs(s)
    where = f"subgraph {s}" if model.SubgraphsLength() > 1 else "the graph"
    if subgraph.OperatorsIsNone():
        raise _Corrupt(f"{where} has no operators list")
    count = subgraph.TensorsLength()
    constants, variables = set(), set()
    for t in range(count):
        tensor = subgraph.Tensors(t)
        if _check_tensor(tensor, t, where, buffers):
            constants.add(t)
        elif tensor.IsVariable():
            variables.add(t)
    graph_inputs = _indices(subgraph.InputsAsNumpy(), subgraph.InputsLength())
    for kind, indices in (("input", graph_inputs), ("output", _indices(subgraph.OutputsAsNumpy(),
                                                                        subgraph.OutputsLength()))):
        for index in indices:
            if not 0 <= index < count:
                raise _Corrupt(f"{where}: {kind} tensor {index} does not exist ({count} tensors)")
    readable = constants | variables | set(graph_inputs)  # grows by each op's outputs, in execution order
    produced, calls = set(), set()
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        if op.OpcodeIndex() >= model.OperatorCodesLength():
            raise _Corrupt(f"{where}: operator {o} uses operator code {op.OpcodeIndex()} of "
                           f"{model.OperatorCodesLength()}")
        if op.InputsIsNone() or op.OutputsIsNone():
            raise _Corrupt(f"{where}: operator {o} has no {'inputs' if op.InputsIsNone() else 'outputs'} list")
        if op.LargeCustomOptionsOffset() + op.LargeCustomOptionsSize() > file_size:
            raise _Corrupt(f"{where}: operator {o} places its custom options past the end of the file")
        for index in _indices(op.InputsAsNumpy(), op.InputsLength()):
            if index == -1:  # an omitted optional input
                continue
            if not 0 <= index < count:
                raise _Corrupt(f"{where}: operator {o} reads tensor {index}, which does not exist ({count} tensors)")
            if index not in readable:
                raise _Corrupt(f"{where}: operator {o} reads tensor {index} before anything writes it")
        for index in _indices(op.OutputsAsNumpy(), op.OutputsLength()):
            if not 0 <= index < count:
                raise _Corrupt(f"{where}: operator {o} writes tensor {index}, which does not exist ({count} tensors)")
            role = ("a constant" if index in constants else "a variable" if index in variables
                    else "a graph input" if index in graph_inputs
                    else "already written by an earlier operator" if index in produced else None)
            if role:
                raise _Corrupt(f"{where}: operator {o} writes tensor {index}, which is {role}")
            produced.add(index)
            readable.add(index)
        for callee in _called_subgraphs(op):
            if not 0 <= callee < model.SubgraphsLength():
                raise _Corrupt(f"{where}: operator {o} calls subgraph {callee} of {model.SubgraphsLength()}")
            calls.add(callee)
    return calls


def _check_tensor(tensor, t, where, buffers):
    """Check one tensor; return whether it is a constant (its buffer holds data)."""
    label = f"{where}: tensor {t}"
    _check_text(tensor.Name(), f"{label}'s name")
    dtype = _DTYPES.get(tensor.Type())
    if dtype is None:
        raise _Corrupt(f"{label} has unknown type {tensor.Type()}")
    shape = [int(d) for d in _indices(tensor.ShapeAsNumpy(), tensor.ShapeLength())]
    if any(d < 0 for d in shape):
        raise _Corrupt(f"{label} has a negative dimension in shape {shape}")
    elements = 1
    for d in shape:
        elements *= d
    if elements > MAX_TENSOR_ELEMENTS or elements * _ELEMENT_BITS.get(dtype, 8) // 8 > MAX_TENSOR_ELEMENTS:
        raise _Corrupt(f"{label} declares shape {shape}: over LiteRT's limit of 2^31 elements or bytes")
    if any(d < -1 for d in _indices(tensor.ShapeSignatureAsNumpy(), tensor.ShapeSignatureLength())):
        raise _Corrupt(f"{label} has a dimension below -1 in its shape signature")
    if tensor.Buffer() >= len(buffers):
        raise _Corrupt(f"{label} uses buffer {tensor.Buffer()} of {len(buffers)}")
    _check_quantization(tensor.Quantization(), shape, label)
    stored = buffers[tensor.Buffer()] if tensor.Buffer() > 0 else b""
    if not len(stored):
        return False
    if dtype == "STRING":
        _check_strings(stored, label)
        return True
    if dtype not in _ELEMENT_BITS:
        raise _Corrupt(f"{label}: a constant of type {dtype} cannot hold data")
    if tensor.Sparsity() is not None:
        elements = _sparse_elements(tensor.Sparsity(), shape, label)
    bits = _ELEMENT_BITS[dtype]
    expected = {elements * max(bits, 8) // 8, (elements * bits + 7) // 8}
    if len(stored) not in expected:
        raise _Corrupt(f"{label} ({dtype.lower()} {shape}) needs {min(expected)} bytes of constant data, "
                       f"its buffer holds {len(stored)}")
    return True


def _check_quantization(quantization, shape, label):
    if quantization is None or quantization.ScaleLength() == 0:
        return
    scales, zero_points = quantization.ScaleLength(), quantization.ZeroPointLength()
    if zero_points != scales:
        raise _Corrupt(f"{label} has {scales} quantization scales but {zero_points} zero points")
    if scales > 1:
        axis = quantization.QuantizedDimension()
        if not 0 <= axis < len(shape):
            raise _Corrupt(f"{label} is quantized along dimension {axis} of a rank-{len(shape)} tensor")
        if shape[axis] != scales:
            raise _Corrupt(f"{label} has {scales} quantization scales for {shape[axis]} channels in dimension {axis}")


def _check_strings(buffer, label):
    """A STRING buffer: int32 count n, n + 1 int32 offsets (the first right after them, each not before the
    previous, the last at the end of the buffer), then the bytes (``tflite/string_util.h``)."""
    if len(buffer) < 4:
        raise _Corrupt(f"{label}: string data shorter than its count")
    count = struct.unpack_from("<I", buffer, 0)[0]
    header = 4 * (count + 2)
    if header > len(buffer):
        raise _Corrupt(f"{label}: {count} strings need {header} header bytes, the buffer has {len(buffer)}")
    offsets = struct.unpack_from(f"<{count + 1}i", buffer, 4)
    if offsets[0] != header or offsets[-1] != len(buffer) or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise _Corrupt(f"{label}: string offsets do not run from the header to the end of the buffer in order")


def _sparse_elements(sparsity, shape, label):
    """How many values a sparse tensor stores, per ``VerifyAndCountSparseElements`` in verifier.cc."""
    bad = _Corrupt(f"{label} has invalid sparsity parameters")
    order = [int(v) for v in _indices(sparsity.TraversalOrderAsNumpy(), sparsity.TraversalOrderLength())]
    block_map = [int(v) for v in _indices(sparsity.BlockMapAsNumpy(), sparsity.BlockMapLength())]
    total, rank = len(order), len(shape)
    if total < rank or sparsity.DimMetadataLength() != total or len(block_map) != total - rank:
        raise bad
    if sorted(order[:rank]) != list(range(rank)) or sorted(order[rank:]) != list(range(rank, total)):
        raise bad
    sizes = shape + [0] * (total - rank)
    for i, mapped in enumerate(block_map):
        block = sparsity.DimMetadata(rank + i).DenseSize()
        if block <= 0 or not 0 <= mapped < rank:
            raise bad
        sizes[order[rank + i]] = block
        sizes[mapped] //= block
    elements = 1
    for level, dim in enumerate(order):
        metadata = sparsity.DimMetadata(level)
        if metadata.Format() == schema.DimensionType.DENSE:
            if metadata.DenseSize() != sizes[dim]:
                raise bad
            elements *= metadata.DenseSize()
            continue
        segments = _sparse_index_vector(metadata.ArraySegmentsType(), metadata.ArraySegments())
        indices = _sparse_index_vector(metadata.ArrayIndicesType(), metadata.ArrayIndices())
        if segments is None or indices is None or len(segments) != elements + 1:
            raise bad
        if any(a < 0 or b < a for a, b in zip(segments, segments[1:])) or segments[-1] != len(indices):
            raise bad
        if any(not 0 <= i < sizes[dim] for i in indices):
            raise bad
        elements = len(indices)
    return elements


def _sparse_index_vector(kind, table):
    vector_class = {schema.SparseIndexVector.Int32Vector: schema.Int32Vector,
                    schema.SparseIndexVector.Uint16Vector: schema.Uint16Vector,
                    schema.SparseIndexVector.Uint8Vector: schema.Uint8Vector}.get(kind)
    if vector_class is None or table is None:
        return None
    vector = vector_class()
    vector.Init(table.Bytes, table.Pos)
    if vector.ValuesIsNone():
        return None
    return [int(v) for v in vector.ValuesAsNumpy()]


def _called_subgraphs(op):
    """Subgraph indices named by a control-flow op's options."""
    for union_type, table, names in ((op.BuiltinOptionsType(), op.BuiltinOptions(), _OPTION_TYPES),
                                     (op.BuiltinOptions2Type(), op.BuiltinOptions2(), _OPTION2_TYPES)):
        option_class = names.get(union_type)
        if table is None or option_class not in _SUBGRAPH_FIELDS:
            continue
        options = getattr(schema, option_class)()
        options.Init(table.Bytes, table.Pos)
        for field in _SUBGRAPH_FIELDS[option_class]:
            if hasattr(options, f"{field}Length"):
                yield from (int(v) for v in _indices(getattr(options, f"{field}AsNumpy")(),
                                                     getattr(options, f"{field}Length")()))
            else:
                yield int(getattr(options, field)())


def _check_no_recursion(calls):
    """Reject a cycle in the subgraph call graph: an iterative depth-first search that keeps the current path."""
    done = set()
    for root in range(len(calls)):
        if root in done:
            continue
        path, on_path, pending = [root], {root}, [iter(sorted(calls[root]))]
        while pending:
            callee = next(pending[-1], None)
            if callee is None:
                on_path.discard(path[-1])
                done.add(path.pop())
                pending.pop()
            elif callee in on_path:
                cycle = " -> ".join(str(i) for i in path[path.index(callee):] + [callee])
                raise _Corrupt(f"control flow recurses: subgraph {cycle}")
            elif callee not in done:
                path.append(callee)
                on_path.add(callee)
                pending.append(iter(sorted(calls[callee])))


def _check_text(text, what):
    """Flatbuffer strings are UTF-8 by specification, and LiteRT's Python API decodes tensor and signature names
    as such (a tensor name that is not fails ``get_tensor_details`` with UnicodeDecodeError)."""
    try:
        (text or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt(f"{what} is not UTF-8 text") from None


def _check_signature(model, signature, i):
    _check_text(signature.SignatureKey(), f"signature {i}'s key")
    s = signature.SubgraphIndex()
    if s >= model.SubgraphsLength():
        raise _Corrupt(f"signature {i} runs subgraph {s} of {model.SubgraphsLength()}")
    count = model.Subgraphs(s).TensorsLength()
    for kind, length, get in (("input", signature.InputsLength(), signature.Inputs),
                              ("output", signature.OutputsLength(), signature.Outputs)):
        for k in range(length):
            _check_text(get(k).Name(), f"signature {i} {kind} {k}'s name")
            if get(k).TensorIndex() >= count:
                raise _Corrupt(f"signature {i} {kind} {k} names tensor {get(k).TensorIndex()} of {count}")


def _indices(array, length):
    """A flatbuffer int vector accessor's result (numpy array, or 0 when absent) as a list."""
    return [] if not length else [int(v) for v in array]


# ---------------------------------------------------------------- probe (defence in depth)

# Run as ``python -c``: a fresh interpreter that imports only numpy and LiteRT (not edge_attn, not TensorFlow)
# reads the model from stdin and tries both interpreter set-ups edge_attn uses, printing one line per set-up.
_PROBE_CHILD = r"""
import sys
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:
    sys.exit(4)
model = sys.stdin.buffer.read()
set_ups = (("default", {}),
           ("builtin", {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                        "experimental_preserve_all_tensors": True}))
for config, kwargs in set_ups:
    try:
        interpreter = Interpreter(model_content=model, num_threads=1, **kwargs)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        interpreter._get_ops_details()  # what per-layer error and the host runner read
        details = interpreter.get_tensor_details() if config == "builtin" else interpreter.get_output_details()
        for detail in details:
            try:
                interpreter.get_tensor(detail["index"])
            except ValueError:  # a tensor without data (unused or freed): a refusal, not what is probed for
                pass
        print(config, "ok", flush=True)
    except Exception as error:
        print(config, (str(error).strip().splitlines() or [type(error).__name__])[0], flush=True)
"""
_probed = {}  # sha256 of the model -> {set-up: None (ran) or LiteRT's error line}, or a BadInput problem string


def probe_tflite(model, *, what, config=None, timeout_s=None):
    """Load, allocate and invoke (on zeros) ``model`` (bytes, already verified) with LiteRT in a child process.

    The child tries the two interpreter set-ups edge_attn uses: ``"default"`` (XNNPACK applied) and
    ``"builtin"`` (builtin kernels, every tensor preserved, as per-layer error runs it), then reads the outputs
    (every tensor for ``"builtin"``). A child killed by a signal, or still running after ``timeout_s`` (default
    :data:`PROBE_TIMEOUT_S`), is a :class:`~edge_attn.errors.BadInput` naming ``what``; so is a clean LiteRT error
    in the set-up named by ``config`` (``None``: only crashes and timeouts count, for callers that use another
    LiteRT API). Results are cached per process by the model's sha256.
    """
    key = hashlib.sha256(model).hexdigest()
    if key not in _probed:
        _probed[key] = _run_probe(bytes(model), PROBE_TIMEOUT_S if timeout_s is None else timeout_s)
    outcome = _probed[key]
    if isinstance(outcome, str):
        raise BadInput(what, outcome)
    if config is not None and outcome.get(config):
        raise BadInput(what, f"LiteRT cannot run it ({outcome[config]})")


def _run_probe(model, timeout_s):
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE_CHILD], input=model, capture_output=True,
                               timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"LiteRT did not load and run it within {timeout_s:g} s"
    if child.returncode < 0:
        return f"LiteRT crashed loading it (signal {signal.Signals(-child.returncode).name})"
    if child.returncode == 4:  # no ai_edge_litert here: nothing to probe with
        return {}
    if child.returncode != 0:
        return f"LiteRT's probe process failed (exit status {child.returncode})"
    outcome = {}
    for line in child.stdout.decode("utf-8", "replace").splitlines():
        config, _, result = line.partition(" ")
        outcome[config] = None if result == "ok" else result
    return outcome
