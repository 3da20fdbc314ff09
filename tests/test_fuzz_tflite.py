"""Fuzz the .tflite entry points: 2,000 seeded mutants of a small int8 model through inspect, compat, bundle and
check, each ending in success or BadInput — never another exception, never a crash, never a hang.

The loop runs in a child process (this file run as a script), so a mutant that kills the process fails the test
with its seed instead of taking pytest down, and a wall-clock bound turns a hang into a failure. The mutator is
seeded and independent of the verifier: it knows the flatbuffer only through LiteRT's generated schema module.

Mutations (by ``seed % 8``): truncation; 1–4 bit flips anywhere; a 32-bit word of the flatbuffer's structure
(everything but the constant data) overwritten with a boundary value (0, ±1, 2^31 - 1, the file size, ...) or
nudged (×2); a 16-bit half-word overwritten (vtable entries); two structure words swapped; and an edit through
LiteRT's object API of what LiteRT reads (×2): tensor, opcode and buffer indices, shapes, dtypes, quantization
parameters, constant data, operand lists and op codes.

``check`` runs LiteRT on the model, so each call starts a probe process (about half a second): it runs on a
seeded sample of the mutants, those that pass verification (where LiteRT really gets to work) and others.
"""

import collections
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback

import pytest

MUTANTS = 2000
CHECK_VERIFIED = 12  # sampled mutants that pass verification, run through check
CHECK_OTHERS = 6  # sampled mutants that fail it, run through check
CHECK_SAMPLE_SEED = 20240611
PER_MUTANT_S = 30  # a mutant still running after this long is a hang
WALL_CLOCK_S = 180  # the whole child, which normally takes 30-60 s here: past this it hangs in native code
INPUT_SHAPE = (8, 8, 1)
CLASSES = 3
ENTRIES = ("inspect", "compat:gpu", "compat:nnapi", "compat:xnnpack", "bundle")


def test_mutants_never_crash_or_hang_the_readers(tmp_path):
    try:
        child = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True,
                               timeout=WALL_CLOCK_S, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or b""  # bytes even with text=True
        last = (output.decode(errors="replace") if isinstance(output, bytes) else output).strip().splitlines()[-1:]
        pytest.fail(f"the fuzz child was still running after {WALL_CLOCK_S} s; last progress: {last}")
    lines = child.stdout.strip().splitlines()
    if child.returncode < 0:
        last_seed = next((line for line in reversed(lines) if line.startswith("seed ")), "before the first mutant")
        pytest.fail(f"the fuzz child died with {signal.Signals(-child.returncode).name} at {last_seed} "
                    f"(base model: {tmp_path / 'base.tflite'})\n{child.stderr[-2000:]}")
    assert lines and lines[-1].startswith("{"), child.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["failures"] == [] and child.returncode == 0, json.dumps(report["failures"][:5], indent=1)

    assert report["mutants"] >= 2000
    assert set(report["kinds"]) == {"truncate", "flip", "word", "half-word", "swap", "object"}
    for entry in ENTRIES:
        outcomes = report["outcomes"][entry]
        assert outcomes["ok"] + outcomes["bad_input"] == report["mutants"]
        assert outcomes["ok"] > 100 and outcomes["bad_input"] > 100  # both paths exercised, not one
    check = report["check"]
    assert check["verified"] == CHECK_VERIFIED and check["others"] == CHECK_OTHERS
    assert check["ok"] + check["bad_input"] == CHECK_VERIFIED + CHECK_OTHERS
    assert check["ok"] > 0


# ---------------------------------------------------------------- the child


def build_base(work):
    """A tiny int8 model (CONV_2D, MEAN, FULLY_CONNECTED), its float reference and evaluation data, in ``work``."""
    import numpy as np

    from edge_attn._keras import keras
    from edge_attn.convert import convert_model, load_recipe

    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    rng = np.random.default_rng(0)
    x_eval = rng.normal(size=(16, *INPUT_SHAPE)).astype("float32")
    base = convert_model(model, load_recipe("int8-ptq"), [s[np.newaxis] for s in x_eval])
    with open(os.path.join(work, "base.tflite"), "wb") as f:
        f.write(base)
    model.save(os.path.join(work, "reference.keras"))
    np.savez(os.path.join(work, "data.npz"), x=x_eval, y=rng.integers(0, CLASSES, len(x_eval)))
    return base


def structure_words(data):
    """Offsets of the 4-byte words outside constant data (tables, vtables, vectors, strings): where damage
    changes what readers follow."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    constant = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            start = buffer._tab.Vector(buffer._tab.Offset(4))
            constant.append((start, start + buffer.DataLength()))
    return [p for p in range(0, len(data) - 3, 4) if not any(a <= p < b for a, b in constant)]


BOUNDARY_WORDS = (0, 1, 2, 3, 4, 8, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                  0x40000000, 1000, 100000)
KINDS = ("truncate", "flip", "word", "word", "half-word", "swap", "object", "object")


def mutate(base, words, seed):
    """``(kind, mutant bytes)`` for ``seed``; the same seed always gives the same mutant of ``base``."""
    rng = random.Random(seed)
    kind = KINDS[seed % len(KINDS)]
    data = bytearray(base)
    if kind == "truncate":
        return kind, bytes(data[:rng.randrange(len(data))])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "word":
        at = rng.choice(words)
        old = struct.unpack_from("<I", data, at)[0]
        value = rng.choice(BOUNDARY_WORDS + (len(data), len(data) - 4, old + rng.randint(-16, 16),
                                             rng.getrandbits(32)))
        struct.pack_into("<I", data, at, value & 0xFFFFFFFF)
    elif kind == "half-word":
        struct.pack_into("<H", data, rng.choice(words) + rng.choice((0, 2)),
                         rng.choice((0, 2, 4, 6, 0x7FFF, 0xFFFF, rng.randrange(64), rng.getrandbits(16))))
    elif kind == "swap":
        a, b = rng.sample(words, 2)
        data[a:a + 4], data[b:b + 4] = data[b:b + 4], data[a:a + 4]
    else:
        return kind, object_edit(base, rng)
    return kind, bytes(data)


def object_edit(base, rng):
    """One edit of what LiteRT reads, through its object API, re-serialised."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(base))
    graph = model.subgraphs[0]
    op, tensor = rng.choice(graph.operators), rng.choice(graph.tensors)
    out_of_range = rng.choice((-1, -2, -1000, len(graph.tensors), len(graph.tensors) + 1, 2**31 - 1, -2**31))
    edit = rng.randrange(12)
    if edit == 0:
        operands = rng.choice((op.inputs, op.outputs))
        operands[rng.randrange(len(operands))] = out_of_range
    elif edit == 1:
        rng.choice((graph.inputs, graph.outputs))[0] = out_of_range
    elif edit == 2:
        op.opcodeIndex = rng.choice((len(model.operatorCodes), 100, 2**31 - 1, 2**32 - 1))
    elif edit == 3:
        tensor.buffer = rng.choice((len(model.buffers), len(model.buffers) + 5, 2**31, 2**32 - 1))
    elif edit == 4:
        tensor.shape = list(tensor.shape)
        tensor.shape[rng.randrange(len(tensor.shape))] = rng.choice((-1, -5, 0, 1000, 2**16, 2**20, 2**31 - 1))
    elif edit == 5:
        tensor.shape = list(tensor.shape)[:-1] if rng.random() < 0.5 else list(tensor.shape) + [2] * rng.randint(1, 5)
    elif edit == 6:
        tensor.type = rng.choice((-1, 0, 1, 2, 3, 9, 10, 13, 17, 19, 22, 50, 127))
    elif edit == 7:
        quantized = [t for t in graph.tensors if t.quantization is not None and t.quantization.scale is not None]
        q = rng.choice(quantized).quantization
        change = rng.randrange(4)
        if change == 0:
            q.scale = list(q.scale) + [0.5]
        elif change == 1:
            q.zeroPoint = list(q.zeroPoint)[:-1]
        elif change == 2:
            q.quantizedDimension = rng.choice((-1, 5, 100, 2**31 - 1))
        else:
            q.scale = [rng.choice((0.0, -1.0, float("nan"), float("inf")))] * len(q.scale)
    elif edit == 8:
        buffer = rng.choice([b for b in model.buffers if b.data is not None and len(b.data) > 0])
        buffer.data = np.asarray(buffer.data)[:rng.randrange(len(buffer.data))]
    elif edit == 9:
        operands = rng.choice(("inputs", "outputs"))
        setattr(op, operands, list(getattr(op, operands))[:rng.randrange(len(getattr(op, operands)))])
    elif edit == 10:
        code = rng.choice(model.operatorCodes)
        code.builtinCode = rng.choice((0, 3, 9, 22, 40, 49, 118, 200, 209, 1000))
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    else:
        op.builtinOptions, op.builtinOptionsType = None, rng.choice((0, 1, 5, 200, 255))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class Hang(Exception):
    """Raised by the per-mutant alarm."""


def run_child(work):
    from edge_attn.bundle import bundle
    from edge_attn.convert import inspect_tflite, probe, verify
    from edge_attn.data import load_data
    from edge_attn.delegates import check_compat
    from edge_attn.errors import BadInput
    from edge_attn.modelio import load_keras_model
    from edge_attn.pipeline import check

    probe.PROBE_TIMEOUT_S = 10.0  # a slower probe is BadInput ("did not load and run it within 10 s")
    base = build_base(work)
    words = structure_words(base)
    reference = load_keras_model(os.path.join(work, "reference.keras"))
    data = load_data(os.path.join(work, "data.npz"), input_shape=INPUT_SHAPE)
    mutant_path, bundle_out = os.path.join(work, "mutant.tflite"), os.path.join(work, "bundle")
    expected_files = sorted(os.listdir(work) + ["mutant.tflite"])

    def run_check(mutant):
        inspect_tflite(mutant_path)  # as `edge-attn check` does, then check()'s LiteRT runs on the file
        # `edge-attn check` compares layers with the reference lowered by normalize/qat; for this model (no attention,
        # no raw ops) that is the reference itself, so tfmot is not imported here.
        check(reference, reference, mutant_path, data, threads=1, runs=2)

    def run_bundle(mutant):
        try:
            bundle(mutant_path, target="android", out=bundle_out)
        except BadInput:
            if sorted(os.listdir(work)) != expected_files:
                raise AssertionError(f"a failed bundle left {sorted(set(os.listdir(work)) - set(expected_files))}")
            raise
        shutil.rmtree(bundle_out)

    readers = {"inspect": inspect_tflite, "bundle": run_bundle,
               **{f"compat:{d}": (lambda m, d=d: check_compat(m, d)) for d in ("gpu", "nnapi", "xnnpack")}}
    check_sample = set(random.Random(CHECK_SAMPLE_SEED).sample(range(MUTANTS), 400))
    kinds, failures, probe_refusals = collections.Counter(), [], []
    outcomes = {entry: collections.Counter(ok=0, bad_input=0) for entry in ENTRIES}
    checked = collections.Counter(verified=0, others=0, ok=0, bad_input=0)

    def outcome(entry, seed, kind, action, mutant):
        """"ok" or "bad_input"; any other exception, or a hang, is recorded as a failure."""
        signal.alarm(PER_MUTANT_S)
        try:
            action(mutant)
            return "ok"
        except BadInput as error:
            if "LiteRT crashed" in error.problem or "did not load" in error.problem:
                probe_refusals.append(f"seed {seed}: {error.problem}")
            return "bad_input"
        except BaseException as error:  # every other exception is what this test looks for
            frame = traceback.extract_tb(error.__traceback__)[-1]
            failures.append({"seed": seed, "kind": kind, "entry": entry, "error": f"{type(error).__name__}: {error}",
                             "at": f"{os.path.relpath(frame.filename)}:{frame.lineno}"})
            return "failed"
        finally:
            signal.alarm(0)

    def alarm(signum, frame):
        raise Hang(f"still running after {PER_MUTANT_S} s")

    signal.signal(signal.SIGALRM, alarm)
    started = time.perf_counter()
    for seed in range(MUTANTS):
        print(f"seed {seed}", flush=True)
        kind, mutant = mutate(base, words, seed)
        kinds[kind] += 1
        with open(mutant_path, "wb") as f:
            f.write(mutant)
        for entry, read in readers.items():
            outcomes[entry][outcome(entry, seed, kind, read, mutant)] += 1
        if seed in check_sample:
            group = "verified" if outcome("verify", seed, kind, verify.verify_tflite, mutant) == "ok" else "others"
            if checked[group] < (CHECK_VERIFIED if group == "verified" else CHECK_OTHERS):
                checked[group] += 1
                checked[outcome("check", seed, kind, run_check, mutant)] += 1
    print(json.dumps({"mutants": MUTANTS, "seconds": round(time.perf_counter() - started, 1), "kinds": kinds,
                      "outcomes": outcomes, "check": checked, "probe_refusals": probe_refusals,
                      "failures": failures}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_child(sys.argv[1]))
