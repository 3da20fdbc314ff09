"""Distributed QAT (``--strategy``), per-epoch checkpoints and ``--resume``, run for real.

Every ``edge-attn convert`` here is a subprocess (logical CPU devices and multi-worker collectives must
be configured before TensorFlow starts, which it already has in this process) on the same tiny SE model,
trained once per module and saved as .keras, with the digits data and 3 QAT epochs. The runs that do
not depend on each other start together: the machine has 2 cores and a TensorFlow process on a model
this small spends most of its time in single-threaded Python.

References are independent of the code under test: the default-strategy run (what edge_attn did
before strategies existed), what ``tf.distribute`` itself hands each replica, the checkpoint file
TensorFlow named, and the two converted models run side by side in LiteRT.

Tolerance for "same accuracy within noise": 4 of the 359 evaluation samples (1.1 points) in quantized
top-1 and in agreement with the float model, and >= 98% of the samples given the same class by the two
converted models. Reshuffling the training data of the default run (``--seed 1``, ``--seed 2``) moved
quantized top-1 by 1 sample and agreement by 1, and changed 1-2 predictions; a distributed run sees the
same batches in the same order, but not bit for bit the same numbers: float sums are split differently,
and tfmot's moving-average ranges average per-replica minima/maxima instead of taking the global
batch's (measured: 1 sample of top-1, 2 changed predictions).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edge_attn.cli import main
from edge_attn.errors import BadInput

EPOCHS = 3
SAMPLES_TOLERANCE = 4  # of 359 evaluation samples; see the module docstring
TIMEOUT = 600


def _tiny_se_model(keras):
    from edge_attn.layers import SqueezeExcite

    inputs = keras.Input((8, 8, 1))
    x = inputs
    for strides in (1, 2):
        x = keras.layers.Conv2D(16, 3, strides=strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    x = SqueezeExcite(ratio=2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="tiny_se")


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """A small SE model trained on digits (8x8) to ~90% top-1, saved as .keras."""
    from edge_attn._keras import keras
    from edge_attn.data import load_data
    from edge_attn.training import fit

    keras.utils.set_random_seed(0)
    model = _tiny_se_model(keras)
    fit(model, load_data("digits", input_shape=(8, 8, 1)), epochs=3, learning_rate=1e-2, progress=False)
    path = tmp_path_factory.mktemp("reference") / "tiny_se.keras"
    model.save(path)
    return path


class Convert:
    """``edge-attn convert REFERENCE --recipe int8-qat ... --json`` running in the background."""

    def __init__(self, reference, out, *extra, env=None):
        self.out = out
        command = [sys.executable, "-m", "edge_attn.cli", "convert", str(reference), "--recipe", "int8-qat",
                   "--data", "digits", "--epochs", str(EPOCHS), "--runs", "2", "--out", str(out), "--no-progress",
                   "--json", *extra]
        environment = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "EDGE_ATTN_CPU_REPLICAS")}
        self.process = subprocess.Popen(command, env={**environment, **(env or {})}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def result(self):
        """Wait for the run; its --json output. Fails the test, with the run's stderr, unless it exits 0."""
        try:
            out, err = self.process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        assert self.process.returncode == 0, err[-3000:]
        return json.loads(out)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class KillAndResume(threading.Thread):
    """SIGKILL ``run`` as soon as its first QAT checkpoint is recorded, keep a copy of what it left,
    then start the same command with ``--resume``."""

    def __init__(self, run, reference, copy):
        super().__init__(daemon=True)
        self.interrupted, self.reference, self.copy = run, reference, copy
        self.return_code, self.saved, self.left, self.resumed = None, [], [], None

    def run(self):
        state = self.interrupted.out / "checkpoints" / "qat" / "checkpoint"  # the CheckpointManager's state file
        deadline = time.monotonic() + TIMEOUT
        while not state.exists() and self.interrupted.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.interrupted.process.send_signal(signal.SIGKILL)
        self.interrupted.process.communicate()
        self.return_code = self.interrupted.process.returncode
        if state.exists():
            self.saved = sorted(name for name in os.listdir(state.parent) if name.endswith(".index"))
            self.left = sorted(os.listdir(self.interrupted.out))
            shutil.copytree(self.interrupted.out, self.copy)
            self.resumed = Convert(self.reference, self.interrupted.out, "--resume")


@pytest.fixture(scope="module")
def runs(tiny_reference, tmp_path_factory):
    """Start the independent runs together: default, mirrored (2 logical CPUs), multi-worker (2 workers on
    127.0.0.1; the worker gets its own --out so "writes nothing" is visible), and one that is killed after
    its first checkpoint and resumed."""
    root = tmp_path_factory.mktemp("runs")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    no_proxy = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}  # gRPC honours proxies

    def tf_config(index):
        return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}), **no_proxy}

    started = {
        "default": Convert(tiny_reference, root / "default"),
        "mirrored": Convert(tiny_reference, root / "mirrored", "--strategy", "mirrored",
                            env={"EDGE_ATTN_CPU_REPLICAS": "2"}),
        "chief": Convert(tiny_reference, root / "multi-worker", "--strategy", "multi-worker", env=tf_config(0)),
        "worker": Convert(tiny_reference, root / "multi-worker-worker", "--strategy", "multi-worker",
                          env=tf_config(1)),
    }
    killer = KillAndResume(Convert(tiny_reference, root / "killed"), tiny_reference, root / "killed-copy")
    killer.start()
    yield started, killer
    killer.join()
    for run in [*started.values(), killer.resumed]:
        if run is not None:
            run.stop()


@pytest.fixture(scope="module")
def default_report(runs):
    return runs[0]["default"].result()


@pytest.fixture(scope="module")
def killed(runs):
    killer = runs[1]
    killer.join(TIMEOUT)
    assert killer.return_code == -signal.SIGKILL and killer.resumed is not None, "not killed after a checkpoint"
    return killer


def _eval_predictions(tflite_path):
    from edge_attn.data import load_data
    from edge_attn.litert import make_interpreter, run

    data = load_data("digits", input_shape=(8, 8, 1))
    return np.argmax(run(make_interpreter(str(tflite_path)), data.x_eval), axis=1)


def _assert_same_within_noise(report, default_report, tflite, default_tflite):
    samples = report["accuracy"]["samples"]
    assert samples == default_report["accuracy"]["samples"] == 359
    top1 = round(report["accuracy"]["quantized_top1"] * samples)
    default_top1 = round(default_report["accuracy"]["quantized_top1"] * samples)
    assert abs(top1 - default_top1) <= SAMPLES_TOLERANCE
    assert abs(report["accuracy"]["agreement_count"] - default_report["accuracy"]["agreement_count"]) <= SAMPLES_TOLERANCE
    assert np.mean(_eval_predictions(tflite) == _eval_predictions(default_tflite)) >= 0.98
    assert report["fully_int8"] is True


def test_mirrored_splits_the_global_batch_over_two_cpus(runs, default_report):
    runs = runs[0]
    report = runs["mirrored"].result()
    distribute = report["fine_tune"]["distribute"]
    assert distribute["strategy"] == "mirrored" and distribute["replicas"] == 2
    # what the strategy handed each replica in the first step: the recipe's global batch, halved
    assert distribute["global_batch"] == report["recipe_settings"]["fine_tune"]["batch_size"] == 32
    assert distribute["replica_batch_sizes"] == [16, 16]
    assert default_report["fine_tune"]["distribute"]["replica_batch_sizes"] == [32]
    assert report["fine_tune"]["epochs_run"] == EPOCHS
    _assert_same_within_noise(report, default_report, runs["mirrored"].out / "model.tflite",
                              runs["default"].out / "model.tflite")
    assert not (runs["mirrored"].out / "checkpoints").exists()  # finished: nothing left to resume


def test_multi_worker_trains_in_sync_and_only_the_chief_writes(runs, default_report):
    runs = runs[0]
    chief, worker = runs["chief"].result(), runs["worker"].result()
    distribute = chief["fine_tune"]["distribute"]
    assert distribute["strategy"] == "multi-worker" and distribute["replicas"] == 2 and distribute["workers"] == 2
    assert distribute["replica_batch_sizes"] == [16]  # this worker's one replica: half of the global 32
    assert worker["task"] == "worker:1" and worker["writer"] == "worker:0"
    # trained together: every epoch's evaluation of the shared weights is the same on both workers
    assert worker["fine_tune"]["eval_loss"] == chief["fine_tune"]["eval_loss"]
    assert not runs["worker"].out.exists()
    assert sorted(os.listdir(runs["chief"].out)) == [".edge_attn", "model.tflite", "reference.keras", "report.html",
                                                     "report.json"]
    _assert_same_within_noise(chief, default_report, runs["chief"].out / "model.tflite",
                              runs["default"].out / "model.tflite")


def _cli(capsys, reference, out, *extra, epochs=EPOCHS):
    code = main(["convert", str(reference), "--recipe", "int8-qat", "--data", "digits", "--epochs", str(epochs),
                 "--out", str(out), "--no-progress", *extra])
    return code, capsys.readouterr().err


def test_resume_refuses_other_settings_and_missing_checkpoints(killed, tiny_reference, tmp_path, capsys):
    copy = killed.copy
    for extra, epochs, changed in ((("--resume",), EPOCHS + 1, "epochs"), (("--resume", "--seed", "1"), EPOCHS, "seed")):
        code, err = _cli(capsys, tiny_reference, copy, *extra, epochs=epochs)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith("edge-attn convert: error: --resume: ") and changed in err
    code, err = _cli(capsys, tiny_reference, tmp_path / "never-ran", "--resume")
    assert code == 2 and err.count("\n") == 1 and "--resume: no checkpoints" in err, err
    assert not (tmp_path / "never-ran").exists()
    assert [name for name in os.listdir(copy / "checkpoints" / "qat") if name.endswith(".index")] == killed.saved


def test_killed_run_resumes_and_matches_the_uninterrupted_run(killed, default_report):
    out = killed.interrupted.out
    assert len(killed.saved) == 1 and "model.tflite" not in killed.left
    checkpoint_epoch = int(killed.saved[0].split("-")[1].split(".")[0])  # TensorFlow names them ckpt-<save number>
    assert 1 <= checkpoint_epoch < EPOCHS
    report = killed.resumed.result()
    fine_tune, uninterrupted = report["fine_tune"], default_report["fine_tune"]
    assert fine_tune["resumed_from_epoch"] == checkpoint_epoch
    assert fine_tune["epochs_run"] == EPOCHS  # the restored epochs' history plus the ones run now
    # Same data order, restored weights, optimizer moments and ranges: the continuation retraces the
    # uninterrupted run (bit for bit on this machine; 1e-5 leaves room for float non-determinism only).
    np.testing.assert_allclose(fine_tune["eval_loss"], uninterrupted["eval_loss"], rtol=1e-5)
    assert fine_tune["best_epoch"] == uninterrupted["best_epoch"]
    _assert_same_within_noise(report, default_report, out / "model.tflite", default_report["model"]["path"])
    assert not (out / "checkpoints").exists()


def test_bad_tf_config_is_one_line(tiny_reference, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}')
    code, err = _cli(capsys, tiny_reference, tmp_path / "out", "--strategy", "multi-worker")
    assert code == 2 and err == "edge-attn convert: error: TF_CONFIG: task index 3 is out of range for 1 worker address(es)\n"
    monkeypatch.delenv("TF_CONFIG")
    code, err = _cli(capsys, tiny_reference, tmp_path / "out", "--strategy", "multi-worker")
    assert code == 2 and err.startswith("edge-attn convert: error: TF_CONFIG: is not set") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, problem", [
    ("{not json", "is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster' object"),
    ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "job 'ps' is not supported"),
    ('{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}', "'host:port' strings"),
    ('{"cluster": {"worker": ["h:1"]}}', "needs a 'task' object"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}', "not a job of the cluster"),
])
def test_malformed_tf_config(text, problem):
    from edge_attn.distribute import cluster_task

    with pytest.raises(BadInput) as error:
        cluster_task({"TF_CONFIG": text})
    assert error.value.what == "TF_CONFIG" and problem in error.value.problem


def test_chief_is_the_chief_task_or_else_worker_0():
    from edge_attn.distribute import cluster_task

    def task(cluster, task_type, index):
        return cluster_task({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})})

    workers = {"worker": ["a:1", "b:1"]}
    with_chief = {"chief": ["c:1"], **workers}
    assert task(workers, "worker", 0).is_chief and not task(workers, "worker", 1).is_chief
    assert task(with_chief, "chief", 0).is_chief and not task(with_chief, "worker", 0).is_chief
    assert task(with_chief, "worker", 1).workers == 3


def test_cpu_replicas_setting():
    from edge_attn.distribute import cpu_replicas, create_strategy

    assert cpu_replicas({}) == 1 and cpu_replicas({"EDGE_ATTN_CPU_REPLICAS": "4"}) == 4
    for bad in ("0", "-2", "two"):
        with pytest.raises(BadInput, match="EDGE_ATTN_CPU_REPLICAS"):
            cpu_replicas({"EDGE_ATTN_CPU_REPLICAS": bad})
    with pytest.raises(BadInput, match="--strategy"):
        create_strategy("horovod")


def test_cpu_replicas_must_be_set_before_tensorflow_starts(monkeypatch):
    from edge_attn._keras import tf
    from edge_attn.distribute import create_strategy

    tf.constant(1.0) + 1.0  # TensorFlow has started in this process, with one CPU device
    monkeypatch.setenv("EDGE_ATTN_CPU_REPLICAS", "2")
    with pytest.raises(BadInput, match="EDGE_ATTN_CPU_REPLICAS: asks for 2 CPU replicas, but TensorFlow started with 1"):
        create_strategy("mirrored")


def test_resumed_registry_run_loads_the_float_reference_instead_of_training(tmp_path):
    """The float checkpoint of a registry model is what a resumed run uses (the same weights, no training)."""
    from edge_attn._keras import keras
    from edge_attn.checkpoints import RunCheckpoints, fingerprint
    from edge_attn.convert import load_recipe
    from edge_attn.models import create_model
    from edge_attn.pipeline import prepare_reference

    settings = fingerprint(model="resnet20", recipe=load_recipe("int8-qat"), data="digits", seed=0, epochs=2,
                           input_shape=(8, 8, 1), float_epochs=1)
    keras.utils.set_random_seed(7)  # not the run's seed: training from scratch could not reproduce these
    saved = create_model("resnet20", input_shape=(8, 8, 1), classes=10)
    RunCheckpoints.open(tmp_path, settings).save_float_reference(saved, {"epochs_run": 1})
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["fingerprint.json", "float"]
    resumed = RunCheckpoints.open(tmp_path, settings, resume=True)
    reference = prepare_reference("resnet20", "digits", input_shape=(8, 8, 1), float_epochs=1, checkpoints=resumed)
    assert reference.trained == {"epochs_run": 1, "from_checkpoint": True}
    for loaded, expected in zip(reference.model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(loaded, expected)
    with pytest.raises(BadInput, match="--resume: .*float_epochs"):
        RunCheckpoints.open(tmp_path, {**settings, "float_epochs": 2}, resume=True)
