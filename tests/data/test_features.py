from __future__ import annotations

import numpy as np
import pytest

from hf_semtok.data import leave_one_out_split
from hf_semtok.data.features import build_cooccurrence_pairs, cooccurrence_features

ITEMS = ["a", "b", "c", "d", "e"]


def _as_set(pairs: np.ndarray) -> list[tuple[str, str]]:
    return sorted((ITEMS[i], ITEMS[j]) for i, j in pairs.tolist())


def test_window_pairs_exact():
    histories = {"u1": ["a", "b", "c", "d"], "u2": ["e"], "u3": ["c", "a"]}
    pairs = build_cooccurrence_pairs(histories, window=1, item_ids=ITEMS)
    assert pairs.dtype == np.int64 and pairs.shape == (4, 2)
    assert _as_set(pairs) == [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
    pairs2 = build_cooccurrence_pairs(histories, window=2, item_ids=ITEMS)
    assert _as_set(pairs2) == [("a", "b"), ("a", "c"), ("b", "c"), ("b", "d"), ("c", "a"), ("c", "d")]
    # a window longer than the history is fine
    assert len(build_cooccurrence_pairs(histories, window=10, item_ids=ITEMS)) == 6 + 1


def test_repeats_dropped_duplicates_kept_symmetric_and_list_input():
    pairs = build_cooccurrence_pairs([["a", "a", "b"], ["a", "b"]], window=1, item_ids=ITEMS)
    assert _as_set(pairs) == [("a", "b"), ("a", "b")]
    sym = build_cooccurrence_pairs([["a", "b"]], window=1, item_ids=ITEMS, symmetric=True)
    assert _as_set(sym) == [("a", "b"), ("b", "a")]
    # default item_ids: sorted items of the histories
    assert build_cooccurrence_pairs([["z", "x"]], window=1).tolist() == [[1, 0]]
    assert build_cooccurrence_pairs({"u": ["a"]}, item_ids=ITEMS).shape == (0, 2)


def test_max_pairs_is_a_seeded_subsample():
    rng = np.random.default_rng(0)
    histories = {f"u{k}": list(rng.choice(ITEMS, size=8)) for k in range(50)}
    full = build_cooccurrence_pairs(histories, window=3, item_ids=ITEMS)
    sub1 = build_cooccurrence_pairs(histories, window=3, item_ids=ITEMS, max_pairs=40, seed=1)
    sub2 = build_cooccurrence_pairs(histories, window=3, item_ids=ITEMS, max_pairs=40, seed=1)
    assert len(sub1) == 40 and np.array_equal(sub1, sub2)
    full_rows = {tuple(r) for r in full.tolist()}
    assert all(tuple(r) in full_rows for r in sub1.tolist())


def test_errors():
    with pytest.raises(ValueError, match=r"not in item_ids, e.g. \['q'\]"):
        build_cooccurrence_pairs({"u": ["a", "q"]}, item_ids=ITEMS)
    with pytest.raises(ValueError, match="window must be >= 1"):
        build_cooccurrence_pairs({"u": ["a", "b"]}, window=0)
    with pytest.raises(ValueError, match="max_pairs"):
        build_cooccurrence_pairs({"u": ["a", "b"]}, max_pairs=0)
    with pytest.raises(ValueError, match="duplicates"):
        build_cooccurrence_pairs({"u": ["a", "b"]}, item_ids=["a", "b", "a"])


def test_training_histories_never_pair_test_targets():
    histories = {"u1": ["a", "b", "c", "d", "e"]}
    train, _, test = leave_one_out_split(histories)
    pairs = build_cooccurrence_pairs(train, window=5, item_ids=ITEMS)
    used = {ITEMS[i] for i in pairs.ravel().tolist()}
    assert test["u1"][1] not in used and "d" not in used


def test_items_that_never_cooccur_get_an_exactly_zero_row():
    """The RQ-VAE reads only an all-zero row as a missing modality (cold-start items, items absent from training);
    the randomised SVD leaves ~1e-7 in those rows unless they are cleared."""
    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(300)]
    unseen = sorted(rng.choice(300, 15, replace=False).tolist())  # scattered through the catalogue
    seen = [n for n in range(300) if n not in unseen]
    histories = {f"u{k}": [items[j] for j in rng.choice(seen, size=8)] for k in range(400)}
    features = cooccurrence_features(items, histories, dim=16)
    assert features.shape == (300, 16)
    assert not features[unseen].any()  # exactly zero
    assert (np.linalg.norm(features[seen], axis=1) > 1e-3).all()
