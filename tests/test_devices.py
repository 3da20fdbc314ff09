"""Tests of edge_attn.devices: the shipped profiles, validation naming file and field, and the patterns
that keep shell metacharacters and option-like values off adb and ssh command lines."""

import os
import re

import pytest

from edge_attn.devices import DeviceProfile, list_profiles, load_profile
from edge_attn.errors import BadInput

SHIPPED = ["android-example", "host", "linux-board-example"]
ADB = 'kind = "adb"\nbenchmark_model = "bin/benchmark_model"\n'
SSH = 'kind = "ssh"\nhost = "board.local"\n'


def write(tmp_path, text, name="device.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def rejected(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        load_profile(path)
    assert caught.value.what == str(path)
    return caught.value.problem


def test_shipped_profiles_load():
    assert list_profiles() == SHIPPED
    kinds = {name: load_profile(name).kind for name in SHIPPED}
    assert kinds == {"android-example": "adb", "host": "host", "linux-board-example": "ssh"}
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.name == name
        assert profile == load_profile(profile.source)  # by path, the same profile
    host = load_profile("host")
    assert (host.engine, host.delegates[0]) == ("interpreter", "xnnpack")
    android = load_profile("android-example")
    assert os.path.isabs(android.benchmark_model) and "~" not in android.benchmark_model
    assert android.budget_for("models/se_resnet20-int8.tflite") == 8.0
    board = load_profile("linux-board-example")
    assert (board.host, board.user, board.port, board.python) == ("raspberrypi.local", "pi", 22, "python3")


def test_shipped_profiles_comment_every_key():
    """Users copy these files: each key (or group of keys, or table) sits under a comment explaining it."""
    key_or_table = re.compile(r"^\s*((\"[^\"]+\"|[A-Za-z_]+)\s*=|\[)")
    for name in SHIPPED:
        lines = [line for line in open(load_profile(name).source).read().splitlines() if line.strip()]
        for i, line in enumerate(lines):
            if key_or_table.match(line):
                above = next(prev for prev in reversed(lines[:i]) if not key_or_table.match(prev))
                assert above.lstrip().startswith("#"), f"{name}: {line!r} has no comment above it"


def test_minimal_profiles_take_documented_defaults(tmp_path, monkeypatch):
    host = load_profile(write(tmp_path, 'kind = "host"\n', "mine.toml"))
    assert (host.name, host.delegates, host.threads, host.runs, host.warmup) == ("mine", ("xnnpack",), 2, 50, 5)
    assert (host.engine, host.timeout_s, host.budgets_ms, host.serial, host.port) == ("interpreter", 300.0, {}, None, None)

    adb = load_profile(write(tmp_path, ADB))
    assert adb.benchmark_model == str(tmp_path / "bin" / "benchmark_model")  # relative to the profile's folder
    assert (adb.serial, adb.remote_dir, adb.taskset_mask, adb.inference_diff) == (
        None, "/data/local/tmp/edge_attn", None, None)

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ssh = load_profile(write(tmp_path, SSH + 'identity_file = "~/.ssh/key"\n'))
    assert ssh.identity_file == str(tmp_path / "home" / ".ssh" / "key")
    assert (ssh.user, ssh.port, ssh.python, ssh.remote_dir, ssh.connect_timeout_s) == (
        None, 22, "python3", "/tmp/edge_attn", 10)
    assert load_profile(write(tmp_path, ADB + 'taskset_mask = "0xF0"\n')).taskset_mask == "f0"


def test_budgets_are_looked_up_by_file_name_then_default(tmp_path):
    text = 'kind = "host"\n[budgets_ms]\n"a.tflite" = 2\n'
    profile = load_profile(write(tmp_path, text))
    assert profile.budget_for("/some/where/a.tflite") == 2.0
    assert profile.budget_for("b.tflite") is None
    assert load_profile(write(tmp_path, text + "default = 7.5\n")).budget_for("b.tflite") == 7.5


@pytest.mark.parametrize("text, field", [
    ('name = "x"\n', "kind"),  # missing
    ('kind = "usb"\n', "kind"),
    ('kind = "host"\nthread = 2\n', "thread"),  # typo
    ('kind = "host"\nthreads = "2"\n', "threads"),
    ('kind = "host"\nthreads = 0\n', "threads"),
    ('kind = "host"\nruns = true\n', "runs"),
    ('kind = "host"\nwarmup = -1\n', "warmup"),
    ('kind = "host"\ntimeout_s = 0\n', "timeout_s"),
    ('kind = "host"\ndelegates = ["tpu"]\n', "delegates"),
    ('kind = "host"\ndelegates = "xnnpack"\n', "delegates"),
    ('kind = "host"\ndelegates = []\n', "delegates"),
    ('kind = "host"\ndelegates = ["cpu", "cpu"]\n', "delegates"),
    ('kind = "host"\ndelegates = ["nnapi"]\n', "delegates"),  # Android only
    ('kind = "host"\nengine = "tflite"\n', "engine"),
    ('kind = "host"\nserial = "emulator-5554"\n', "serial"),  # a field of another kind
    ('kind = "adb"\nbenchmark_model = "b"\nhost = "x"\n', "host"),
    ('kind = "ssh"\nhost = "x"\nengine = "interpreter"\n', "engine"),
    ('kind = "adb"\n', "benchmark_model"),  # required for adb
    ('kind = "adb"\nbenchmark_model = 5\n', "benchmark_model"),
    ('kind = "ssh"\n', "host"),  # required for ssh
    ('kind = "ssh"\nhost = "x"\nport = 70000\n', "port"),
    ('kind = "ssh"\nhost = "x"\nconnect_timeout_s = 0\n', "connect_timeout_s"),
    ('kind = "host"\nbudgets_ms = 5\n', "budgets_ms"),
    ('kind = "host"\n[budgets_ms]\n"m.tflite" = -1\n', "budgets_ms.m.tflite"),
    ('kind = "host"\n[budgets_ms]\ndefault = "fast"\n', "budgets_ms.default"),
    ('kind = "host"\n[budgets_ms]\n"out/m.tflite" = 5\n', "budgets_ms.out/m.tflite"),
    (ADB + 'taskset_mask = "0"\n', "taskset_mask"),
    (ADB + 'taskset_mask = "zz"\n', "taskset_mask"),
    (ADB + 'taskset_mask = 240\n', "taskset_mask"),
    (ADB + 'taskset_mask = "1ffffffffffffffff"\n', "taskset_mask"),  # 65 CPUs
    (ADB + 'remote_dir = "/data/local/tmp/../../system"\n', "remote_dir"),
])
def test_bad_profile_names_file_and_field(tmp_path, text, field):
    problem = rejected(tmp_path, text)
    assert problem.startswith(f"{field}:"), problem


@pytest.mark.parametrize("base, field, value", [
    (ADB, "serial", "emulator-5554; reboot"),
    (ADB, "serial", "-s other"),
    (ADB, "serial", "-d"),
    (ADB, "serial", "$(reboot)"),
    (ADB, "serial", "a b"),
    (ADB, "remote_dir", "/data/local/tmp/x; rm -rf /"),
    (ADB, "remote_dir", "/tmp/$(id)"),
    (ADB, "remote_dir", "/tmp/a b"),
    (ADB, "remote_dir", "/tmp/`id`"),
    (ADB, "remote_dir", "relative/dir"),
    (ADB, "remote_dir", "-rf"),
    (ADB, "taskset_mask", "f0; reboot"),
    (SSH.replace('host = "board.local"\n', ""), "host", "-oProxyCommand=evil"),
    (SSH.replace('host = "board.local"\n', ""), "host", "board`id`"),
    (SSH.replace('host = "board.local"\n', ""), "host", "board|id"),
    (SSH, "user", "root;id"),
    (SSH, "user", "-l"),
    (SSH, "user", "pi@evil"),
    (SSH, "python", "python3 -c 'import os'"),
    (SSH, "python", "-c"),
    (SSH, "python", "~/venv/bin/python"),
    (SSH, "remote_dir", "/tmp/x&&id"),
    (SSH, "remote_dir", "/tmp/x\nid"),
])
def test_command_line_fields_reject_injection(tmp_path, base, field, value):
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    problem = rejected(tmp_path, base + f'{field} = "{escaped}"\n')
    assert problem.startswith(f"{field}:"), problem
    assert "not starting with '-'" in problem


@pytest.mark.parametrize("base, field, value", [
    (ADB, "serial", "emulator-5554"),
    (ADB, "serial", "192.168.1.20:5555"),
    (ADB, "serial", "adb-R58M123-AbCdEf._adb-tls-connect._tcp"),
    (SSH.replace('host = "board.local"\n', ""), "host", "fe80::1"),
    (SSH.replace('host = "board.local"\n', ""), "host", "10.0.0.7"),
    (SSH, "user", "pi"),
    (SSH, "python", "/home/pi/venv-3.11/bin/python3"),
])
def test_command_line_fields_accept_real_values(tmp_path, base, field, value):
    profile = load_profile(write(tmp_path, base + f'{field} = "{value}"\n'))
    assert getattr(profile, field) == value


def test_unreadable_profiles(tmp_path):
    path = write(tmp_path, "kind = \n")
    with pytest.raises(BadInput, match="not valid TOML") as caught:
        load_profile(path)
    assert caught.value.what == str(path)
    with pytest.raises(BadInput, match="no such device profile"):
        load_profile(tmp_path / "missing.toml")
    with pytest.raises(BadInput) as caught:
        load_profile("pixel-9")
    assert caught.value.what == "pixel-9"
    assert all(name in caught.value.problem for name in SHIPPED)


def test_profiles_are_plain_data():
    profile = load_profile("android-example")
    data = profile.to_dict()
    assert data["delegates"] == ["xnnpack", "gpu", "nnapi"] and data["kind"] == "adb"
    assert DeviceProfile(**{**data, "delegates": tuple(data["delegates"])}) == profile


def test_emulated_is_a_boolean_of_every_kind(tmp_path):
    from edge_attn.devices import parse_profile

    board = {"kind": "ssh", "host": "127.0.0.1", "emulated": True}
    assert parse_profile(board, str(tmp_path / "qemu-pi.toml")).emulated is True
    assert parse_profile({"kind": "host"}, str(tmp_path / "h.toml")).emulated is False
    with pytest.raises(BadInput, match="emulated"):
        parse_profile(board | {"emulated": "yes"}, str(tmp_path / "qemu-pi.toml"))
