"""Saves killed at any instant leave the old complete set of files or the new one, never a mix, and never touch
anything else in the folder. Readers loading while saves run never see a mix either."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import rqvae_tokenizer_pair

from hf_semtok import SIDTable, io_utils
from hf_semtok.constants import SID_TABLE_FILE
from hf_semtok.io_utils import FileSetError, atomic_directory, open_file_set, recover_directory
from hf_semtok.lm import generator
from hf_semtok.rqvae import training
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.training import save_training_result, train_rqvae
from hf_semtok.tokenizer import file_locks, tokenization_semtok
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

_HARNESS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_harness.py"
_spec = importlib.util.spec_from_file_location("kill_harness", _HARNESS_PATH)
kill_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_harness)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill harness forks")

OLD = {"common.txt": b"old common", "only_old.txt": b"old", "sub/a.bin": b"\x00old"}
NEW = {"common.txt": b"new common", "only_new.txt": b"new", "sub/b.bin": b"\x01new", "more/c.txt": b"c"}
#: Files of the user in the folder saved into (`volume/` stands in for a mounted volume): no save may touch them.
FOREIGN = {"user_notes.txt": b"mine", "volume/data.bin": b"mounted"}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def siblings(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def own_files(target: Path) -> dict[str, bytes]:
    """The files of `target` that are neither the user's nor hf_semtok's bookkeeping (manifests, staging)."""
    return {
        name: data
        for name, data in kill_harness.tree_contents(target).items()
        if name not in FOREIGN and not name.startswith(".hf_semtok")
    }


def load_or_repair(target: Path, load):
    """`load()`; where a kill landed after the commit point, the load must refuse without changing a byte, name
    the repair, and the repair must complete the save (the loaded result is then the new version)."""
    before = kill_harness.tree_contents(target)
    try:
        return load()
    except FileSetError as err:
        assert "interrupted after its commit point" in str(err) and "hf-semtok repair" in str(err), err
        assert kill_harness.tree_contents(target) == before, "a failed load changed the folder"
    recover_directory(target)
    return load()


def check_foreign(target: Path) -> None:
    found = {name: (target / name).read_bytes() for name in FOREIGN if (target / name).is_file()}
    assert found == FOREIGN, "a save touched files it does not own"


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

    def save_files(files: dict[str, bytes]) -> None:
        with atomic_directory(target) as tmp:
            for name, data in files.items():  # several files: kills land between them
                write_tree(tmp, {name: data})

    def reset():
        shutil.rmtree(parent, ignore_errors=True)
        target.mkdir(parents=True)
        write_tree(target, FOREIGN)
        save_files(OLD)

    def check(recover: bool = False) -> str:
        if recover:
            recover_directory(target)
        assert target.is_dir(), f"{target} is missing; left: {siblings(parent)}"

        def load():
            with open_file_set(target, "directory", on_mismatch="raise") as files:
                assert files is not None, "no manifest"
                return {name: files.read_bytes(name) for name in files.files}

        found = load_or_repair(target, load)
        assert found in (OLD, NEW), f"mixed or partial set: {sorted(found)}"
        check_foreign(target)
        if recover:  # the files on disk are now exactly the set: nothing stale, nothing missing
            assert own_files(target) == found
        return "old" if found == OLD else "new"

    def check_clean() -> None:
        assert own_files(target) == NEW
        recover_directory(target)  # a save leaves what killed saves left to the explicit repair
        assert [n for n in siblings(target) if n.startswith(".hf_semtok_tmp")] == []
        assert siblings(parent) == ["model"], "a save wrote beside its folder"
        check_foreign(target)

    return target, reset, lambda: save_files(NEW), check, check_clean


def test_kill_anywhere_leaves_old_or_new(old_new):
    target, reset, save, check, check_clean = old_new
    summary = kill_harness.kill_during_save(
        save, check, reset=reset, check_clean=check_clean, n_points=32, random_kills=3, seed=0
    )
    assert len(summary["kill_points"]) >= 30 and summary["outcomes"].get("killed", 0) >= 30
    assert summary["states"].get("old", 0) > 0 and summary["states"].get("new", 0) > 0


def test_kill_anywhere_without_folder_locks_is_recovered(old_new, monkeypatch):
    monkeypatch.setattr(file_locks, "fcntl", None)  # no flock (not POSIX), inherited by the children
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
    target.mkdir(parents=True)
    write_tree(target, FOREIGN)
    save_training_result(first, target)
    old_files = sorted(own_files(target))

    def reset():
        shutil.rmtree(parent)
        target.mkdir(parents=True)
        write_tree(target, FOREIGN)
        save_training_result(first, target)

    def check() -> str:
        assert target.is_dir(), f"{target} is missing; left: {siblings(parent)}"

        def load():
            with open_file_set(target, training.TRAINING_FILE_SET_KIND, on_mismatch="raise"):
                return (
                    SIDTable.from_json(target / SID_TABLE_FILE).as_dict(),
                    RQVAEModel.from_pretrained(target),
                    own_files(target),
                )

        table, model, files = load_or_repair(target, load)
        label = "old" if table == first.sid_table.as_dict() else "new"
        expected = first if label == "old" else second
        assert table == expected.sid_table.as_dict()
        assert sorted(files) == old_files  # the same file set: nothing stale, nothing missing
        np.testing.assert_array_equal(model.encode(emb).numpy(), expected.model.encode(emb).numpy())
        check_foreign(target)
        return label

    def check_clean() -> None:
        assert SIDTable.from_json(target / SID_TABLE_FILE).as_dict() == second.sid_table.as_dict()
        assert sorted(own_files(target)) == old_files
        assert siblings(parent) == ["rqvae"]
        check_foreign(target)

    summary = kill_harness.kill_during_save(
        lambda: save_training_result(second, target),
        check,
        reset=reset,
        check_clean=check_clean,
        n_points=30,
        seed=3,
        trace_files=[io_utils.__file__, *kill_harness.FILE_SET_SOURCES, training.__file__, shutil.__file__],
    )
    assert summary["outcomes"].get("killed", 0) >= 30
    assert summary["states"].get("old", 0) > 0 and summary["states"].get("new", 0) > 0


@pytest.fixture(scope="module")
def two_tokenizers(base_tokenizer):
    """Tokenizers A and B over the same 40 items, each with its own RQ-VAE and table."""
    emb, a, b = rqvae_tokenizer_pair(base_tokenizer, 40)
    assert a.sid_table_dict() != b.sid_table_dict()
    assert not np.array_equal(a.sids_for_embeddings(emb), b.sids_for_embeddings(emb))
    return emb, a, b


def tokenizer_label(
    tok: SemanticIDTokenizer, emb: np.ndarray, a: SemanticIDTokenizer, b: SemanticIDTokenizer
) -> str:
    """ "A" or "B" when the table and the RQ-VAE of `tok` are both A's or both B's; fails on a mix."""
    table = "A" if tok.sid_table_dict() == a.sid_table_dict() else "B"
    expected = a if table == "A" else b
    assert tok.sid_table_dict() == expected.sid_table_dict()
    np.testing.assert_array_equal(tok.sids_for_embeddings(emb), expected.sids_for_embeddings(emb))
    return table


def test_kill_tokenizer_save_anywhere_keeps_table_and_rqvae_together(two_tokenizers, tmp_path):
    emb, a, b = two_tokenizers
    target = tmp_path / "tok"

    def reset():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        write_tree(target, FOREIGN)
        a.save_pretrained(target)

    def check() -> str:
        tok = load_or_repair(target, lambda: SemanticIDTokenizer.from_pretrained(target))
        label = tokenizer_label(tok, emb, a, b)
        check_foreign(target)
        return label

    summary = kill_harness.kill_during_save(
        lambda: b.save_pretrained(target),
        check,
        reset=reset,
        n_points=16,
        seed=4,
        trace_files=[*kill_harness.FILE_SET_SOURCES, tokenization_semtok.__file__],
    )
    assert summary["outcomes"].get("killed", 0) >= 14
    assert summary["states"].get("A", 0) > 0 and summary["states"].get("B", 0) > 0


def test_loads_during_saves_never_mix_two_versions(two_tokenizers, tmp_path):
    """A reader loading while another process saves A and B in turn gets A or B whole (was: 98 of 2,787 mixed)."""
    emb, a, b = two_tokenizers
    target = tmp_path / "tok"
    a.save_pretrained(target)
    pid = os.fork()
    if pid == 0:  # the writer: never returns into pytest
        code = 0
        try:
            while True:
                b.save_pretrained(target)
                a.save_pretrained(target)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    try:
        labels = {"A": 0, "B": 0}
        deadline = time.monotonic() + 120  # a bound against a hang, not a timing assertion
        while min(labels.values()) < 3 and time.monotonic() < deadline:
            labels[tokenizer_label(SemanticIDTokenizer.from_pretrained(target), emb, a, b)] += 1
        assert min(labels.values()) >= 3, f"the loads did not see both versions: {labels}"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    # The writer was killed at a random instant: the folder loads, or (killed after a commit point) the load
    # refuses without a change and the repair completes it.
    tok = load_or_repair(target, lambda: SemanticIDTokenizer.from_pretrained(target))
    assert tokenizer_label(tok, emb, a, b) in ("A", "B")


class _FakeTokenizer:
    def save_pretrained(self, path):
        with atomic_directory(
            path, kind="tokenizer"
        ) as tmp:  # a nested save: becomes a part of the outer one
            (tmp / "tokenizer.json").write_text("{}")


class _FakeModel:
    def save_pretrained(self, path):
        (Path(path) / "model.safetensors").write_bytes(b"weights")


def test_generator_save_keeps_foreign_files_and_replaces_its_own(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    write_tree(target, FOREIGN)
    generator._save_atomic(_FakeModel(), _FakeTokenizer(), target)
    assert own_files(target) == {"model.safetensors": b"weights", "tokenizer.json": b"{}"}
    check_foreign(target)
    with open_file_set(target, "tokenizer") as part:  # the tokenizer's files are found as a part
        assert part is not None and set(part.files) == {"tokenizer.json"}
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
