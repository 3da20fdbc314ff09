"""The part of the TFLite metadata schema that edge_attn writes, as flatc would generate it for Python.

No installable package ships the generated module without conflicts (``tflite-support`` pins protobuf<4,
which TensorFlow 2.21 cannot use), so the tables below are transcribed by hand from the public schema,
``tensorflow_lite_support/metadata/metadata_schema.fbs`` (https://github.com/tensorflow/tflite-support,
schema 1.x, file identifier ``M001``). A flatbuffer table field lives at vtable slot = its position in the
table declaration, counting from 0; unions take two slots (``<name>_type`` then the value). Only fields edge_attn
uses are given; readers of other fields still work because positions never change (the schema only appends).

Builder helpers (``build_*``) write tables with ``flatbuffers.Builder``; the ``*Reader`` classes read them
the way generated accessors do, so a buffer can be checked without the writer's own data structures.
"""

import flatbuffers
from flatbuffers import number_types, table

FILE_IDENTIFIER = b"M001"
METADATA_NAME = "TFLITE_METADATA"  # the Model.metadata entry name the LiteRT metadata extractor looks for
# The oldest metadata parser that understands every field below (all present since schema 1.0.0).
MIN_PARSER_VERSION = "1.0.0"


class AssociatedFileType:
    UNKNOWN = 0
    DESCRIPTIONS = 1
    TENSOR_AXIS_LABELS = 2
    TENSOR_VALUE_LABELS = 3


class ColorSpaceType:
    UNKNOWN = 0
    RGB = 1
    GRAYSCALE = 2


class ContentProperties:  # union
    NONE = 0
    FeatureProperties = 1
    ImageProperties = 2


class ProcessUnitOptions:  # union
    NONE = 0
    NormalizationOptions = 1


# Vtable slots per table, in declaration order of metadata_schema.fbs.
ASSOCIATED_FILE = {"name": 0, "description": 1, "type": 2, "locale": 3}
IMAGE_SIZE = {"width": 0, "height": 1}
IMAGE_PROPERTIES = {"color_space": 0, "default_size": 1}
CONTENT = {"content_properties_type": 0, "content_properties": 1, "range": 2}
NORMALIZATION_OPTIONS = {"mean": 0, "std": 1}
PROCESS_UNIT = {"options_type": 0, "options": 1}
TENSOR_METADATA = {"name": 0, "description": 1, "dimension_names": 2, "content": 3, "process_units": 4,
                   "stats": 5, "associated_files": 6}
SUBGRAPH_METADATA = {"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3,
                     "associated_files": 4}
MODEL_METADATA = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
                  "associated_files": 6, "min_parser_version": 7}

# --- writing -------------------------------------------------------------------------------------------------

def _strings(builder, values):
    """Create strings first: flatbuffers forbids creating objects while a table is open."""
    return {key: builder.CreateString(value) for key, value in values.items() if value is not None}


def _offset_vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _float_vector(builder, values):
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(float(value))
    return builder.EndVector()


def _table(builder, slots, offsets=(), bytes_=(), uints=()):
    """End a table with the given fields: ``offsets`` (name → offset), ``bytes_`` (name → int8), ``uints``."""
    builder.StartObject(max(slots.values()) + 1)  # fields after the last one set may be left out
    for name, value in offsets:
        builder.PrependUOffsetTRelativeSlot(slots[name], value, 0)
    for name, value in uints:
        builder.PrependUint32Slot(slots[name], value, 0)
    for name, value in bytes_:
        builder.PrependInt8Slot(slots[name], value, 0)
    return builder.EndObject()


def build_associated_file(builder, name, description, file_type):
    s = _strings(builder, {"name": name, "description": description})
    return _table(builder, ASSOCIATED_FILE, offsets=s.items(), bytes_=[("type", file_type)])


def build_image_content(builder, color_space, width, height):
    size = _table(builder, IMAGE_SIZE, uints=[("width", width), ("height", height)])
    properties = _table(builder, IMAGE_PROPERTIES, offsets=[("default_size", size)],
                        bytes_=[("color_space", color_space)])
    return _table(builder, CONTENT, offsets=[("content_properties", properties)],
                  bytes_=[("content_properties_type", ContentProperties.ImageProperties)])


def build_feature_content(builder):
    builder.StartObject(0)  # FeatureProperties has no fields
    properties = builder.EndObject()
    return _table(builder, CONTENT, offsets=[("content_properties", properties)],
                  bytes_=[("content_properties_type", ContentProperties.FeatureProperties)])


def build_normalization_unit(builder, mean, std):
    mean_vector, std_vector = _float_vector(builder, mean), _float_vector(builder, std)
    options = _table(builder, NORMALIZATION_OPTIONS, offsets=[("mean", mean_vector), ("std", std_vector)])
    return _table(builder, PROCESS_UNIT, offsets=[("options", options)],
                  bytes_=[("options_type", ProcessUnitOptions.NormalizationOptions)])


def build_tensor_metadata(builder, name, description, content, process_units=(), associated_files=()):
    s = _strings(builder, {"name": name, "description": description})
    offsets = list(s.items()) + [("content", content)]
    if process_units:
        offsets.append(("process_units", _offset_vector(builder, list(process_units))))
    if associated_files:
        offsets.append(("associated_files", _offset_vector(builder, list(associated_files))))
    return _table(builder, TENSOR_METADATA, offsets=offsets)


def build_model_metadata(*, name, description, version, author, inputs, outputs, build_tensors):
    """Return the finished ``ModelMetadata`` flatbuffer (bytes, identifier ``M001``).

    ``build_tensors(builder)`` must return ``(input_offsets, output_offsets)`` made with the helpers above
    on the same builder (flatbuffers builds children before parents).
    """
    builder = flatbuffers.Builder(1024)
    input_offsets, output_offsets = build_tensors(builder)
    if len(input_offsets) != inputs or len(output_offsets) != outputs:
        raise ValueError("tensor metadata count does not match the subgraph's inputs/outputs")
    subgraph = _table(builder, SUBGRAPH_METADATA, offsets=[
        ("input_tensor_metadata", _offset_vector(builder, input_offsets)),
        ("output_tensor_metadata", _offset_vector(builder, output_offsets))])
    subgraphs = _offset_vector(builder, [subgraph])
    s = _strings(builder, {"name": name, "description": description, "version": version, "author": author,
                           "min_parser_version": MIN_PARSER_VERSION})
    root = _table(builder, MODEL_METADATA, offsets=list(s.items()) + [("subgraph_metadata", subgraphs)])
    builder.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


# --- reading (generated-accessor style) ----------------------------------------------------------------------

class _Reader:
    SLOTS = {}

    def __init__(self, buf, pos):
        self._tab = table.Table(buf, pos)

    def _offset(self, field):
        return self._tab.Offset(4 + 2 * self.SLOTS[field])

    def _string(self, field):
        o = self._offset(field)
        return self._tab.String(o + self._tab.Pos).decode("utf-8") if o else None

    def _int8(self, field):
        o = self._offset(field)
        return self._tab.Get(number_types.Int8Flags, o + self._tab.Pos) if o else 0

    def _uint32(self, field):
        o = self._offset(field)
        return self._tab.Get(number_types.Uint32Flags, o + self._tab.Pos) if o else 0

    def _table(self, field, cls):
        o = self._offset(field)
        return cls(self._tab.Bytes, self._tab.Indirect(o + self._tab.Pos)) if o else None

    def _tables(self, field, cls):
        o = self._offset(field)
        if not o:
            return []
        start, count = self._tab.Vector(o), self._tab.VectorLen(o)
        return [cls(self._tab.Bytes, self._tab.Indirect(start + 4 * i)) for i in range(count)]

    def _floats(self, field):
        o = self._offset(field)
        if not o:
            return []
        start, count = self._tab.Vector(o), self._tab.VectorLen(o)
        return [self._tab.Get(number_types.Float32Flags, start + 4 * i) for i in range(count)]


class AssociatedFileReader(_Reader):
    SLOTS = ASSOCIATED_FILE

    def name(self): return self._string("name")
    def description(self): return self._string("description")
    def type(self): return self._int8("type")


class ImageSizeReader(_Reader):
    SLOTS = IMAGE_SIZE

    def width(self): return self._uint32("width")
    def height(self): return self._uint32("height")


class ImagePropertiesReader(_Reader):
    SLOTS = IMAGE_PROPERTIES

    def color_space(self): return self._int8("color_space")
    def default_size(self): return self._table("default_size", ImageSizeReader)


class ContentReader(_Reader):
    SLOTS = CONTENT

    def properties_type(self): return self._int8("content_properties_type")

    def image_properties(self):
        if self.properties_type() != ContentProperties.ImageProperties:
            return None
        return self._table("content_properties", ImagePropertiesReader)


class NormalizationOptionsReader(_Reader):
    SLOTS = NORMALIZATION_OPTIONS

    def mean(self): return self._floats("mean")
    def std(self): return self._floats("std")


class ProcessUnitReader(_Reader):
    SLOTS = PROCESS_UNIT

    def options_type(self): return self._int8("options_type")

    def normalization(self):
        if self.options_type() != ProcessUnitOptions.NormalizationOptions:
            return None
        return self._table("options", NormalizationOptionsReader)


class TensorMetadataReader(_Reader):
    SLOTS = TENSOR_METADATA

    def name(self): return self._string("name")
    def description(self): return self._string("description")
    def content(self): return self._table("content", ContentReader)
    def process_units(self): return self._tables("process_units", ProcessUnitReader)
    def associated_files(self): return self._tables("associated_files", AssociatedFileReader)


class SubGraphMetadataReader(_Reader):
    SLOTS = SUBGRAPH_METADATA

    def input_tensor_metadata(self): return self._tables("input_tensor_metadata", TensorMetadataReader)
    def output_tensor_metadata(self): return self._tables("output_tensor_metadata", TensorMetadataReader)


class ModelMetadataReader(_Reader):
    SLOTS = MODEL_METADATA

    @classmethod
    def from_bytes(cls, data):
        """Read a finished ``ModelMetadata`` buffer; ValueError if it lacks the ``M001`` identifier."""
        data = bytearray(data)
        if len(data) < 8 or bytes(data[4:8]) != FILE_IDENTIFIER:
            raise ValueError(f"not a TFLite metadata buffer (identifier {bytes(data[4:8])!r}, "
                             f"expected {FILE_IDENTIFIER!r})")
        return cls(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))

    def name(self): return self._string("name")
    def description(self): return self._string("description")
    def version(self): return self._string("version")
    def author(self): return self._string("author")
    def min_parser_version(self): return self._string("min_parser_version")
    def subgraph_metadata(self): return self._tables("subgraph_metadata", SubGraphMetadataReader)
