"""benchmarks/sasrec.py: SASRec with full cross-entropy, the baseline row beside TIGER and ours (tiny data in code)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_cyclic_beauty_folder

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, N_USERS, LENGTH = 40, 200, 8


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sasrec():
    return _load("sasrec")


@pytest.fixture
def data_root(tmp_path):
    """A P5-layout Beauty folder whose histories walk the items in a cycle: the next item is always the last + 1,
    which a sequential model learns and a popularity ranking (every item about equally frequent) cannot."""
    return write_cyclic_beauty_folder(tmp_path, N_USERS, N_ITEMS, LENGTH, stride=7)


def test_documented_config_runs_as_typed_and_feeds_the_amazon_table(data_root, tmp_path):
    results = tmp_path / "results"
    command = ["benchmarks/sasrec.py", "--config", "benchmarks/configs/sasrec_beauty.yaml"]
    done = subprocess.run(
        [sys.executable, *command, "--data_root", str(data_root), "--results_dir", str(results)]
        + ["--max_steps", "2", "--eval_every_steps", "1", "--progress", "false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((results / "sasrec_beauty.json").read_text())
    assert result["command"].startswith("python " + " ".join(command))
    assert result["training"]["steps"] == 2 and len(result["curve"]) == 2
    assert result["training"]["selected_step"] in (1, 2)
    assert result["evaluation"]["test_users"] == result["evaluation"]["validation_users"] == N_USERS
    assert result["evaluation"]["exclude_seen"] is False and result["evaluation"]["max_history"] == 50
    for split in ("metrics", "validation"):
        for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
            assert 0.0 <= result[split][key] <= 1.0 and result[split][f"{key}_se"] >= 0.0
    assert result["config"]["max_len"] == 50 and result["tiger"]["recall@10"] == 0.0648
    assert "| beauty |" in (results / "sasrec.md").read_text()
    # benchmarks/amazon.py puts the row beside ours when sasrec_<dataset>.json sits beside its JSONs
    amazon = _load("amazon")
    ours = {
        "dataset": "beauty",
        "run_name": "ours",
        "sids": "x",
        "features": "y",
        "metrics": result["metrics"],
        "popularity": result["popularity"],
        "tiger": result["tiger"],
        "model": {"num_parameters": 1e6},
        "training": {"steps": 5, "tokens_seen": 1e6, "train_seconds": 60},
        "evaluation": {"test_users": N_USERS},
        "command": "cmd",
    }
    (results / "amazon_beauty_ours.json").write_text(json.dumps(ours))
    table = amazon.write_markdown(results)
    assert "| SASRec, full cross-entropy, history 50 (`sasrec_beauty.json`)" in table
    assert f"- SASRec: `{result['command']}`" in table


def test_a_short_training_learns_the_cycle_far_past_popularity(sasrec, data_root, tmp_path):
    overrides = {
        "dataset": "beauty",
        "data_root": str(data_root),
        "results_dir": str(tmp_path / "results"),
        "max_steps": "60",
        "batch_size": "32",
        "hidden_size": "32",
        "num_blocks": "1",
        "dropout": "0.0",
        "learning_rate": "0.01",
        "eval_every_steps": "20",
        "num_threads": "1",
        "progress": "false",
    }
    result = sasrec.main([arg for key, value in overrides.items() for arg in (f"--{key}", value)])
    popularity, test, valid = result["popularity"], result["metrics"], result["validation"]
    assert popularity["recall@10"] < 0.4  # ~10 of 40 equally frequent items
    assert test["recall@10"] > popularity["recall@10"] + 0.4 and test["ndcg@10"] > popularity["ndcg@10"] + 0.4
    assert (
        test["ndcg@10"] > 0.9 and valid["ndcg@10"] > 0.9
    )  # the next item ranked first for nearly every user
    assert result["training"]["final_loss"] < 1.0  # log(40) = 3.7 at the start


def test_attention_is_causal_and_ignores_left_padding(sasrec):
    torch.manual_seed(0)
    model = sasrec.SASRec(
        num_items=30, max_len=8, hidden_size=16, num_blocks=2, num_heads=2, ffn_size=32, dropout=0.0
    )
    model.eval()
    items = torch.tensor([[3, 7, 1, 9, 4]])
    with torch.no_grad():
        hidden = model(items)
        changed_last = model(torch.tensor([[3, 7, 1, 9, 12]]))
        padded = model(torch.tensor([[0, 0, 3, 7, 1, 9, 4]]))
    assert torch.allclose(hidden[:, :-1], changed_last[:, :-1], atol=1e-6)  # no position sees a later item
    assert not torch.allclose(hidden[:, -1], changed_last[:, -1], atol=1e-4)
    assert torch.allclose(hidden, padded[:, 2:], atol=1e-5)  # padding changes nothing
    assert torch.isfinite(padded).all()


def test_training_windows_make_every_item_but_the_first_a_target_once(sasrec):
    history = [str(i) for i in range(1, 13)]  # 12 items, windows of at most 5 inputs
    index = {item: int(item) for item in history}
    windows = sasrec.training_windows({"u": history, "short": ["1"]}, index, max_len=5)
    targets = [t for _, window_targets in windows for t in window_targets if t]
    assert sorted(targets) == list(range(2, 13))
    for inputs, window_targets in windows:
        assert len(inputs) == len(window_targets) <= 5
        assert all(t == 0 or t == x + 1 for x, t in zip(inputs, window_targets))
