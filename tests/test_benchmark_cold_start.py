"""benchmarks/cold_start.py: held-out items never reach training, get SIDs by add_items, and are ranked by every row."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark, run_benchmark_command, write_cyclic_beauty_folder

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, N_USERS, LENGTH, STRIDE = 40, 200, 8, 7


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("cold_start")


@pytest.fixture
def data_root(tmp_path):
    """A P5-layout Sports folder (attributes, no text, as the real one) whose users walk the items in a cycle. Item
    `i` holds the attributes `i` and `i + 1`: it shares one with the item before it and one with the item after it,
    so content similarity to the last history item finds the next one, a held-out item included."""
    root = write_cyclic_beauty_folder(tmp_path, N_USERS, N_ITEMS, LENGTH, STRIDE, folder_name="amazon-sports")
    attributes = {str(i): [i, i % N_ITEMS + 1] for i in range(1, N_ITEMS + 1)}
    (root / "amazon-sports" / "item2attributes.json").write_text(json.dumps(attributes))
    return root


def _sequences():
    return {str(u + 1): [str((u * STRIDE + k) % N_ITEMS + 1) for k in range(LENGTH)] for u in range(N_USERS)}


SHRINK = [
    "--num_threads", "1", "--progress", "false",
    "--sid.codebook_sizes", "[4, 4]", "--sid.epochs", "2",
    "--generator.hidden_size", "32", "--generator.num_layers", "1", "--generator.num_heads", "2",
    "--generator.max_steps", "2", "--generator.warmup_steps", "1", "--generator.eval_every_steps", "1",
    "--generator.eval_users", "20", "--generator.num_beams", "10",
    "--sasrec.max_steps", "2",
]  # fmt: skip


def test_documented_config_runs_as_typed_and_ranks_held_out_items(bench, data_root, tmp_path):
    results = tmp_path / "results"
    command = ["benchmarks/cold_start.py", "--config", "benchmarks/configs/cold_start_sports.yaml"]
    assert f"#   python {' '.join(command)}\n" in (ROOT / command[-1]).read_text()
    run_benchmark_command(
        command,
        *SHRINK,
        "--data_root",
        str(data_root),
        "--results_dir",
        str(results),
        "--run_dir",
        str(tmp_path / "run"),
    )
    result = json.loads((results / "cold_start_sports.json").read_text())
    assert result["command"].startswith("python " + " ".join(command))
    assert result["dataset"] == "sports" and result["total_seconds"] > 0 and result["num_threads"] == 1
    # a seeded 5% of the 40 items; the test users are exactly those whose last item is held out
    items = [str(i) for i in range(1, N_ITEMS + 1)]
    held = bench.hold_out_items(items, 0.05, 0)
    assert result["held_out"] == held and result["held_out_items"] == 2
    sequences = _sequences()
    users = sorted(u for u, s in sequences.items() if s[-1] in held)
    assert result["per_user"]["user_ids"] == users and result["evaluation"]["test_users"] == len(users) > 0
    rows = {"ours": result, **result["baselines"]}
    assert set(rows) == set(bench.ROWS)
    for name, row in rows.items():  # per-user ranks give back each row's metrics
        ranks = row["per_user"]["rank"]
        assert row["per_user"]["user_ids"] == users and len(ranks) == len(users)
        assert row["metrics"]["recall@10"] == pytest.approx(sum(r is not None for r in ranks) / len(users))
        assert row["metrics"]["ndcg@10"] == pytest.approx(
            sum(1 / math.log2(r + 1) for r in ranks if r) / len(users)
        )
        assert "ndcg@10_se" in row["metrics"] and "recall@10_se" in row["metrics"]
        if name != "ours":
            paired = result["paired_vs_ours"][name]
            assert paired["ndcg@10"] == pytest.approx(
                result["metrics"]["ndcg@10"] - row["metrics"]["ndcg@10"]
            )
    # counts hold no held-out item, so popularity and the transition heuristic never rank one
    for name in ("popularity", "transition"):
        assert rows[name]["metrics"]["held_out_in_top@10"] == 0 and rows[name]["metrics"]["recall@10"] == 0
    # the target shares an attribute with the last history item, which shares its other one with the item before it:
    # content similarity to the last item puts the target first, or second when that item before it is held out
    # (out of the history, so not dropped); ties go to catalogue order
    assert result["content"]["n"] == 1 and set(rows["content"]["per_user"]["rank"]) <= {1, 2}
    assert rows["content"]["metrics"]["held_out_in_top@10"] >= 1
    # the held-out items got SIDs after training and the generator ranks over every item
    assert result["ours"]["added_items"] == 2 and result["ours"]["training"]["steps"] == 2
    assert result["sasrec"]["training"]["steps"] == 2
    table = (results / "cold_start.md").read_text()
    assert (
        "## sports: 2 held-out items" in table and "| ours: generator" in table and "| popularity |" in table
    )
    assert "2 held-out items added by `add_items`" in table and f"Command: `{result['command']}`" in table


def test_held_out_items_leave_every_history_and_stay_targets(bench):
    histories = {
        "a": ["1", "2", "9", "3", "4"],
        "b": ["9", "5", "6", "9"],
        "c": ["9", "1", "2"],
        "d": ["5", "6"],
    }
    split = bench.cold_start_split(histories, ["9"])
    assert split.train == {"a": ["1", "2"], "b": ["5"], "c": [], "d": ["5", "6"]}
    assert split.valid == {"a": (["1", "2"], "3"), "b": (["5"], "6")}  # c's history is only "9": dropped
    assert split.cold_valid == {} and split.dropped_users == {"validation": 1, "test": 0}
    assert split.test == {"b": (["5", "6"], "9")}  # only b's last item is held out
    assert split.test_sequences == {"a": ["1", "2", "3"], "b": ["5", "6"], "c": ["1"], "d": ["5", "6"]}
    for examples in (split.valid, split.test):
        assert all("9" not in history for history, _ in examples.values())
    # the collaborative features come from those training histories: a held-out item's row is all zero (missing)
    amazon = bench._AMAZON
    from hf_semtok.data import Catalogue

    catalogue = Catalogue(item_ids=[str(i) for i in range(1, 10)], histories=histories)
    collab = amazon._features(amazon.AmazonBenchConfig(), catalogue, ["collab"], train=split.train)["collab"]
    assert not collab[8].any() and collab[0].any()
    assert bench.hold_out_items([str(i) for i in range(100)], 0.05, 3) == bench.hold_out_items(
        [str(i) for i in range(100)], 0.05, 3
    )
    assert len(bench.hold_out_items([str(i) for i in range(100)], 0.05, 3)) == 5


def test_content_rankings_drop_history_items_and_average_the_last_n(bench):
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])  # unit rows
    items = ["a", "b", "c", "d"]
    assert bench.content_rankings(vectors, items, [["a"]], n=1, k=3) == [
        ["b", "d", "c"]
    ]  # "a" itself dropped
    # the mean of a and c points at (0.5, 0.5): d (.7) and b (.7) tie; the stable sort keeps catalogue order
    assert bench.content_rankings(vectors, items, [["c", "a"]], n=2, k=2) == [["b", "d"]]
    assert bench.content_rankings(vectors, items, [["c", "a"]], n=1, k=2) == [["b", "d"]]
    assert bench.content_rankings(vectors, items, [["a", "c"]], n=1, k=1) == [["d"]]
    joined = bench.content_vectors({"text": np.array([[3.0, 4.0]]), "collab": np.array([[1.0]])})
    assert np.allclose(joined, [[0.6, 0.8]])  # collab left out, rows unit-norm
    with pytest.raises(ValueError, match="needs text or attribute features"):
        bench.content_vectors({"collab": np.ones((2, 2))})


def test_sasrec_add_items_keeps_the_trained_rows_and_appends_fresh_ones(bench):
    sasrec = bench._SASREC
    torch.manual_seed(0)
    model = sasrec.SASRec(
        num_items=5, max_len=4, hidden_size=8, num_blocks=1, num_heads=1, ffn_size=8, dropout=0.0
    )
    before = model.item_embedding.weight.detach().clone()
    model.add_items(3, generator=torch.Generator().manual_seed(1))
    after = model.item_embedding.weight.detach()
    assert after.shape == (9, 8) and torch.equal(after[:6], before) and after[6:].abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model.scores(model(torch.tensor([[1, 2, 7]]))[:, -1]).shape == (1, 8)  # every item scored
