"""Atomic writes: the old file (or directory) survives a failed write, and nothing temporary is left behind."""

import json
import os

import numpy as np
import pytest

from hf_semtok import io_utils
from hf_semtok.io_utils import (
    atomic_directory,
    atomic_write,
    recover_directory,
    write_json_atomic,
    write_text_atomic,
)


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "results" / "table.md"
    write_text_atomic("old\n", path)  # makes the folder
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.read_text() == "old\n" and (path.stat().st_mode & 0o777) == 0o666 & ~umask

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


def _names(path):
    return sorted(p.name for p in path.iterdir())


def test_atomic_write_and_directory_modes_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_text_atomic("x", tmp_path / "f.txt")
        with atomic_directory(tmp_path / "d") as tmp:
            write_text_atomic("y", tmp / "inner.txt")
            (tmp / "plain.txt").write_text("z")
    finally:
        os.umask(previous)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750  # not mkdtemp's 0700
    assert (tmp_path / "d" / "inner.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d" / "plain.txt").stat().st_mode & 0o777 == 0o640


def test_atomic_directory_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "out" / "model"  # parent made on demand
    with atomic_directory(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".model.tmp-") and not target.exists()
        (tmp / "a.txt").write_text("A")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_text("x")
    assert _names(target) == ["a.txt", "sub"]
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("B")
    assert _names(target) == ["b.txt"]  # nothing of the old version is left
    assert _names(target.parent) == ["model"]


def test_atomic_directory_keep_carries_unwritten_entries(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"weights")
        (tmp / "config.json").write_text("{}")
        (tmp / "tokenizer.json").write_text("old tokenizer")
        (tmp / "cache").mkdir()
        (tmp / "cache" / "c").write_text("c")
    inode = (target / "model.safetensors").stat().st_ino
    with atomic_directory(target, keep=lambda name: name != "config.json") as tmp:
        (tmp / "tokenizer.json").write_text("new tokenizer")
    assert _names(target) == ["cache", "model.safetensors", "tokenizer.json"]
    assert (target / "tokenizer.json").read_text() == "new tokenizer"  # what the save wrote wins
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert (target / "model.safetensors").stat().st_ino == inode  # hard link, not a copy
    assert (target / "cache" / "c").read_text() == "c"
    assert _names(tmp_path) == ["model"]


def test_atomic_directory_exception_leaves_target_untouched(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert _names(target) == ["old.txt"] and _names(tmp_path) == ["model"]
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(tmp_path / "fresh") as tmp:
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["model"]


def test_atomic_directory_refuses_files_and_links_to_files(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="a file of that name exists"):
        with atomic_directory(tmp_path / "file"):
            pass
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(ValueError, match="not a directory"):
        with atomic_directory(tmp_path / "link"):
            pass
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a directory"):
        with atomic_directory(tmp_path / "dangling"):
            pass
    assert (tmp_path / "file").read_text() == "x"


def test_atomic_directory_through_a_symlink_replaces_the_linked_directory(tmp_path):
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-1" / "old").write_text("old")
    (tmp_path / "latest").symlink_to("run-1")
    with atomic_directory(tmp_path / "latest") as tmp:
        (tmp / "new").write_text("new")
    assert (tmp_path / "latest").is_symlink()
    assert _names(tmp_path / "run-1") == ["new"] and _names(tmp_path) == ["latest", "run-1"]


def test_leftovers_of_a_killed_save_are_removed_or_restored(tmp_path):
    target = tmp_path / "model"
    (tmp_path / ".model.tmp-dead").mkdir()  # a killed save's half-written directory
    (tmp_path / ".model.tmp-dead" / "half").write_text("half")
    (tmp_path / ".model.old-dead").mkdir()  # fallback killed between its renames: target missing
    (tmp_path / ".model.old-dead" / "old.txt").write_text("old")
    (tmp_path / ".other.tmp-keep").mkdir()  # another target's: not ours to touch
    assert recover_directory(target) == target
    assert _names(target) == ["old.txt"]
    assert _names(tmp_path) == [".other.tmp-keep", "model"]
    (tmp_path / ".model.tmp-dead2").mkdir()
    (tmp_path / ".model.old-dead2").mkdir()  # target exists: the swap had finished
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _names(target) == ["new.txt"] and _names(tmp_path) == [".other.tmp-keep", "model"]


def test_fallback_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(io_utils, "_renameat2", None)
    target = tmp_path / "model"
    for version in ("a", "b"):
        with atomic_directory(target, keep=lambda name: name == "a") as tmp:
            (tmp / version).write_text(version)
    assert _names(target) == ["a", "b"] and _names(tmp_path) == ["model"]


@pytest.mark.skipif(io_utils._renameat2 is None, reason="renameat2 is not available here")
def test_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "1").write_text("1")
    (tmp_path / "y").mkdir()
    assert io_utils._exchange(tmp_path / "x", tmp_path / "y")
    assert _names(tmp_path / "y") == ["1"] and _names(tmp_path / "x") == []
