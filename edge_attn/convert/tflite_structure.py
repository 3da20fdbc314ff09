"""The flatbuffers ``Verifier`` rules (``flatbuffers/verifier.h``) over a TFLite file, from the root ``Model``
table down: every offset, vector and string in bounds and aligned, vtables well formed, nesting and table count
bounded. Table layouts are learnt from LiteRT's generated schema module, not written by hand.

Part of :func:`edge_attn.convert.verify.verify_tflite`; a violated rule raises :class:`Corrupt`.
"""

import functools
import struct

from ai_edge_litert import schema_py_generated as schema

MAX_DEPTH, MAX_TABLES = 64, 1_000_000  # flatbuffers' Verifier defaults


class Corrupt(Exception):
    """A violated rule (structure or contents); the message says where."""


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
def layout(table):
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
def union_members(union):
    return {code: name for name, code in vars(getattr(schema, union)).items()
            if not name.startswith("_") and name != "NONE"}


class Structure:
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
            raise Corrupt(f"{what} at byte {position} (+{length}) lies outside the file ({self.size} bytes)")
        if position % align:
            raise Corrupt(f"{what} at byte {position} is not {align}-byte aligned")

    def scalar(self, fmt, position, what):
        self.need(position, struct.calcsize(fmt), struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.data, position)[0]

    def offset(self, position, what, element=False):
        """Follow the uoffset stored at ``position`` to a place inside the file. A field's offset must be non-zero
        and below 2^31 (``VerifyOffset``); a vector element's is only followed (``Vector::Get``), and what it
        reaches is verified in turn."""
        value = self.scalar("<I", position, what)
        if not element and (value == 0 or value >= 2**31):
            raise Corrupt(f"{what} at byte {position} is {value}, not a forward offset")
        self.need(position + value, 1, 1, what)
        return position + value

    def table(self, position, name, depth):
        if depth > MAX_DEPTH:
            raise Corrupt(f"tables nested deeper than {MAX_DEPTH}")
        self.tables_left -= 1
        if self.tables_left < 0:
            raise Corrupt("more tables than a file of this size holds without sharing them")
        vtable = position - self.scalar("<i", position, f"{name} table")
        vtable_size = self.scalar("<H", vtable, f"{name} vtable")
        if vtable_size % 2:
            raise Corrupt(f"{name} vtable at byte {vtable} has an odd size {vtable_size}")
        self.need(vtable, vtable_size, 2, f"{name} vtable")  # a vtable under 4 bytes lists no fields: all default
        for slot, field, kind, detail in layout(name):
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
            member = union_members(union).get(self.scalar("<B", table + type_offset, what)) if type_offset else None
            if member is not None:  # an unknown member type is skipped, as flatbuffers' generated verifiers do
                self.table(target, member, depth + 1)
        elif kind == "string":
            length = self.vector(target, 1, what)
            self.need(target + 4 + length, 1, 1, f"{what} terminator")
            if self.data[target + 4 + length] != 0:
                raise Corrupt(f"{what} at byte {target} is not NUL-terminated")
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
