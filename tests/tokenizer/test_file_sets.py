"""Saves own only their files (issue 24): every save leaves the rest of its folder alone, works in `.`, in a mount
point and in long folder names, refuses the filesystem root, keeps file modes, and a loaded tokenizer keeps its
own RQ-VAE. Kills at any instant are in tests/test_atomic_saves.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import rqvae_tokenizer_pair
from conftest import tree_snapshot as tree_hashes

from hf_semtok.constants import RQVAE_CONFIG_FILE, RQVAE_WEIGHTS_FILE, SID_TABLE_FILE, TOKENIZER_FILE
from hf_semtok.io_utils import (
    FileSetError,
    manifest_name,
    open_file_set,
    read_manifests,
    recover_file_sets,
    save_file_set,
)
from hf_semtok.lm import generator
from hf_semtok.lm.stages import LMStageArguments, save_stage_output
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.training import train_rqvae
from hf_semtok.tokenizer import file_locks, file_sets
from hf_semtok.tokenizer.file_sets import repair_plan
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

#: What a user keeps in the folder saved into; `volume/` stands in for a volume mounted inside it.
FOREIGN = {"notes.txt": b"the user's notes", "volume/data.bin": b"mounted data", "volume/deep/x": b"x"}


def put_foreign(folder: Path) -> None:
    for name, data in FOREIGN.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def assert_foreign_intact(folder: Path) -> None:
    for name, data in FOREIGN.items():
        assert (folder / name).read_bytes() == data, f"the save touched {name}"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def no_leftovers(folder: Path) -> bool:
    return not [n for n in names(folder) if n.startswith(".hf_semtok_tmp")]


@pytest.fixture(scope="module")
def rq_tokenizers(base_tokenizer):
    """Tokenizers A and B over the same 30 items, each with its own RQ-VAE, and the embeddings."""
    return rqvae_tokenizer_pair(base_tokenizer, 30)


# ------------------------------------------------------------------------------------------- the core
def test_a_save_replaces_only_the_files_of_its_previous_save(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    put_foreign(folder)
    with save_file_set(folder, "demo") as staging:
        (staging / "a.txt").write_text("a1")
        (staging / "sub").mkdir()
        (staging / "sub" / "s.txt").write_text("s")
    with save_file_set(folder, "other") as staging:
        (staging / "o.txt").write_text("o")
    with save_file_set(folder, "demo") as staging:  # drops sub/s.txt, rewrites a.txt
        (staging / "a.txt").write_text("a2")
    assert (folder / "a.txt").read_text() == "a2"
    assert not (folder / "sub").exists()  # its folder went with the last file the save wrote there
    assert (folder / "o.txt").read_text() == "o"  # another kind's file
    assert_foreign_intact(folder)
    assert sorted(read_manifests(folder)) == [manifest_name("demo"), manifest_name("other")]
    assert no_leftovers(folder) and names(tmp_path) == ["out"]
    with open_file_set(folder, "demo") as files:
        assert set(files.files) == {"a.txt"} and files.problems() == []


def test_a_file_of_another_kind_of_save_is_replaced_only_with_overwrite(tmp_path):
    with save_file_set(tmp_path, "first") as staging:
        (staging / "shared.json").write_text("1")
        (staging / "only_first.json").write_text("1")
    (tmp_path / "users.json").write_text("mine")
    for name, whose in [
        ("shared.json", "written by a 'first' save"),
        ("users.json", "that no hf_semtok save wrote"),
    ]:
        with pytest.raises(FileSetError, match=f"would replace '{name}', {whose}.*overwrite=True"):
            with save_file_set(tmp_path, "second") as staging:
                (staging / name).write_text("2")
    assert (tmp_path / "shared.json").read_text() == "1" and (tmp_path / "users.json").read_text() == "mine"
    assert no_leftovers(tmp_path)
    with save_file_set(tmp_path, "second") as staging:  # the same bytes replace nothing: allowed
        (staging / "users.json").write_text("mine")
    with save_file_set(tmp_path, "second", overwrite=True) as staging:
        (staging / "shared.json").write_text("2")
    with open_file_set(tmp_path, "first", on_mismatch="raise") as first:
        assert set(first.files) == {"only_first.json"}  # gave up the file the later save wrote
    with save_file_set(tmp_path, "first") as staging:
        (staging / "only_first.json").write_text("1")
    assert (tmp_path / "shared.json").read_text() == "2"  # not the first kind's to delete any more


def test_save_into_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put_foreign(tmp_path)
    with save_file_set(".", "demo") as staging:
        (staging / "a.txt").write_text("a")
    assert Path.cwd() == tmp_path and tmp_path.is_dir()
    assert_foreign_intact(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "a" and no_leftovers(tmp_path)


def test_a_250_character_folder_name_works(tmp_path, sid_tokenizer):
    folder = tmp_path / ("f" * 250)  # a temporary sibling named after it would pass NAME_MAX (255)
    for version in ("1", "2"):
        with save_file_set(folder, "demo") as staging:
            (staging / "a.txt").write_text(version)
    assert (folder / "a.txt").read_text() == "2" and no_leftovers(folder)
    sid_tokenizer.save_pretrained(folder)
    assert SemanticIDTokenizer.from_pretrained(folder).sid_table_dict() == sid_tokenizer.sid_table_dict()


def test_no_folder_is_renamed_so_a_mount_point_works(tmp_path, monkeypatch):
    """A mount point cannot be renamed (EBUSY): the save must never rename or remove the folder itself."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    put_foreign(folder)
    busy = {os.path.realpath(folder), os.path.realpath(folder / "volume")}

    def guard(real):
        def call(*args, **kwargs):
            if {os.path.realpath(a) for a in args[:2] if isinstance(a, (str, os.PathLike))} & busy:
                raise OSError(errno.EBUSY, "Device or resource busy", str(args[0]))
            return real(*args, **kwargs)

        return call

    for name in ("rename", "replace", "rmdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    for version in ("1", "2"):
        with save_file_set(folder, "demo") as staging:
            (staging / "a.txt").write_text(version)
            (staging / f"only_{version}.txt").write_text(version)
    assert (folder / "a.txt").read_text() == "2" and not (folder / "only_1.txt").exists()
    assert_foreign_intact(folder)


def test_the_filesystem_root_is_refused(sid_tokenizer):
    with pytest.raises(ValueError, match="Refusing to save into the filesystem root"):
        with save_file_set("/", "demo"):
            pass
    with pytest.raises(ValueError, match="Refusing to save into the filesystem root"):
        sid_tokenizer.save_pretrained("/")
    with pytest.raises(ValueError, match="Refusing to save into the filesystem root"):
        train_rqvae(np.zeros((4, 2), dtype="float32"), output_dir="/")  # before any training


def test_a_failed_save_leaves_the_old_set(tmp_path):
    with save_file_set(tmp_path, "demo") as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with save_file_set(tmp_path, "demo") as staging:
            (staging / "a.txt").write_text("new")
            raise RuntimeError("boom")
    assert (tmp_path / "a.txt").read_text() == "old" and no_leftovers(tmp_path)


def test_a_save_cut_after_its_commit_point_is_refused_by_loads_and_completed_by_the_repair(
    tmp_path, monkeypatch
):
    with save_file_set(tmp_path, "demo") as staging:
        (staging / "a.txt").write_text("old a")
        (staging / "gone.txt").write_text("old")
    real_place = file_sets._place
    placed = []

    def place_once(target, staging, rel):  # the first file lands, then the save "dies"
        if placed:
            raise OSError(errno.EIO, "killed")
        placed.append(rel)
        real_place(target, staging, rel)

    monkeypatch.setattr(file_sets, "_place", place_once)
    with pytest.raises(OSError, match="killed"):
        with save_file_set(tmp_path, "demo") as staging:
            (staging / "a.txt").write_text("new a")
            (staging / "b.txt").write_text("new b")
    monkeypatch.setattr(file_sets, "_place", real_place)
    pending = read_manifests(tmp_path)[manifest_name("demo")]["pending"]
    assert (tmp_path / pending["staging"]).is_dir()  # kept for the repair
    before = tree_hashes(tmp_path)
    with pytest.raises(FileSetError, match="interrupted after its commit point.*hf-semtok repair"):
        with open_file_set(tmp_path, "demo"):
            pass
    assert tree_hashes(tmp_path) == before  # a load only reads
    assert any("complete the interrupted save" in line for line in repair_plan(tmp_path))
    assert tree_hashes(tmp_path) == before  # the plan only reads too
    recover_file_sets(tmp_path)
    with open_file_set(tmp_path, "demo", on_mismatch="raise") as files:
        got = {name: files.read_bytes(name) for name in files.files}
    assert got == {"a.txt": b"new a", "b.txt": b"new b"}
    assert not (tmp_path / "gone.txt").exists() and no_leftovers(tmp_path)


def test_a_dead_staging_folder_is_removed_but_a_live_one_is_not(tmp_path):
    dead = tmp_path / ".hf_semtok_tmp-dead0000"
    dead.mkdir()
    (dead / "half").write_text("half")
    live = tmp_path / ".hf_semtok_tmp-live0000"
    live.mkdir()
    holder = file_locks.hold_staging(live)  # another save (as another process would) still writing there
    try:
        recover_file_sets(tmp_path)
        assert not dead.exists() and live.is_dir()
    finally:
        os.close(holder)
    recover_file_sets(tmp_path)
    assert not live.exists()


def test_a_hostile_manifest_cannot_make_a_save_delete_outside_the_folder(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (tmp_path / "precious.txt").write_text("keep")
    manifest = {
        "format": "hf_semtok.file_set",
        "version": 1,
        "kind": "demo",
        "prefix": None,
        "commit": "x",
        "parts": [{"kind": "demo", "prefix": None, "files": {"../precious.txt": {"size": 4, "sha256": "0"}}}],
    }
    (folder / manifest_name("demo")).write_text(json.dumps(manifest))
    with pytest.raises(FileSetError, match="not a plain path inside the folder"):
        with save_file_set(folder, "demo") as staging:
            (staging / "a.txt").write_text("a")
    assert (tmp_path / "precious.txt").read_text() == "keep"
    (folder / manifest_name("demo")).write_text("{truncated")
    with pytest.raises(FileSetError, match="cannot read this file-set manifest"):
        with open_file_set(folder, "demo"):
            pass


def test_a_file_changed_after_the_save_is_reported(tmp_path, caplog):
    with save_file_set(tmp_path, "demo") as staging:
        (staging / "a.txt").write_text("saved")
    (tmp_path / "a.txt").write_text("edited by hand")
    with open_file_set(tmp_path, "demo") as files:  # warns and reads the file as it is
        assert files.read_bytes("a.txt") == b"edited by hand"
    assert "a.txt differs from what the save wrote" in caplog.text
    with pytest.raises(FileSetError, match=r"a\.txt differs .* delete \.hf_semtok_manifest\.demo\.json"):
        with open_file_set(tmp_path, "demo", on_mismatch="raise"):
            pass


def test_saved_files_get_umask_modes(tmp_path, rq_tokenizers):
    """safetensors writes 0600 files; a serving container running as another user must be able to read them."""
    _, a, _ = rq_tokenizers
    previous = os.umask(0o022)
    try:
        a.rqvae.save_pretrained(tmp_path / "rqvae")
        a.save_pretrained(tmp_path / "tok")
    finally:
        os.umask(previous)
    for path in (tmp_path / "rqvae" / "model.safetensors", tmp_path / "tok" / RQVAE_WEIGHTS_FILE):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (tmp_path / "tok").iterdir() if p.is_file())
    assert (tmp_path / "tok").stat().st_mode & 0o777 == 0o755


# ------------------------------------------------------------------------------------------- every saver
def test_tokenizer_save_keeps_foreign_files(tmp_path, sid_tokenizer):
    folder = tmp_path / "tok"
    folder.mkdir()
    put_foreign(folder)
    (folder / "config.json").write_text('{"model_type": "an LM beside the tokenizer"}')
    sid_tokenizer.save_pretrained(folder)
    sid_tokenizer.save_pretrained(folder)
    assert_foreign_intact(folder)
    assert (folder / "config.json").read_text() == '{"model_type": "an LM beside the tokenizer"}'
    assert SemanticIDTokenizer.from_pretrained(folder).sid_table_dict() == sid_tokenizer.sid_table_dict()
    assert no_leftovers(folder) and names(tmp_path) == ["tok"]


def test_a_prefixed_tokenizer_save_keeps_the_unprefixed_one(tmp_path, sid_tokenizer, rq_tokenizers):
    _, a, _ = rq_tokenizers
    folder = tmp_path / "tok"
    a.save_pretrained(folder)
    before = {  # the remote-code .py files are shared: both saves write the same ones
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and not p.name.endswith(".py") and not p.name.startswith(".hf_semtok")
    }
    sid_tokenizer.save_pretrained(folder, filename_prefix="p")
    sid_tokenizer.save_pretrained(folder, filename_prefix="p")
    assert (folder / f"p-{SID_TABLE_FILE}").is_file() and (folder / f"p-{TOKENIZER_FILE}").is_file()
    for name, data in before.items():
        assert (folder / name).read_bytes() == data, name
    assert (folder / manifest_name("tokenizer", "p")).is_file()
    with open_file_set(folder, "tokenizer", on_mismatch="raise") as unprefixed:
        assert set(before) <= set(unprefixed.files)  # still the unprefixed tokenizer's, unchanged
    loaded = SemanticIDTokenizer.from_pretrained(folder)
    assert loaded.sid_table_dict() == a.sid_table_dict() and loaded.has_rqvae


def test_a_tokenizer_saved_without_a_manifest_loads_and_is_foreign_to_a_save(
    tmp_path, rq_tokenizers, sid_tokenizer
):
    """Files no manifest names are not this save's: refused without overwrite (the probe's `base.save_pretrained(d)`
    then `tok.save_pretrained(d)`, which replaced and deleted them), and with overwrite replaced, never deleted."""
    _, a, _ = rq_tokenizers
    folder = tmp_path / "tok"
    a.save_pretrained(folder)
    (folder / manifest_name("tokenizer")).unlink()  # as an older release, or another tool, saved it
    put_foreign(folder)
    (folder / "README.md").write_text("the user's card")
    assert SemanticIDTokenizer.from_pretrained(folder).has_rqvae  # read as before
    before = tree_hashes(tmp_path)
    with pytest.raises(
        FileSetError, match=r"would replace '.*', that no hf_semtok save wrote.*overwrite=True"
    ):
        sid_tokenizer.save_pretrained(folder)
    assert tree_hashes(tmp_path) == before
    sid_tokenizer.save_pretrained(folder, overwrite=True)  # carries no RQ-VAE: the old RQ-VAE files stay
    assert (folder / RQVAE_WEIGHTS_FILE).exists() and (folder / RQVAE_CONFIG_FILE).exists()
    assert_foreign_intact(folder)
    assert (folder / "README.md").read_text() == "the user's card"
    loaded = SemanticIDTokenizer.from_pretrained(folder)
    assert loaded.sid_table_dict() == sid_tokenizer.sid_table_dict() and not loaded.has_rqvae


def test_a_planted_manifest_cannot_make_a_save_delete_what_its_kind_never_writes(tmp_path, sid_tokenizer):
    """A tokenizer manifest that came with a folder and lists the user's README.md (with its real hash) among the
    tokenizer's files: the next save must not delete it (a manifest narrows what is deleted, never widens it)."""
    folder = tmp_path / "tok"
    sid_tokenizer.save_pretrained(folder)
    readme = folder / "README.md"
    readme.write_text("the user's card")
    path = folder / manifest_name("tokenizer")
    data = json.loads(path.read_text())
    data["parts"][0]["files"]["README.md"] = {
        "size": readme.stat().st_size,
        "sha256": hashlib.sha256(readme.read_bytes()).hexdigest(),
    }
    path.write_text(json.dumps(data))
    sid_tokenizer.save_pretrained(folder)
    assert readme.read_text() == "the user's card"


def test_train_rqvae_output_dot_keeps_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put_foreign(tmp_path)
    emb = np.random.default_rng(0).normal(size=(40, 8)).astype("float32")
    config = RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[4, 4])
    result = train_rqvae(emb, config=config, max_steps=2, batch_size=20, progress=False, output_dir=".")
    assert Path.cwd() == tmp_path
    assert_foreign_intact(tmp_path)
    model = RQVAEModel.from_pretrained(".")
    np.testing.assert_array_equal(model.encode(emb).numpy(), result.model.encode(emb).numpy())
    assert no_leftovers(tmp_path)


def test_lm_stage_save_keeps_foreign_files_and_checkpoints(tmp_path, sid_tokenizer, make_tiny_lm):
    out = tmp_path / "stage"
    out.mkdir()
    put_foreign(out)
    (out / "checkpoint-2").mkdir()
    (out / "checkpoint-2" / "trainer_state.json").write_text("{}")
    cfg = LMStageArguments(output_dir=str(out), report_to=[])
    model = make_tiny_lm(len(sid_tokenizer))
    save_stage_output(model, sid_tokenizer, cfg, facts={})
    save_stage_output(model, sid_tokenizer, cfg, facts={})
    assert_foreign_intact(out)
    assert (out / "checkpoint-2" / "trainer_state.json").read_text() == "{}"
    assert {"config.json", "model.safetensors", "README.md", TOKENIZER_FILE} <= set(names(out))
    assert names(out).count(manifest_name("lm_stage")) == 1 and no_leftovers(out)
    assert SemanticIDTokenizer.from_pretrained(out).sid_table_dict() == sid_tokenizer.sid_table_dict()
    assert (out / "model.safetensors").stat().st_mode & 0o077 == 0o066 & ~file_sets.current_umask()


def test_generator_save_keeps_foreign_files(tmp_path, sid_tokenizer, make_tiny_lm):
    target = tmp_path / "model"
    target.mkdir()
    put_foreign(target)
    generator._save_atomic(make_tiny_lm(len(sid_tokenizer)), sid_tokenizer, target)
    assert_foreign_intact(target)
    assert SemanticIDTokenizer.from_pretrained(target).num_items == sid_tokenizer.num_items
    assert no_leftovers(target) and names(tmp_path) == ["model"]


# ------------------------------------------------------------------------------------------- item 2: its own RQ-VAE
def test_a_loaded_tokenizer_keeps_its_own_rqvae(tmp_path, rq_tokenizers):
    emb, a, b = rq_tokenizers
    folder = tmp_path / "tok"
    a.save_pretrained(folder)
    loaded_a = SemanticIDTokenizer.from_pretrained(folder)
    b.save_pretrained(folder)  # another tokenizer, another RQ-VAE, into the same folder
    np.testing.assert_array_equal(loaded_a.sids_for_embeddings(emb), a.sids_for_embeddings(emb))
    assert not np.array_equal(loaded_a.sids_for_embeddings(emb), b.sids_for_embeddings(emb))
    np.testing.assert_array_equal(
        SemanticIDTokenizer.from_pretrained(folder).sids_for_embeddings(emb), b.sids_for_embeddings(emb)
    )


def test_a_loaded_tokenizer_saves_its_own_rqvae_not_the_folders(tmp_path, rq_tokenizers):
    emb, a, b = rq_tokenizers
    a.save_pretrained(tmp_path / "src")
    loaded_a = SemanticIDTokenizer.from_pretrained(tmp_path / "src")  # RQ-VAE not built yet
    b.save_pretrained(tmp_path / "src")
    loaded_a.save_pretrained(tmp_path / "copy")
    again = SemanticIDTokenizer.from_pretrained(tmp_path / "copy")
    np.testing.assert_array_equal(again.sids_for_embeddings(emb), a.sids_for_embeddings(emb))


def test_rqvae_files_beside_a_manifest_that_does_not_name_them_are_ignored(
    tmp_path, rq_tokenizers, sid_tokenizer
):
    _, a, _ = rq_tokenizers
    a.save_pretrained(tmp_path / "with")
    sid_tokenizer.save_pretrained(tmp_path / "tok")
    for name in (RQVAE_CONFIG_FILE, RQVAE_WEIGHTS_FILE):  # planted, not written by the tokenizer's save
        shutil.copyfile(tmp_path / "with" / name, tmp_path / "tok" / name)
    assert not SemanticIDTokenizer.from_pretrained(tmp_path / "tok").has_rqvae


# ------------------------------------------------------------------------------------------- item 3: hostile names
@pytest.mark.parametrize("token", ["<|sid_999999999999_0|>", "<|sid_0_999999999999|>"])
def test_a_hostile_sid_token_in_tokenizer_json_is_a_clear_error(tmp_path, sid_tokenizer, token):
    folder = tmp_path / "tok"
    sid_tokenizer.save_pretrained(folder)
    data = json.loads((folder / TOKENIZER_FILE).read_text())
    data["added_tokens"].append(
        {
            "id": 999,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
    )
    (folder / TOKENIZER_FILE).write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=rf"{TOKENIZER_FILE}: added token '{token.replace('|', '[|]')}' names SID"
    ):
        SemanticIDTokenizer.from_pretrained(folder)


def test_a_huge_sparse_rqvae_file_is_refused_before_it_is_read(tmp_path, rq_tokenizers):
    """Probe 3: an 8 GiB sparse rqvae.safetensors (with or without a manifest naming it) was read whole."""
    _, a, _ = rq_tokenizers
    for with_manifest in (True, False):
        folder = tmp_path / f"tok-{with_manifest}"
        a.save_pretrained(folder)
        if not with_manifest:
            (folder / manifest_name("tokenizer")).unlink()
        os.truncate(folder / RQVAE_WEIGHTS_FILE, 8 << 30)  # sparse: no disk used
        with pytest.raises((ValueError, FileSetError), match=RQVAE_WEIGHTS_FILE):
            SemanticIDTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", [TOKENIZER_FILE, SID_TABLE_FILE])
def test_a_huge_sparse_tokenizer_file_is_refused_before_transformers_reads_it(tmp_path, sid_tokenizer, name):
    """Probe 4: an 8 GiB sparse tokenizer.json was read whole by transformers before the size check ran."""
    sid_tokenizer.save_pretrained(tmp_path / "tok")
    os.truncate(tmp_path / "tok" / name, 8 << 30)
    with pytest.raises(ValueError, match=f"{name}: is 8,589,934,592 bytes, more than"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "tok")


def test_a_save_that_cannot_create_its_folder_says_where(tmp_path, sid_tokenizer):
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    with pytest.raises(OSError, match=r"Cannot save into /proc/.*creating a folder there failed"):
        sid_tokenizer.save_pretrained("/proc/self")
