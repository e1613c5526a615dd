"""The item table: item id <-> Semantic ID, validated once, saved as one versioned file.

[`SIDTable`] is the one table of the library: `assign_unique_sids` builds it, `train_rqvae` saves it, and a
`SemanticIDTokenizer` carries it (`tokenizer.sid_table`) and writes it beside itself as `sid_table.json`.
Pure numpy and dicts (picklable; torch is used only on tensors the caller passes in).

Two versions of one schema (`"format": "hf_semtok.sid_table"`):

- version 1, small tables: everything in `sid_table.json` (item ids and codes as JSON lists);
- version 2, tables of `COMPACT_MIN_ITEMS` items or more: `sid_table.json` keeps the metadata and names a
  `sid_codes.safetensors` beside it with the codes in the smallest unsigned integer type that fits and the item
  ids as one UTF-8 buffer plus offsets. In memory such a table keeps the ids in that buffer ([`ItemIds`]) and
  finds an id's row through sorted 64-bit hashes ([`HashedItemIndex`]), never a Python dict of every item.

This file is copied beside a saved tokenizer for `trust_remote_code=True`, so it imports only the standard
library, numpy and `.constants` (relatively); the optional `hf_semtok.io_utils` import sits in a `try` block.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .constants import MAX_CODEBOOK_SIZE, SID_CODES_FILE, SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_TEMPLATE
from .sid_tokens import group_sid_events

try:  # atomic file writes when hf_semtok is installed; the remote-code copy writes plainly
    from hf_semtok.io_utils import atomic_write
except ImportError:  # pragma: no cover - only in the remote-code copy without hf_semtok
    atomic_write = None

try:  # a dependency of transformers; only the compact (version 2) table needs it
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as _st_load
    from safetensors.numpy import save as _st_save
except ImportError:  # pragma: no cover - safetensors comes with transformers
    SafetensorError = _st_load = _st_save = None

__all__ = [
    "COMPACT_MIN_ITEMS",
    "HashedItemIndex",
    "ItemIds",
    "MAX_CODEBOOK_SIZE",
    "MAX_NUM_LEVELS",
    "SIDTable",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "as_code_matrix",
    "as_int",
    "as_int_list",
    "check_code_range",
    "check_unique_item_ids",
]

#: `"format"` of `sid_table.json`.
TABLE_FORMAT = "hf_semtok.sid_table"
#: Newest `"version"` of `sid_table.json`: 1 (all in JSON) or 2 (metadata in JSON, arrays in
#: `sid_codes.safetensors`). Files without format/version (written by `SIDTable.to_json` before the table had a
#: schema) are read as version 1.
TABLE_VERSION = 2
#: Version of the all-JSON layout, still written for tables under `COMPACT_MIN_ITEMS` items.
JSON_TABLE_VERSION = 1
#: From this many items on, `SIDTable.to_json` writes version 2 (codes and ids in `sid_codes.safetensors`) and
#: a table built from a list keeps its ids in an [`ItemIds`] buffer with a [`HashedItemIndex`].
COMPACT_MIN_ITEMS = 100_000
#: Name of the binary file of a version-2 table (beside `sid_table.json`; a save prefix applies to both).
#: Largest number of levels of a SID.
MAX_NUM_LEVELS = 64


_REQUIRED_FIELDS = ("item_ids", "codes", "codebook_sizes")
_OPTIONAL_FIELDS = ("num_semantic_levels", "collision_strategy", "stats")
_V2_REQUIRED_FIELDS = ("codebook_sizes", "num_items", "data_file")
_V2_TENSORS = ("codes", "item_ids_utf8", "item_ids_offsets")
_FIX = "re-save it with SIDTable.to_json() or SemanticIDTokenizer.save_pretrained()"


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


# ----------------------------------------------------------------------------------------------------------
# Compact item ids: one UTF-8 buffer + offsets, and a hash index over it
# ----------------------------------------------------------------------------------------------------------
_HASH_MULT = np.uint64(0x100000001B3)  # FNV-64 prime, as the polynomial base
_HASH_CHUNK = 1 << 20  # items hashed per numpy pass (bounds the temporary arrays)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (Steele et al., 2014): spreads the polynomial hash over all 64 bits."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _hash_utf8(buffer: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """64-bit hash of each string `buffer[offsets[i]:offsets[i + 1]]`, vectorised, in chunks of items.

    `sum_j byte_j * P**j` (mod 2**64) plus the length, then `_mix64`; equal strings give equal hashes, and the
    index compares the strings themselves, so a collision costs time, never correctness.
    """
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i0 in range(0, n, _HASH_CHUNK):
            i1 = min(n, i0 + _HASH_CHUNK)
            a, b = int(offsets[i0]), int(offsets[i1])
            lengths = np.diff(offsets[i0 : i1 + 1])  # (chunk,)
            h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            if b > a:
                starts = offsets[i0:i1] - a  # (chunk,)
                max_len = int(lengths.max())
                powers = np.ones(max_len, dtype=np.uint64)  # P**0, P**1, ... (mod 2**64)
                powers[1:] = np.cumprod(np.full(max_len - 1, _HASH_MULT, dtype=np.uint64))
                pos = np.arange(b - a, dtype=np.int64) - np.repeat(
                    starts, lengths
                )  # (bytes,) index in its string
                terms = buffer[a:b].astype(np.uint64) * powers[pos]
                nonempty = lengths > 0
                h[nonempty] += np.add.reduceat(terms, starts[nonempty])
            out[i0:i1] = _mix64(h)
    return out


_MASK64 = (1 << 64) - 1
_POLY = int(_HASH_MULT)


def _hash_one(item_id: str) -> int:
    """`_hash_utf8` of one string in plain Python (no numpy call overhead: a few microseconds per id)."""
    data = item_id.encode("utf-8")
    h, power = 0, 1
    for byte in data:
        h = (h + byte * power) & _MASK64
        power = (power * _POLY) & _MASK64
    h = (h + len(data) * 0x9E3779B97F4A7C15) & _MASK64
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _MASK64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


class ItemIds(Sequence):
    """Item ids stored as one UTF-8 buffer plus `n + 1` offsets; `ids[i]` decodes one id on demand.

    Equal to a list of the same strings (`ids == ["a", "b"]`); picklable. About 10 bytes per short id instead of
    the ~60 of a Python string.

    Args:
        buffer: `(total_bytes,)` uint8 array, the ids' UTF-8 bytes back to back.
        offsets: `(n + 1,)` int64 array; id `i` is `buffer[offsets[i]:offsets[i + 1]]`.
        source: Named in error messages.

    Raises:
        ValueError: for offsets that are not increasing from 0 to `len(buffer)`, or bytes that are not UTF-8.
    """

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray, source: str = "item ids") -> None:
        buffer = np.ascontiguousarray(buffer)
        offsets = np.ascontiguousarray(offsets)
        if buffer.ndim != 1 or buffer.dtype != np.uint8:
            raise ValueError(
                f"{source}: the id buffer must be a 1-D uint8 array; got {buffer.dtype} {buffer.shape}."
            )
        if offsets.ndim != 1 or not np.issubdtype(offsets.dtype, np.integer) or len(offsets) < 1:
            raise ValueError(f"{source}: the id offsets must be a 1-D integer array of n + 1 positions.")
        offsets = offsets.astype(np.int64, copy=False)
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(buffer) or (np.diff(offsets) < 0).any():
            raise ValueError(
                f"{source}: the id offsets must rise from 0 to the buffer length {len(buffer)}; got "
                f"{int(offsets[0])} .. {int(offsets[-1])}{' (decreasing somewhere)' if (np.diff(offsets) < 0).any() else ''}."
            )
        data = buffer.tobytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{source}: the item ids are not UTF-8 ({err}).") from None
        starts = offsets[:-1][np.diff(offsets) > 0]
        if starts.size and ((buffer[starts] & 0xC0) == 0x80).any():
            raise ValueError(
                f"{source}: an id offset falls inside a UTF-8 character; the offsets are corrupt."
            )
        self._data = data
        self.buffer = np.frombuffer(data, dtype=np.uint8)
        self.offsets = offsets

    @classmethod
    def from_list(cls, item_ids: Sequence[str]) -> ItemIds:
        """Pack a list of strings."""
        encoded = [s.encode("utf-8") for s in item_ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"item row {i} out of range for {len(self)} items")
        return self._data[self.offsets[i] : self.offsets[i + 1]].decode("utf-8")

    def __iter__(self):
        data, offsets = self._data, self.offsets.tolist()
        for a, b in zip(offsets[:-1], offsets[1:]):
            yield data[a:b].decode("utf-8")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ItemIds):
            return self._data == other._data and np.array_equal(self.offsets, other.offsets)
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable-looking sequence semantics, like a list

    def __repr__(self) -> str:
        head = ", ".join(repr(self[i]) for i in range(min(3, len(self))))
        return f"ItemIds([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"

    def tolist(self) -> list[str]:
        """The ids as a Python list."""
        return list(self)

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self._data, "offsets": self.offsets}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._data = state["data"]
        self.buffer = np.frombuffer(self._data, dtype=np.uint8)
        self.offsets = state["offsets"]


class HashedItemIndex(Mapping):
    """`item_id -> row` over an [`ItemIds`] without a dict: sorted 64-bit hashes + their rows (16 bytes per item).

    A lookup hashes the id, finds its hash with `searchsorted` (O(log n)) and compares the stored string.

    Args:
        ids: The item ids.
        source: Named in the duplicate-id error.

    Raises:
        ValueError: when an id occurs twice (naming up to five of them).
    """

    def __init__(self, ids: ItemIds, source: str = "SIDTable") -> None:
        hashes = _hash_utf8(ids.buffer, ids.offsets)
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._rows = order.astype(np.int32 if len(ids) < 2**31 else np.int64)
        self._ids = ids
        same = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        dups = sorted(
            {ids[int(self._rows[j])] for j in same if ids[int(self._rows[j])] == ids[int(self._rows[j + 1])]}
        )
        if dups:
            raise ValueError(
                f"{source}: Duplicate item ids in 'item_ids': {dups[:5]}; every item needs a distinct id."
            )

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each id (vectorised), -1 for unknown ones."""
        query = ItemIds.from_list([str(i) for i in item_ids])
        hashes = _hash_utf8(query.buffer, query.offsets)
        lo = np.searchsorted(self._hashes, hashes, side="left")
        hi = np.searchsorted(self._hashes, hashes, side="right")
        out = np.full(len(query), -1, dtype=np.int64)
        for k in np.flatnonzero(hi > lo).tolist():
            for j in range(int(lo[k]), int(hi[k])):
                row = int(self._rows[j])
                if self._ids[row] == query[k]:
                    out[k] = row
                    break
        return out

    def _row(self, item_id: str) -> int:
        key = np.uint64(_hash_one(item_id))
        j = int(np.searchsorted(self._hashes, key))
        while j < len(self._hashes) and self._hashes[j] == key:
            row = int(self._rows[j])
            if self._ids[row] == item_id:
                return row
            j += 1
        return -1

    def __getitem__(self, item_id: str) -> int:
        row = self._row(item_id) if isinstance(item_id, str) else -1
        if row < 0:
            raise KeyError(item_id)
        return row

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._row(item_id) >= 0

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self):
        return iter(self._ids)


def _smallest_uint(max_value: int) -> type:
    """Smallest unsigned numpy integer type holding `max_value`."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def _write_bytes(data: bytes, path: str | os.PathLike) -> None:
    if atomic_write is not None:
        atomic_write(path, lambda handle: handle.write(data))
    else:  # pragma: no cover - remote-code copy without hf_semtok
        with open(path, "wb") as f:
            f.write(data)


# ----------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------
class SIDTable:
    """Item id -> Semantic ID, with unique rows, and the lookups the tokenizer and the decoder need.

    Codes are packed into one int64 key per item (`sum(code[l] * stride[l])`), kept sorted, so exact lookups
    and prefix ranges are one `searchsorted`. The table is validated once, here, whatever built it.

    Args:
        item_ids: Item identifiers, in row order (strings; ints are turned into strings).
        codes: `(n_items, L)` integer codes, one SID per row, all rows distinct.
        codebook_sizes: Number of codes of each of the `L` levels (the dedup level included when present); each
            in `[1, MAX_CODEBOOK_SIZE]`.
        num_semantic_levels: Levels that come from the RQ-VAE (`L` or `L - 1`); default `L`.
        collision_strategy: `"extra_level"`, `"reassign"`, `"none"`, or None when unknown.
        stats: Collision statistics and assignment counts.
        source: File or object named in error messages.

    Attributes:
        item_ids, codes, codebook_sizes, num_semantic_levels, collision_strategy, stats: As above; `codes` is a
            read-only int64 copy.

    Raises:
        ValueError: naming `source`, the field and the fix, for any inconsistency.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        codes: Any,
        codebook_sizes: Sequence[int],
        num_semantic_levels: int | None = None,
        collision_strategy: str | None = "extra_level",
        stats: Mapping[str, Any] | None = None,
        source: str = "SIDTable",
    ) -> None:
        if isinstance(item_ids, ItemIds):
            pass
        else:
            if hasattr(item_ids, "tolist") and not isinstance(item_ids, (str, bytes)):  # numpy / pandas
                item_ids = item_ids.tolist()
            if isinstance(item_ids, (str, bytes, Mapping)) or not isinstance(item_ids, Sequence):
                raise ValueError(
                    f"{source}: field 'item_ids' must be a list of item id strings; got {type(item_ids).__name__} "
                    f"{str(item_ids)[:50]!r}."
                )
            bad_ids = [i for i in item_ids if not (isinstance(i, str) or _is_int(i))]
            if bad_ids:
                raise ValueError(
                    f"{source}: field 'item_ids' must hold strings (or integers); {bad_ids[0]!r} "
                    f"({type(bad_ids[0]).__name__}) is not."
                )
            item_ids = [str(i) for i in item_ids]
            if len(item_ids) >= COMPACT_MIN_ITEMS:
                item_ids = ItemIds.from_list(item_ids)
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
        if num_semantic_levels is None:
            num_semantic = len(sizes)
        elif not _is_int(num_semantic_levels) or not 1 <= int(num_semantic_levels) <= len(sizes):
            raise ValueError(
                f"{source}: field 'num_semantic_levels' must be an integer in [1, {len(sizes)}] (the levels "
                f"from the RQ-VAE; the rest is the dedup level); got {num_semantic_levels!r}."
            )
        else:
            num_semantic = int(num_semantic_levels)
        if collision_strategy is not None and not isinstance(collision_strategy, str):
            raise ValueError(
                f"{source}: field 'collision_strategy' must be a string or null; got {collision_strategy!r}."
            )
        if stats is not None and not isinstance(stats, Mapping):
            raise ValueError(f"{source}: field 'stats' must be an object (dict); got {type(stats).__name__}.")
        if isinstance(codes, Sequence) and not isinstance(codes, (str, bytes)) and len(codes) == 0:
            codes = np.zeros((0, len(sizes)), dtype=np.int64)
        codes = as_code_matrix(codes, f"{source}: field 'codes'")
        if codes.shape[0] != len(item_ids):
            raise ValueError(
                f"{source}: field 'codes' must have shape (num_items, num_levels) = ({len(item_ids)}, L); "
                f"got {tuple(codes.shape)}."
            )
        if codes.shape[1] != len(sizes):
            raise ValueError(
                f"{source}: every SID has {codes.shape[1]} codes but 'codebook_sizes' lists {len(sizes)} levels "
                f"({sizes}); give one size per level."
            )
        check_code_range(codes, sizes, item_ids, source)
        if isinstance(item_ids, ItemIds):
            index: Mapping[str, int] = HashedItemIndex(item_ids, source)
        else:
            index = check_unique_item_ids(item_ids, source)
        strides = np.ones(len(sizes), dtype=np.int64)
        for level in range(len(sizes) - 2, -1, -1):
            strides[level] = strides[level + 1] * sizes[level + 1]
        keys = codes @ strides  # (n_items,)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if same.size:
            a, b = item_ids[int(order[same[0]])], item_ids[int(order[same[0] + 1])]
            raise ValueError(
                f"{source}: items {a!r} and {b!r} share the SID {tuple(int(c) for c in codes[index[a]])}; SIDs "
                "must be unique (build the table with hf_semtok.sids.assign_unique_sids)."
            )
        codes.flags.writeable = False
        self.item_ids = item_ids
        self.codes = codes
        self.codebook_sizes = sizes
        self.num_semantic_levels = num_semantic
        self.collision_strategy = collision_strategy
        self.stats = dict(stats or {})
        self.index = index
        self.strides = strides
        self.sorted_keys = sorted_keys
        self.order = order
        self._sid_texts: list[str] | None = None
        self._level_tokens: list[list[str]] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.codes.flags.writeable = False  # pickling drops the flag

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return (
            f"SIDTable(num_items={len(self)}, codebook_sizes={self.codebook_sizes}, "
            f"num_semantic_levels={self.num_semantic_levels}, collision_strategy={self.collision_strategy!r})"
        )

    @property
    def num_levels(self) -> int:
        """Length `L` of every SID (dedup level included)."""
        return len(self.codebook_sizes)

    @property
    def has_extra_level(self) -> bool:
        """Whether the last level is the dedup level."""
        return self.num_levels > self.num_semantic_levels

    def index_of(self, item_id: str) -> int:
        """Row of `item_id` (KeyError if unknown)."""
        return self.index[item_id]

    def as_dict(self) -> dict[str, tuple[int, ...]]:
        """`{item_id: (code_0, ..., code_{L-1})}`."""
        return {item: tuple(row) for item, row in zip(self.item_ids, self.codes.tolist())}

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def from_mapping(
        cls,
        table: Mapping[str, Sequence[int]],
        codebook_sizes: Sequence[int] | None = None,
        rqvae: Any = None,
        source: str = "sid_table",
    ) -> SIDTable:
        """Build from `{item_id: codes}`.

        Args:
            table: Item id -> tuple of integer codes (all the same length).
            codebook_sizes: Codes per level. Without it, the sizes of `rqvae.config.codebook_sizes` (a further
                dedup level the RQ-VAE does not know is sized from the data).
            rqvae: An `RQVAEModel`, used only for its codebook sizes.
            source: Named in error messages.
        """
        if not isinstance(table, Mapping):
            raise ValueError(
                f"{source} must be a dict item_id -> tuple of codes or a hf_semtok.sids.SIDTable; got "
                f"{type(table).__name__}."
            )
        if not table:
            raise ValueError(f"{source} is empty; the tokenizer needs at least one item.")
        item_ids = list(table)
        rows = []
        for item, value in table.items():
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
                raise ValueError(
                    f"{source}: the SID of item {item!r} must be a tuple of integers; got {value!r}."
                )
            if not all(_is_int(c) for c in value):
                raise ValueError(
                    f"{source}: the SID of item {item!r} has non-integer codes {tuple(value)!r}."
                )
            rows.append([int(c) for c in value])
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            by_len = {len(r): item for item, r in zip(item_ids, rows)}
            raise ValueError(
                f"{source}: all SIDs must have the same length; found lengths {sorted(lengths)} "
                f"(e.g. {by_len}). Pad with a dedup level (hf_semtok.sids.assign_unique_sids)."
            )
        codes = np.asarray(rows, dtype=np.int64)
        num_semantic = None
        if codebook_sizes is None:
            if rqvae is None:
                raise ValueError(
                    "codebook_sizes is required when sid_table is a plain dict and no rqvae is given; pass "
                    "codebook_sizes=[size of level 0, size of level 1, ...]."
                )
            sizes = as_int_list(list(rqvae.config.codebook_sizes), "codebook_sizes", "the RQ-VAE config")
            num_semantic = len(sizes)
            if codes.shape[1] == len(sizes) + 1:  # a dedup level the RQ-VAE does not know: size from the data
                sizes.append(int(codes[:, -1].max()) + 1)
            codebook_sizes = sizes
        return cls(item_ids, codes, codebook_sizes, num_semantic, None, None, source=source)

    @classmethod
    def from_any(cls, table: Any, codebook_sizes: Sequence[int] | None = None, rqvae: Any = None) -> SIDTable:
        """A `SIDTable` from a `SIDTable` (returned as is), an object with its fields, or a mapping.

        `codebook_sizes`, when given and different from the table's, rebuilds the table with those sizes.
        """
        if isinstance(table, cls) and (
            codebook_sizes is None or list(codebook_sizes) == table.codebook_sizes
        ):
            return table
        if all(hasattr(table, name) for name in ("item_ids", "codes", "codebook_sizes")):
            return cls(
                table.item_ids,
                table.codes,
                codebook_sizes if codebook_sizes is not None else table.codebook_sizes,
                getattr(table, "num_semantic_levels", None),
                getattr(table, "collision_strategy", None),
                getattr(table, "stats", None),
                source="sid_table",
            )
        return cls.from_mapping(table, codebook_sizes, rqvae)

    # ------------------------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """What a version-1 `sid_table.json` holds: format, version and the fields (JSON-able)."""
        return {
            "format": TABLE_FORMAT,
            "version": JSON_TABLE_VERSION,
            **self._metadata(),
            "item_ids": list(self.item_ids),
            "codes": self.codes.tolist(),
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "codebook_sizes": list(self.codebook_sizes),
            "num_semantic_levels": self.num_semantic_levels,
            "collision_strategy": self.collision_strategy,
            "stats": _jsonable(self.stats),
        }

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "SID table data", directory: str | os.PathLike | None = None
    ) -> SIDTable:
        """Inverse of [`to_dict`]; also reads the versionless layout of earlier `SIDTable.to_json` files.

        Args:
            data: The parsed `sid_table.json`.
            source: Named in error messages.
            directory: Folder of the JSON file, where a version-2 table's `data_file` lies (see [`from_json`]).

        Raises:
            ValueError: naming `source` and the field, for an unknown format, a newer version, a missing or
                unknown field, or any value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{source} holds a JSON {type(data).__name__}, not an object; it is not a SID table ({_FIX})."
            )
        data = dict(data)
        fmt, version = data.pop("format", None), data.pop("version", None)
        if fmt is not None or version is not None:
            if fmt != TABLE_FORMAT:
                raise ValueError(
                    f"{source}: field 'format' is {fmt!r}, not {TABLE_FORMAT!r}; it is not a SID table written by "
                    "hf_semtok."
                )
            if not _is_int(version) or version < 1:
                raise ValueError(
                    f"{source}: field 'version' must be a positive integer; got {version!r} ({_FIX})."
                )
            if version > TABLE_VERSION:
                raise ValueError(
                    f"{source}: version {version} of {TABLE_FORMAT} was written by a newer hf_semtok (this one "
                    f"reads versions up to {TABLE_VERSION}); upgrade hf_semtok (pip install -U hf-semtok)."
                )
        if version == 2:
            return cls._from_v2(data, source, directory)
        for name in _REQUIRED_FIELDS:
            if name not in data:
                raise ValueError(
                    f"{source} has no field {name!r}; it is not a SID table written by hf_semtok."
                )
        unknown = sorted(set(data) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown}; a SID table has "
                f"{['format', 'version', *_REQUIRED_FIELDS, *_OPTIONAL_FIELDS]} ({_FIX})."
            )
        return cls(
            data["item_ids"],
            data["codes"],
            data["codebook_sizes"],
            data.get("num_semantic_levels"),
            data.get("collision_strategy"),
            data.get("stats"),
            source=source,
        )

    @classmethod
    def _from_v2(cls, data: dict[str, Any], source: str, directory: str | os.PathLike | None) -> SIDTable:
        """Version 2: metadata from the JSON, codes and ids from its `data_file` (safetensors)."""
        for name in _V2_REQUIRED_FIELDS:
            if name not in data:
                raise ValueError(
                    f"{source} (version 2) has no field {name!r}; it is not a SID table written by hf_semtok "
                    f"({_FIX})."
                )
        unknown = sorted(set(data) - set(_V2_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown} for version 2; a compact SID table has "
                f"{['format', 'version', *_V2_REQUIRED_FIELDS, *_OPTIONAL_FIELDS]} ({_FIX})."
            )
        data_file, num_items = data["data_file"], data["num_items"]
        if not isinstance(data_file, str) or not data_file or os.path.basename(data_file) != data_file:
            raise ValueError(
                f"{source}: field 'data_file' must be a file name beside the JSON file (no folders), e.g. "
                f"{SID_CODES_FILE!r}; got {data_file!r}."
            )
        if not _is_int(num_items) or num_items < 0:
            raise ValueError(f"{source}: field 'num_items' must be an integer >= 0; got {num_items!r}.")
        if directory is None:
            raise ValueError(
                f"{source} is a version-2 (compact) table whose arrays lie in {data_file!r}; read it with "
                "SIDTable.from_json(path_of_sid_table_json)."
            )
        path = os.path.join(directory, data_file)
        if _st_load is None:  # pragma: no cover - safetensors comes with transformers
            raise ImportError(f"Reading {path} needs the safetensors package (pip install safetensors).")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{source} names {data_file!r} (the codes and item ids) but {path} does not exist; copy it beside "
                f"the JSON file or {_FIX}."
            )
        try:
            tensors = _st_load(path)
        except (SafetensorError, ValueError, OSError) as err:
            raise ValueError(
                f"{path} is not a readable safetensors file ({err}); it is truncated or corrupt."
            ) from None
        if sorted(tensors) != sorted(_V2_TENSORS):
            raise ValueError(f"{path}: tensors must be {list(_V2_TENSORS)}; got {sorted(tensors)} ({_FIX}).")
        codes, blob, offsets = (tensors[k] for k in _V2_TENSORS)
        if not np.issubdtype(codes.dtype, np.integer) or codes.ndim != 2 or codes.shape[0] != num_items:
            raise ValueError(
                f"{path}: tensor 'codes' must be an integer ({num_items}, num_levels) array ('num_items' of "
                f"{source}); got {codes.dtype} {tuple(codes.shape)}."
            )
        if offsets.dtype != np.int64 or offsets.shape != (num_items + 1,):
            raise ValueError(
                f"{path}: tensor 'item_ids_offsets' must be int64 of shape ({num_items + 1},); got "
                f"{offsets.dtype} {tuple(offsets.shape)}."
            )
        item_ids = ItemIds(blob, offsets, source=f"{path}: tensor 'item_ids_utf8'")
        return cls(
            item_ids,
            codes,
            data["codebook_sizes"],
            data.get("num_semantic_levels"),
            data.get("collision_strategy"),
            data.get("stats"),
            source=path,
        )

    def to_json(self, path: str | os.PathLike, compact: bool | None = None) -> tuple[str, ...]:
        """Write the table to `path` (atomically when hf_semtok is installed: temporary file, then rename).

        Args:
            path: The JSON file (`sid_table.json`).
            compact: Write version 2: `path` keeps the metadata and the arrays go to `sid_codes.safetensors` beside
                it (`<prefix>-sid_codes.safetensors` for `<prefix>-sid_table.json`). Default: from
                `COMPACT_MIN_ITEMS` items on.

        Returns:
            The paths written (the JSON file, then the data file if any).
        """
        if compact is None:
            compact = len(self) >= COMPACT_MIN_ITEMS
        if not compact:
            _write_bytes(json.dumps(self.to_dict()).encode("utf-8"), path)
            return (str(path),)
        if _st_save is None:  # pragma: no cover - safetensors comes with transformers
            raise ImportError(
                "Writing a compact SID table needs the safetensors package (pip install safetensors)."
            )
        name = os.path.basename(str(path))
        base = (
            name[: -len("sid_table.json")]
            if name.endswith("sid_table.json")
            else name.rsplit(".", 1)[0] + "."
        )
        data_path = os.path.join(os.path.dirname(str(path)), base + SID_CODES_FILE)
        ids = self.item_ids if isinstance(self.item_ids, ItemIds) else ItemIds.from_list(self.item_ids)
        tensors = {
            "codes": self.codes.astype(_smallest_uint(max(self.codebook_sizes) - 1)),
            "item_ids_utf8": ids.buffer,
            "item_ids_offsets": ids.offsets,
        }
        _write_bytes(_st_save(tensors, metadata={"format": TABLE_FORMAT, "version": "2"}), data_path)
        meta = {
            "format": TABLE_FORMAT,
            "version": 2,
            **self._metadata(),
            "num_items": len(self),
            "data_file": os.path.basename(data_path),
        }
        _write_bytes(json.dumps(meta).encode("utf-8"), path)
        return (str(path), data_path)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> SIDTable:
        """Read `sid_table.json`: version 2 (with its `sid_codes.safetensors`), version 1, or an unversioned file.

        Raises:
            FileNotFoundError: when `path` (or the data file a version-2 table names) does not exist.
            ValueError: naming the file (and field) for bytes that are not UTF-8 JSON or a table that is invalid.
        """
        name = str(path)
        with open(path, "rb") as f:
            raw = f.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"{name} is not UTF-8 text ({err}); it is not a SID table ({_FIX}).") from None
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{name} is not valid JSON ({err}); the file is truncated or corrupt ({_FIX})."
            ) from None
        except RecursionError:
            raise ValueError(f"{name} is JSON nested too deeply to be a SID table ({_FIX}).") from None
        return cls.from_dict(data, source=name, directory=os.path.dirname(os.path.abspath(name)))

    # ------------------------------------------------------------------------------------ lookups
    def sid_texts(self) -> list[str]:
        """Per row, the item's SID string `<|sid_start|><|sid_0_a|>...<|sid_end|>` (built once, then cached)."""
        if self._sid_texts is None:
            tokens = [
                [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for c in range(k)]
                for lv, k in enumerate(self.codebook_sizes)
            ]
            self._sid_texts = [
                SID_START_TOKEN + "".join(tokens[lv][c] for lv, c in enumerate(row)) + SID_END_TOKEN
                for row in self.codes.tolist()
            ]
        return self._sid_texts

    def sid_text(self, row: int) -> str:
        """The SID string of one row, built on demand (no cache of every item's string)."""
        if self._level_tokens is None:
            self._level_tokens = [
                [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for c in range(k)]
                for lv, k in enumerate(self.codebook_sizes)
            ]
        tokens = self._level_tokens
        return (
            SID_START_TOKEN
            + "".join(tokens[lv][c] for lv, c in enumerate(self.codes[row].tolist()))
            + SID_END_TOKEN
        )

    def rows_of_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each item id (vectorised for a compact table), -1 where the id is unknown."""
        if isinstance(self.index, HashedItemIndex):
            return self.index.rows_of(item_ids)
        get = self.index.get
        return np.asarray([get(str(i), -1) for i in item_ids], dtype=np.int64)

    def keys_of(self, codes: np.ndarray) -> np.ndarray:
        """Packed int64 key of each row of `(n, L)` codes."""
        return np.asarray(codes, dtype=np.int64) @ self.strides

    def rows_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Row index of each packed key, -1 where no item has it."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(self.sorted_keys):
            return np.full(keys.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return np.where(self.sorted_keys[pos] == keys, self.order[pos], -1)

    def row_of_sid(self, codes: Sequence[int]) -> int:
        """Row of the item whose full SID is `codes`, -1 if none (codes assumed in range)."""
        return int(self.rows_of_keys(self.keys_of(np.asarray([codes], dtype=np.int64)))[0])

    def rows_with_prefix(self, prefix: Sequence[int]) -> np.ndarray:
        """Rows (ascending) of the items whose SID starts with `prefix`: one key range of the sorted keys."""
        k = len(prefix)
        if k > len(self.codebook_sizes) or any(
            not 0 <= int(c) < s for c, s in zip(prefix, self.codebook_sizes)
        ):
            return np.zeros(0, dtype=np.int64)  # no SID has an out-of-range code
        lo = int(np.dot(np.asarray(prefix, dtype=np.int64), self.strides[:k])) if k else 0
        hi = lo + (int(self.strides[k - 1]) if k else int(self.strides[0]) * self.codebook_sizes[0])
        a, b = np.searchsorted(self.sorted_keys, [lo, hi])
        return np.sort(self.order[a:b])

    def resolve(self, events: Sequence[tuple[int, int, int]], on_invalid: str) -> list[Any]:
        """Item ids of the SIDs in `events`; invalid ones handled per `on_invalid` (see `parse_items`)."""
        segments = group_sid_events(events, self.codebook_sizes)
        good = [i for i, (_, reason) in enumerate(segments) if not reason]
        rows = np.full(len(segments), -1, dtype=np.int64)
        if good:
            rows[good] = self.rows_of_keys(self.keys_of(np.asarray([segments[i][0] for i in good])))
        result: list[Any] = []
        for (codes, reason), row in zip(segments, rows.tolist()):
            if row >= 0:
                result.append(self.item_ids[row])
                continue
            reason = reason or "names no item in the catalogue"
            if on_invalid == "raise":
                raise ValueError(f"Invalid SID {tuple(codes)} in the output: {reason}.")
            if on_invalid == "none":
                result.append(None)
            elif on_invalid == "keep_prefix":
                result.append(tuple(codes))
        return result
