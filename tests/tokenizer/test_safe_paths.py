"""Folders that came from elsewhere (a `git clone` of a Hub repository restores symlinks and may carry manifests and
staging folders): a load never changes a file anywhere, a save never writes or deletes through a link, a manifest
is data and never an order, loads of planted special files are bounded, saves of one object are reproducible, and
concurrent saves never fail."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tree_snapshot
from transformers import AutoTokenizer

from hf_semtok.io_utils import FileSetError, manifest_name, open_file_set, read_manifests, save_file_set
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.tokenizer.file_sets import LinkError
from hf_semtok.tokenizer.manifests import hash_file
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

VICTIM = {"precious.txt": b"keep me", "overwrite_me.txt": b"original", "sub/x.txt": b"x"}
PROJECT = {"train.py": b"print('train')", "data/interactions.csv": b"user,item\n1,2\n"}


def write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def meta(data: bytes) -> dict:
    import hashlib

    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest(kind: str, files: dict, pending: dict | None = None) -> dict:
    data = {
        "format": "hf_semtok.file_set",
        "version": 1,
        "kind": kind,
        "prefix": None,
        "commit": "planted",
        "parts": [{"kind": kind, "prefix": None, "files": files}],
    }
    if pending is not None:
        data["pending"] = pending
    return data


def plant(clone: Path, victim: Path, kind: str, staging_link: Path | None = None) -> None:
    """The probe's set-up: `link -> ../victim`, a staging folder whose files go through the link, a pending
    manifest of `kind` naming them and obsolete files behind the link, and a `zzz` manifest ordering the project's
    own files deleted."""
    write(victim, VICTIM)
    write(clone, PROJECT)
    os.symlink(os.path.relpath(victim, clone), clone / "link")
    staging = clone / ".hf_semtok_tmp-abcdefgh"
    if staging_link is None:
        write(staging, {"link/owned.sh": b"#!/bin/sh\necho owned\n", "link/overwrite_me.txt": b"evil"})
    else:
        os.symlink(staging_link, staging)
    files = {"link/owned.sh": meta(b"#!/bin/sh\necho owned\n"), "link/overwrite_me.txt": meta(b"evil")}
    obsolete = {"link/precious.txt": meta(VICTIM["precious.txt"]), "link/sub/x.txt": meta(b"x")}
    pending = {"staging": staging.name, "obsolete": obsolete}
    (clone / manifest_name(kind)).write_text(json.dumps(manifest(kind, files, pending)))
    project_obsolete = {name: meta(data) for name, data in PROJECT.items()}
    pending = {"staging": ".hf_semtok_tmp-zzzzzzzz", "obsolete": project_obsolete}
    (clone / manifest_name("zzz")).write_text(json.dumps(manifest("zzz", {}, pending)))


def tiny_rqvae() -> RQVAEModel:
    config = RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[8, 4])
    return RQVAEModel(config).eval()


LOADERS = {
    "SemanticIDTokenizer": lambda d: SemanticIDTokenizer.from_pretrained(d),
    "AutoTokenizer": lambda d: AutoTokenizer.from_pretrained(d, trust_remote_code=False),
    "RQVAEModel": lambda d: RQVAEModel.from_pretrained(d),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("staging_is_a_link", [False, True])
def test_loading_a_hostile_clone_changes_no_file_anywhere(tmp_path, sid_tokenizer, loader, staging_is_a_link):
    clone, victim, other = tmp_path / "clone", tmp_path / "victim", tmp_path / "other"
    sid_tokenizer.save_pretrained(clone)
    tiny_rqvae().save_pretrained(clone / "rqvae")
    target = clone / "rqvae" if loader == "RQVAEModel" else clone
    write(other, {"their.txt": b"theirs"})
    kind = "rqvae" if loader == "RQVAEModel" else "tokenizer"
    plant(target, victim, kind, staging_link=other if staging_is_a_link else None)
    before = tree_snapshot(tmp_path)
    with pytest.raises(FileSetError, match="interrupted after its commit point.*hf-semtok repair"):
        LOADERS[loader](str(target)) if loader != "AutoTokenizer" else _auto_load(target)
    assert tree_snapshot(tmp_path) == before


def _auto_load(target: Path):
    # AutoTokenizer reads the folder through the library's registration; the pending tokenizer save is refused.
    return LOADERS["AutoTokenizer"](str(target))


def test_a_planted_manifest_of_another_kind_is_never_acted_on(tmp_path, sid_tokenizer):
    clone, victim = tmp_path / "clone", tmp_path / "victim"
    sid_tokenizer.save_pretrained(clone)
    plant(clone, victim, "zzz_other")  # pending entries of kinds the loads and saves do not read
    before = tree_snapshot(tmp_path)
    loaded = SemanticIDTokenizer.from_pretrained(clone)  # `snapshot_download(..., local_dir=".")` then a load
    assert loaded.sid_table_dict() == sid_tokenizer.sid_table_dict()
    assert tree_snapshot(tmp_path) == before
    loaded.save_pretrained(clone)  # nor a save: the project's files and the link's target stay
    for name, data in {**PROJECT}.items():
        assert (clone / name).read_bytes() == data
    for name, data in VICTIM.items():
        assert (victim / name).read_bytes() == data
    assert not (victim / "owned.sh").exists()


def test_loads_work_on_a_read_only_folder(tmp_path, sid_tokenizer):
    sid_tokenizer.save_pretrained(tmp_path / "tok")
    for path in [tmp_path / "tok", *(tmp_path / "tok").rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        before = tree_snapshot(tmp_path)
        assert SemanticIDTokenizer.from_pretrained(tmp_path / "tok").num_items == sid_tokenizer.num_items
        assert tree_snapshot(tmp_path) == before
    finally:
        for path in [tmp_path / "tok", *(tmp_path / "tok").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_committed_manifest_naming_a_path_through_a_link_deletes_nothing(tmp_path, sid_tokenizer):
    clone, victim = tmp_path / "clone", tmp_path / "victim"
    sid_tokenizer.save_pretrained(clone)
    write(victim, VICTIM)
    os.symlink("../victim", clone / "link")
    name = manifest_name("tokenizer")
    data = json.loads((clone / name).read_text())
    data["parts"][0]["files"]["link/precious.txt"] = meta(VICTIM["precious.txt"])  # the right hash, even
    (clone / name).write_text(json.dumps(data))
    sid_tokenizer.save_pretrained(clone)
    assert {n: (victim / n).read_bytes() for n in VICTIM} == VICTIM


def test_a_save_refuses_to_write_through_a_linked_folder(tmp_path, sid_tokenizer):
    clone, victim = tmp_path / "clone", tmp_path / "victim"
    write(victim, VICTIM)
    clone.mkdir()
    os.symlink("../victim", clone / "additional_chat_templates")
    tok = SemanticIDTokenizer.from_pretrained(_saved(sid_tokenizer, tmp_path / "src"))
    tok.chat_template = {"default": "{{ messages }}", "tool": "{{ tools }}"}
    before = tree_snapshot(victim)
    with pytest.raises(LinkError, match="'additional_chat_templates' on its path is a symbolic link"):
        tok.save_pretrained(clone)
    assert tree_snapshot(victim) == before
    assert not [n for n in os.listdir(clone) if n.startswith(".hf_semtok")]


def _saved(tok, folder: Path) -> Path:
    tok.save_pretrained(folder)
    return folder


def test_a_file_changed_since_its_save_is_not_deleted(tmp_path):
    with save_file_set(tmp_path, "demo") as staging:
        (staging / "old.txt").write_text("written by the save")
        (staging / "edited.txt").write_text("written by the save")
    (tmp_path / "edited.txt").write_text("the user's edit")
    with save_file_set(tmp_path, "demo") as staging:
        (staging / "new.txt").write_text("new")
    assert not (tmp_path / "old.txt").exists()
    assert (tmp_path / "edited.txt").read_text() == "the user's edit"


def test_the_lm_stage_refuses_the_rqvae_folder_and_foreign_files(tmp_path, sid_tokenizer, make_tiny_lm):
    from hf_semtok.lm.stages import LMStageArguments, save_stage_output

    rqvae_dir = tmp_path / "rqvae"
    tiny_rqvae().save_pretrained(rqvae_dir)
    before = tree_snapshot(rqvae_dir)
    model = make_tiny_lm(len(sid_tokenizer))
    cfg = LMStageArguments(output_dir=str(rqvae_dir), report_to="none", use_cpu=True)
    with pytest.raises(FileSetError, match=r"would replace 'config.json', written by a 'rqvae' save"):
        save_stage_output(model, sid_tokenizer, cfg, {})
    assert tree_snapshot(rqvae_dir) == before
    project = tmp_path / "project"
    write(project, {"README.md": b"# my project\n", "config.json": b"{}"})
    cfg = LMStageArguments(output_dir=str(project), report_to="none", use_cpu=True)
    with pytest.raises(FileSetError, match="that no hf_semtok save wrote.*overwrite=True"):
        save_stage_output(model, sid_tokenizer, cfg, {})
    assert (project / "README.md").read_bytes() == b"# my project\n"


# ------------------------------------------------------------------------------------------------ bounded loads
@pytest.mark.parametrize("planted", ["fifo", "dev_zero"])
def test_a_planted_fifo_or_device_never_hangs_a_load(tmp_path, sid_tokenizer, planted):
    folder = tmp_path / "tok"
    sid_tokenizer.save_pretrained(folder)

    def make(path: Path) -> None:
        path.unlink(missing_ok=True)
        if planted == "fifo":
            os.mkfifo(path)
        else:
            os.symlink("/dev/zero", path)

    result: dict = {}

    def load():
        try:
            SemanticIDTokenizer.from_pretrained(folder)
            result["ok"] = True
        except ValueError as err:
            result["error"] = str(err)

    for name in ["sid_table.json", "tokenizer_config.json", "tokenizer.json"]:
        sid_tokenizer.save_pretrained(folder)
        make(folder / name)
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), f"a load hung on {name} as a {planted}"
        assert "regular file" in result.pop("error", ""), name
        (folder / name).unlink()
    # A manifest entry that is a FIFO: reported as a problem, never read.
    sid_tokenizer.save_pretrained(tmp_path / "t2")
    data = json.loads((tmp_path / "t2" / manifest_name("tokenizer")).read_text())
    data["parts"][0]["files"]["pipe"] = {"size": 0, "sha256": "0" * 64}
    (tmp_path / "t2" / manifest_name("tokenizer")).write_text(json.dumps(data))
    make(tmp_path / "t2" / "pipe")
    with open_file_set(tmp_path / "t2", "tokenizer") as files:
        assert any("pipe is not a regular file" in p for p in files.problems())


def test_a_manifest_naming_too_many_files_is_refused_quickly(tmp_path):
    files = {f"f{i}": {"size": 1, "sha256": "0"} for i in range(200_000)}
    (tmp_path / manifest_name("demo")).write_text(json.dumps(manifest("demo", files)))
    start = time.perf_counter()
    with pytest.raises(FileSetError, match="names more than 100,000 files"):
        read_manifests(tmp_path)
    assert time.perf_counter() - start < 30  # was 68 s before the cap (a bound, not a speed target)


def test_hash_file_refuses_special_files(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FileSetError, match="not a regular file"):
        hash_file(tmp_path / "pipe")


# ------------------------------------------------------------------------------------------------ reproducible
def test_two_saves_of_the_same_objects_are_byte_identical(tmp_path, sid_tokenizer, make_tiny_lm):
    from hf_semtok.lm.stages import LMStageArguments, save_stage_output

    rq = tiny_rqvae()
    model = make_tiny_lm(len(sid_tokenizer))
    for copy in ("a", "b"):
        sid_tokenizer.save_pretrained(tmp_path / copy / "tok")
        rq.save_pretrained(tmp_path / copy / "rqvae")
        cfg = LMStageArguments(
            output_dir=str(tmp_path / copy / f"stage_{copy}"), report_to="none", use_cpu=True
        )
        save_stage_output(model, sid_tokenizer, cfg, {"train_steps": 2})
    for sub in ("tok", "rqvae"):
        assert tree_snapshot(tmp_path / "a" / sub) == tree_snapshot(tmp_path / "b" / sub), sub
    assert tree_snapshot(tmp_path / "a" / "stage_a") == tree_snapshot(tmp_path / "b" / "stage_b")


def test_a_loaded_tokenizer_saves_the_bytes_it_was_loaded_from(tmp_path, sid_tokenizer):
    from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

    sid_tokenizer.save_pretrained(tmp_path / "first")
    SemanticIDTokenizer.from_pretrained(tmp_path / "first").save_pretrained(tmp_path / "again")
    assert tree_snapshot(tmp_path / "first") == tree_snapshot(tmp_path / "again")


# ------------------------------------------------------------------------------------------------ concurrency
def _writer(folder: str, seed: int, n: int, failures) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        version = f"{seed}-{i}-{rng.integers(1 << 30)}"
        try:
            with save_file_set(folder, "demo") as staging:
                (staging / "a.txt").write_text(version)
                (staging / "sub").mkdir()
                (staging / "sub" / "b.txt").write_text(version)
        except Exception as err:  # counted, not raised: the test reports every failure
            failures.put(f"writer {seed} save {i}: {type(err).__name__}: {err}")


def _reader(folder: str, stop, failures, reads) -> None:
    count = 0
    while not stop.is_set():
        try:
            with open_file_set(folder, "demo", on_mismatch="raise") as files:
                if files is not None:
                    a, b = files.read_bytes("a.txt"), files.read_bytes("sub/b.txt")
                    if a != b:
                        failures.put(f"read a mix: {a!r} / {b!r}")
                    count += 1
        except Exception as err:
            failures.put(f"reader: {type(err).__name__}: {err}")
    reads.put(count)


def test_four_writers_and_a_reader_never_fail(tmp_path):
    ctx = multiprocessing.get_context("fork")
    failures, reads, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=_reader, args=(str(tmp_path), stop, failures, reads))
    reader.start()
    writers = [ctx.Process(target=_writer, args=(str(tmp_path), s, 300, failures)) for s in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(300)
    stop.set()
    reader.join(60)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == [], f"{len(found)} of 1,200 saves or reads failed: {found[:5]}"
    assert all(w.exitcode == 0 for w in writers) and reads.get(timeout=5) > 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".hf_semtok_tmp")]


def test_the_repair_command_shows_its_plan_first_and_acts_only_when_told(tmp_path, monkeypatch):
    import errno
    import subprocess
    import sys

    from hf_semtok.tokenizer import file_sets

    with save_file_set(tmp_path, "demo") as staging:
        (staging / "a.txt").write_text("old")
    real_place = file_sets._place

    def die(*args):
        raise OSError(errno.EIO, "killed")

    monkeypatch.setattr(file_sets, "_place", die)
    with pytest.raises(OSError, match="killed"):
        with save_file_set(tmp_path, "demo") as staging:
            (staging / "a.txt").write_text("new")
    monkeypatch.setattr(file_sets, "_place", real_place)
    # As a user types it: the `hf-semtok` program installed beside this Python.
    program = Path(sys.executable).with_name("hf-semtok")
    command = [str(program) if program.exists() else "hf-semtok", "repair", str(tmp_path)]
    before = tree_snapshot(tmp_path)
    shown = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (
        shown.returncode == 1 and "complete the interrupted save" in shown.stdout and "--yes" in shown.stderr
    )
    assert tree_snapshot(tmp_path) == before
    done = subprocess.run([*command, "--yes"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open_file_set(tmp_path, "demo", on_mismatch="raise") as files:
        assert files.read_bytes("a.txt") == b"new"
    again = subprocess.run([*command, "--yes"], capture_output=True, text=True)
    assert "nothing to repair" in again.stdout


def test_damaged_manifests_and_targets_are_clear_errors(tmp_path):
    (tmp_path / manifest_name("demo")).write_text('{"format": "hf_semtok.file_set", "format": "x"}')
    with pytest.raises(FileSetError, match="appears twice"):
        read_manifests(tmp_path)
    (tmp_path / manifest_name("demo")).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileSetError, match="cannot read this file-set manifest"):
        read_manifests(tmp_path)
    with pytest.raises(ValueError, match="Choose a shorter path"):
        with save_file_set(tmp_path / ("x" * 300), "demo"):
            pass


def test_the_users_special_files_beside_a_saved_tokenizer_do_not_block_its_load(tmp_path, sid_tokenizer):
    project = tmp_path / "proj"
    sid_tokenizer.save_pretrained(project)
    (project / "logs").mkdir()
    os.symlink("/dev/null", project / "logs" / "out.log")
    os.mkfifo(project / "user_pipe")
    assert SemanticIDTokenizer.from_pretrained(project).num_items == sid_tokenizer.num_items


def test_the_repair_refuses_a_save_whose_files_are_neither_staged_nor_in_place(tmp_path, monkeypatch):
    import errno

    from hf_semtok.tokenizer import file_sets
    from hf_semtok.tokenizer.file_sets import recover_file_sets, repair_plan

    with save_file_set(tmp_path, "demo") as staging:
        (staging / "a.txt").write_text("old a")
        (staging / "b.txt").write_text("old b")
    monkeypatch.setattr(file_sets, "_place", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "killed")))
    with pytest.raises(OSError, match="killed"):
        with save_file_set(tmp_path, "demo") as staging:
            (staging / "a.txt").write_text("new a")
            (staging / "b.txt").write_text("new b")
    monkeypatch.undo()
    pending = read_manifests(tmp_path)[manifest_name("demo")]["pending"]["staging"]
    (tmp_path / pending / "b.txt").unlink()  # lost: b.txt is neither staged nor in place as the save wrote it
    plan = repair_plan(tmp_path)
    assert len(plan) == 1 and "leave" in plan[0] and "b.txt is neither staged in" in plan[0]
    before = tree_snapshot(tmp_path)
    assert recover_file_sets(tmp_path) == []
    assert tree_snapshot(tmp_path) == before


def test_an_lm_stage_refuses_its_output_dir_before_training(tmp_path):
    from hf_semtok.lm.stages import LMStageArguments, run_lm_stage

    project = tmp_path / "project"
    write(project, {"README.md": b"# mine\n"})
    with pytest.raises(FileSetError, match="would replace 'README.md', that no hf_semtok save wrote"):
        run_lm_stage(
            LMStageArguments(output_dir=str(project), disable_tqdm=True, report_to="none", use_cpu=True)
        )
    assert sorted(os.listdir(project)) == ["README.md"]  # no checkpoint written
    with pytest.raises(ValueError, match="folder to save into is empty"):
        with save_file_set("", "demo"):
            pass


def test_bad_save_paths_are_clear_errors(tmp_path, sid_tokenizer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    cases = [
        ("", ValueError, "folder to save into is empty"),
        (str(tmp_path / ("a" * 300)), ValueError, "Choose a shorter path"),
        ("afile/sub", ValueError, "A part of the path is a file"),
        (None, TypeError, "must be a path"),
        ("a\0b", ValueError, "NUL character"),
    ]
    for path, error, message in cases:
        with pytest.raises(error, match=message):
            sid_tokenizer.save_pretrained(path)
    with pytest.raises(ValueError, match="filename_prefix must be a non-empty string"):
        sid_tokenizer.save_pretrained(tmp_path / "t", filename_prefix="")
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_the_repair_command_fails_when_a_save_is_left_incomplete(tmp_path, monkeypatch):
    import errno
    import subprocess
    import sys

    from hf_semtok.tokenizer import file_sets

    with save_file_set(tmp_path, "demo") as staging:
        (staging / "a.txt").write_text("old")
    monkeypatch.setattr(file_sets, "_place", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "killed")))
    with pytest.raises(OSError, match="killed"):
        with save_file_set(tmp_path, "demo") as staging:
            (staging / "a.txt").write_text("new")
    monkeypatch.undo()
    staged = read_manifests(tmp_path)[manifest_name("demo")]["pending"]["staging"]
    (tmp_path / staged / "a.txt").write_text("tampered")
    program = Path(sys.executable).with_name("hf-semtok")
    done = subprocess.run(
        [str(program) if program.exists() else "hf-semtok", "repair", str(tmp_path), "--yes"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "Done." not in done.stdout and "could not be completed" in done.stderr


def test_a_special_trainer_state_never_hangs_a_resume(tmp_path):
    from hf_semtok.lm.checkpoints import last_complete_checkpoint

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    os.symlink("/dev/zero", checkpoint / "trainer_state.json")
    assert last_complete_checkpoint(tmp_path) == (None, None)  # skipped with a warning, never read whole
    (checkpoint / "trainer_state.json").unlink()
    os.mkfifo(checkpoint / "trainer_state.json")
    assert last_complete_checkpoint(tmp_path) == (None, None)
