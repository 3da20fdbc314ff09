"""The meaning of a structurally sound TFLite model, after TFLite's own ``tflite/core/tools/verifier.cc`` (which
LiteRT's loader does not run) plus what measurements added: indices in range, constant buffers exactly
shape × dtype, well-formed strings, data flow, no recursion between subgraphs, LiteRT's int32 size limits,
quantization parameters that match their tensor, UTF-8 names, signatures and metadata naming real things.

Part of :func:`edge_attn.convert.verify.verify_tflite`; a violated rule raises
:class:`~edge_attn.convert.tflite_structure.Corrupt`.
"""

import struct

from ai_edge_litert import schema_py_generated as schema

from edge_attn.convert.tflite_structure import Corrupt

SCHEMA_VERSION = 3  # TFLITE_SCHEMA_VERSION; LiteRT refuses other versions
MAX_TENSOR_ELEMENTS = 2**31 - 1  # LiteRT kernels count elements (and bytes) in int32
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


def check_contents(model, data):
    if model.Version() != SCHEMA_VERSION:
        raise Corrupt(f"schema version {model.Version()}, LiteRT reads version {SCHEMA_VERSION}")
    if model.SubgraphsLength() == 0:
        raise Corrupt("no subgraphs")
    if model.BuffersIsNone():
        raise Corrupt("no buffers list")
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
            raise Corrupt(f"metadata entry {i} has no UTF-8 name")
        if entry.Buffer() >= len(buffers):
            raise Corrupt(f"metadata {name!r} names buffer {entry.Buffer()} of {len(buffers)}")
    for i in range(model.SignatureDefsLength()):
        _check_signature(model, model.SignatureDefs(i), i)


def _buffer_data(model, index, data):
    """The bytes of buffer ``index`` (empty: no data). A buffer may keep its data after the flatbuffer, at
    ``offset`` with ``size`` bytes (models over 2 GB); offsets 0 and 1 mean it has none."""
    buffer = model.Buffers(index)
    offset, size = buffer.Offset(), buffer.Size()
    if offset > 1:
        if offset + size > len(data):
            raise Corrupt(f"buffer {index} places {size} bytes at byte {offset}, past the end of the file")
        return memoryview(data)[offset:offset + size]
    return memoryview(buffer.DataAsNumpy()) if buffer.DataLength() else memoryview(b"")


def _check_subgraph(model, s, buffers, file_size):
    """Check subgraph ``s``; return the subgraph indices its control-flow ops call."""
    subgraph = model.Subgraphs(s)
    where = f"subgraph {s}" if model.SubgraphsLength() > 1 else "the graph"
    if subgraph.OperatorsIsNone():
        raise Corrupt(f"{where} has no operators list")
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
                raise Corrupt(f"{where}: {kind} tensor {index} does not exist ({count} tensors)")
    readable = constants | variables | set(graph_inputs)  # grows by each op's outputs, in execution order
    produced, calls = set(), set()
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        if op.OpcodeIndex() >= model.OperatorCodesLength():
            raise Corrupt(f"{where}: operator {o} uses operator code {op.OpcodeIndex()} of "
                           f"{model.OperatorCodesLength()}")
        if op.InputsIsNone() or op.OutputsIsNone():
            raise Corrupt(f"{where}: operator {o} has no {'inputs' if op.InputsIsNone() else 'outputs'} list")
        if op.LargeCustomOptionsOffset() + op.LargeCustomOptionsSize() > file_size:
            raise Corrupt(f"{where}: operator {o} places its custom options past the end of the file")
        for index in _indices(op.InputsAsNumpy(), op.InputsLength()):
            if index == -1:  # an omitted optional input
                continue
            if not 0 <= index < count:
                raise Corrupt(f"{where}: operator {o} reads tensor {index}, which does not exist ({count} tensors)")
            if index not in readable:
                raise Corrupt(f"{where}: operator {o} reads tensor {index} before anything writes it")
        for index in _indices(op.OutputsAsNumpy(), op.OutputsLength()):
            if not 0 <= index < count:
                raise Corrupt(f"{where}: operator {o} writes tensor {index}, which does not exist ({count} tensors)")
            role = ("a constant" if index in constants else "a variable" if index in variables
                    else "a graph input" if index in graph_inputs
                    else "already written by an earlier operator" if index in produced else None)
            if role:
                raise Corrupt(f"{where}: operator {o} writes tensor {index}, which is {role}")
            produced.add(index)
            readable.add(index)
        for callee in _called_subgraphs(op):
            if not 0 <= callee < model.SubgraphsLength():
                raise Corrupt(f"{where}: operator {o} calls subgraph {callee} of {model.SubgraphsLength()}")
            calls.add(callee)
    return calls


def _check_tensor(tensor, t, where, buffers):
    """Check one tensor; return whether it is a constant (its buffer holds data)."""
    label = f"{where}: tensor {t}"
    _check_text(tensor.Name(), f"{label}'s name")
    dtype = _DTYPES.get(tensor.Type())
    if dtype is None:
        raise Corrupt(f"{label} has unknown type {tensor.Type()}")
    shape = [int(d) for d in _indices(tensor.ShapeAsNumpy(), tensor.ShapeLength())]
    if any(d < 0 for d in shape):
        raise Corrupt(f"{label} has a negative dimension in shape {shape}")
    elements = 1
    for d in shape:
        elements *= d
    if elements > MAX_TENSOR_ELEMENTS or elements * _ELEMENT_BITS.get(dtype, 8) // 8 > MAX_TENSOR_ELEMENTS:
        raise Corrupt(f"{label} declares shape {shape}: over LiteRT's limit of 2^31 elements or bytes")
    if any(d < -1 for d in _indices(tensor.ShapeSignatureAsNumpy(), tensor.ShapeSignatureLength())):
        raise Corrupt(f"{label} has a dimension below -1 in its shape signature")
    if tensor.Buffer() >= len(buffers):
        raise Corrupt(f"{label} uses buffer {tensor.Buffer()} of {len(buffers)}")
    _check_quantization(tensor.Quantization(), shape, label)
    stored = buffers[tensor.Buffer()] if tensor.Buffer() > 0 else b""
    if not len(stored):
        return False
    if dtype == "STRING":
        _check_strings(stored, label)
        return True
    if dtype not in _ELEMENT_BITS:
        raise Corrupt(f"{label}: a constant of type {dtype} cannot hold data")
    if tensor.Sparsity() is not None:
        elements = _sparse_elements(tensor.Sparsity(), shape, label)
    bits = _ELEMENT_BITS[dtype]
    expected = {elements * max(bits, 8) // 8, (elements * bits + 7) // 8}
    if len(stored) not in expected:
        raise Corrupt(f"{label} ({dtype.lower()} {shape}) needs {min(expected)} bytes of constant data, "
                       f"its buffer holds {len(stored)}")
    return True


def _check_quantization(quantization, shape, label):
    if quantization is None or quantization.ScaleLength() == 0:
        return
    scales, zero_points = quantization.ScaleLength(), quantization.ZeroPointLength()
    if zero_points != scales:
        raise Corrupt(f"{label} has {scales} quantization scales but {zero_points} zero points")
    if scales > 1:
        axis = quantization.QuantizedDimension()
        if not 0 <= axis < len(shape):
            raise Corrupt(f"{label} is quantized along dimension {axis} of a rank-{len(shape)} tensor")
        if shape[axis] != scales:
            raise Corrupt(f"{label} has {scales} quantization scales for {shape[axis]} channels in dimension {axis}")


def _check_strings(buffer, label):
    """A STRING buffer: int32 count n, n + 1 int32 offsets (the first right after them, each not before the
    previous, the last at the end of the buffer), then the bytes (``tflite/string_util.h``)."""
    if len(buffer) < 4:
        raise Corrupt(f"{label}: string data shorter than its count")
    count = struct.unpack_from("<I", buffer, 0)[0]
    header = 4 * (count + 2)
    if header > len(buffer):
        raise Corrupt(f"{label}: {count} strings need {header} header bytes, the buffer has {len(buffer)}")
    offsets = struct.unpack_from(f"<{count + 1}i", buffer, 4)
    if offsets[0] != header or offsets[-1] != len(buffer) or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise Corrupt(f"{label}: string offsets do not run from the header to the end of the buffer in order")


def _sparse_elements(sparsity, shape, label):
    """How many values a sparse tensor stores, per ``VerifyAndCountSparseElements`` in verifier.cc."""
    bad = Corrupt(f"{label} has invalid sparsity parameters")
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
                raise Corrupt(f"control flow recurses: subgraph {cycle}")
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
        raise Corrupt(f"{what} is not UTF-8 text") from None


def _check_signature(model, signature, i):
    _check_text(signature.SignatureKey(), f"signature {i}'s key")
    s = signature.SubgraphIndex()
    if s >= model.SubgraphsLength():
        raise Corrupt(f"signature {i} runs subgraph {s} of {model.SubgraphsLength()}")
    count = model.Subgraphs(s).TensorsLength()
    for kind, length, get in (("input", signature.InputsLength(), signature.Inputs),
                              ("output", signature.OutputsLength(), signature.Outputs)):
        for k in range(length):
            _check_text(get(k).Name(), f"signature {i} {kind} {k}'s name")
            if get(k).TensorIndex() >= count:
                raise Corrupt(f"signature {i} {kind} {k} names tensor {get(k).TensorIndex()} of {count}")


def _indices(array, length):
    """A flatbuffer int vector accessor's result (numpy array, or 0 when absent) as a list."""
    return [] if not length else [int(v) for v in array]
