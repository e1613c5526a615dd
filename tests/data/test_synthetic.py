from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from hf_semtok.data import Catalogue, leave_one_out_split
from hf_semtok.data.synthetic import SyntheticCatalogue, make_synthetic_catalogue


@pytest.fixture(scope="module")
def catalogue() -> SyntheticCatalogue:
    return make_synthetic_catalogue(n_items=1000, n_users=2000, seed=7)


def test_shapes_and_fields(catalogue):
    assert isinstance(catalogue, Catalogue)
    assert catalogue.num_items == 1000 and len(catalogue.histories) == 2000
    assert set(catalogue.embeddings) == {"text", "image", "audio"}
    for mod, dim in {"text": 64, "image": 32, "audio": 16}.items():
        emb = catalogue.embeddings[mod]
        assert emb.shape == (1000, dim) and emb.dtype == np.float32
    # only audio has missing rows, whole rows of NaN, about 20 %
    assert not np.isnan(catalogue.embeddings["text"]).any()
    rows = np.isnan(catalogue.embeddings["audio"])
    assert (rows.any(axis=1) == rows.all(axis=1)).all()
    assert 0.1 < rows.any(axis=1).mean() < 0.3
    assert len(set(catalogue.titles.values())) == 1000  # titles are unique
    lengths = [len(h) for h in catalogue.histories.values()]
    assert min(lengths) >= 5 and max(lengths) <= 50 and 8 < np.mean(lengths) < 12
    for h in catalogue.histories.values():
        assert len(set(h)) == len(h)  # no repeats


def test_titles_follow_the_hierarchy(catalogue):
    for item in catalogue.item_ids[:50]:
        top_name, sub_name = catalogue.categories[item]
        assert sub_name in catalogue.titles[item]
        assert catalogue.texts[item].endswith(f"Category: {top_name} > {sub_name}.")
    tops = Counter(p[0] for p in catalogue.category_path.values())
    subs = Counter(p[1] for p in catalogue.category_path.values())
    assert len(tops) == 8 and len(subs) == 32 and min(subs.values()) >= 2


def test_deterministic_and_seed_dependent():
    a = make_synthetic_catalogue(n_items=200, n_users=100, seed=3)
    b = make_synthetic_catalogue(n_items=200, n_users=100, seed=3)
    c = make_synthetic_catalogue(n_items=200, n_users=100, seed=4)
    assert a.titles == b.titles and a.histories == b.histories
    for mod in a.embeddings:
        np.testing.assert_array_equal(a.embeddings[mod], b.embeddings[mod])
    assert a.histories != c.histories and a.titles != c.titles


def test_sizes_as_asked():
    # (its speed is not asserted here: timing belongs in benchmarks/, a loaded machine would fail it)
    cat = make_synthetic_catalogue(n_items=1000, n_users=2000, seed=0)
    assert cat.num_items == 1000 and len(cat.histories) == 2000


def test_embeddings_cluster_by_subcategory(catalogue):
    sub = np.array([catalogue.category_path[i][1] for i in catalogue.item_ids])
    for mod, emb in catalogue.embeddings.items():
        ok = ~np.isnan(emb).any(axis=1)
        e = emb[ok] / np.linalg.norm(emb[ok], axis=1, keepdims=True)
        s = sub[ok]
        sims = e @ e.T
        same = s[:, None] == s[None, :]
        np.fill_diagonal(same, False)
        off = ~same
        np.fill_diagonal(off, False)
        assert sims[same].mean() > sims[off].mean() + 0.3, mod


def test_sequential_structure_beats_popularity(catalogue):
    train, _, test = leave_one_out_split(catalogue.histories)
    popularity = Counter(i for h in train.values() for i in h)
    top10 = [i for i, _ in popularity.most_common(10)]
    transitions: dict[str, Counter] = defaultdict(Counter)
    for h in train.values():
        for a, b in zip(h, h[1:]):
            transitions[a][b] += 1

    def markov(history: list[str]) -> list[str]:
        out = [i for i, _ in transitions[history[-1]].most_common(10)]
        return out + [i for i in top10 if i not in out][: 10 - len(out)]

    pop_hits = np.mean([target in top10 for _, target in test.values()])
    markov_hits = np.mean([target in markov(h) for h, target in test.values()])
    assert markov_hits > 2.5 * pop_hits, (markov_hits, pop_hits)
    # the successor pattern is really there
    follows = np.mean(
        [catalogue.successor[a] == b for h in catalogue.histories.values() for a, b in zip(h, h[1:])]
    )
    assert follows > 0.2


def test_custom_modalities_and_errors():
    cat = make_synthetic_catalogue(
        n_items=64,
        n_users=10,
        seed=1,
        n_top_categories=2,
        n_subcategories=3,
        modality_dims={"text": 8, "video": 4},
    )
    assert {m: e.shape for m, e in cat.embeddings.items()} == {"text": (64, 8), "video": (64, 4)}
    big = make_synthetic_catalogue(n_items=200, n_users=5, n_top_categories=10, n_subcategories=5)
    assert len({tuple(c) for c in big.categories.values()}) == 50
    with pytest.raises(ValueError, match="too small"):
        make_synthetic_catalogue(n_items=10, n_users=5)
    with pytest.raises(ValueError, match="missing_fraction"):
        make_synthetic_catalogue(n_items=100, n_users=5, missing_fraction={"audio": 1.0})
    with pytest.raises(ValueError, match="min_history"):
        make_synthetic_catalogue(n_items=100, n_users=5, min_history=6, max_history=5)
