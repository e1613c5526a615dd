"""Unique SIDs (both strategies), adding items, the table's JSON round trip, the quality report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_semtok import SIDTable
from hf_semtok.rqvae.quality import format_quality_table, sid_quality_report
from hf_semtok.sids import add_items_to_table, assign_unique_sids, collision_stats


def colliding_codes(n: int = 400, sizes=(4, 4, 8), seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    distances = rng.random((n, sizes[-1]))
    distances[np.arange(n), codes[:, -1]] = 0.0  # the assigned code is the nearest one
    return codes, [f"item{i}" for i in range(n)], list(sizes), distances


def assert_unique(table: SIDTable):
    assert len(np.unique(table.codes, axis=0)) == len(table)
    assert table.codes.shape[1] == len(table.codebook_sizes)
    assert (table.codes < np.asarray(table.codebook_sizes)).all()


def test_extra_level_strategy():
    codes, ids, sizes, _ = colliding_codes()
    table = assign_unique_sids(codes, ids, sizes)
    assert_unique(table)
    assert table.num_semantic_levels == 3 and table.num_levels == 4 and table.has_extra_level
    np.testing.assert_array_equal(table.codes[:, :3], codes)  # semantic codes untouched
    stats = table.stats
    before = collision_stats(codes)
    assert stats["collision_rate_before"] == before["collision_rate"] > 0
    assert stats["largest_group"] == before["largest_group"] == table.codebook_sizes[-1]
    assert stats["items_needing_extra_level"] == before["num_colliding_items"]
    # the extra code is the index among items sharing codes, in item order
    first = np.flatnonzero((codes == codes[0]).all(1))
    np.testing.assert_array_equal(table.codes[first, 3], np.arange(len(first)))


def test_extra_level_always_appended_even_without_collisions():
    codes = np.array([[0, 1], [1, 0], [1, 1]])
    table = assign_unique_sids(codes, ["a", "b", "c"], [2, 2])
    assert table.codebook_sizes == [2, 2, 1]
    assert (table.codes[:, 2] == 0).all()


def test_reassign_strategy_moves_items_to_free_codes():
    codes, ids, sizes, dist = colliding_codes(n=100, sizes=(4, 4, 16))
    table = assign_unique_sids(codes, ids, sizes, strategy="reassign", distances=dist)
    assert_unique(table)
    stats = table.stats
    assert stats["collision_rate_before"] > 0.1
    assert stats["collision_rate_after"] < stats["collision_rate_before"]
    assert stats["reassigned_items"] > 0
    if stats["items_needing_extra_level"] == 0:
        assert table.num_levels == 3 and not table.has_extra_level
    np.testing.assert_array_equal(table.codes[:, :2], codes[:, :2])  # prefixes never change
    moved = np.flatnonzero(table.codes[:, 2] != codes[:, 2])
    assert len(moved) == stats["reassigned_items"]
    # a moved item gets a code that was free in its prefix; within a group the closest item kept the code
    for i in moved:
        group = np.flatnonzero((codes == codes[i]).all(1))
        assert dist[i, codes[i, 2]] >= dist[group, codes[i, 2]].min()


def test_reassign_falls_back_to_extra_level_when_prefix_is_full():
    codes = np.array(
        [[0, 0], [0, 0], [0, 1], [0, 1]]
    )  # prefix 0 has 2 codes and 4 items: 2 need the extra level
    dist = np.zeros((4, 2))
    table = assign_unique_sids(codes, list("abcd"), [1, 2], strategy="reassign", distances=dist)
    assert_unique(table)
    assert table.has_extra_level
    assert table.stats["items_needing_extra_level"] == 4
    assert table.stats["reassigned_items"] == 0


def test_reassign_without_collisions_has_no_extra_level():
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    table = assign_unique_sids(codes, list("abc"), [2, 2], strategy="reassign", distances=np.zeros((3, 2)))
    assert table.num_levels == 2 and table.stats["collision_rate_before"] == 0.0


def test_add_items_keeps_existing_and_uniqueness():
    codes, ids, sizes, dist = colliding_codes()
    table = assign_unique_sids(codes, ids, sizes, extra_level_size=40)
    new_codes = np.array([codes[0], codes[0], [3, 3, 7]])
    bigger = add_items_to_table(table, ["new0", "new1", "new2"], new_codes)
    assert_unique(bigger)
    np.testing.assert_array_equal(bigger.codes[: len(table)], table.codes)
    assert bigger.item_ids[-3:] == ["new0", "new1", "new2"]
    assert bigger.stats["added_items"] == 3
    group = (table.codes[:, :3] == codes[0]).all(1).sum()
    assert bigger.codes[-3, 3] == group and bigger.codes[-2, 3] == group + 1


def test_add_items_reassign_uses_distances():
    codes = np.array([[0, 0], [0, 1]])
    table = assign_unique_sids(codes, ["a", "b"], [1, 4], strategy="reassign", distances=np.zeros((2, 4)))
    assert table.num_levels == 2
    # new item collides with "a"; its next-best free code is 3
    bigger = add_items_to_table(table, ["c"], [[0, 0]], distances=[[0.0, 0.1, 0.5, 0.2]])
    assert bigger.as_dict()["c"] == (0, 3)
    assert bigger.stats["added_items_reassigned"] == 1
    # prefix full and no extra level: a clear error
    full = add_items_to_table(bigger, ["d"], [[0, 2]])
    with pytest.raises(ValueError, match="no extra level; rebuild it with .*extra_level_size"):
        add_items_to_table(full, ["e"], [[0, 0]], distances=[[0.0, 0.1, 0.2, 0.3]])


def test_add_items_overflowing_extra_level_raises():
    codes = np.array([[0, 0], [0, 0]])
    table = assign_unique_sids(codes, ["a", "b"], [2, 2])
    assert table.codebook_sizes[-1] == 2
    with pytest.raises(ValueError, match="extra level is full.*larger `extra_level_size`"):
        add_items_to_table(table, ["c"], [[0, 0]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: assign_unique_sids(np.zeros((0, 2), int), [], [2, 2]), "Empty catalogue"),
        (lambda: assign_unique_sids([[0, 1], [1, 0]], ["a", "a"], [2, 2]), "Duplicate item ids"),
        (lambda: assign_unique_sids([[0, 1]], ["a", "b"], [2, 2]), "2 item ids for 1 code rows"),
        (lambda: assign_unique_sids([[0, 1]], ["a"], [2, 2, 2]), "has 2 levels"),
        (lambda: assign_unique_sids([[0, 2]], ["a"], [2, 2]), "out of range \\[0, 2\\)"),
        (lambda: assign_unique_sids([[0.5, 1]], ["a"], [2, 2]), "integers"),
        (lambda: assign_unique_sids([0, 1], ["a"], [2, 2]), "2-D"),
        (lambda: assign_unique_sids([[0, 1]], ["a"], [2, 2], strategy="sinkhorn"), "strategy"),
        (lambda: assign_unique_sids([[0, 1]], ["a"], [2, 2], strategy="reassign"), "needs `distances`"),
        (
            lambda: assign_unique_sids([[0, 1]], ["a"], [2, 2], strategy="reassign", distances=[[np.nan, 1]]),
            "NaN or inf",
        ),
        (
            lambda: assign_unique_sids([[0, 1]], ["a"], [2, 2], strategy="reassign", distances=[[1.0]]),
            "shape",
        ),
        (
            lambda: assign_unique_sids([[0, 1], [0, 1]], ["a", "b"], [2, 2], extra_level_size=1),
            "smaller than",
        ),
    ],
)
def test_bad_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_add_items_bad_inputs():
    table = assign_unique_sids([[0, 1], [1, 0]], ["a", "b"], [2, 2])
    with pytest.raises(ValueError, match="already in the table"):
        add_items_to_table(table, ["a"], [[1, 1]])
    with pytest.raises(ValueError, match="shape \\(1, 2\\)"):
        add_items_to_table(table, ["c"], [[1, 1, 0]])
    with pytest.raises(ValueError, match="Duplicate"):
        add_items_to_table(table, ["c", "c"], [[1, 1], [0, 0]])


def test_table_json_round_trip(tmp_path):
    codes, ids, sizes, dist = colliding_codes()
    table = assign_unique_sids(codes, ids, sizes, strategy="reassign", distances=dist)
    path = tmp_path / "sub" / "sid_table.json"
    table.to_json(path)
    assert [p.name for p in path.parent.iterdir()] == ["sid_table.json"]  # no temporary file left
    loaded = SIDTable.from_json(path)
    assert loaded.as_dict() == table.as_dict()
    assert loaded.codebook_sizes == table.codebook_sizes
    assert loaded.num_semantic_levels == 3 and loaded.collision_strategy == "reassign"
    assert loaded.stats == json.loads(json.dumps(table.stats))
    assert loaded.index_of("item5") == 5 and len(loaded) == len(codes)


def test_table_rejects_duplicate_sids():
    with pytest.raises(ValueError, match="share the SID \\(0, 1\\); SIDs must be unique"):
        SIDTable(["a", "b"], np.array([[0, 1], [0, 1]]), [2, 2], 2)


def test_quality_report_without_model():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    labels = np.arange(400) % 4
    emb = centers[labels] + 0.2 * rng.normal(size=(400, 16))
    codes = np.stack([labels, rng.integers(0, 4, 400)], axis=1)  # level 0 = cluster: coherent
    table = assign_unique_sids(codes, [str(i) for i in range(400)], [8, 4])
    report = sid_quality_report(None, emb, table)
    json.dumps(report)  # JSON-able
    lv0 = report["levels"][0]
    assert lv0["used_codes"] == 4 and lv0["utilization"] == 0.5
    assert abs(lv0["perplexity"] - 4.0) < 1e-6
    assert report["coherence_first_level"] > 0.9 > report["random_pair_similarity"] + 0.5
    assert report["collisions"]["collision_rate_before"] == table.stats["collision_rate_before"]
    assert "reconstruction_error" not in report
    md = format_quality_table(report)
    assert md.startswith("| level |") and "| 0 | 8 | 4 | 0.500 | 4.0 |" in md
    # codes only: no embeddings at all
    codes_only = sid_quality_report(None, None, table)
    assert "coherence" not in codes_only["levels"][0] and codes_only["levels"][1]["used_codes"] == 4
    with pytest.raises(ValueError, match="rows but the SID table has"):
        sid_quality_report(None, emb[:10], table)


def test_quality_report_with_model():
    from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
    from hf_semtok.rqvae.modeling_rqvae import RQVAEModel

    torch.manual_seed(0)
    emb = torch.randn(200, 12)
    model = RQVAEModel(RQVAEConfig(modality_dims=12, hidden_sizes=[16], latent_dim=4, codebook_sizes=[8, 4]))
    model.initialize_codebooks(emb)
    table = assign_unique_sids(model.encode(emb), [str(i) for i in range(200)], [8, 4])
    report = sid_quality_report(model, emb, table)
    assert len(report["reconstruction_error_by_prefix"]) == 2
    assert report["reconstruction_error"] == report["reconstruction_error_by_prefix"][-1]
    assert "reconstruction error by prefix length" in format_quality_table(report)
