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

So the checks are (:mod:`~edge_attn.convert.tflite_structure`, then :mod:`~edge_attn.convert.tflite_contents`;
the probe is :mod:`~edge_attn.convert.probe`): the flatbuffers ``Verifier`` rules (``flatbuffers/verifier.h``: every offset, vector and
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

import hashlib
import os

from ai_edge_litert import schema_py_generated as schema

from edge_attn.convert.probe import PROBE_TIMEOUT_S, probe_tflite
from edge_attn.convert.tflite_contents import check_contents
from edge_attn.convert.tflite_structure import Corrupt, Structure
from edge_attn.errors import BadInput

__all__ = ["verify_tflite", "probe_tflite", "PROBE_TIMEOUT_S", "schema"]

FILE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer, after the root table offset

_VERDICTS_KEPT = 4096
_verdicts = {}  # sha256 digest of a model checked in this process -> its problem, or None


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
        Structure(data).verify()
    except Corrupt as e:
        return f"corrupt or truncated TFLite flatbuffer: {e}"
    try:
        check_contents(schema.Model.GetRootAs(data, 0), data)
    except Corrupt as e:
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
