"""Atomic writes: the old file (or directory) survives a failed write, and nothing temporary is left behind."""

import json
import os

import numpy as np
import pytest

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


def _own(path):
    """Entries of `path` other than the file-set manifests."""
    return [n for n in _names(path) if not n.startswith(".hf_semtok_manifest.")]


def test_atomic_write_and_directory_modes_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_text_atomic("x", tmp_path / "f.txt")
        with atomic_directory(tmp_path / "d") as tmp:
            write_text_atomic("y", tmp / "inner.txt")
            (tmp / "plain.txt").write_text("z")
            (tmp / "private.bin").write_bytes(b"w")
            os.chmod(tmp / "private.bin", 0o600)  # as safetensors and mkstemp write them
    finally:
        os.umask(previous)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750
    for name in ("inner.txt", "plain.txt", "private.bin"):
        assert (tmp_path / "d" / name).stat().st_mode & 0o777 == 0o640, name


def test_atomic_write_takes_a_file_name_of_any_valid_length(tmp_path):
    path = tmp_path / ("n" * 255)  # NAME_MAX: a temporary name built from it would be too long
    write_text_atomic("x", path)
    assert path.read_text() == "x" and _names(tmp_path) == [path.name]


def test_atomic_directory_replaces_only_its_own_files(tmp_path):
    target = tmp_path / "out" / "model"  # parent made on demand
    with atomic_directory(target) as tmp:
        assert tmp.parent == target and tmp.name.startswith(".hf_semtok_tmp-")  # staged inside the folder
        (tmp / "a.txt").write_text("A")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x").write_text("x")
    (target / "mine.txt").write_text("the user's")
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("B")
    # the files of the previous save of this kind are gone, the user's file stays
    assert _own(target) == ["b.txt", "mine.txt"] and _names(target.parent) == ["model"]
    with atomic_directory(target, kind="other") as tmp:  # another kind: leaves b.txt alone
        (tmp / "c.txt").write_text("C")
    assert _own(target) == ["b.txt", "c.txt", "mine.txt"]


def test_atomic_directory_keep_is_deprecated_and_ignored(tmp_path):
    with pytest.warns(DeprecationWarning, match="keep"):
        with atomic_directory(tmp_path / "d", keep=lambda name: False) as tmp:
            (tmp / "a").write_text("a")
    assert _own(tmp_path / "d") == ["a"]


def test_atomic_directory_exception_leaves_target_untouched(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert _own(target) == ["old.txt"] and _names(tmp_path) == ["model"]
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(tmp_path / "fresh") as tmp:
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["model"]  # a folder the failed save created is removed again


def test_atomic_directory_refuses_files_links_to_files_and_the_root(tmp_path):
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
    with pytest.raises(ValueError, match="Refusing to save into the filesystem root '/'"):
        with atomic_directory("/"):
            pass
    assert (tmp_path / "file").read_text() == "x"


def test_atomic_directory_through_a_symlink_saves_into_the_linked_directory(tmp_path):
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-1" / "old").write_text("old")
    (tmp_path / "latest").symlink_to("run-1")
    with atomic_directory(tmp_path / "latest") as tmp:
        (tmp / "new").write_text("new")
    assert (tmp_path / "latest").is_symlink()
    assert _own(tmp_path / "run-1") == ["new", "old"] and _names(tmp_path) == ["latest", "run-1"]


def test_recover_directory_repairs_what_an_earlier_release_left(tmp_path):
    target = tmp_path / "model"
    (tmp_path / ".model.tmp-dead").mkdir()  # a killed folder-swap save's half-written directory
    (tmp_path / ".model.tmp-dead" / "half").write_text("half")
    (tmp_path / ".model.old-dead").mkdir()  # killed between its two renames: target missing
    (tmp_path / ".model.old-dead" / "old.txt").write_text("old")
    (tmp_path / ".other.tmp-keep").mkdir()  # another target's: not ours to touch
    assert recover_directory(target) == target
    assert _names(target) == ["old.txt"]
    assert _names(tmp_path) == [".other.tmp-keep", "model"]


def test_recover_directory_removes_a_dead_staging_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("a")
    (target / ".hf_semtok_tmp-deadbeef").mkdir()  # a save killed before its commit point
    (target / ".hf_semtok_tmp-deadbeef" / "half").write_text("half")
    recover_directory(target)
    assert _own(target) == ["a"]


def test_atomic_write_onto_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="it is a folder"):
        write_text_atomic("x", tmp_path)
