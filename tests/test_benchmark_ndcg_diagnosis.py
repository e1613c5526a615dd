"""benchmarks/ndcg_diagnosis.py: where a trained generator loses NDCG (tiny data and model in code)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_cyclic_beauty_folder

from hf_semtok.data import leave_one_out_split, load_catalogue
from hf_semtok.generation import recommend
from hf_semtok.lm.generator import GeneratorConfig, train_generator
from hf_semtok.lm.sid_sequences import build_sid_tokenizer

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, N_USERS, LENGTH = 48, 240, 8


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A P5-layout Beauty folder of cyclic histories, and a tiny generator trained on it and saved where
    amazon.py saves its runs (`<runs_dir>/amazon_beauty_<run_name>/model`). Items 4k..4k+3 share their two
    semantic codes, so a third (dedup) code separates four siblings."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("diag")
    data = write_cyclic_beauty_folder(root, N_USERS, N_ITEMS, LENGTH, stride=5)
    catalogue = load_catalogue("amazon2014", data / "amazon-beauty")
    table = {item: (int(item) // 4 % 4, int(item) // 16) for item in catalogue.item_ids}  # 4 collide per SID
    tokenizer = build_sid_tokenizer(table)
    train, valid, _ = leave_one_out_split(catalogue.histories, max_history=20)
    config = GeneratorConfig(
        hidden_size=32, num_layers=1, num_heads=2, batch_size=32, max_steps=60, learning_rate=5e-3, seed=0
    )
    run_dir = root / "runs" / "amazon_beauty_tiny"
    model, _, _ = train_generator(tokenizer, train, config, output_dir=run_dir, progress=False)
    yield {"root": root, "model": model, "tokenizer": tokenizer, "valid": valid}
    torch.set_num_threads(before)


def test_teacher_forced_scores_are_the_beam_scores(trained):
    diag = _load("ndcg_diagnosis")
    model, tokenizer = trained["model"], trained["tokenizer"]
    examples = [trained["valid"][u] for u in sorted(trained["valid"])[:12]]
    histories = [list(h) for h, _ in examples]
    ranked = recommend(model, tokenizer, histories, k=10, num_beams=10, progress=False)
    for history, items in zip(histories, ranked):
        got = diag.target_scores(model, tokenizer, [history] * len(items), [i for i, _ in items], 20)
        assert got == pytest.approx([s for _, s in items], abs=1e-4)


def test_diagnosis_parts_add_up(trained):
    diag = _load("ndcg_diagnosis")
    examples = [trained["valid"][u] for u in sorted(trained["valid"])[:80]]
    popularity = {item: int(item) for item in trained["tokenizer"].item_ids}  # higher ids: more popular
    d = diag.diagnose(
        trained["model"], trained["tokenizer"], examples, 12, 20, popularity, popularity_weights=(0.0, 50.0)
    )
    hits10 = sum(c for r, c in d["hit_rank_histogram"].items() if int(r) <= 10)
    assert d["recall@10"] == pytest.approx(hits10 / 80)
    assert d["misses@10"] == 80 - hits10
    assert d["search_errors@10"] + d["model_errors@10"] + d["short_lists"] == d["misses@10"]
    assert d["ndcg@10_if_siblings_ranked_right"] >= d["ndcg@10"]
    assert d["semantic_levels"] == 2 and len(d["prefix_top1"]) == 3
    assert d["targets_with_sibling_in_list"] > 0
    assert all(a >= b for a, b in zip(d["prefix_top1"], d["prefix_top1"][1:]))  # longer prefixes match less
    assert d["ndcg_over_recall@10"] <= 1.0
    assert d["popularity_prior"]["0.0"] == {
        "recall@10": d["recall@10"],
        "ndcg@10": pytest.approx(d["ndcg@10"]),
    }
    # A heavy prior sorts the 12 results by popularity alone: the same set, so Recall@12 is kept; NDCG moves.
    assert d["popularity_prior"]["50.0"]["ndcg@10"] != pytest.approx(d["ndcg@10"])
    assert d["siblings_by_training_popularity"]["ndcg@10"] <= d["ndcg@10_if_siblings_ranked_right"] + 1e-12


def test_command_writes_json_and_markdown(trained, tmp_path):
    root = trained["root"]
    command = [
        sys.executable, "benchmarks/ndcg_diagnosis.py", "--dataset", "beauty", "--run_name", "tiny",
        "--data_root", str(root / "data"), "--runs_dir", str(root / "runs"), "--users", "40",
        "--num_threads", "1", "--results_dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "ndcg_diagnosis_beauty_tiny.json").read_text())
    assert result["diagnosis"]["users"] == 40
    assert "Where NDCG is lost" in (tmp_path / "ndcg_diagnosis_beauty_tiny.md").read_text()
    test_split = subprocess.run(
        [*command, "--split", "test", "--popularity_weights", "0.1"], cwd=ROOT, capture_output=True, text=True
    )
    assert test_split.returncode == 0, test_split.stderr[-2000:]
    result = json.loads((tmp_path / "ndcg_diagnosis_beauty_tiny_test.json").read_text())
    assert result["split"] == "test" and list(result["diagnosis"]["popularity_prior"]) == ["0.1"]
    missing = subprocess.run(
        [*command[:5], "nothing-here", *command[6:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert missing.returncode != 0 and "No saved model" in missing.stderr
