"""One run per output folder (`hf_semtok.run_lock`): a second run into a folder in use is refused at its start,
naming the folder; a killed run's lock goes with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hf_semtok.lm.stages import LMStageArguments, run_lm_stage
from hf_semtok.run_lock import RUN_LOCK_FILE, OutputDirInUseError, hold_output_dir

ROOT = Path(__file__).resolve().parent.parent
HOLDER = """
import sys, time
from hf_semtok.run_lock import hold_output_dir
with hold_output_dir(sys.argv[1], what="the first run"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding `tmp_path / "out"`, as a run in progress does (killed at the end of the test)."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_run_into_a_folder_in_use_is_refused_until_the_first_is_killed(holder, tmp_path):
    out, proc = holder
    with pytest.raises(
        OutputDirInUseError, match=rf"output_dir '{out}' is in use by another run \(pid {proc.pid} "
    ):
        with hold_output_dir(out):
            pass
    with pytest.raises(OutputDirInUseError, match="the first run"):  # before any data or model is loaded
        run_lm_stage(LMStageArguments(output_dir=str(out), disable_tqdm=True))
    os.kill(proc.pid, signal.SIGKILL)  # a killed run: the operating system releases its lock
    proc.wait()
    with hold_output_dir(out) as held:
        assert (held / RUN_LOCK_FILE).is_file()
    assert not (out / RUN_LOCK_FILE).exists()  # the lock file goes with the run that held it


def test_a_recipe_typed_twice_into_one_folder_is_refused(holder):
    """As typed: `python recipes/train_rqvae.py --config ...` into a folder another run holds fails at once."""
    out, _ = holder
    proc = subprocess.run(
        [
            sys.executable, "recipes/train_rqvae.py", "--config", "recipes/configs/rqvae_synthetic.yaml",
            "--output_dir", str(out), "--max_steps", "2", "--no_progress",
        ],
        cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"OutputDirInUseError: output_dir '{out}' is in use by another run" in proc.stderr
    assert list(out.iterdir()) == [out / RUN_LOCK_FILE]  # nothing written beside the first run's lock


def test_one_process_cannot_hold_a_folder_twice_and_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "new"
    with hold_output_dir(out):
        with pytest.raises(OutputDirInUseError, match="already in use by another run in this process"):
            with hold_output_dir(out):
                pass
    assert not out.exists()  # created for the run, which wrote nothing: removed again
    (tmp_path / "kept").mkdir()
    with hold_output_dir(tmp_path / "kept"):
        (tmp_path / "kept" / "model.safetensors").write_text("x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["model.safetensors"]


def test_other_ranks_of_the_same_run_share_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with hold_output_dir(tmp_path / "out"):
        with hold_output_dir(tmp_path / "out"):  # rank 1 takes no lock: rank 0 holds it for the run
            pass


def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path):
    from hf_semtok.run_lock import RUN_LOCK_FILE
    from hf_semtok.tokenizer.safe_paths import LinkError

    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=...\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_LOCK_FILE).symlink_to(victim)
    with pytest.raises(LinkError, match="symbolic link"):
        with hold_output_dir(out):
            pass
    assert victim.read_text() == "export PATH=...\n"
