"""benchmarks/transition.py: the item-transition heuristic on the amazon.py protocol, on data scored by hand."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Five users of a P5-layout Beauty folder (1-based ids). Last item = test target, second-to-last = validation.
SEQUENCES = {
    1: [1, 2, 3, 7, 4],
    2: [1, 2, 4, 8, 5],
    3: [2, 3, 5, 1, 6],
    4: [4, 1, 2, 5, 8],
    5: [6, 8, 6, 8, 6],
}
# By hand, for the test split with window 2, num_history 2, decay 0.5. Counts come from every sequence without its
# test item; `T(i -> j)` (1 for the next item, 1/2 for the one after):
#   1->2 3, 1->3 .5, 1->4 .5, 1->5 .5 | 2->3 2, 2->4 1, 2->5 1.5, 2->7 .5, 2->8 .5 | 3->7 1, 3->5 1, 3->1 .5
#   4->8 1, 4->1 1, 4->2 .5 | 5->1 1 | 6->8 2, 6->6 .5 | 8->6 1, 8->8 .5
# Popularity (same sequences): 1: 4, 2: 4, 8: 3, 3/4/5/6: 2, 7: 1, so the order is 1 2 8 3 4 5 6 7.
# Scores (newest item weight 1, the one before .5), history items dropped, padded by popularity:
#   user 1, [1 2 3 7] -> 4: 7 scores nothing, 3 gives 5 .5 (7 and 1: history)  -> [5, 8, 4]: rank 3
#   user 2, [1 2 4 8] -> 5: 8 gives 6 1 (8: history); 4 gives only history   -> [6, 3, 5]: rank 3
#   user 3, [2 3 5 1] -> 6: 1 gives 4 .5 (2 3 5: history); 5 gives 1 (history) -> [4, 8, 6]: rank 3
#   user 4, [4 1 2 5] -> 8: 5 gives 1 (history); 2 gives 3 1, 7 .25, 8 .25     -> [3, 8, 7]: rank 2, the tie of
#                                          7 and 8 going to the more popular 8 (catalogue order would put 7 first)
#   user 5, [6 8 6 8] -> 6: every scored item is in the history                -> [1, 2, 3]: a miss
EXPECTED_RANKS = [3, 3, 3, 2, None]
# Popularity with the history dropped: [8 4 5], [3 5 6], [8 4 6], [8 3 6], [1 2 3] -> ranks 2, 2, 3, 1, miss.
EXPECTED_POPULARITY_RANKS = [2, 2, 3, 1, None]


def _ndcg(ranks, k):
    return sum(1 / math.log2(r + 1) for r in ranks if r is not None and r <= k) / len(ranks)


@pytest.fixture
def data_root(tmp_path):
    folder = tmp_path / "data" / "amazon-beauty"
    folder.mkdir(parents=True)
    lines = [" ".join(str(x) for x in [user, *items]) for user, items in SEQUENCES.items()]
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "data"


def test_documented_config_runs_as_typed_and_scores_as_by_hand(data_root, tmp_path):
    results = tmp_path / "results"
    command = ["benchmarks/transition.py", "--config", "benchmarks/configs/transition_beauty.yaml"]
    done = subprocess.run(
        [sys.executable, *command, "--data_root", str(data_root), "--results_dir", str(results)]
        + ["--windows", "[2]", "--num_histories", "[2]", "--decays", "[0.5]", "--ks", "[1, 3]"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((results / "transition_beauty.json").read_text())
    assert result["command"].startswith("python " + " ".join(command))
    assert result["settings"] == {"window": 2, "num_history": 2, "decay": 0.5}
    assert result["per_user"] == {"user_ids": ["1", "2", "3", "4", "5"], "rank": EXPECTED_RANKS}
    m = result["metrics"]
    assert m["num_examples"] == 5
    assert m["recall@1"] == 0.0 and m["recall@3"] == pytest.approx(0.8)
    assert (
        m["ndcg@3"] == pytest.approx(_ndcg(EXPECTED_RANKS, 3)) == pytest.approx((1.5 + 1 / math.log2(3)) / 5)
    )
    assert m["recall@3_se"] == pytest.approx(math.sqrt(0.8 * 0.2 / 5))
    p = result["popularity"]
    assert p["recall@1"] == pytest.approx(0.2) and p["recall@3"] == pytest.approx(0.8)
    assert p["ndcg@3"] == pytest.approx(_ndcg(EXPECTED_POPULARITY_RANKS, 3))
    assert len(result["validation_grid"]) == 1 and result["validation"]["num_examples"] == 5
    assert "| beauty | 2 / 2 / 0.5 |" in (results / "transition.md").read_text()


def _load_transition():
    spec = importlib.util.spec_from_file_location("bench_transition", ROOT / "benchmarks" / "transition.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up here
    spec.loader.exec_module(bench)
    return bench


def test_validation_counts_hold_neither_target_and_the_grid_picks_the_best_ndcg(data_root):
    bench = _load_transition()
    cfg = bench.TransitionBenchConfig(windows=[1, 2], num_histories=[1, 2], decays=[0.5, 1.0], ks=[1, 3])
    train = {str(u): [str(i) for i in items[:-2]] for u, items in SEQUENCES.items()}
    valid = [(train[str(u)], str(items[-2])) for u, items in SEQUENCES.items()]
    grid = bench.validation_grid(train, [str(i) for i in range(1, 9)], valid, cfg)
    # num_history 1 is scored once (decay has no effect there): 2 windows x (1 + 2 decays)
    assert [(g["window"], g["num_history"], g["decay"]) for g in grid] == [
        (1, 1, 1.0),
        (1, 2, 0.5),
        (1, 2, 1.0),
        (2, 1, 1.0),
        (2, 2, 0.5),
        (2, 2, 1.0),
    ]
    # User 1's validation target 7 follows 3 in no validation sequence (only in user 1's own, cut away), so with
    # window 1 and the newest item alone (3 -> 5 is counted from user 3), 7 only comes from popularity padding.
    prior = bench.TransitionPrior.fit(train, item_ids=[str(i) for i in range(1, 9)], window=1, num_history=1)
    assert prior.scores(["1", "2", "3"])[6] == 0.0  # item 7
    assert prior.popularity[6] == 0  # 7 is user 1's validation target: never counted


def test_amazon_prior_fusion_reports_generator_prior_and_fused_with_paired_differences(tmp_path):
    """benchmarks/amazon.py with --prior_weights on a tiny LC-Rec folder with published SIDs: the weight is chosen
    on validation, test has the three rows, and the per-user ranks give back each row's metrics."""
    import gzip

    folder = tmp_path / "data" / "amazon18-scientific"
    (folder / "sids_collisiongenrec").mkdir(parents=True)
    n_items = 40
    inter = {str(u): [(u + j) % n_items for j in range(5 + u % 3)] for u in range(40)}
    (folder / "Scientific.inter.json").write_text(json.dumps(inter))
    index = {str(i): [f"<a_{i // 8}>", f"<b_{i % 8}>", f"<c_{i % 3}>"] for i in range(n_items)}
    with gzip.open(folder / "sids_collisiongenrec" / "tiny.Scientific.index.json.gz", "wt") as f:
        json.dump(index, f)
    results = tmp_path / "res"
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/amazon.py",
            "--dataset",
            "scientific",
            "--data_root",
            str(tmp_path / "data"),
        ]
        + ["--results_dir", str(results), "--sids", "published:sids_collisiongenrec/tiny"]
        + ["--generator.hidden_size", "32", "--generator.num_layers", "1", "--generator.num_heads", "2"]
        + ["--generator.max_steps", "4", "--generator.eval_every_steps", "0", "--num_threads", "1"]
        + [
            "--prior_weights",
            "[0.5, 50.0]",
            "--prior_window",
            "1",
            "--prior_num_history",
            "1",
            "--refit",
            "true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fusion = json.loads((results / "amazon_scientific_published-cgr-tiny.json").read_text())["prior_fusion"]
    assert [p["prior_weight"] for p in fusion["validation_grid"]] == [0.0, 0.5, 50.0]
    best = max(fusion["validation_grid"], key=lambda p: p["ndcg@10"])
    assert fusion["chosen_prior_weight"] == best["prior_weight"]
    # every user walks the items in order: the transition prior alone ranks every target first, and a weight > 0
    # (fusing it) beats the 4-step generator on validation and on test
    assert fusion["test"]["prior"]["ndcg@10"] == 1.0 and fusion["chosen_prior_weight"] > 0
    assert fusion["test"]["fused"]["ndcg@10"] > fusion["test"]["generator"]["ndcg@10"]
    per_user = fusion["per_user"]
    assert len(per_user["user_ids"]) == 40
    for row in ("generator", "prior", "fused"):
        ranks = per_user[f"{row}_rank"]
        assert fusion["test"][row]["recall@10"] == pytest.approx(sum(r is not None for r in ranks) / 40)
        assert fusion["test"][row]["ndcg@10"] == pytest.approx(_ndcg(ranks, 10))
    paired = fusion["paired_vs_prior"]["generator_minus_prior"]
    gap = fusion["test"]["generator"]["ndcg@10"] - fusion["test"]["prior"]["ndcg@10"]
    assert paired["ndcg@10"] == pytest.approx(gap) and paired["ndcg@10_se"] >= 0.0
    # --refit: the generator trained again on train + validation items for the kept steps, tested alone and fused
    refit = fusion["refit"]
    assert refit["training"]["steps"] == 4 and refit["training"]["sequences"] == 40
    for row in ("generator", "fused"):
        ranks = refit["per_user"][f"{row}_rank"]
        assert refit["test"][row]["ndcg@10"] == pytest.approx(_ndcg(ranks, 10))
    assert refit["paired_vs_prior"]["fused_minus_prior"]["ndcg@10"] == pytest.approx(
        refit["test"]["fused"]["ndcg@10"] - fusion["test"]["prior"]["ndcg@10"]
    )
    # benchmarks/refit.py: the same refit from the finished run's JSON, as documented
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/refit.py",
            "--run",
            str(results / "amazon_scientific_published-cgr-tiny.json"),
        ]
        + ["--results_dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((results / "refit_scientific.json").read_text())
    assert final["metrics"] == final["test"]["fused"] and final["training"]["steps"] == 4
    assert final["test"]["fused"]["ndcg@10"] == pytest.approx(_ndcg(final["per_user"]["fused_rank"], 10))
    assert "| scientific |" in (results / "refit.md").read_text()
    # transition.md shows the fusion row beside the heuristic's table
    assert "| scientific published-cgr-tiny |" in _load_transition().write_markdown(results)
