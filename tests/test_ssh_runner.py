"""The ssh runner against a real OpenSSH server on 127.0.0.1 (tests/sshd.py): the "board" is this
machine, its Python the one running the tests. Outputs are compared with LiteRT run locally.
"""

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_attn.convert import inspect_tflite
from edge_attn.devices import parse_profile
from edge_attn.errors import BadInput
from edge_attn.litert import make_interpreter, run
from edge_attn.runners.ssh import SshRunner
from sshd import free_port, require_openssh, running_sshd

CONNECT_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_openssh()
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny conv net converted to float32 and to post-training int8 TFLite, and samples for it."""
    from edge_attn._keras import keras
    from edge_attn.convert import convert_model, load_recipe

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3)(x)
    model = keras.Model(inputs, outputs)
    samples = np.random.default_rng(0).uniform(0, 1, (6, 8, 8, 1)).astype(np.float32)
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for recipe in ("f32", "int8-ptq"):
        data = convert_model(model, load_recipe(recipe), representative=(s[np.newaxis] for s in samples))
        paths[recipe] = folder / f"tiny-{recipe}.tflite"
        paths[recipe].write_bytes(data)
    return paths, samples


@pytest.fixture
def board(server, tmp_path):
    """A profile for the test server, as edge_attn.devices loads it, and the folders it uses."""
    remote_dir = tmp_path / "board-dir"
    profile = parse_profile({"kind": "ssh", "name": "loopback-board", "host": server.host, "user": server.user,
                             "port": server.port, "identity_file": server.key, "python": sys.executable,
                             "remote_dir": str(remote_dir), "connect_timeout_s": CONNECT_TIMEOUT_S,
                             "timeout_s": 60.0}, str(tmp_path / "board.toml"))
    return profile, remote_dir, tmp_path / "state"


def runner_for(board, **changes):
    profile, _, state = board
    return SshRunner(dataclasses.replace(profile, **changes), state_dir=state)


def test_benchmark_on_the_board(board, models, server):
    paths, _ = models
    _, remote_dir, state = board
    result = runner_for(board).benchmark(paths["f32"], delegate="xnnpack", threads=1, runs=20, warmup=2)
    assert (result.device, result.delegate, result.threads, result.runs, result.available) == \
        ("loopback-board", "xnnpack", 1, 20, True)
    assert 0 < result.min_ms <= result.p50_ms <= result.p90_ms <= result.max_ms
    assert result.min_ms <= result.mean_ms <= result.max_ms
    assert "XNNPACK" in result.delegation
    assert result.peak_memory_mb is not None and result.peak_memory_mb >= 0
    assert "measured on the board" in result.note
    # the board timed the cold start and every run with the copied timing loop, and described itself
    assert result.cold_start_ms > 0 and len(result.times_ms) == 20
    assert result.warm.runs + result.warm.warmup_runs_dropped == 20
    ops = len(inspect_tflite(paths["f32"]).ops)
    assert (result.graph.accelerated_ops, result.graph.total_ops, result.graph.partitions) == (ops, ops, 1)
    local_cpu = subprocess.run([sys.executable, "-c", "from edge_attn.runners import machine; "
                                "print(machine.fingerprint()['cpu'])"], capture_output=True, text=True).stdout.strip()
    info = result.device_info
    assert (info.name, info.cpu, info.runtime, info.emulated) == ("loopback-board", local_cpu, "ai-edge-litert", False)
    assert result.problems == ()
    scripts = [p.name for p in remote_dir.glob("scripts-*/*.py")]
    assert sorted(scripts) == ["_compat.py", "machine.py", "remote_bench.py", "timing.py"]  # the script, its siblings
    # the model was copied under its content's name; the host key went to our known_hosts, not ~/.ssh
    digest = hashlib.sha256(paths["f32"].read_bytes()).hexdigest()[:16]
    assert (remote_dir / f"model-{digest}.tflite").read_bytes() == paths["f32"].read_bytes()
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{server.port}", "-f", str(state / "known_hosts")],
                           capture_output=True, text=True, timeout=30)
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout  # works with hashed entries too


def test_builtin_kernels_and_android_only_delegate(board, models):
    paths, _ = models
    result = runner_for(board).benchmark(paths["f32"], delegate="cpu", threads=1, runs=5, warmup=0)
    assert result.available and result.runs == 5 and result.delegation == "builtin CPU kernels (no delegate)"
    # NNAPI is answered without the board: even an unreachable one
    nnapi = runner_for(board, port=free_port()).benchmark(paths["f32"], delegate="nnapi")
    assert not nnapi.available and np.isnan(nnapi.p50_ms) and "Android" in nnapi.note


def test_gpu_without_an_adapter_on_the_board_is_unavailable(board, models, tmp_path):
    """The board's Python is started with the Vulkan loader pointed at no driver, so there is no GPU adapter
    whatever this machine has: the result says why instead of raising."""
    wrapper = tmp_path / "python-without-gpu"
    wrapper.write_text(f"#!/bin/sh\nVK_ICD_FILENAMES=/nonexistent.json VK_DRIVER_FILES=/nonexistent.json "
                       f"exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    paths, _ = models
    result = runner_for(board, python=str(wrapper)).benchmark(paths["f32"], delegate="gpu", threads=1, runs=3, warmup=1)
    assert not result.available and np.isnan(result.p50_ms) and result.runs == 0
    assert result.note.startswith("LiteRT CompiledModel with the GPU accelerator could not be created on the board")
    assert "adapter" in result.note.lower()
    assert result.device_info.runtime == "ai-edge-litert"  # the board still described itself


def test_emulated_board_says_its_latency_is_not_a_device_figure(board, models):
    paths, _ = models
    result = runner_for(board, emulated=True).benchmark(paths["f32"], delegate="cpu", threads=1, runs=5, warmup=0)
    assert result.available and result.device_info.emulated is True and result.to_dict()["device"]["emulated"]
    assert result.problems == ("emulated board: the latency is not a device figure",)


@pytest.mark.parametrize("recipe", ["f32", "int8-ptq"])
def test_run_outputs_equal_local_litert_exactly(board, models, recipe):
    paths, samples = models
    on_board = runner_for(board).run_outputs(paths[recipe], samples)
    local = run(make_interpreter(paths[recipe]), samples)
    assert on_board.shape == (len(samples), 3) and on_board.dtype == np.float32
    np.testing.assert_array_equal(on_board, local)


def test_run_outputs_checks_the_samples(board, models):
    paths, samples = models
    with pytest.raises(BadInput, match="shape"):
        runner_for(board).run_outputs(paths["f32"], samples[:, :4])


def test_unreachable_port_fails_fast(board, models):
    paths, _ = models
    start = time.monotonic()
    with pytest.raises(BadInput) as caught:
        runner_for(board, port=free_port()).benchmark(paths["f32"])
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + 10
    assert "loopback-board" in caught.value.what and "refused" in caught.value.problem
    assert "\n" not in str(caught.value)


def test_refused_key_is_bad_input(board, models, server):
    paths, _ = models
    with pytest.raises(BadInput, match="Permission denied"):
        runner_for(board, identity_file=server.other_key).benchmark(paths["f32"])


def test_missing_remote_python_or_litert_is_bad_input(board, models):
    paths, _ = models
    with pytest.raises(BadInput, match="/opt/no-such-python/bin/python3.*not found"):
        runner_for(board, python="/opt/no-such-python/bin/python3").benchmark(paths["f32"])
    bare_python = shutil.which("python3", path="/usr/bin")
    if bare_python and subprocess.run([bare_python, "-c", "import numpy, ai_edge_litert"],
                                      capture_output=True).returncode != 0:
        with pytest.raises(BadInput, match="pip install ai-edge-litert"):
            runner_for(board, python=bare_python).benchmark(paths["f32"])


@pytest.mark.parametrize("field, value", [
    ("host", "127.0.0.1;touch /tmp/edge_attn_pwned"), ("host", "-oProxyCommand=touch /tmp/edge_attn_pwned"),
    ("host", "$(touch /tmp/edge_attn_pwned)"), ("user", "root -oProxyCommand=x"), ("user", "-l"),
    ("user", "a`id`"), ("python", "python3; touch /tmp/edge_attn_pwned"), ("python", "-c"),
    ("remote_dir", "/tmp/x; rm -rf /tmp/y"), ("remote_dir", "relative/dir"), ("remote_dir", "/tmp/../etc"),
])
def test_injection_in_profile_values_is_refused(board, field, value):
    with pytest.raises(BadInput, match=field):
        runner_for(board, **{field: value})
    assert not os.path.exists("/tmp/edge_attn_pwned")
