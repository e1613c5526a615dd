"""Co-occurrence pairs from user histories: the collaborative signal for the RQ-VAE's contrastive loss.

Two items co-occur when they appear within `window` positions of each other in one user's history (PLUM,
arXiv 2510.07784, trains its item tokenizer with such pairs). Pass **training histories only** (the first output
of `leave_one_out_split`): pairs built from full histories would leak validation and test targets into the
Semantic IDs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.catalogue import check_count, check_history

__all__ = ["build_cooccurrence_pairs"]

logger = logging.getLogger(__name__)


def build_cooccurrence_pairs(
    histories: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
    window: int = 3,
    item_ids: Sequence[str] | None = None,
    max_pairs: int | None = None,
    seed: int = DEFAULT_SEED,
    symmetric: bool = False,
) -> np.ndarray:
    """Build the index pairs of items that appear close together in a user's history.

    For each history and each position `t`, every later item at position `t + 1 .. t + window` forms the pair
    `(index(h[t]), index(h[t + d]))`. Pairs of an item with itself (a repeated item) are dropped; a pair that
    occurs several times (across users) is kept several times, so frequent pairs weigh more.

    Args:
        histories: User id -> chronological item ids, or a list of histories. Use **training histories only**
            (the `train` part of `leave_one_out_split`) so no validation or test target leaks into training.
        window: How many following positions count as co-occurring (>= 1).
        item_ids: The catalogue's item ids; pair values index into this list (row order of the embeddings).
            When `None`, the sorted set of items in `histories` is used.
        max_pairs: Keep a uniform random sample of at most this many pairs (seeded), or all when `None`.
        seed: Seed of that sample.
        symmetric: Also add each pair reversed.

    Returns:
        An int64 array `(n_pairs, 2)` of item indices; `(0, 2)` when no history has two items.

    Raises:
        TypeError: `window` or `max_pairs` not an int, `histories` a string, or a history that is not a list of
            item ids (a string would otherwise be read as its characters).
        ValueError: `window < 1`, `max_pairs < 1`, duplicate `item_ids`, or histories naming items missing from
            `item_ids` (the message lists some of them).
    """
    source = "build_cooccurrence_pairs"
    window = check_count("window", window, source)
    max_pairs = check_count("max_pairs", max_pairs, source, optional=True)
    if isinstance(histories, Mapping):
        seqs = [check_history(h, source, user) for user, h in histories.items()]
    elif isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
        raise TypeError(
            f"{source}: `histories` must be a mapping user id -> item ids or a list of histories (lists of item "
            f"ids); got {type(histories).__name__} {str(histories)[:40]!r}."
        )
    else:
        seqs = [check_history(h, source) for h in histories]
    if item_ids is None:
        item_ids = sorted({str(i) for h in seqs for i in h})
    index = {str(item): i for i, item in enumerate(item_ids)}
    if len(index) != len(item_ids):
        raise ValueError("item_ids has duplicates; pass the catalogue's unique item ids.")
    unknown = sorted({str(i) for h in seqs for i in h if str(i) not in index})
    if unknown:
        raise ValueError(
            f"Histories name {len(unknown)} items that are not in item_ids, e.g. {unknown[:10]}. Pass the full "
            "catalogue's item_ids or filter the histories."
        )
    chunks = []
    for seq in seqs:
        if len(seq) < 2:
            continue
        idx = np.fromiter((index[str(i)] for i in seq), dtype=np.int64, count=len(seq))  # (len,)
        for d in range(1, min(window, len(idx) - 1) + 1):
            chunks.append(np.stack([idx[:-d], idx[d:]], axis=1))  # (len - d, 2)
    if not chunks:
        logger.warning("build_cooccurrence_pairs: no history has two items; returning no pairs.")
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks, axis=0)  # (n_pairs, 2)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if symmetric:
        pairs = np.concatenate([pairs, pairs[:, ::-1]], axis=0)
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = pairs[np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))]
    logger.info("Built %d co-occurrence pairs (window %d) from %d histories", len(pairs), window, len(seqs))
    return np.ascontiguousarray(pairs)


def multi_hot_features(
    item_ids: Sequence[str], attributes: Mapping[str, Sequence[str]], min_count: int = 1
) -> np.ndarray:
    """Encode each item's attribute set (categories, tags, opaque attribute ids) as a multi-hot row.

    Args:
        item_ids: Items in row order.
        attributes: Item id -> its attributes (items absent get an all-zero row, i.e. "missing" for the RQ-VAE).
        min_count: Drop attributes held by fewer items.

    Returns:
        A float32 array `(len(item_ids), n_attributes)`.
    """
    counts: dict[str, int] = {}
    for item in item_ids:
        for attr in set(attributes.get(item, ())):
            counts[attr] = counts.get(attr, 0) + 1
    vocab = {a: j for j, a in enumerate(sorted(a for a, c in counts.items() if c >= min_count))}
    if not vocab:
        raise ValueError(
            "No item has an attribute (after min_count); give attributes for the catalogue's items."
        )
    out = np.zeros((len(item_ids), len(vocab)), dtype=np.float32)  # (n_items, n_attributes)
    for row, item in enumerate(item_ids):
        cols = [vocab[a] for a in attributes.get(item, ()) if a in vocab]
        out[row, cols] = 1.0
    return out


def cooccurrence_features(
    item_ids: Sequence[str],
    train_histories: Mapping[str, Sequence[str]],
    dim: int = 64,
    window: int = 3,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Collaborative item vectors: a truncated SVD of the item-item co-occurrence matrix (PPMI-weighted).

    Build it from **training** histories only. Items that never co-occur get an all-zero row ("missing").

    Args:
        item_ids: Items in row order.
        train_histories: User -> training items.
        dim: Output dimension.
        window: Co-occurrence window (see `hf_semtok.data.features.build_cooccurrence_pairs`).
        seed: Seed of the randomised SVD.

    Returns:
        A float32 array `(len(item_ids), dim)`.
    """
    pairs = build_cooccurrence_pairs(train_histories, window=window, item_ids=item_ids, symmetric=True)
    n = len(item_ids)
    if not len(pairs):
        raise ValueError(
            "The training histories hold no co-occurring items; cooccurrence_features needs some."
        )
    idx = torch.from_numpy(pairs.T.copy())  # (2, n_pairs)
    mat = torch.sparse_coo_tensor(
        idx, torch.ones(idx.shape[1]), (n, n), check_invariants=True
    ).coalesce()  # (n, n) counts
    rows, vals = mat.indices(), mat.values()
    row_sum = torch.zeros(n).index_add_(0, rows[0], vals)
    total = vals.sum()
    pmi = torch.log(vals * total / (row_sum[rows[0]] * row_sum[rows[1]]))
    ppmi = torch.sparse_coo_tensor(rows, pmi.clamp_min(0), (n, n), check_invariants=True).coalesce()
    torch.manual_seed(seed)
    u, s, _ = torch.svd_lowrank(ppmi, q=min(dim, n - 1), niter=4)  # (n, dim), (dim,)
    out = (u * s.sqrt()).numpy().astype(np.float32)
    # The randomised SVD leaves ~1e-6 in the rows of items that never co-occur; the RQ-VAE reads only an exactly
    # all-zero row as "missing" (and would normalise the residue to a unit-norm random direction).
    out[(row_sum == 0).numpy()] = 0.0
    if out.shape[1] < dim:
        out = np.pad(out, ((0, 0), (0, dim - out.shape[1])))
    return out
