"""Unique Semantic IDs: collision handling (`SIDTable`, `assign_unique_sids`) and the SID quality report.

Two policies make every item's SID distinct:

- `"extra_level"` (TIGER, arXiv 2305.05065): append one level whose code is the item's index among the items
  sharing its semantic codes. Always appended, so every SID has `L + 1` levels.
- `"reassign"`: an item that collides is moved to its next-best *free* code at the last semantic level (greedy by
  distance, capacity one item per full code, within its prefix). The extra level is appended only if collisions
  remain (a prefix whose last level is full) or if `extra_level_size` is given explicitly (room for items added
  later).

Fewer items than a codebook size is allowed here (the codes simply cannot all be used); `train_rqvae` is where it
raises, since a codebook cannot be learned from fewer items than codes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hf_semtok.tokenizer.item_ids import check_item_ids
from hf_semtok.tokenizer.sid_checks import mixed_radix_keys
from hf_semtok.tokenizer.sid_table import (
    COMPACT_MIN_ITEMS,
    SIDTable,
    as_code_matrix,
    as_int_list,
    check_code_range,
)

__all__ = [
    "COLLISION_STRATEGIES",
    "assign_unique_sids",
    "add_items_to_table",
    "collision_stats",
]

logger = logging.getLogger(__name__)

COLLISION_STRATEGIES = ("extra_level", "reassign")
_STRATEGIES = COLLISION_STRATEGIES


def _as_codes(codes: Any, name: str = "codes") -> np.ndarray:
    return as_code_matrix(codes, f"`{name}`")


def _row_keys(codes: np.ndarray) -> np.ndarray | None:
    """One int64 per row that orders rows as `np.unique(codes, axis=0)` does (mixed radix over each column's
    range), or None when the ranges multiply past 2**62. Sorting n integers is far cheaper in time and memory
    than sorting n rows."""
    if not len(codes):
        return None
    low = codes.min(axis=0)
    radix = codes.max(axis=0) - low + 1
    if float(np.prod(radix.astype(np.float64))) >= 2.0**62:
        return None
    return mixed_radix_keys(codes, radix.tolist(), low.tolist())


def _group(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids (n,) and group sizes per item (n,) of identical rows; groups numbered in sorted row order."""
    keys = _row_keys(codes)
    if keys is None:
        _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    return inverse, counts[inverse]


def collision_stats(codes: np.ndarray) -> dict[str, float | int]:
    """Collision statistics of semantic codes `(n, levels)`.

    Returns:
        `collision_rate` (fraction of items sharing their codes with another item), `num_colliding_items`,
        `largest_group`, `num_unique_codes`.
    """
    codes = _as_codes(codes)
    if not len(codes):
        return {"collision_rate": 0.0, "num_colliding_items": 0, "largest_group": 0, "num_unique_codes": 0}
    inverse, sizes = _group(codes)
    colliding = int((sizes > 1).sum())
    return {
        "collision_rate": colliding / len(codes),
        "num_colliding_items": colliding,
        "largest_group": int(sizes.max()),
        "num_unique_codes": int(inverse.max()) + 1,
    }


def _index_within_group(codes: np.ndarray) -> np.ndarray:
    """Position of each item among the items sharing its row, in item order (n,)."""
    inverse, _ = _group(codes)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    position = np.empty(len(codes), dtype=np.int64)
    position[order] = np.arange(len(order)) - run_start
    return position


# ----------------------------------------------------------------------------------------------
# Assignment
def assign_unique_sids(
    codes: Any,
    item_ids: Sequence[str],
    codebook_sizes: Sequence[int],
    strategy: str = "extra_level",
    distances: Any = None,
    extra_level_size: int | None = None,
) -> SIDTable:
    """Turn RQ-VAE codes into unique Semantic IDs.

    Args:
        codes: Semantic codes `(n_items, L)` (e.g. from `RQVAEModel.encode`).
        item_ids: `n_items` distinct item ids.
        codebook_sizes: The `L` codebook sizes of the RQ-VAE.
        strategy: `"extra_level"` (TIGER) or `"reassign"` (see the module docstring).
        distances: For `"reassign"`: distances of every item to every last-level code, `(n_items,
            codebook_sizes[-1])` (`RQVAEModel.encode(..., return_distances=True)`).
        extra_level_size: Size of the dedup level (default: the largest group). Must be at least the largest
            group; give a larger value to leave room for items added later with [`add_items_to_table`].

    Returns:
        A [`SIDTable`]; `table.stats` holds `collision_rate_before` (fraction of items sharing their RQ-VAE codes
        with another item), `collision_rate_after` (the same on the semantic levels after reassignment; equal to
        the former for `"extra_level"`), `items_needing_extra_level` (items only told apart by the extra level),
        `largest_group`, `reassigned_items`, `extra_level_size` (0 when no extra level) and
        `final_collision_rate` (always 0).
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"`strategy` is {strategy!r}; use one of {_STRATEGIES}.")
    codes, item_ids, codebook_sizes = _check_assignment_inputs(codes, item_ids, codebook_sizes)
    before = collision_stats(codes)
    semantic = codes  # a fresh array from _as_codes: reassignment may change it in place
    reassigned = 0
    if strategy == "reassign":
        if distances is None:
            raise ValueError(
                "strategy='reassign' needs `distances` (n_items, codebook_sizes[-1]); get them with "
                "`RQVAEModel.encode(embeddings, return_distances=True)`, or use strategy='extra_level'."
            )
        dist = _as_distances(distances, len(codes), codebook_sizes[-1])
        reassigned = _reassign_last_level(semantic, dist, codebook_sizes[-1])
    after = collision_stats(semantic) if reassigned else before
    stats: dict[str, Any] = {
        "num_items": len(codes),
        "collision_rate_before": before["collision_rate"],
        "collision_rate_after": after["collision_rate"],
        "colliding_items_before": before["num_colliding_items"],
        "largest_group_before": before["largest_group"],
        "largest_group": after["largest_group"],
        "reassigned_items": reassigned,
        "items_needing_extra_level": after["num_colliding_items"],
        "final_collision_rate": 0.0,  # the extra level (when present) makes every SID distinct
    }
    if strategy == "extra_level" or after["num_colliding_items"] > 0 or extra_level_size is not None:
        final, sizes = _with_extra_level(semantic, codebook_sizes, extra_level_size, after["largest_group"])
        stats["extra_level_size"] = sizes[-1]
    else:
        final, sizes = semantic, codebook_sizes
        stats["extra_level_size"] = 0
    if strategy == "reassign":
        logger.info(
            "SIDs: collision rate %.4f -> %.4f after reassigning %d items; %d items need the extra level.",
            before["collision_rate"],
            after["collision_rate"],
            reassigned,
            after["num_colliding_items"],
        )
    return SIDTable(item_ids, final, sizes, len(codebook_sizes), strategy, stats)


def _check_assignment_inputs(
    codes: Any, item_ids: Sequence[str], codebook_sizes: Sequence[int]
) -> tuple[np.ndarray, Sequence[str], list[int]]:
    """`assign_unique_sids`' codes (a fresh `(n, L)` int array), item ids and codebook sizes, checked together."""
    codes = _as_codes(codes)
    item_ids = check_item_ids(item_ids, "assign_unique_sids", compact_min_items=COMPACT_MIN_ITEMS)
    codebook_sizes = as_int_list(codebook_sizes, "codebook_sizes", "assign_unique_sids")
    n = len(codes)
    if n == 0:
        raise ValueError("Empty catalogue: `codes` has no rows; give at least one item.")
    if len(item_ids) != n:
        raise ValueError(f"{len(item_ids)} item ids for {n} code rows; give one id per row.")
    if codes.shape[1] != len(codebook_sizes):
        raise ValueError(
            f"`codes` has {codes.shape[1]} levels but `codebook_sizes` has {len(codebook_sizes)} entries."
        )
    check_code_range(codes, codebook_sizes, item_ids, "codes")
    if n < max(codebook_sizes):
        logger.info(
            "%d items for codebooks of up to %d codes: some codes stay unused.", n, max(codebook_sizes)
        )
    return codes, item_ids, codebook_sizes


def _with_extra_level(
    semantic: np.ndarray, codebook_sizes: list[int], extra_level_size: int | None, largest: int
) -> tuple[np.ndarray, list[int]]:
    """The codes with TIGER's extra level (each item's index within its group of equal codes) and the sizes."""
    size = int(extra_level_size) if extra_level_size is not None else largest
    if size < largest:
        raise ValueError(
            f"`extra_level_size` {size} is smaller than the largest group of items sharing codes "
            f"({largest}); use at least {largest} or leave it unset."
        )
    extra = _index_within_group(semantic)[:, None]
    return np.concatenate([semantic, extra], axis=1), [*codebook_sizes, size]


def _as_distances(distances: Any, n: int, k: int) -> np.ndarray:
    dist = np.asarray(distances.cpu() if hasattr(distances, "cpu") else distances, dtype=np.float64)
    if dist.shape != (n, k):
        raise ValueError(
            f"`distances` must have shape ({n}, {k}) (items, last-level codes), got {dist.shape}."
        )
    if not np.isfinite(dist).all():
        raise ValueError("`distances` contain NaN or inf; recompute them with RQVAEModel.encode.")
    return dist


def _reassign_last_level(codes: np.ndarray, dist: np.ndarray, k: int) -> int:
    """Move colliding items (all but the closest of each group) to free last-level codes; in place."""
    inverse, sizes = _group(codes)
    if not (sizes > 1).any():
        return 0
    own = dist[np.arange(len(codes)), codes[:, -1]]  # (n,)
    # Within each group of identical codes the item closest to the code keeps it.
    order = np.lexsort((own, inverse))
    first = np.r_[True, inverse[order][1:] != inverse[order][:-1]]
    displaced = order[~first]
    prefixes = [tuple(row) for row in codes[:, :-1].tolist()]
    used: dict[tuple[int, ...], set[int]] = defaultdict(set)
    for prefix, last in zip(prefixes, codes[:, -1].tolist()):
        used[prefix].add(last)
    by_prefix: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i in displaced.tolist():
        by_prefix[prefixes[i]].append(i)
    moved = 0
    for prefix, items in by_prefix.items():
        taken = used[prefix]
        free = np.array([c for c in range(k) if c not in taken], dtype=np.int64)
        if not len(free):
            continue
        # Greedy matching: (item, free code) pairs by increasing distance, capacity one item per code.
        sub = dist[np.asarray(items)][:, free]  # (items, free)
        flat = np.argsort(sub, axis=None, kind="stable")
        done_items: set[int] = set()
        done_codes: set[int] = set()
        for pos in flat.tolist():
            r, c = divmod(pos, len(free))
            if r in done_items or c in done_codes:
                continue
            codes[items[r], -1] = free[c]
            done_items.add(r)
            done_codes.add(c)
            moved += 1
            if len(done_items) == len(items) or len(done_codes) == len(free):
                break
    return moved


def add_items_to_table(
    table: SIDTable, new_item_ids: Sequence[str], new_codes: Any, distances: Any = None
) -> SIDTable:
    """Give SIDs to new items with the table's policy, without changing any existing SID (cold start).

    Args:
        table: The existing table.
        new_item_ids: Ids of the new items (not already in the table).
        new_codes: Their semantic codes `(m, table.num_semantic_levels)`.
        distances: For `"reassign"` tables: last-level distances `(m, codebook_sizes[num_semantic_levels-1])`.
            Without them colliding new items go straight to the extra level.

    Returns:
        A new [`SIDTable`] with the new items appended.

    Raises:
        ValueError: when a new item collides and cannot be placed: the extra level is full or absent. Rebuild
            the table with a larger `extra_level_size` (`train_rqvae(..., extra_level_size=N)` or
            `assign_unique_sids(..., extra_level_size=N)`).
    """
    new_item_ids, new = _check_new_items(table, new_item_ids, new_codes)
    s = table.num_semantic_levels
    dist = None
    if distances is not None and table.collision_strategy == "reassign":
        dist = _as_distances(distances, len(new), table.codebook_sizes[s - 1])
    used_extra: dict[tuple[int, ...], set[int]] = defaultdict(set)  # semantic codes -> extra codes in use
    used_last: dict[tuple[int, ...], set[int]] = defaultdict(set)  # semantic prefix -> last codes in use
    for row in table.codes.tolist():
        sem = tuple(row[:s])
        used_extra[sem].add(row[s] if table.has_extra_level else 0)
        used_last[sem[:-1]].add(sem[-1])
    rows, needing_extra, reassigned = [], 0, 0
    for r, (item, code) in enumerate(zip(new_item_ids, new.tolist())):
        sem = tuple(code)
        if sem in used_extra and dist is not None:
            moved = _free_last_code(sem, dist[r], used_last[sem[:-1]])
            if moved is not None:
                sem = moved
                reassigned += 1
        if sem in used_extra:
            extra = _free_extra_code(table, item, sem, used_extra[sem])
            needing_extra += 1
        else:
            extra = 0
        used_extra[sem].add(extra)
        used_last[sem[:-1]].add(sem[-1])
        rows.append([*sem, extra] if table.has_extra_level else list(sem))
    codes = np.concatenate([table.codes, np.asarray(rows, dtype=np.int64).reshape(-1, table.num_levels)])
    stats = dict(table.stats)
    stats["num_items"] = len(codes)
    stats["added_items"] = stats.get("added_items", 0) + len(rows)
    stats["added_items_needing_extra_level"] = stats.get("added_items_needing_extra_level", 0) + needing_extra
    stats["added_items_reassigned"] = stats.get("added_items_reassigned", 0) + reassigned
    return SIDTable(
        [*table.item_ids, *new_item_ids],
        codes,
        list(table.codebook_sizes),
        s,
        table.collision_strategy,
        stats,
    )


def _check_new_items(
    table: SIDTable, new_item_ids: Sequence[str], new_codes: Any
) -> tuple[Sequence[str], np.ndarray]:
    """`add_items_to_table`'s new ids (not in `table`) and their semantic codes (in range), checked together."""
    new_item_ids = check_item_ids(
        new_item_ids, "add_items_to_table", "new_item_ids", compact_min_items=COMPACT_MIN_ITEMS
    )
    s = table.num_semantic_levels
    new = _as_codes(new_codes, "new_codes")
    if new.shape != (len(new_item_ids), s):
        raise ValueError(
            f"`new_codes` must have shape ({len(new_item_ids)}, {s}) (one row of semantic codes per new item), "
            f"got {new.shape}."
        )
    known = set(table.item_ids)
    clash = [i for i in new_item_ids if i in known][:5]
    if clash:
        raise ValueError(f"Items {clash} are already in the table; new items need new ids.")
    check_code_range(new, table.codebook_sizes[:s], new_item_ids, "new_codes")
    return new_item_ids, new


def _free_last_code(sem: tuple[int, ...], dist: np.ndarray, taken: set[int]) -> tuple[int, ...] | None:
    """`sem` with the closest last-level code (by `dist`) not in `taken`; `None` when every code is taken."""
    for c in np.argsort(dist, kind="stable").tolist():
        if c not in taken:
            return (*sem[:-1], int(c))
    return None


def _free_extra_code(table: SIDTable, item: str, sem: tuple[int, ...], taken: set[int]) -> int:
    """The first extra-level code not in `taken` for a new `item` whose semantic codes `sem` are in use.

    Raises:
        ValueError: the table has no extra level, or it is full for `sem`.
    """
    if not table.has_extra_level:
        raise ValueError(
            f"New item {item!r} collides with existing SID {sem} and the table has no extra level; "
            "rebuild it with `extra_level_size=N` (`train_rqvae`, `recipes/train_rqvae.py` or "
            "`assign_unique_sids`) to keep room for new items."
        )
    extra_size = table.codebook_sizes[-1]
    free = [e for e in range(extra_size) if e not in taken]
    if not free:
        raise ValueError(
            f"New item {item!r}: the extra level is full for codes {sem} ({extra_size} items); rebuild the "
            "table with a larger `extra_level_size` (`train_rqvae(..., extra_level_size=N)`, "
            "`recipes/train_rqvae.py --extra_level_size N` or `assign_unique_sids(..., extra_level_size=N)`)."
        )
    return free[0]


def sid_table_from_codes(
    codes: Mapping[str, Sequence[int]], item_ids: Sequence[str], codebook_sizes: Sequence[int] | None = None
) -> Any:
    """Make a `SIDTable` from given codes, e.g. published SIDs (LC-Rec `*.index.json`).

    Items sharing a SID get TIGER's extra disambiguating level (`assign_unique_sids(strategy="extra_level")`),
    so every item is retrievable and a hit counts only for the exact item; without collisions the codes are
    kept as they are.

    Args:
        codes: Item id -> code tuple (same length for every item).
        item_ids: Items to include, in row order; every one needs codes.
        codebook_sizes: Codes per level (default: the largest code + 1 of each level).

    Returns:
        A `hf_semtok.SIDTable`.
    """

    missing = [i for i in item_ids if i not in codes]
    if missing:
        raise ValueError(
            f"{len(missing)} items have no codes, e.g. {missing[:5]}; give codes for every item."
        )
    mat = as_code_matrix([codes[i] for i in item_ids], "sid_table_from_codes: codes")  # (n_items, L)
    sizes = list(codebook_sizes) if codebook_sizes is not None else [int(c) + 1 for c in mat.max(axis=0)]
    if len(np.unique(mat, axis=0)) == len(mat):
        return SIDTable(list(item_ids), mat, sizes, num_semantic_levels=len(sizes), collision_strategy="none")
    return assign_unique_sids(mat, list(item_ids), sizes, strategy="extra_level")
