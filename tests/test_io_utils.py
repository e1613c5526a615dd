"""Atomic writes: the old file survives a failed write, and no temporary file is left behind."""

import json
import os

import numpy as np
import pytest

from hf_semtok.io_utils import atomic_write, write_json_atomic, write_text_atomic


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "results" / "table.md"
    write_text_atomic("old\n", path)  # makes the folder
    assert path.read_text() == "old\n" and (path.stat().st_mode & 0o777) == 0o644

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic({"new": 1}, path)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.md"]  # no temporary file left behind


def test_atomic_write_binary_and_json_round_trip(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    atomic_write(tmp_path / "a.npy", lambda handle: np.save(handle, array, allow_pickle=False))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)

    write_json_atomic({"é": [1, 2]}, tmp_path / "b.json", indent=2)
    assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8")) == {"é": [1, 2]}


def test_a_failing_writer_leaves_nothing(tmp_path):
    def half_write(handle):
        handle.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(tmp_path / "c.bin", half_write)
    assert list(tmp_path.iterdir()) == []
