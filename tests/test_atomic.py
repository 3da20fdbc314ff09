"""Atomic outputs: a failed write leaves the previous file (or none) and no temporary file."""

import os
import stat

import pytest

from edge_attn.atomic import atomic_path, write_bytes, write_text


def test_failed_write_keeps_previous_content(tmp_path):
    target = tmp_path / "model.tflite"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_new_file_is_complete_and_has_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_text(target, "{}")
    assert target.read_text() == "{}"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~mask
