"""Strict checks shared by the SID table, the tokenizer and the SID assignment: integers that are integers.

Copied beside a saved tokenizer for `trust_remote_code=True` (like `sid_table.py`), so it imports only the
standard library, numpy and `.constants` (relatively).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .constants import MAX_CODEBOOK_SIZE

#: Largest number of levels of a SID.
MAX_NUM_LEVELS = 64


class DuplicateKeyError(ValueError):
    """A JSON object holds one key twice (`json` would keep the last value silently); `args[0]` is the key."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for `json.loads`: a dict of `pairs`, or `DuplicateKeyError` for a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------------
# Strict integer checks shared by the table, the tokenizer and the SID assignment
# ----------------------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    """A Python or numpy integer; bool is not an integer here."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_int(value: Any, what: str) -> int:
    """`value` as an int; `TypeError` naming `what` for anything that is not an integer (floats, bools, text).

    Args:
        value: A Python or numpy integer.
        what: What the value is, for the error message (e.g. `"code 1 of the SID (0, 1.7)"`).
    """
    if not _is_int(value):
        raise TypeError(f"{what} must be an integer; got {type(value).__name__} {value!r}.")
    return int(value)


def as_code_matrix(codes: Any, what: str = "codes") -> np.ndarray:
    """A 2-D integer array of codes as int64; floats, bools, text and ragged rows are rejected.

    Args:
        codes: `(n, levels)` numpy array, torch tensor or list of equal-length integer lists.
        what: Name used in error messages (e.g. `"sid_table.json: field 'codes'"`).

    Returns:
        `(n, levels)` int64 array (a new array).

    Raises:
        ValueError: for non-integers, a shape other than 2-D, or rows of different lengths.
    """
    if hasattr(codes, "detach"):
        codes = codes.detach().cpu().numpy()
    if isinstance(codes, np.ndarray):
        arr = codes
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{what} must hold integers; got dtype {arr.dtype}.")
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{what} holds code {int(arr.max())}, an integer too large for a code.")
    else:
        if isinstance(codes, (str, bytes, Mapping)) or not isinstance(codes, Sequence):
            raise ValueError(
                f"{what} must be 2-D: a list of integer lists (one row per item); got {type(codes).__name__}."
            )
        rows = list(codes)
        row_types = set(map(type, rows))
        if any(t in (str, bytes) or issubclass(t, Mapping) for t in row_types) or not all(
            issubclass(t, (Sequence, np.ndarray)) for t in row_types
        ):
            raise ValueError(
                f"{what} must be 2-D: a list of integer lists (one row per item); found a row of type "
                f"{sorted(t.__name__ for t in row_types)}."
            )
        if len({len(r) for r in rows}) > 1:
            raise ValueError(
                f"{what} must be a list of equal-length integer lists; found rows of lengths "
                f"{sorted({len(r) for r in rows})}."
            )
        bad = [t for t in set(map(type, itertools.chain.from_iterable(rows))) if not _is_int_type(t)]
        if bad:
            raise ValueError(f"{what} must hold integers; found {sorted(t.__name__ for t in bad)}.")
        try:
            arr = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1 if rows else 0)
        except OverflowError:
            raise ValueError(f"{what} holds an integer too large for a code.") from None
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D (items, levels); got shape {tuple(arr.shape)}.")
    return np.array(arr, dtype=np.int64)


def as_code_rows(codes: Any, what: str = "codes") -> np.ndarray:
    """Like [`as_code_matrix`], but one SID's flat codes (`[0, 3, 1]`) are also accepted, as one row.

    Raises:
        ValueError: for non-integers (floats, bools, digit strings), ragged rows, or input that is not 1-D or 2-D.
    """
    if hasattr(codes, "detach"):
        codes = codes.detach().cpu().numpy()
    if isinstance(codes, np.ndarray) and codes.ndim == 1:
        codes = codes[None, :]
    elif isinstance(codes, (list, tuple)) and not any(
        isinstance(c, (Sequence, np.ndarray)) and not isinstance(c, (str, bytes)) for c in codes
    ):
        codes = [codes]  # a flat list: one SID (its elements are checked as codes)
    return as_code_matrix(codes, what)


def _is_int_type(t: type) -> bool:
    return (t is int or issubclass(t, np.integer)) and not issubclass(t, (bool, np.bool_))


def as_int_list(value: Any, field: str, source: str) -> list[int]:
    """A JSON/Python list of ints (numpy integer arrays allowed); strings, floats and bools are errors."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and np.issubdtype(value.dtype, np.integer):
        value = value.tolist()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ValueError(
            f"{source}: field {field!r} must be a list of integers (one per level), e.g. [256, 256, 256]; got "
            f"{type(value).__name__} {value!r}."
        )
    bad = [v for v in value if not _is_int(v)]
    if bad:
        raise ValueError(
            f"{source}: field {field!r} must be a list of integers; {bad[0]!r} ({type(bad[0]).__name__}) is not."
        )
    return [int(v) for v in value]


def mixed_radix_keys(codes: np.ndarray, radix: Sequence[int], low: Sequence[int] | None = None) -> np.ndarray:
    """One int64 per row of `(n, L)` codes: the row read as a number with digits `codes[:, l] - low[l]` in base
    `radix[l]`, so the keys sort as the rows do (lexicographically). Built in place, column by column: the only
    temporary is the `(n,)` key array. The caller checks that `prod(radix) < 2**63`."""
    keys = np.zeros(len(codes), dtype=np.int64)
    for level, base in enumerate(radix):
        keys *= int(base)
        keys += codes[:, level]
        if low is not None:
            keys -= int(low[level])
    return keys


def check_code_range(
    codes: np.ndarray, codebook_sizes: Sequence[int], item_ids: Sequence[str], source: str
) -> None:
    """Every code of `(n, L)` `codes` lies in `[0, codebook_sizes[level])`; ValueError naming the first item."""
    for level, size in enumerate(codebook_sizes):
        bad = np.flatnonzero((codes[:, level] < 0) | (codes[:, level] >= size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{source}: code {int(codes[i, level])} of item {item_ids[i]!r} at level {level} is out of "
                f"range [0, {size}) ('codebook_sizes'[{level}] = {size}); {bad.size} item(s) affected."
            )


def check_unique_item_ids(item_ids: Sequence[str], source: str) -> dict[str, int]:
    """`{item_id: row}`; ValueError naming the duplicates when an id occurs twice."""
    index = {item: row for row, item in enumerate(item_ids)}
    if len(index) != len(item_ids):
        seen: set[str] = set()
        dups = [i for i in item_ids if i in seen or seen.add(i)]
        raise ValueError(
            f"{source}: Duplicate item ids in 'item_ids': {sorted(set(dups))[:5]}; every item needs a distinct id."
        )
    return index


def _jsonable(value: Any) -> Any:
    """numpy scalars / arrays (e.g. in collision statistics) -> plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------- the fields of a SID table
def check_codebook_sizes(codebook_sizes: Any, source: str) -> list[int]:
    """A table's `codebook_sizes`: 1 to `MAX_NUM_LEVELS` levels of 1 to `MAX_CODEBOOK_SIZE` codes, < 2**62 SIDs."""
    sizes = as_int_list(codebook_sizes, "codebook_sizes", source)
    if not 1 <= len(sizes) <= MAX_NUM_LEVELS or any(not 1 <= s <= MAX_CODEBOOK_SIZE for s in sizes):
        raise ValueError(
            f"{source}: field 'codebook_sizes' must list 1 to {MAX_NUM_LEVELS} levels of 1 to "
            f"{MAX_CODEBOOK_SIZE} (2**{MAX_CODEBOOK_SIZE.bit_length() - 1}) codes each; got {sizes}."
        )
    if float(np.prod([float(s) for s in sizes])) >= 2.0**62:
        raise ValueError(
            f"{source}: field 'codebook_sizes' {sizes} gives more than 2**62 SIDs; use fewer levels or codes."
        )
    return sizes


def check_table_metadata(
    num_semantic_levels: Any,
    collision_strategy: Any,
    stats: Any,
    num_levels: int,
    strategies: Sequence[str],
    source: str,
) -> int:
    """Check a table's `num_semantic_levels`, `collision_strategy` and `stats`; returns the semantic levels."""
    if num_semantic_levels is None:
        num_semantic = num_levels
    elif not _is_int(num_semantic_levels) or not 1 <= int(num_semantic_levels) <= num_levels:
        raise ValueError(
            f"{source}: field 'num_semantic_levels' must be an integer in [1, {num_levels}] (the levels "
            f"from the RQ-VAE; the rest is the dedup level); got {num_semantic_levels!r}."
        )
    else:
        num_semantic = int(num_semantic_levels)
    if collision_strategy is not None and not isinstance(collision_strategy, str):
        raise ValueError(
            f"{source}: field 'collision_strategy' must be a string or null; got {collision_strategy!r}."
        )
    if collision_strategy is not None and collision_strategy not in strategies:
        raise ValueError(
            f"{source}: field 'collision_strategy' is {collision_strategy!r}; use one of "
            f"{list(strategies)} or null (unknown)."
        )
    if stats is not None and not isinstance(stats, Mapping):
        raise ValueError(f"{source}: field 'stats' must be an object (dict); got {type(stats).__name__}.")
    return num_semantic


def check_table_codes(codes: Any, num_items: int, sizes: Sequence[int], source: str) -> np.ndarray:
    """A table's `codes` as an int64 `(num_items, len(sizes))` matrix (an empty list is an empty table)."""
    if isinstance(codes, Sequence) and not isinstance(codes, (str, bytes)) and len(codes) == 0:
        codes = np.zeros((0, len(sizes)), dtype=np.int64)
    codes = as_code_matrix(codes, f"{source}: field 'codes'")
    if codes.shape[0] != num_items:
        raise ValueError(
            f"{source}: field 'codes' must have shape (num_items, num_levels) = ({num_items}, L); "
            f"got {tuple(codes.shape)}."
        )
    if codes.shape[1] != len(sizes):
        raise ValueError(
            f"{source}: every SID has {codes.shape[1]} codes but 'codebook_sizes' lists {len(sizes)} levels "
            f"({sizes}); give one size per level."
        )
    return codes
