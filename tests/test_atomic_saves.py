"""Saves killed at any instant leave the old complete directory or the new one: never a mix, never nothing."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_semtok import io_utils
from hf_semtok.constants import SID_TABLE_FILE
from hf_semtok.io_utils import atomic_directory, recover_directory
from hf_semtok.lm import generator
from hf_semtok.rqvae import training
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.training import save_training_result, train_rqvae
from hf_semtok import SIDTable

_HARNESS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_harness.py"
_spec = importlib.util.spec_from_file_location("kill_harness", _HARNESS_PATH)
kill_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_harness)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill harness forks")

OLD = {"common.txt": b"old common", "only_old.txt": b"old", "sub/a.bin": b"\x00old"}
NEW = {"common.txt": b"new common", "only_new.txt": b"new", "sub/b.bin": b"\x01new", "more/c.txt": b"c"}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # forked children must not inherit a busy thread pool
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def old_new(tmp_path):
    parent = tmp_path / "out"
    target = parent / "model"

    def reset():
        shutil.rmtree(parent, ignore_errors=True)
        parent.mkdir()
        target.mkdir()
        write_tree(target, OLD)

    def save():
        with atomic_directory(target) as tmp:
            for name, data in NEW.items():  # several files: kills land between them
                write_tree(tmp, {name: data})

    def check(recover: bool = False) -> str:
        if recover:
            recover_directory(target)
        assert target.is_dir(), f"{target} is missing; left: {siblings(parent)}"
        found = kill_harness.tree_contents(target)
        assert found in (OLD, NEW), f"mixed or partial directory: {sorted(found)}"
        return "old" if found == OLD else "new"

    def check_clean() -> None:
        assert kill_harness.tree_contents(target) == NEW
        assert siblings(parent) == ["model"], "leftovers of the killed save were not removed"

    return target, reset, save, check, check_clean


def test_kill_anywhere_with_exchange_leaves_old_or_new(old_new):
    if io_utils._renameat2 is None:
        pytest.skip("renameat2 is not available here")
    target, reset, save, check, check_clean = old_new
    summary = kill_harness.kill_during_save(
        save, check, reset=reset, check_clean=check_clean, n_points=32, random_kills=3, seed=0
    )
    assert len(summary["kill_points"]) >= 30 and summary["outcomes"].get("killed", 0) >= 30
    assert summary["states"].get("old", 0) > 0 and summary["states"].get("new", 0) > 0


def test_kill_anywhere_without_exchange_is_recovered(old_new, monkeypatch):
    monkeypatch.setattr(io_utils, "_renameat2", None)  # the two-rename fallback, inherited by the children
    target, reset, save, check, check_clean = old_new
    summary = kill_harness.kill_during_save(
        save, lambda: check(recover=True), reset=reset, check_clean=check_clean, n_points=32, seed=1
    )
    assert summary["outcomes"].get("killed", 0) >= 30
    assert summary["states"].get("old", 0) > 0 and summary["states"].get("new", 0) > 0


def test_kills_in_a_row_without_reset(old_new):
    target, reset, save, check, check_clean = old_new
    reset()
    summary = kill_harness.kill_during_save(save, lambda: check(recover=True), n_points=30, seed=2)
    assert summary["outcomes"].get("killed", 0) >= 25
    save()
    check_clean()


@pytest.fixture(scope="module")
def two_results():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    config = RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[8, 4])
    kwargs = {"config": config, "max_steps": 3, "batch_size": 32, "progress": False}
    first = train_rqvae(emb, seed=0, **kwargs)
    second = train_rqvae(emb, seed=1, **kwargs)
    assert first.sid_table.as_dict() != second.sid_table.as_dict()
    return emb, first, second


def test_kill_save_training_result_anywhere(two_results, tmp_path):
    emb, first, second = two_results
    parent = tmp_path / "runs"
    target = parent / "rqvae"
    save_training_result(first, target)
    old_files = kill_harness.tree_contents(target)

    def reset():
        shutil.rmtree(parent)
        save_training_result(first, target)

    def check() -> str:
        assert target.is_dir(), f"{target} is missing; left: {siblings(parent)}"
        files = kill_harness.tree_contents(target)
        table = SIDTable.from_json(target / SID_TABLE_FILE).as_dict()
        model = RQVAEModel.from_pretrained(target)
        label = "old" if table == first.sid_table.as_dict() else "new"
        expected = first if label == "old" else second
        assert table == expected.sid_table.as_dict()
        assert sorted(files) == sorted(old_files)  # the same file set: nothing stale, nothing missing
        np.testing.assert_array_equal(model.encode(emb).numpy(), expected.model.encode(emb).numpy())
        return label

    def check_clean() -> None:
        assert SIDTable.from_json(target / SID_TABLE_FILE).as_dict() == second.sid_table.as_dict()
        assert sorted(kill_harness.tree_contents(target)) == sorted(old_files)
        assert siblings(parent) == ["rqvae"]

    summary = kill_harness.kill_during_save(
        lambda: save_training_result(second, target),
        check,
        reset=reset,
        check_clean=check_clean,
        n_points=30,
        seed=3,
        trace_files=[io_utils.__file__, training.__file__, shutil.__file__],
    )
    assert summary["outcomes"].get("killed", 0) >= 30
    assert summary["states"].get("old", 0) > 0 and summary["states"].get("new", 0) > 0


class _FakeTokenizer:
    def save_pretrained(self, path):
        with atomic_directory(path) as tmp:  # a tokenizer that replaces its folder, keeping nothing
            (tmp / "tokenizer.json").write_text("{}")


class _FakeModel:
    def save_pretrained(self, path):
        (Path(path) / "model.safetensors").write_bytes(b"weights")


def test_generator_save_keeps_model_and_tokenizer_and_drops_stale_files(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.bin").write_bytes(b"old")
    generator._save_atomic(_FakeModel(), _FakeTokenizer(), target)
    assert siblings(target) == ["model.safetensors", "tokenizer.json"]
    assert siblings(tmp_path) == ["model"]


def test_harness_reports_a_broken_save(tmp_path):
    """The harness itself: a non-atomic save (delete, then write) is caught."""
    target = tmp_path / "d"

    def reset():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        write_tree(target, OLD)

    def bad_save():
        shutil.rmtree(target)
        target.mkdir()
        write_tree(target, NEW)

    def check() -> str:
        assert target.is_dir() and kill_harness.tree_contents(target) in (OLD, NEW)
        return "ok"

    with pytest.raises(AssertionError, match="after a kill at line"):
        kill_harness.kill_during_save(
            bad_save, check, reset=reset, n_points=20, trace_files=[shutil.__file__, __file__]
        )
