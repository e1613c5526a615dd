"""benchmarks/sasrec.py: SASRec with full cross-entropy, the baseline row beside TIGER and ours (tiny data in code)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark, run_benchmark_command, write_cyclic_beauty_folder

from hf_semtok.cli import parse_args_with_config

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, N_USERS, LENGTH = 40, 200, 8


@pytest.fixture(scope="module")
def sasrec():
    return load_benchmark("sasrec")


@pytest.fixture
def data_root(tmp_path):
    """A P5-layout Beauty folder whose histories walk the items in a cycle: the next item is always the last + 1,
    which a sequential model learns and a popularity ranking (every item about equally frequent) cannot."""
    return write_cyclic_beauty_folder(tmp_path, N_USERS, N_ITEMS, LENGTH, stride=7)


def test_documented_config_runs_as_typed_and_feeds_the_amazon_table(data_root, tmp_path):
    results = tmp_path / "results"
    command = ["benchmarks/sasrec.py", "--config", "benchmarks/configs/sasrec_beauty.yaml"]
    run_benchmark_command(
        command, "--data_root", str(data_root), "--results_dir", str(results), "--max_steps", "2",
        "--eval_every_steps", "1", "--progress", "false",
    )  # fmt: skip
    result = json.loads((results / "sasrec_beauty.json").read_text())
    assert result["command"].startswith("python " + " ".join(command))
    assert result["training"]["steps"] == 2 and len(result["curve"]) == 2
    assert result["training"]["selected_step"] in (1, 2)
    assert result["training"]["stop_reason"] == "max_steps" and not result["training"]["stopped_early"]
    assert result["seed"] == 42 and result["num_threads"] == 2 and result["total_seconds"] > 0
    per_user = result["per_user"]  # benchmarks/transition.py's shape: every test user's hit rank or None
    assert per_user["user_ids"] == sorted(str(u) for u in range(1, N_USERS + 1))
    ranks = per_user["rank"]
    assert len(ranks) == N_USERS and all(r is None or 1 <= r <= 10 for r in ranks)
    assert result["metrics"]["recall@10"] == pytest.approx(sum(r is not None for r in ranks) / N_USERS)
    assert result["evaluation"]["test_users"] == result["evaluation"]["validation_users"] == N_USERS
    assert result["evaluation"]["exclude_seen"] is False and result["evaluation"]["max_history"] == 50
    for split in ("metrics", "validation"):
        for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
            assert 0.0 <= result[split][key] <= 1.0 and result[split][f"{key}_se"] >= 0.0
    assert result["config"]["max_len"] == 50 and result["tiger"]["recall@10"] == 0.0648
    assert "| beauty |" in (results / "sasrec.md").read_text()
    # benchmarks/amazon.py puts the row beside ours when sasrec_<dataset>.json sits beside its JSONs
    amazon = load_benchmark("amazon")
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
    # the curve ranked every validation user; the final validation pass, on the restored weights, gives back the
    # metrics of the curve's best point exactly
    best = next(p for p in result["curve"] if p["step"] == result["training"]["selected_step"])
    assert result["training"]["curve_users"] == N_USERS
    assert best["ndcg@10"] == max(p["ndcg@10"] for p in result["curve"])
    for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        assert valid[key] == best[key]


@pytest.mark.parametrize("dataset", ["beauty", "sports", "toys", "scientific"])
def test_shipped_configs_train_to_convergence_under_an_epoch_cap(sasrec, dataset):
    (cfg,) = parse_args_with_config(
        sasrec.SASRecBenchConfig, ["--config", f"benchmarks/configs/sasrec_{dataset}.yaml"]
    )
    assert (
        cfg.dataset == dataset and cfg.max_epochs >= 200 and cfg.patience >= 1 and cfg.eval_every_steps >= 1
    )
    assert cfg.num_threads == 2 and cfg.seed == 42
    text = (ROOT / "benchmarks" / "configs" / f"sasrec_{dataset}.yaml").read_text()
    assert f"#   python benchmarks/sasrec.py --config benchmarks/configs/sasrec_{dataset}.yaml\n" in text
    assert "the 200-epoch cap" in text  # the run-time estimate


def _tiny_training(sasrec, **overrides):
    """A 1-block SASRec on 40 cyclic windows, and its config (batch 8: 5 steps per epoch)."""
    torch.manual_seed(0)
    cfg = sasrec.SASRecBenchConfig(
        max_len=6, hidden_size=8, num_blocks=1, num_heads=1, ffn_size=16, dropout=0.0, batch_size=8,
        bucket_batches=1, progress=False, **overrides,
    )  # fmt: skip
    model = sasrec.SASRec(12, cfg.max_len, cfg.hidden_size, 1, 1, cfg.ffn_size, 0.0)
    windows = [
        ([(u + k) % 12 + 1 for k in range(5)], [(u + k + 1) % 12 + 1 for k in range(5)]) for u in range(40)
    ]
    return model, windows, cfg


def test_early_stop_after_patience_points_and_the_best_points_weights_come_back(sasrec):
    model, windows, cfg = _tiny_training(sasrec, eval_every_steps=2, patience=3, learning_rate=0.05)
    scripted = iter(
        [0.1, 0.5, 0.2, 0.5, 0.3, 0.9, 0.9]
    )  # the best is the second point (the first of equal ones)
    seen = []

    def validate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"ndcg@5": 0.0, "ndcg@10": next(scripted)}

    training, curve = sasrec.train_sasrec(model, windows, cfg, validate=validate)
    # points at steps 2, 4, ... 10: after the best (step 4) three points bring no new best, so step 10 is the last
    assert [p["step"] for p in curve] == [2, 4, 6, 8, 10] and training["steps"] == 10
    assert training["stop_reason"] == "early_stop" and training["stopped_early"]
    assert training["selected_step"] == 4 and training["epochs"] == 2.0 and training["steps_per_epoch"] == 5
    assert not torch.equal(
        seen[1]["item_embedding.weight"], seen[-1]["item_embedding.weight"]
    )  # it trained on
    for name, value in model.state_dict().items():  # the weights measured at step 4 are back
        assert torch.equal(value, seen[1][name]), name


def test_the_epoch_cap_and_the_step_cap_bound_a_run_that_never_stops_early(sasrec):
    model, windows, cfg = _tiny_training(sasrec, eval_every_steps=3, patience=None, max_epochs=1.5)
    training, curve = sasrec.train_sasrec(model, windows, cfg, validate=lambda m: {"ndcg@10": 0.0})
    assert (
        training["steps"] == training["step_limit"] == 8 and training["stop_reason"] == "max_epochs"
    )  # 1.5 x 5
    assert [p["step"] for p in curve] == [3, 6, 8] and training[
        "selected_step"
    ] == 3  # a flat curve: the first
    model, windows, cfg = _tiny_training(sasrec, eval_every_steps=0, patience=0, max_epochs=200, max_steps=7)
    training, curve = sasrec.train_sasrec(model, windows, cfg)
    assert training["steps"] == 7 and training["stop_reason"] == "max_steps" and curve == []
    assert training["selected_step"] == 7 and training["epochs"] == 1.4
    with pytest.raises(ValueError, match="patience counts points of the validation curve"):
        sasrec.SASRecBenchConfig(eval_every_steps=0, patience=5)
    with pytest.raises(ValueError, match="max_epochs must be > 0"):
        sasrec.SASRecBenchConfig(max_epochs=0)


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
