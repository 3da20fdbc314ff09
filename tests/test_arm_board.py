"""The ssh runner, ``edge-attn bench --device`` and ``edge-attn check --device`` on emulated aarch64 boards.

The boards are set up by ``scripts/setup_arm_board.sh`` (root; ``.ci/run`` does it) and found through
``EDGE_ATTN_ARM_BOARDS``, the folder holding their profiles (``pi4.toml``: Cortex-A72, ``pi5.toml``:
Cortex-A76, ``qemu-max.toml``: qemu's default ``max`` CPU). Each is an arm64 Debian userland whose Python
and LiteRT aarch64 kernels run under qemu-user, reached over real ssh on 127.0.0.1. The reference for the
numbers is LiteRT's x86 XNNPACK in this process: int8 outputs of Cortex-A72/A76 kernels equal it bit for bit
(measured, docs/targets-arm.md), those under ``max`` do not. Without the boards the tests are skipped,
except under CI (``CI`` set), where a board that did not come up fails the run.
"""

import json
import os
import platform
import re

import numpy as np
import pytest

from edge_attn.cli import main
from edge_attn.devices import load_profile
from edge_attn.litert import make_interpreter, run
from edge_attn.runners.ssh import SshRunner

BOARDS_ENV = "EDGE_ATTN_ARM_BOARDS"
EXPECTED_CPU = {"pi4": ("Cortex-A72", "cortex-a72"), "pi5": ("Cortex-A76", "cortex-a76"), "qemu-max": ("Cortex-A72", "max")}
NO_BUDGET = ["--max-drop", "100", "--min-agreement", "0", "--min-snr-db", "0"]


def board_profile(name):
    """The path of board ``name``'s profile; skips (fails under CI) when the boards are not set up."""
    folder = os.environ.get(BOARDS_ENV)
    path = os.path.join(folder, f"{name}.toml") if folder else None
    if path is None or not os.path.isfile(path):
        message = (f"emulated ARM board {name!r} not set up ({BOARDS_ENV}={folder!r}): "
                   f"as root, scripts/setup_arm_board.sh DIR and export {BOARDS_ENV}=DIR")
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must bring the boards up)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module", autouse=True)
def boards_set_up():
    """Before any model is built: skip (fail under CI) without the boards."""
    board_profile("pi4")


@pytest.fixture(autouse=True)
def own_known_hosts(tmp_path_factory, monkeypatch):
    """The runner records board host keys under $XDG_STATE_HOME: a test folder, not the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "state"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The zoo's se_resnet20 on 8x8x1 inputs (float Keras, f32 and int8 TFLite) and a labelled .npz."""
    from edge_attn._keras import keras
    from edge_attn.convert import convert_model, load_recipe
    from edge_attn.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model("se_resnet20", input_shape=(8, 8, 1), classes=3)
    samples = np.random.default_rng(0).uniform(0, 1, (150, 8, 8, 1)).astype(np.float32)
    logits = model.predict(samples, verbose=0)
    labels = (logits - logits.mean(axis=0)).argmax(axis=1)  # every class present, mostly the float model's pick
    folder = tmp_path_factory.mktemp("arm-models")
    paths = {"keras": folder / "se_resnet20.keras", "data": folder / "data.npz"}
    model.save(paths["keras"])
    np.savez(paths["data"], x=samples, y=labels)
    for recipe in ("f32", "int8-ptq"):
        paths[recipe] = folder / f"se_resnet20-{recipe}.tflite"
        paths[recipe].write_bytes(convert_model(model, load_recipe(recipe),
                                                representative=(s[np.newaxis] for s in samples[:50])))
    return paths, samples


def cli_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    return json.loads(out)


def assert_board_fingerprint(device, name):
    """The board's own fingerprint: its userland is aarch64 (uname under qemu-user), its kernel this
    machine's; its CPU is the one its /proc/cpuinfo names (one block per host CPU), QEMU_CPU what sshd set."""
    core, qemu_cpu = EXPECTED_CPU[name]
    assert (device["name"], device["arch"], device["kernel_arch"]) == (name, "aarch64", platform.machine())
    assert re.fullmatch(rf"{core} x\d+", device["cpu"]), device["cpu"]
    assert device["emulated_cpu"] == qemu_cpu and device["emulated"] is True


def test_bench_on_the_emulated_pi4_says_which_cpu_and_that_it_is_emulated(models, capsys):
    paths, _ = models
    result = cli_json(capsys, "bench", str(paths["int8-ptq"]), "--device", board_profile("pi4"), "--runs", "5",
                      "--no-progress")
    assert result["emulated"] is True
    assert [e["delegate"] for e in result["delegates"]] == ["xnnpack", "cpu"]
    for entry in result["delegates"]:
        measured = entry["model"]
        assert_board_fingerprint(measured["device"], "pi4")  # the profile does not say emulated: the board does
        assert measured["available"] and measured["runs"] == 5 and measured["p50_ms"] > 0
        assert measured["note"].startswith("EMULATED") and "not a device figure" in measured["note"]
        assert "emulated board: the latency is not a device figure" in measured["problems"]
    assert "XNNPACK" in result["delegates"][0]["model"]["delegation"]


def test_bench_text_on_the_emulated_pi4_shows_the_board_and_emulated(models, capsys):
    paths, _ = models
    code = main(["bench", str(paths["int8-ptq"]), "--device", board_profile("pi4"), "--delegate", "cpu",
                 "--runs", "3", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    device_line = next(line for line in out.splitlines() if line.startswith("device: "))
    assert "aarch64 Cortex-A72" in device_line and "QEMU_CPU=cortex-a72" in device_line
    assert f"{platform.machine()} kernel" in device_line and "EMULATED" in device_line
    assert "note cpu: EMULATED" in out


@pytest.mark.parametrize("name", ["pi4", "pi5"])
def test_int8_outputs_of_arm_kernels_equal_x86_xnnpack(models, name):
    paths, samples = models
    runner = SshRunner(load_profile(board_profile(name)))
    on_board = runner.run_outputs(paths["int8-ptq"], samples, delegate="xnnpack", threads=1)
    local = run(make_interpreter(paths["int8-ptq"]), samples)
    assert on_board.shape == local.shape == (len(samples), 3)
    np.testing.assert_array_equal(on_board, local)


def test_float32_outputs_of_arm_kernels_are_close_not_identical(models):
    """Float kernels differ across ISAs in the last bits (fused multiply-add, summation order)."""
    paths, samples = models
    on_board = SshRunner(load_profile(board_profile("pi4"))).run_outputs(paths["f32"], samples[:40], threads=1)
    local = run(make_interpreter(paths["f32"]), samples[:40])
    np.testing.assert_allclose(on_board, local, rtol=0, atol=1e-4 * float(np.abs(local).max()))


def test_qemu_max_cpu_changes_int8_outputs(models):
    """The pitfall that makes a board declare its CPU: qemu's default "max" CPU gives other int8 numbers."""
    paths, samples = models
    runner = SshRunner(load_profile(board_profile("qemu-max")))
    on_board = runner.run_outputs(paths["int8-ptq"], samples, threads=1)
    local = run(make_interpreter(paths["int8-ptq"]), samples)
    assert np.mean(on_board != local) > 0.5


def test_check_on_the_board_scores_the_boards_outputs(models, capsys):
    paths, _ = models
    common = [str(paths["int8-ptq"]), "--reference", str(paths["keras"]), "--data", str(paths["data"]), *NO_BUDGET]
    host = cli_json(capsys, "check", *common)
    pi4 = cli_json(capsys, "check", *common, "--device", board_profile("pi4"), "--runs", "3")
    qemu_max = cli_json(capsys, "check", *common, "--device", board_profile("qemu-max"), "--runs", "3")
    assert host["device"] is None
    assert pi4["device"]["kind"] == "ssh"
    assert_board_fingerprint(pi4["device"], "pi4")
    assert pi4["latency_ms"]["emulated"] is True and pi4["latency_ms"]["runs"] == 3
    # A72 kernels compute what x86 XNNPACK computes, so every score is the same ...
    assert pi4["accuracy"] == host["accuracy"]
    # ... and the scores really come from the board: under "max" its outputs differ, and so does the SNR
    assert qemu_max["accuracy"]["samples"] == host["accuracy"]["samples"]
    assert qemu_max["accuracy"]["output_snr_db"] != host["accuracy"]["output_snr_db"]
    assert_board_fingerprint(qemu_max["device"], "qemu-max")
    # where the outputs were computed, in the shape every target shares (docs/result-shape.md)
    board, here = pi4["accelerator"], host["accelerator"]
    assert list(board) == list(here) and (board["target"], here["target"]) == ("ssh", "host")
    assert board["device"]["emulated"] is True and board["device"]["name"] == pi4["device"]["name"]
    assert board["numerics"]["reference"] == "float"
    assert board["numerics"]["agreement_count"] == pi4["accuracy"]["agreement_count"]
    assert board["latency_ms"]["warm"]["p50"] == pi4["latency_ms"]["p50"]
