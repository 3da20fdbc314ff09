"""The bad-input catalogue: every command, handed something it cannot use, answers the same way.

The contract (README "Commands", docs/cli.md "Exit codes"): exit code 2, exactly one line on stderr
that says "error", names the offending input (a path, a flag, a name) and what is wrong with it, no
traceback, no output files, nothing half-written left behind, and no work done before the refusal
(no training, fine-tuning or conversion: validation comes first).

Each row of ``CASES`` is ``(id, argv, named, says)``: ``argv`` is a shell-like string whose ``{name}``
tokens are input files made on demand by the ``make_*`` functions below (in the test's own tmp folder),
``{out}`` is an output folder that does not exist, and ``{keras}``/``{tflite}``/``{good_npz}`` are valid
inputs shared by the module. The stderr line must contain ``named`` and ``says``. Every case runs
``edge_attn.cli.main(argv)`` in-process; ``test_real_process_*`` runs a few through ``python -m
edge_attn.cli`` to prove nothing reaches a real terminal either. ``test_good_inputs_*`` runs the same
argv shapes with valid inputs, so a case cannot pass because its command line itself is malformed.
"""

import io
import os
import re
import shlex
import string
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

import numpy as np
import pytest

import edge_attn.convert
import edge_attn.qat
import edge_attn.training
from edge_attn.cli import main


def _permissions_enforced():
    """Whether a chmod 000 file is unreadable here: not for root (os.geteuid() == 0) with its usual
    capabilities, which reads any file; probed rather than assumed, so root without CAP_DAC_OVERRIDE runs
    the cases too."""
    with tempfile.TemporaryDirectory() as folder:
        probe = os.path.join(folder, "probe")
        with open(probe, "w") as f:
            f.write("x")
        os.chmod(probe, 0)
        try:
            open(probe).close()
        except PermissionError:
            return True
        return False


needs_non_root = pytest.mark.skipif(not _permissions_enforced(), reason="this user (root) reads files whatever "
                                                                        "their permissions")

INPUT_SHAPE = (8, 8, 1)
CLASSES = 10

# --- input makers: each writes one bad (or good) input into `folder` and returns its path -------------

MAKERS = {}


def maker(function):
    MAKERS[function.__name__.removeprefix("make_")] = function
    return function


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _xy(n=20, shape=INPUT_SHAPE, classes=CLASSES):
    """n samples of `shape`, labels cycling 0..classes-1 (2 or more per class for n = 2 * classes)."""
    rng = np.random.default_rng(0)
    return rng.random((n, *shape), dtype=np.float32), np.arange(n) % classes


@maker
def make_empty_npz(folder):
    path = folder / "empty.npz"
    path.write_bytes(b"")
    return path


@maker
def make_npz_no_arrays(folder):
    return _npz(folder / "no_arrays.npz")


@maker
def make_npz_only_x(folder):
    return _npz(folder / "only_x.npz", x=_xy()[0])


@maker
def make_npz_only_y(folder):
    return _npz(folder / "only_y.npz", y=_xy()[1])


@maker
def make_npz_string_x(folder):
    return _npz(folder / "string_x.npz", x=np.array([["a"] * 64] * 20), y=_xy()[1])


@maker
def make_npz_object_x(folder):
    x = np.empty(20, dtype=object)
    x[:] = [[1.0]] * 20
    return _npz(folder / "object_x.npz", x=x, y=_xy()[1])


@maker
def make_npz_complex_x(folder):
    x, y = _xy()
    return _npz(folder / "complex_x.npz", x=x.astype(np.complex64), y=y)


@maker
def make_npz_5x5(folder):
    return _npz(folder / "five_by_five.npz", x=np.zeros((20, 5, 5, 1), np.float32), y=_xy()[1])


@maker
def make_npz_flat(folder):
    return _npz(folder / "flat.npz", x=np.zeros((20, 64), np.float32), y=_xy()[1])


@maker
def make_npz_nan(folder):
    x, y = _xy()
    x[7, 3, 3, 0] = np.nan
    return _npz(folder / "nan_x.npz", x=x, y=y)


@maker
def make_npz_inf(folder):
    x, y = _xy()
    x[0, 0, 0, 0] = np.inf
    return _npz(folder / "inf_x.npz", x=x, y=y)


@maker
def make_npz_float64_overflow(folder):
    x, y = _xy()
    x = x.astype(np.float64)
    x[2, 1, 1, 0] = 1e300  # finite in float64, Inf once cast to the float32 the model sees
    return _npz(folder / "overflow_x.npz", x=x, y=y)


@maker
def make_npz_zero_samples(folder):
    return _npz(folder / "zero_samples.npz", x=np.zeros((0, *INPUT_SHAPE), np.float32), y=np.zeros(0, np.int64))


@maker
def make_npz_one_class(folder):
    return _npz(folder / "one_class.npz", x=_xy()[0], y=np.zeros(20, np.int64))


@maker
def make_npz_label_out_of_range(folder):
    x, y = _xy()
    y[5] = 99
    return _npz(folder / "label_99.npz", x=x, y=y)


@maker
def make_npz_negative_label(folder):
    x, y = _xy()
    y[3] = -1
    return _npz(folder / "label_minus_1.npz", x=x, y=y)


@maker
def make_npz_short_y(folder):
    x, y = _xy()
    return _npz(folder / "short_y.npz", x=x, y=y[:19])


@maker
def make_npz_three_classes(folder):
    return _npz(folder / "three_classes.npz", x=_xy(12)[0], y=np.arange(12) % 3)


@maker
def make_npz_huge_shape(folder):
    """A .npz whose x.npy header declares 100000 x 1000 x 1000 x 1 float32 (400 GB) over 64 bytes of data:
    a loader that trusts the header allocates before it reads."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (100000, 1000, 1000, 1)})
    y = io.BytesIO()
    np.save(y, np.arange(100000) % CLASSES)
    path = folder / "huge_shape.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
        archive.writestr("y.npy", y.getvalue())
    return path


@maker
def make_npy_named_npz(folder):
    path = folder / "single_array.npz"
    with open(path, "wb") as f:  # np.save(path) would append ".npy" to the name
        np.save(f, _xy()[0])
    return path


@maker
def make_unreadable_npz(folder):
    path = _npz(folder / "locked.npz", x=_xy()[0], y=_xy()[1])
    path.chmod(0)
    return path


@maker
def make_csv_data(folder):
    path = folder / "data.csv"
    path.write_text("x,y\n1,0\n")
    return path


def _png(width, height, gray=0):
    """A minimal valid 8-bit grayscale PNG of width x height (written by hand: header sizes are the point)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes([gray]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _image_folder(root, classes, images_per_class=3, extra=None):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(images_per_class):
            (root / name / f"{i}.png").write_bytes(_png(8, 8, gray=40 * i))
    for rel, data in (extra or {}).items():
        (root / rel).write_bytes(data)
    return root


@maker
def make_empty_folder(folder):
    (folder / "empty_folder").mkdir()
    return folder / "empty_folder"


@maker
def make_folder_one_class(folder):
    return _image_folder(folder / "one_class_folder", ["cat"])


@maker
def make_folder_two_classes(folder):
    return _image_folder(folder / "two_class_folder", ["cat", "dog"])


@maker
def make_folder_no_images(folder):
    root = _image_folder(folder / "no_images_folder", ["cat"], extra={})
    (root / "dog").mkdir()
    (root / "dog" / "readme.txt").write_text("no pictures here")
    return root


@maker
def make_folder_corrupt_image(folder):
    return _image_folder(folder / "corrupt_folder", ["cat", "dog"], extra={"dog/broken.png": b"not a png at all"})


@maker
def make_folder_huge_image(folder):
    """A PNG whose header declares 100000 x 100000 pixels (10 G) over a few bytes of pixel data."""
    png = bytearray(_png(1, 1))
    png[16:24] = struct.pack(">II", 100000, 100000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))  # keep the IHDR checksum valid
    return _image_folder(folder / "huge_image_folder", ["cat", "dog"], extra={"dog/huge.png": bytes(png)})


@maker
def make_folder_unreadable_image(folder):
    root = _image_folder(folder / "locked_image_folder", ["cat", "dog"])
    (root / "dog" / "1.png").chmod(0)
    return root


@maker
def make_dir_named_npz(folder):
    (folder / "dir.npz").mkdir()
    return folder / "dir.npz"


@maker
def make_notes_txt(folder):
    path = folder / "notes.txt"
    path.write_text("just some notes\n")
    return path


@maker
def make_empty_keras(folder):
    path = folder / "empty.keras"
    path.write_bytes(b"")
    return path


@maker
def make_empty_h5(folder):
    path = folder / "empty.h5"
    path.write_bytes(b"")
    return path


@maker
def make_text_keras(folder):
    path = folder / "text.keras"
    path.write_text("this is not a zip archive\n")
    return path


@maker
def make_plain_dir(folder):
    (folder / "plain_dir").mkdir()
    (folder / "plain_dir" / "weights.bin").write_bytes(b"\0" * 16)
    return folder / "plain_dir"


@maker
def make_unreadable_keras(folder):
    path = folder / "locked.keras"
    path.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive; unreadable before it is invalid
    path.chmod(0)
    return path


@maker
def make_empty_tflite(folder):
    path = folder / "empty.tflite"
    path.write_bytes(b"")
    return path


@maker
def make_text_tflite(folder):
    path = folder / "text.tflite"
    path.write_text("definitely not a flatbuffer\n")
    return path


def _toml(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path


@maker
def make_recipe_unknown_key(folder):
    return _toml(folder, "unknown_key.toml", 'quantization = "int8"\ncalibration_sampels = 100\n')


@maker
def make_recipe_wrong_type(folder):
    return _toml(folder, "wrong_type.toml", 'quantization = "int8"\ncalibration_samples = "many"\n')


@maker
def make_recipe_invalid_toml(folder):
    return _toml(folder, "invalid.toml", 'quantization = "int8\nqat = yes\n')


@maker
def make_recipe_empty(folder):
    return _toml(folder, "empty_recipe.toml", "")


@maker
def make_recipe_int8_key_in_fp16(folder):
    return _toml(folder, "fp16_calibrated.toml", 'quantization = "fp16"\ncalibration_samples = 100\n')


@maker
def make_recipe_dir(folder):
    (folder / "recipe_dir").mkdir()
    return str(folder / "recipe_dir") + "/"


@maker
def make_unreadable_recipe(folder):
    path = _toml(folder, "locked_recipe.toml", 'quantization = "f32"\n')
    path.chmod(0)
    return path


@maker
def make_profile_unknown_key(folder):
    return _toml(folder, "unknown_key_profile.toml", 'kind = "host"\nthreds = 4\n')


@maker
def make_profile_wrong_type(folder):
    return _toml(folder, "wrong_type_profile.toml", 'kind = "host"\nthreads = "two"\n')


@maker
def make_profile_invalid_toml(folder):
    return _toml(folder, "invalid_profile.toml", "kind = host\n")


@maker
def make_profile_serial_injection(folder):
    return _toml(folder, "phone.toml", 'kind = "adb"\nserial = "emulator-5554; reboot"\nbenchmark_model = "bm"\n')


@maker
def make_profile_host_injection(folder):
    return _toml(folder, "board.toml", 'kind = "ssh"\nhost = "-oProxyCommand=touch /tmp/pwned"\n')


@maker
def make_profile_remote_dir_injection(folder):
    return _toml(folder, "board_dir.toml", 'kind = "ssh"\nhost = "board"\nremote_dir = "/tmp/$(reboot)"\n')


@maker
def make_profile_path_control_char(folder):
    return _toml(folder, "phone_path.toml", 'kind = "adb"\nbenchmark_model = "bm\\nrm -rf ~"\n')


@maker
def make_zip_not_a_bundle(folder):
    path = folder / "not_a_bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi\n")
    return path


@maker
def make_users_folder(folder):
    (folder / "my_results").mkdir()
    (folder / "my_results" / "thesis.tex").write_text("\\documentclass{article}\n")
    return folder / "my_results"


@maker
def make_empty_labels(folder):
    path = folder / "empty_labels.txt"
    path.write_text("")
    return path


@maker
def make_three_labels(folder):
    path = folder / "three_labels.txt"
    path.write_text("cat\ndog\nbird\n")
    return path


@maker
def make_labels_blank_line(folder):
    path = folder / "blank_line_labels.txt"
    path.write_text("".join(f"{name}\n" for name in "abcd") + "\n" + "".join(f"{name}\n" for name in "efghi"))
    return path


@maker
def make_labels_binary(folder):
    path = folder / "binary_labels.txt"
    path.write_bytes(b"\xff\xfe\x00\x80" * 10)
    return path


@maker
def make_labels_dir(folder):
    (folder / "labels_dir").mkdir()
    return folder / "labels_dir"


@maker
def make_existing_file(folder):
    path = folder / "out_is_a_file"
    path.write_text("keep me\n")
    return path


# --- the catalogue -------------------------------------------------------------------------------------

CASES = [
    # .npz data
    ("npz-empty-file", "train resnet20 --data {empty_npz} --epochs 1 --out {out}", "empty.npz", "empty"),
    ("npz-no-arrays", "train resnet20 --data {npz_no_arrays} --epochs 1 --out {out}", "no_arrays.npz",
     "x and y missing"),
    ("npz-missing-y", "train resnet20 --data {npz_only_x} --epochs 1 --out {out}", "only_x.npz", "y missing"),
    ("npz-missing-x", "train resnet20 --data {npz_only_y} --epochs 1 --out {out}", "only_y.npz", "x missing"),
    ("npz-x-strings", "train resnet20 --data {npz_string_x} --epochs 1 --out {out}", "string_x.npz",
     "expected numbers"),
    ("npz-x-objects", "train resnet20 --data {npz_object_x} --epochs 1 --out {out}", "object_x.npz",
     "expected numbers"),
    ("npz-x-complex", "convert {keras} --recipe int8-ptq --data {npz_complex_x} --out {out}", "complex_x.npz",
     "expected numbers"),
    ("npz-wrong-sample-shape", "check {tflite} --reference {keras} --data {npz_5x5}", "five_by_five.npz",
     "expects (8, 8, 1)"),
    ("npz-wrong-rank", "convert {keras} --recipe f32 --data {npz_flat} --out {out}", "flat.npz", "wrong rank"),
    ("npz-nan-calibration-data", "convert {keras} --recipe int8-ptq --data {npz_nan} --out {out}", "nan_x.npz",
     "NaN"),
    ("npz-inf-calibration-data", "convert {keras} --recipe int8-qat --data {npz_inf} --out {out}", "inf_x.npz",
     "Inf"),
    ("npz-float64-overflows-float32", "convert {keras} --recipe int8-ptq --data {npz_float64_overflow} --out {out}",
     "overflow_x.npz", "Inf"),
    ("npz-zero-samples", "train resnet20 --data {npz_zero_samples} --epochs 1 --out {out}", "zero_samples.npz",
     "empty"),
    ("npz-one-class", "train resnet20 --data {npz_one_class} --epochs 1 --out {out}", "one_class.npz",
     "at least 2 classes"),
    ("npz-label-out-of-range", "train resnet20 --data {npz_label_out_of_range} --epochs 1 --out {out}",
     "label_99.npz", "out of range"),
    ("npz-negative-label", "check {tflite} --reference {keras} --data {npz_negative_label}", "label_minus_1.npz",
     "negative"),
    ("npz-labels-fewer-than-samples", "train resnet20 --data {npz_short_y} --epochs 1 --out {out}", "short_y.npz",
     "20 labels"),
    ("npz-classes-differ-from-model", "convert {keras} --recipe int8-ptq --data {npz_three_classes} --out {out}",
     "three_classes.npz", "outputs 10"),
    ("npz-huge-declared-shape", "train resnet20 --data {npz_huge_shape} --epochs 1 --out {out}", "huge_shape.npz",
     "declares"),
    ("npz-is-a-single-npy", "train resnet20 --data {npy_named_npz} --epochs 1 --out {out}", "single_array.npz",
     "single .npy"),
    pytest.param("npz-unreadable", "train resnet20 --data {unreadable_npz} --epochs 1 --out {out}", "locked.npz",
                 "ermission denied", marks=needs_non_root),
    # image folders
    ("folder-empty", "train resnet20 --data {empty_folder} --epochs 1 --out {out}", "empty_folder", "empty"),
    ("folder-one-class", "train resnet20 --data {folder_one_class} --epochs 1 --out {out}", "one_class_folder",
     "at least 2 classes"),
    ("folder-class-without-images", "train resnet20 --data {folder_no_images} --epochs 1 --out {out}",
     "no_images_folder", "no images"),
    ("folder-corrupt-image", "train resnet20 --data {folder_corrupt_image} --epochs 1 --out {out}", "broken.png",
     "cannot read image"),
    ("folder-huge-declared-image", "train resnet20 --data {folder_huge_image} --epochs 1 --out {out}", "huge.png",
     "cannot read image"),
    pytest.param("folder-unreadable-image", "train resnet20 --data {folder_unreadable_image} --epochs 1 --out {out}",
                 "1.png", "ermission denied", marks=needs_non_root),
    # data specs
    ("data-missing-npz", "train resnet20 --data {in}/nope.npz --epochs 1 --out {out}", "nope.npz", "not found"),
    ("data-missing-path", "check {tflite} --reference {keras} --data {in}/nowhere", "nowhere", "no such file"),
    ("data-wrong-extension", "train resnet20 --data {csv_data} --epochs 1 --out {out}", "data.csv", "unsupported"),
    ("data-empty-spec", "train resnet20 --data '' --epochs 1 --out {out}", "data spec", "empty"),
    ("data-directory-named-npz", "train resnet20 --data {dir_named_npz} --epochs 1 --out {out}", "dir.npz", "empty"),
    # shapes and numbers on the command line
    ("input-shape-huge", "train resnet20 --data digits --input-shape 100000,100000,3 --epochs 1 --out {out}",
     "(100000, 100000, 3)", "memory"),
    ("input-shape-huge-folder", "train resnet20 --data {folder_two_classes} --input-shape 50000,50000,1 --epochs 1 "
     "--out {out}", "(50000, 50000, 1)", "memory"),
    ("input-shape-syntax", "train resnet20 --data digits --input-shape 16x16x1 --epochs 1 --out {out}",
     "--input-shape", "16x16x1"),
    ("input-shape-zero", "convert resnet20 --recipe f32 --data digits --input-shape 16,0,1 --out {out}",
     "--input-shape", "positive integers"),
    ("input-shape-wrong-rank", "train resnet20 --data digits --input-shape 16,16 --epochs 1 --out {out}",
     "digits", "wrong rank for the model input shape (16, 16)"),
    ("input-shape-for-saved-model", "convert {keras} --recipe f32 --data digits --input-shape 8,8,1 --out {out}",
     "--input-shape", "registry models"),
    ("epochs-negative", "train resnet20 --data digits --epochs -1 --out {out}", "--epochs", "0 or more"),
    ("float-epochs-not-a-number", "convert resnet20 --recipe f32 --data digits --float-epochs two --out {out}",
     "--float-epochs", "integer"),
    ("seed-negative", "train resnet20 --data digits --input-shape 8,8,1 --seed -1 --epochs 1 --out {out}",
     "--seed", "0.."),
    ("runs-zero", "check {tflite} --reference {keras} --data digits --runs 0", "--runs", "1 or more"),
    # models
    ("model-unknown-registry-name", "train se_resnt20 --data digits --epochs 1 --out {out}", "se_resnt20",
     "did you mean"),
    ("model-1d-on-image-data", "train resnet1d_18 --data digits --epochs 1 --out {out}", "input_shape",
     "(length, channels)"),
    ("model-empty-name", "convert '' --recipe f32 --data digits --out {out}", "model", "unknown model"),
    ("model-txt", "convert {notes_txt} --recipe f32 --data digits --out {out}", "notes.txt", "not a Keras model"),
    ("model-empty-keras", "convert {empty_keras} --recipe f32 --data digits --out {out}", "empty.keras", "empty"),
    ("model-empty-h5", "convert {empty_h5} --recipe int8-qat --data digits --out {out}", "empty.h5", "empty"),
    ("model-text-keras", "convert {text_keras} --recipe f32 --data digits --out {out}", "text.keras",
     "cannot be loaded"),
    ("model-directory", "convert {plain_dir} --recipe f32 --data digits --out {out}", "plain_dir",
     "not a Keras model"),
    pytest.param("model-unreadable", "convert {unreadable_keras} --recipe f32 --data digits --out {out}",
                 "locked.keras", "ermission denied", marks=needs_non_root),
    ("train-saved-model-file", "train {keras} --data digits --epochs 1 --out {out}", "model.keras", "registry"),
    # check's inputs
    ("check-reference-not-a-model", "check {tflite} --reference {notes_txt} --data digits", "notes.txt",
     "not a Keras model"),
    ("check-reference-is-tflite", "check {tflite} --reference {tflite} --data digits", "model.tflite",
     "TFLite model"),
    # .tflite inputs (simple ones; damaged flatbuffers are tested with the structural verifier)
    ("tflite-txt-as-model", "check {notes_txt} --reference {keras} --data digits", "notes.txt",
     "not a TFLite model"),
    ("tflite-empty", "bench {empty_tflite} --runs 2 --no-progress", "empty.tflite", "not a TFLite model"),
    ("tflite-text", "compat {text_tflite} --delegate gpu", "text.tflite", "not a TFLite model"),
    # recipes
    ("recipe-unknown-name", "convert resnet20 --recipe int9 --data digits --out {out}", "int9", "unknown recipe"),
    ("recipe-empty-name", "convert resnet20 --recipe '' --data digits --out {out}", "recipe", "empty"),
    ("recipe-unknown-key", "convert resnet20 --recipe {recipe_unknown_key} --data digits --out {out}",
     "unknown_key.toml", "calibration_sampels: unknown key"),
    ("recipe-wrong-type", "convert resnet20 --recipe {recipe_wrong_type} --data digits --out {out}",
     "wrong_type.toml", "expected an integer"),
    ("recipe-invalid-toml", "convert resnet20 --recipe {recipe_invalid_toml} --data digits --out {out}",
     "invalid.toml", "not valid TOML"),
    ("recipe-empty-file", "convert resnet20 --recipe {recipe_empty} --data digits --out {out}", "empty_recipe.toml",
     "quantization: missing"),
    ("recipe-key-of-another-quantization", "convert resnet20 --recipe {recipe_int8_key_in_fp16} --data digits "
     "--out {out}", "fp16_calibrated.toml", "only applies to int8"),
    ("recipe-is-a-directory", "convert resnet20 --recipe {recipe_dir} --data digits --out {out}", "recipe_dir",
     "directory"),
    pytest.param("recipe-unreadable", "convert resnet20 --recipe {unreadable_recipe} --data digits --out {out}",
                 "locked_recipe.toml", "ermission denied", marks=needs_non_root),
    # device profiles
    ("profile-unknown-name", "bench {tflite} --device pixel9 --runs 2 --no-progress", "pixel9",
     "unknown device profile"),
    ("profile-unknown-key", "bench {tflite} --device {profile_unknown_key} --runs 2 --no-progress",
     "unknown_key_profile.toml", "threds: unknown key"),
    ("profile-wrong-type", "bench {tflite} --device {profile_wrong_type} --runs 2 --no-progress",
     "wrong_type_profile.toml", "expected an integer"),
    ("profile-invalid-toml", "bench {tflite} --device {profile_invalid_toml} --runs 2 --no-progress",
     "invalid_profile.toml", "not valid TOML"),
    ("profile-serial-injection", "bench {tflite} --device {profile_serial_injection} --runs 2 --no-progress",
     "phone.toml", "serial"),
    ("profile-host-injection", "bench {tflite} --device {profile_host_injection} --runs 2 --no-progress",
     "board.toml", "host"),
    ("profile-path-control-char", "bench {tflite} --device {profile_path_control_char} --runs 2 --no-progress",
     "phone_path.toml", "control character"),
    ("profile-remote-dir-injection", "bench {tflite} --device {profile_remote_dir_injection} --runs 2 --no-progress",
     "board_dir.toml", "remote_dir"),
    ("compat-android-api-out-of-range", "compat {tflite} --delegate nnapi --android-api 5", "--android-api",
     "not an Android API level"),
    # bundles
    ("bundle-labels-empty", "bundle {tflite} --target android --labels {empty_labels} --out {out}",
     "empty_labels.txt", "0 labels"),
    ("bundle-labels-wrong-count", "bundle {tflite} --target ios --labels {three_labels} --out {out}",
     "three_labels.txt", "3 labels"),
    ("bundle-labels-blank-line", "bundle {tflite} --target android --labels {labels_blank_line} --out {out}",
     "blank_line_labels.txt", "line 5 is empty"),
    ("bundle-labels-not-text", "bundle {tflite} --target android --labels {labels_binary} --out {out}",
     "binary_labels.txt", "UTF-8"),
    ("bundle-labels-directory", "bundle {tflite} --target android --labels {labels_dir} --out {out}", "labels_dir",
     "cannot read"),
    ("bundle-name-escapes-folder", "bundle {tflite} --target android --name ../../evil --out {out}", "--name",
     "not a usable bundle name"),
    ("bundle-out-is-a-file", "bundle {tflite} --target android --out {existing_file}", "out_is_a_file",
     "not a directory"),
    ("verify-bundle-not-a-bundle", "verify-bundle {plain_dir}", "plain_dir", "not a bundle"),
    ("verify-bundle-zip-not-a-bundle", "verify-bundle {zip_not_a_bundle}", "not_a_bundle.zip", "not a bundle"),
    ("verify-bundle-missing", "verify-bundle {in}/no_bundle_here", "no_bundle_here", "no such bundle"),
    # outputs
    ("train-out-is-a-file", "train resnet20 --data digits --input-shape 8,8,1 --epochs 1 --out {existing_file}",
     "out_is_a_file", "not a directory"),
    ("convert-out-is-a-file", "convert resnet20 --recipe f32 --data digits --input-shape 8,8,1 --float-epochs 1 "
     "--out {existing_file}", "out_is_a_file", "not a directory"),
    ("convert-out-is-a-users-folder", "convert resnet20 --recipe f32 --data digits --input-shape 8,8,1 "
     "--float-epochs 1 --out {users_folder}", "my_results", "not empty"),
]


# --- shared valid inputs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A tiny float classifier (8x8x1 -> 10 logits) as .keras and as f32 .tflite, and a valid .npz for it."""
    from edge_attn._keras import keras
    from edge_attn.convert import convert_model, load_recipe

    folder = tmp_path_factory.mktemp("shared")
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.save(folder / "model.keras")
    (folder / "model.tflite").write_bytes(convert_model(model, load_recipe("f32")))
    x, y = _xy()
    _npz(folder / "good.npz", x=x, y=y)
    return {"folder": folder, "keras": folder / "model.keras", "tflite": folder / "model.tflite",
            "good_npz": folder / "good.npz"}


class _Inputs(dict):
    """Format fields for a case's argv: shared inputs, ``in``/``out``, and bad inputs made on first use."""

    def __init__(self, folder, shared_inputs):
        super().__init__({"in": folder, "out": folder.parent / "out", **shared_inputs})
        self.folder = folder

    def __missing__(self, key):
        self[key] = MAKERS[key](self.folder)
        return self[key]


def build_argv(template, inputs):
    return [string.Formatter().vformat(token, (), inputs) for token in shlex.split(template)]


def snapshot(*roots):
    """Every file and folder under ``roots`` with its size and modification time."""
    state = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                state[path] = (info.st_size, info.st_mtime_ns) if name in files else "dir"
    return state


@pytest.fixture
def no_work(monkeypatch):
    """Record every call to float training, quantize-aware wrapping or conversion: a bad input must be
    refused before any of them starts."""
    calls = []

    def guard(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise RuntimeError(f"{name} called before the bad input was refused")
        return called

    for module, name in ((edge_attn.training, "fit"), (edge_attn.qat, "quantize_aware"),
                         (edge_attn.qat, "qat_finetune"), (edge_attn.convert.converter, "convert_model")):
        monkeypatch.setattr(module, name, guard(f"{module.__name__}.{name}"))
    return calls


def run_main(argv):
    """``main(argv)``'s exit code; argparse's usage errors leave through SystemExit."""
    try:
        return main(argv)
    except SystemExit as done:
        return done.code


def assert_names_the_problem(line, named, says):
    """``line`` is an error naming ``named`` and then saying ``says`` about it (after the name, so that a
    file called ``empty.npz`` cannot stand in for the word "empty" in the problem)."""
    assert "error" in line and named in line, line
    assert says in line.split(named, 1)[1], line


def stderr_lines(stderr):
    """The stderr lines (blank ones dropped): in-process, TensorFlow's native log lines go to file
    descriptor 2, not to the ``sys.stderr`` that capsys captures, so nothing is filtered here."""
    return [line for line in stderr.splitlines() if line.strip()]


def _param(case):
    """A CASES row as a pytest parameter with the row's id (rows with marks are pytest.param already)."""
    values, marks = (case.values, case.marks) if hasattr(case, "marks") else (case, ())
    return pytest.param(*values, marks=marks, id=values[0])


@pytest.mark.parametrize("case_id, template, named, says", [_param(case) for case in CASES])
def test_bad_input_exits_2_with_one_line_naming_it(case_id, template, named, says, tmp_path, shared, capsys,
                                                   no_work, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    inputs = _Inputs(folder, {k: v for k, v in shared.items() if k != "folder"})
    argv = build_argv(template, inputs)
    system_tmp = tmp_path / "system-tmp"  # temporary files the product makes must be gone afterwards too
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.chdir(tmp_path)  # relative outputs would land here, inside the snapshot
    capsys.readouterr()
    before = snapshot(tmp_path, shared["folder"])

    code = run_main(argv)

    out, err = capsys.readouterr()
    lines = stderr_lines(err)
    assert not no_work, f"work started before the bad input was refused: {no_work}"
    assert code == 2, f"exit {code}; stderr: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert_names_the_problem(lines[0], named, says)
    assert out == "" and "Traceback" not in err
    assert snapshot(tmp_path, shared["folder"]) == before, "files were created, changed or left behind"
    assert not os.path.exists(inputs["out"])


# --- the same commands with good inputs: a case cannot pass because its command line is malformed ----


# check's budgets are set so that the outcome is known whatever the model's accuracy: any result passes the
# first (a drop of at most 100 points, agreement >= 0), none can pass the second (agreement > 100%).
GOOD = [
    ("check", "check {tflite} --reference {keras} --data {good_npz} --runs 2 --max-drop 100 --min-agreement 0 "
              "--min-snr-db -1000", 0),
    ("check-missed-budget", "check {tflite} --reference {keras} --data {good_npz} --runs 2 --min-agreement 1.01", 1),
    ("bench", "bench {tflite} --device host --runs 2 --no-progress", 0),
    ("compat", "compat {tflite} --delegate gpu", 0),
    ("bundle", "bundle {tflite} --target android --out {out}", 0),
]


@pytest.mark.parametrize("command, template, expected", GOOD, ids=[g[0] for g in GOOD])
def test_good_inputs_are_accepted(command, template, expected, tmp_path, shared, capsys):
    inputs = {"out": tmp_path / "out", **{k: v for k, v in shared.items() if k != "folder"}}
    code = run_main(build_argv(template, inputs))
    out, err = capsys.readouterr()
    assert code == expected, err
    if command == "check-missed-budget":
        assert "budget: FAILED: top-1 agreement" in out and "below the minimum 101.00%" in out
    if command == "bundle":
        assert run_main(["verify-bundle", str(inputs["out"])]) == 0


REACHES_WORK = [
    ("train", "train resnet20 --data {good_npz} --epochs 1 --out {out} --no-progress", "edge_attn.training.fit"),
    ("convert-registry", "convert resnet20 --recipe int8-qat --data {good_npz} --out {out} --no-progress",
     "edge_attn.training.fit"),
    ("convert-qat", "convert {keras} --recipe int8-qat --data {good_npz} --out {out} --no-progress",
     "edge_attn.qat.quantize_aware"),
    ("convert-float", "convert {keras} --recipe f32 --data {good_npz} --out {out} --no-progress",
     "edge_attn.convert.converter.convert_model"),
]


@pytest.mark.parametrize("command, template, first_work", REACHES_WORK, ids=[r[0] for r in REACHES_WORK])
def test_good_inputs_reach_the_work_the_guard_stops(command, template, first_work, shared, tmp_path, capsys,
                                                      no_work):
    """The no-work guard sees each kind of work: with valid inputs, train and convert get to it."""
    inputs = {"out": tmp_path / "out", **{k: v for k, v in shared.items() if k != "folder"}}
    try:
        run_main(build_argv(template, inputs))
    except RuntimeError as stopped:
        assert "called before" in str(stopped)
    assert no_work == [first_work]


def test_debug_shows_the_exception_instead(shared, tmp_path, capsys):
    code = main(["convert", str(shared["keras"]), "--recipe", "int9", "--data", "digits", "--out", str(tmp_path / "o"),
                 "--debug"])
    err = capsys.readouterr().err
    # --debug adds the traceback (BadInput raised where the recipe was read) and keeps the contract's exit code
    assert code == 2 and "Traceback" in err and "BadInput" in err and "unknown recipe" in err.splitlines()[-1]
    assert not (tmp_path / "o").exists()


# --- through a real process ------------------------------------------------------------------------------

# TensorFlow's C++ runtime writes to file descriptor 2 while it is imported, in its own log format
# ("2026-01-01 12:00:00.000000: I tensorflow/..." and absl's "I0000 00:00:... file.cc:12] ..."), before
# and outside of anything edge_attn prints. Only lines in exactly those formats are ignored.
NATIVE_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\] "  # TensorFlow's own C++ logging
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "  # absl before InitializeLog: seconds since the epoch
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$)")

REAL_PROCESS_CASES = ["npz-nan-calibration-data", "recipe-invalid-toml", "model-empty-keras"]


@pytest.mark.parametrize("case_id", REAL_PROCESS_CASES)
def test_real_process_prints_one_line_and_no_traceback(case_id, tmp_path, shared):
    _, template, named, says = next(p.values for p in map(_param, CASES) if p.id == case_id)
    folder = tmp_path / "in"
    folder.mkdir()
    inputs = _Inputs(folder, {k: v for k, v in shared.items() if k != "folder"})
    argv = build_argv(template, inputs)
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "-m", "edge_attn.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not NATIVE_LOG_LINE.match(line)]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert_names_the_problem(lines[0], named, says)
    assert "Traceback" not in done.stderr
    assert snapshot(tmp_path) == before
