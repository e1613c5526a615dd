"""Recall@K / NDCG@K on hand-computed cases, and the popularity baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_semtok.evaluation import (
    hit_ranks,
    ndcg_at_k,
    popularity_baseline,
    ranking_metrics,
    recall_at_k,
    subsample_examples,
)


def test_recall_hand_computed():
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, "a", 1) == 1.0
    assert recall_at_k(ranked, "c", 2) == 0.0
    assert recall_at_k(ranked, "c", 3) == 1.0
    assert recall_at_k(ranked, "z", 10) == 0.0
    # fewer than K outputs: the missing ranks are misses, nothing is padded
    assert recall_at_k(["a"], "b", 10) == 0.0
    # (item, score) tuples as returned by recommend()
    assert recall_at_k([("a", -0.1), ("b", -0.5)], "b", 2) == 1.0


def test_ndcg_hand_computed():
    ranked = ["a", "b", "c", "d"]
    assert ndcg_at_k(ranked, "a", 5) == 1.0
    assert ndcg_at_k(ranked, "b", 5) == pytest.approx(1 / math.log2(3))  # 0.6309
    assert ndcg_at_k(ranked, "d", 5) == pytest.approx(1 / math.log2(5))  # 0.4307
    assert ndcg_at_k(ranked, "d", 3) == 0.0
    assert ndcg_at_k([("x", 0.0), ("y", -1.0)], "y", 2) == pytest.approx(0.6309297535714575)


def test_ranking_metrics_means():
    rankings = [["a", "b", "c"], ["c", "a"], ["b"]]
    targets = ["b", "a", "z"]
    out = ranking_metrics(rankings, targets, ks=(1, 2))
    assert out["recall@1"] == 0.0
    assert out["recall@2"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((2 / math.log2(3)) / 3)
    assert out["num_examples"] == 3


def test_bad_k_and_mismatched_lengths():
    with pytest.raises(ValueError, match="positive integer"):
        recall_at_k(["a"], "a", 0)
    for bad in (2.0, True, "5", np.int64(0)):
        with pytest.raises(ValueError, match="positive integer"):
            recall_at_k(["a"], "a", bad)
    assert recall_at_k(["b", "a"], "a", np.int64(2)) == 1.0  # numpy integers, e.g. from np.arange
    assert ndcg_at_k(["b", "a"], "a", np.int32(1)) == 0.0
    with pytest.raises(ValueError, match="one ranking per target"):
        ranking_metrics([["a"]], ["a", "b"])


def test_popularity_baseline_hand_computed():
    train = {"u1": ["a", "b", "a"], "u2": ["b", "c", "a"], "u3": ["d"]}
    # counts: a=3, b=2, c=1, d=1 (tie broken by id) -> order a, b, c, d
    tests = [(["a", "b"], "b"), (["c"], "c"), (["a"], "d")]
    out = popularity_baseline(train, tests, ks=(1, 3))
    assert out["top_items"] == ["a", "b", "c"]
    assert out["recall@1"] == 0.0
    assert out["recall@3"] == pytest.approx(2 / 3)
    assert out["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    as_dict = popularity_baseline(train, {f"u{i}": ex for i, ex in enumerate(tests)}, ks=(1, 3))
    assert as_dict == out
    seen = popularity_baseline(list(train.values()), tests, ks=(1, 3), exclude_seen=True)
    # user 1 gets c, d; user 2 gets a, b, d; user 3 gets b, c, d
    assert seen["recall@1"] == 0.0
    assert seen["recall@3"] == pytest.approx(1 / 3)
    assert seen["ndcg@3"] == pytest.approx((1 / math.log2(4)) / 3)


def test_popularity_baseline_bad_input():
    with pytest.raises(ValueError, match="no items"):
        popularity_baseline({"u": []}, [(["a"], "b")])
    with pytest.raises(ValueError, match=r"\(history, target\) pair"):
        popularity_baseline({"u": ["a"]}, [("a",)])


def test_targets_are_item_ids_and_ks_a_list_of_cut_offs():
    """A None or list target used to score (recall of None in ["a", None] was 1.0; a list target a silent miss);
    ks=() or ks=5 failed inside max() or iteration."""
    with pytest.raises(TypeError, match="target must be an item id \\(a string\\); got NoneType None"):
        recall_at_k(["a", None], None, 2)
    with pytest.raises(TypeError, match="target must be an item id \\(a string\\); got list"):
        popularity_baseline([["a", "b"]], [(["a"], ["b"])])
    with pytest.raises(ValueError, match="ks must hold at least one cut-off"):
        popularity_baseline([["a", "b"]], [(["a"], "b")], ks=())
    with pytest.raises(TypeError, match="ks must be a list of positive integers .* got int 5"):
        popularity_baseline([["a", "b"]], [(["a"], "b")], ks=5)
    assert popularity_baseline([["a", "b"]], [(["a"], "b")], ks=[np.int64(1)])["recall@1"] == 0.0


def test_hit_ranks_give_back_the_metrics():
    rankings = [["a", "b", "c"], [("c", -0.1), ("a", -0.2)], ["b", "c", "a"], []]
    targets = ["b", "a", "a", "a"]
    ranks = hit_ranks(rankings, targets, k=2)
    assert ranks == [2, 2, None, None]  # "a" is third for the third user: beyond k
    metrics = ranking_metrics(rankings, targets, ks=[2])
    assert metrics["recall@2"] == sum(r is not None for r in ranks) / 4
    assert metrics["ndcg@2"] == pytest.approx(sum(1 / math.log2(r + 1) for r in ranks if r) / 4)
    with pytest.raises(ValueError, match="one ranking per target"):
        hit_ranks(rankings, targets[:2], k=2)
    with pytest.raises(ValueError, match="positive integer"):
        hit_ranks(rankings, targets, k=0)


def test_subsample_examples_is_fixed_by_its_seed():
    examples = list(range(50))
    drawn = subsample_examples(examples, 10, seed=3)
    assert drawn == subsample_examples(examples, 10, seed=3) and len(set(drawn)) == 10
    assert set(drawn) <= set(examples) and drawn != subsample_examples(examples, 10, seed=4)
    assert subsample_examples(examples, None, seed=3) == examples == subsample_examples(examples, 50, seed=3)
