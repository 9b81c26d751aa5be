"""Atomic output: content, permissions, and nothing left behind on failure."""

import json
import os
import stat

import pytest

from kprune.io import atomic_write_bytes, atomic_write_json


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_mode_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "out" / "result.json", {"a": 1})
    finally:
        os.umask(old)
    path = tmp_path / "out" / "result.json"
    assert json.loads(path.read_text()) == {"a": 1}
    assert mode(path) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
