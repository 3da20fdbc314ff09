"""Tests of edge_attn.convert.verify: damaged and hostile .tflite files are one-line BadInput errors, never a crash.

Each hand-made bad model is named after what is wrong with it. The references are independent of the verifier:
LiteRT itself (the models that must be refused really kill or hang a LiteRT process, run here in a child), the
generated schema module (the verifier's table layouts agree with its accessors), and byte arithmetic on the file.
"""

import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from edge_attn.convert import convert_model, inspect_tflite, load_recipe
from edge_attn.convert import probe, tflite_structure
from edge_attn.convert.verify import probe_tflite, verify_tflite
from edge_attn.delegates import check_compat
from edge_attn.errors import BadInput
from edge_attn.litert import make_interpreter

INPUT_SHAPE = (8, 8, 1)
CLASSES = 3


@pytest.fixture(scope="module")
def keras_model():
    from edge_attn._keras import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(x))


@pytest.fixture(scope="module")
def model(keras_model):
    """A tiny int8 model: CONV_2D, MEAN, FULLY_CONNECTED (with its constants), and its min_runtime_version."""
    samples = [np.random.default_rng(i).normal(size=(1, *INPUT_SHAPE)).astype("float32") for i in range(8)]
    return convert_model(keras_model, load_recipe("int8-ptq"), samples)


def edit(data, change):
    """``data`` re-serialised after ``change(model, subgraph)`` edits it through LiteRT's object API."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    change(model, model.subgraphs[0])
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def op_index(model, subgraph, name):
    code = getattr(schema.BuiltinOperator, name)
    return next(i for i, op in enumerate(subgraph.operators)
                if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                       model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == code)


def weights(model, subgraph):
    """The CONV_2D filter tensor (a constant int8 tensor with per-channel quantization)."""
    return subgraph.tensors[subgraph.operators[op_index(model, subgraph, "CONV_2D")].inputs[1]]


def add_opcode(model, code):
    opcode = schema.OperatorCodeT()
    opcode.builtinCode, opcode.deprecatedBuiltinCode, opcode.version = code, min(code, 127), 1
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def add_constant(model, subgraph, dtype, shape, raw, name):
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(raw, np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.type, tensor.shape, tensor.buffer, tensor.name = dtype, list(shape), len(model.buffers) - 1, name
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def if_calling(model, subgraph, branch):
    """Replace the graph by one IF whose branches run subgraph ``branch``."""
    condition = add_constant(model, subgraph, schema.TensorType.BOOL, [1], b"\x01", "condition")
    op = schema.OperatorT()
    op.opcodeIndex = add_opcode(model, schema.BuiltinOperator.IF)
    op.inputs, op.outputs = [condition, subgraph.inputs[0]], [subgraph.outputs[0]]
    op.builtinOptionsType = schema.BuiltinOptions.IfOptions
    op.builtinOptions = schema.IfOptionsT()
    op.builtinOptions.thenSubgraphIndex = op.builtinOptions.elseSubgraphIndex = branch
    subgraph.operators = [op]


def recursive_if(model, subgraph):
    if_calling(model, subgraph, 0)


def mutually_recursive_ifs(model, subgraph):
    second = flatbuffer_utils.read_model_from_bytearray(
        bytearray(flatbuffer_utils.convert_object_to_bytearray(model))).subgraphs[0]
    model.subgraphs.append(second)
    if_calling(model, subgraph, 1)
    if_calling(model, second, 0)


def bad_string_constant(model, subgraph):
    """A STRING constant (graph output) whose header claims 5 strings at offsets past its 12 bytes."""
    subgraph.outputs = [add_constant(model, subgraph, schema.TensorType.STRING, [5],
                                     struct.pack("<iii", 5, 1_000_000, 2_000_000), "strings")]


def mean_as_split(model, subgraph):
    """MEAN's operator code swapped for SPLIT (as a mutant in the measurement did): SPLIT reads its first input, the
    int8 activations, as the split axis. Structurally sound, so only the probe catches it."""
    code = model.operatorCodes[subgraph.operators[op_index(model, subgraph, "MEAN")].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SPLIT


def huge_input(model, subgraph):
    """The graph input declared 1×8×16777216×1 (134M values, under LiteRT's limits): a convolution that runs for
    minutes."""
    subgraph.tensors[subgraph.inputs[0]].shape = [1, 8, 2**24, 1]


def set_field(getter, **values):
    def change(model, subgraph):
        target = getter(model, subgraph)
        for name, value in values.items():
            setattr(target, name, value)
    return change


def dag_bomb(_):
    """A model whose subgraphs vector lists one subgraph 1,000 times, whose tensors vector lists one tensor 1,000
    times: 8 KB of offsets that every reader walks as a million tables."""
    import flatbuffers

    builder = flatbuffers.Builder(0)
    schema.TensorStart(builder)
    tensor = schema.TensorEnd(builder)
    schema.SubGraphStartTensorsVector(builder, 1000)
    for _ in range(1000):
        builder.PrependUOffsetTRelative(tensor)
    tensors = builder.EndVector()
    schema.SubGraphStartOperatorsVector(builder, 0)
    operators = builder.EndVector()
    schema.SubGraphStart(builder)
    schema.SubGraphAddTensors(builder, tensors)
    schema.SubGraphAddOperators(builder, operators)
    subgraph = schema.SubGraphEnd(builder)
    schema.ModelStartSubgraphsVector(builder, 1000)
    for _ in range(1000):
        builder.PrependUOffsetTRelative(subgraph)
    subgraphs = builder.EndVector()
    schema.ModelStartBuffersVector(builder, 0)
    buffers = builder.EndVector()
    schema.ModelStart(builder)
    schema.ModelAddVersion(builder, 3)
    schema.ModelAddSubgraphs(builder, subgraphs)
    schema.ModelAddBuffers(builder, buffers)
    builder.Finish(schema.ModelEnd(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def root_offset_past_end(data):
    return struct.pack("<I", len(data) + 64) + data[4:]


def misaligned_root(data):
    return struct.pack("<I", struct.unpack_from("<I", data)[0] + 1) + data[4:]


def constant_data_truncated(model, subgraph):
    tensor = weights(model, subgraph)
    model.buffers[tensor.buffer].data = model.buffers[tensor.buffer].data[:-1]


def constant_data_too_long(model, subgraph):
    tensor = weights(model, subgraph)
    model.buffers[tensor.buffer].data = np.concatenate([model.buffers[tensor.buffer].data, np.zeros(4, np.uint8)])


def external_buffer_past_end(model, subgraph):
    buffer = model.buffers[weights(model, subgraph).buffer]
    buffer.data, buffer.offset, buffer.size = None, 10**9, 100


def metadata_without_name(model, subgraph):
    model.metadata[0].name = None


def signature_naming_missing_tensor(model, subgraph):
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = "x", 999
    signature.inputs, signature.outputs = [entry], []
    model.signatureDefs = [signature]


def op_writes_constant(model, subgraph):
    subgraph.operators[-1].outputs = [subgraph.operators[-1].inputs[1]]


def op_reads_later_output(model, subgraph):
    subgraph.operators[0].inputs = [subgraph.operators[-1].outputs[0]] + list(subgraph.operators[0].inputs[1:])


# name -> (how to make the bad model from the good bytes, words the one-line problem must contain)
BYTE_CASES = {
    "truncated to 0 bytes": (lambda d: d[:0], "empty file"),
    "truncated to 7 bytes": (lambda d: d[:7], "too short"),
    "truncated after the identifier": (lambda d: d[:8], "truncated"),
    "truncated at a quarter": (lambda d: d[:len(d) // 4], "truncated"),
    "truncated at half": (lambda d: d[:len(d) // 2], "truncated"),
    "truncated by one byte": (lambda d: d[:-1], "truncated"),
    "wrong file identifier": (lambda d: d[:4] + b"XXXX" + d[8:], "file identifier is b'XXXX'"),
    "a zip file": (lambda d: b"PK\x03\x04" + bytes(60), "not a TFLite model"),
    "root offset past the end": (root_offset_past_end, "outside the file"),
    "misaligned root table": (misaligned_root, "aligned"),
    "table DAG (a million tables from 8 KB)": (dag_bomb, "without sharing"),
}
OBJECT_CASES = {
    "op input index out of range": (set_field(lambda m, s: s.operators[0], inputs=[99, 1, 2]), "tensor 99"),
    "op output index out of range": (set_field(lambda m, s: s.operators[0], outputs=[-5]), "tensor -5"),
    "graph input index out of range": (set_field(lambda m, s: s, inputs=[1000]), "input tensor 1000"),
    "graph output index out of range": (set_field(lambda m, s: s, outputs=[-1]), "output tensor -1"),
    "opcode index out of range": (set_field(lambda m, s: s.operators[0], opcodeIndex=77), "operator code 77"),
    "buffer index out of range": (set_field(weights, buffer=500), "buffer 500"),
    "constant buffer too small": (constant_data_truncated, "bytes of constant data"),
    "constant buffer too large": (constant_data_too_long, "bytes of constant data"),
    "weights retyped float32 (buffer 4x too small)": (set_field(weights, type=schema.TensorType.FLOAT32),
                                                       "bytes of constant data"),
    "negative dimension": (set_field(lambda m, s: s.tensors[s.inputs[0]], shape=[1, 8, -8, 1]), "negative"),
    "shape over 2^31 elements": (set_field(lambda m, s: s.tensors[s.outputs[0]], shape=[1, 2**16, 2**16]),
                                 "2^31"),
    "unknown dtype": (set_field(lambda m, s: s.tensors[s.inputs[0]], type=99), "unknown type 99"),
    "scales without zero points": (set_field(lambda m, s: weights(m, s).quantization, zeroPoint=[0]),
                                   "zero points"),
    "per-channel scales for the wrong dimension": (
        set_field(lambda m, s: weights(m, s).quantization, quantizedDimension=3), "channels in dimension 3"),
    "quantized dimension out of range": (set_field(lambda m, s: weights(m, s).quantization, quantizedDimension=9),
                                         "dimension 9"),
    "IF calling its own subgraph": (recursive_if, "recurses: subgraph 0 -> 0"),
    "two subgraphs calling each other": (mutually_recursive_ifs, "recurses"),
    "IF calling a missing subgraph": (lambda m, s: if_calling(m, s, 7), "calls subgraph 7"),
    "malformed STRING constant": (bad_string_constant, "strings need"),
    "op writing a constant": (op_writes_constant, "which is a constant"),
    "op reading a tensor before it is written": (op_reads_later_output, "before anything writes it"),
    "external buffer past the end": (external_buffer_past_end, "past the end of the file"),
    "metadata without a name": (metadata_without_name, "no UTF-8 name"),
    "metadata naming a missing buffer": (set_field(lambda m, s: m.metadata[0], buffer=4000), "buffer 4000"),
    "signature naming a missing tensor": (signature_naming_missing_tensor, "tensor 999"),
    "schema version 4": (set_field(lambda m, s: m, version=4), "schema version 4"),
    "no operators list": (set_field(lambda m, s: s, operators=None), "no operators list"),
}


def litert_outcome(data, tmp_path, timeout_s=20):
    """What a fresh Python process does when LiteRT loads, allocates and invokes ``data`` (zeros in): "ok",
    "refused" (an exception), the name of the signal that killed it, or "timeout"."""
    path = tmp_path / "raw.tflite"
    path.write_bytes(data)
    code = ("import sys, numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n"
            "try:\n    i = Interpreter(model_path=sys.argv[1]); i.allocate_tensors()\n"
            "    [i.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])) for d in i.get_input_details()]\n"
            "    i.invoke(); [i.get_tensor(d['index']) for d in i.get_output_details()]\n"
            "except Exception:\n    sys.exit(3)\n")
    try:
        child = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "timeout"
    if child.returncode < 0:
        return signal.Signals(-child.returncode).name
    return {0: "ok", 3: "refused"}[child.returncode]


def test_a_good_model_passes_unchanged(model, tmp_path):
    path = tmp_path / "good.tflite"
    path.write_bytes(model)
    assert verify_tflite(path) == model
    assert verify_tflite(model) == model
    info = inspect_tflite(path)
    assert info.op_names == ["CONV_2D", "FULLY_CONNECTED", "MEAN"] and info.fully_int8
    probe_tflite(model, what=str(path), config="default")
    probe_tflite(model, what=str(path), config="builtin")
    assert litert_outcome(model, tmp_path) == "ok"


@pytest.mark.parametrize("name", list(BYTE_CASES) + list(OBJECT_CASES))
def test_bad_models_are_one_line_bad_input_naming_the_file(name, model, tmp_path):
    make, words = BYTE_CASES.get(name) or OBJECT_CASES[name]
    bad = make(model) if name in BYTE_CASES else edit(model, make)
    path = tmp_path / "bad.tflite"
    path.write_bytes(bad)
    with pytest.raises(BadInput) as caught:
        verify_tflite(path)
    assert caught.value.what == str(path)
    assert words in caught.value.problem and "\n" not in caught.value.problem
    for reader in (inspect_tflite, lambda p: check_compat(p, "gpu"), make_interpreter):
        with pytest.raises(BadInput) as caught:
            reader(path)
        assert caught.value.what == str(path)


@pytest.mark.parametrize("problem, expected", [("empty", "empty file"), ("missing", "no such file"),
                                               ("directory", "is a directory")])
def test_files_that_are_not_models(problem, expected, tmp_path):
    path = tmp_path / "model.tflite"
    if problem == "empty":
        path.write_bytes(b"")
    elif problem == "directory":
        path.mkdir()
    with pytest.raises(BadInput) as caught:
        verify_tflite(path)
    assert caught.value.what == str(path) and expected in caught.value.problem


@pytest.mark.parametrize("make, raw", [(recursive_if, "SIGSEGV"), (mutually_recursive_ifs, "SIGSEGV"),
                                       (bad_string_constant, "SIGSEGV")])
def test_what_verification_refuses_really_kills_litert(make, raw, model, tmp_path):
    bad = edit(model, make)
    assert litert_outcome(bad, tmp_path) == raw
    with pytest.raises(BadInput):
        verify_tflite(bad)


def test_the_probe_turns_a_litert_crash_that_passes_verification_into_bad_input(model, tmp_path):
    bad = edit(model, mean_as_split)
    assert verify_tflite(bad) == bad  # nothing structurally wrong with it
    assert litert_outcome(bad, tmp_path) == "SIGSEGV"
    with pytest.raises(BadInput, match=r"LiteRT crashed loading it \(signal SIGSEGV\)") as caught:
        probe_tflite(bad, what="split.tflite")
    assert caught.value.what == "split.tflite"
    path = tmp_path / "split.tflite"
    path.write_bytes(bad)
    with pytest.raises(BadInput, match="SIGSEGV"):
        make_interpreter(path, preserve_all_tensors=True)


def test_the_probe_stops_a_model_that_would_run_for_minutes(model, tmp_path):
    bad = edit(model, huge_input)
    assert verify_tflite(bad) == bad
    assert litert_outcome(bad, tmp_path, timeout_s=3) == "timeout"
    with pytest.raises(BadInput, match="did not load and run it within 1 s"):
        probe_tflite(bad, what="huge.tflite", timeout_s=1)


def test_the_probe_runs_once_per_model_and_reports_a_clean_refusal_for_its_set_up(model, monkeypatch):
    runs = []
    real = probe._run_probe
    monkeypatch.setattr(probe, "_run_probe", lambda data, timeout: runs.append(1) or real(data, timeout))
    monkeypatch.setattr(probe, "_probed", {})
    # A conv whose bias is int8: LiteRT refuses it cleanly in both set-ups ("bias->type != kTfLiteInt32").
    refused = edit(model, set_field(lambda m, s: s.tensors[s.operators[0].inputs[2]], type=schema.TensorType.INT8))
    refused = edit(refused, lambda m, s: setattr(m.buffers[s.tensors[s.operators[0].inputs[2]].buffer], "data",
                                                 m.buffers[s.tensors[s.operators[0].inputs[2]].buffer].data[:4]))
    probe_tflite(refused, what="bias.tflite")  # neither a crash nor a hang: no set-up named, so it passes
    with pytest.raises(BadInput, match="LiteRT cannot run it"):
        probe_tflite(refused, what="bias.tflite", config="default")
    probe_tflite(model, what="good.tflite", config="builtin")
    probe_tflite(model, what="good.tflite", config="default")
    assert len(runs) == 2


def test_layouts_agree_with_the_generated_schema():
    """Every field the structural verifier walks is classified as the generated accessors read it: vectors of
    scalars have ``<Field>AsNumpy``, strings are read with ``String``, tables with ``Indirect``."""
    import inspect as source

    seen, pending = set(), ["Model"]
    while pending:
        table = pending.pop()
        if table in seen:
            continue
        seen.add(table)
        cls = getattr(schema, table)
        for _slot, field, kind, detail in tflite_structure.layout(table):
            accessor = source.getsource(getattr(cls, field))
            if kind == "vector":
                assert hasattr(cls, f"{field}AsNumpy"), (table, field)
            elif kind == "string":
                assert "String(" in accessor, (table, field)
            elif kind in ("table", "tables"):
                assert "Indirect(" in accessor, (table, field)
                pending.append(detail)
            elif kind == "union":
                assert "Union(" in accessor, (table, field)
                pending.extend(tflite_structure.union_members(detail[0]).values())
    assert len(seen) > 150  # Model, its tables and every option table of the unions


def test_cli_reports_a_model_that_kills_litert_in_one_line(model, keras_model, tmp_path):
    """``edge-attn bench`` and ``check`` on the MEAN→SPLIT model, which kills a bare LiteRT process: exit 2, one
    line naming the file, no traceback."""
    path = tmp_path / "split.tflite"
    path.write_bytes(edit(model, mean_as_split))
    reference = tmp_path / "reference.keras"
    keras_model.save(reference)
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(size=(12, *INPUT_SHAPE)).astype("float32"), y=rng.integers(0, CLASSES, 12))
    for argv in (["bench", str(path), "--runs", "2", "--no-progress"],
                 ["check", str(path), "--reference", str(reference), "--data", str(data), "--runs", "2"]):
        done = subprocess.run([sys.executable, "-m", "edge_attn.cli", *argv], capture_output=True, text=True,
                              timeout=120, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
        errors = [line for line in done.stderr.splitlines() if line.startswith("edge-attn ")]
        assert done.returncode == 2, done.stderr
        assert errors == [f"edge-attn {argv[0]}: error: {path}: LiteRT crashed loading it (signal SIGSEGV)"]
        assert "Traceback" not in done.stderr and done.stdout == ""
