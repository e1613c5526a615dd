"""Item ids of a large catalogue without a Python object per item: one UTF-8 buffer plus offsets ([`ItemIds`]),
and a sorted 64-bit hash index over it ([`HashedItemIndex`]) that finds an id's row.

Copied beside a saved tokenizer for `trust_remote_code=True` (like `sid_table.py`), so it imports only the
standard library, numpy and its siblings (relatively).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .file_sets import atomic_write

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
    def from_list(cls, item_ids: Iterable[str]) -> ItemIds:
        """Pack strings: a list, or any iterable (e.g. `map(str, range(n))`), read `2**20` at a time so that only
        one chunk's temporary objects exist at once."""
        parts: list[bytes] = []
        lengths: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        it = iter(item_ids)
        while chunk := list(itertools.islice(it, _HASH_CHUNK)):
            data = "".join(chunk).encode("utf-8")
            lens = np.fromiter(map(len, chunk), dtype=np.int64, count=len(chunk))
            if len(data) != int(lens.sum()):  # non-ASCII ids: byte lengths differ from character lengths
                lens = np.fromiter((len(i.encode("utf-8")) for i in chunk), dtype=np.int64, count=len(chunk))
            parts.append(data)
            lengths.append(lens)
        offsets = np.cumsum(np.concatenate(lengths))
        return cls(np.frombuffer(b"".join(parts), dtype=np.uint8), offsets)

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


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Long: the docstring states the one item-id rule of the library; the body is ~46 lines.
def check_item_ids(
    item_ids: Any,
    source: str,
    name: str = "item_ids",
    *,
    in_file: bool = False,
    unique: bool = True,
    compact_min_items: int | None = None,
) -> list[str] | ItemIds:
    """The library's one item-id validator: every public entry point that takes item ids calls it.

    The rule: item ids are non-empty `str` (numpy strings too) of valid Unicode (encodable as UTF-8: no lone
    surrogate), given as an ordered sequence (a list, tuple,
    numpy array, pandas Series or [`ItemIds`]), with no id twice. Nothing is converted: an int, float, None or
    bytes element is refused, not turned into text, and so are a `set` (no row order), a `str` (it would be split
    into characters), a mapping and an iterator.

    Exception types follow the Python convention: `TypeError` when the container or an element has the wrong
    type, `ValueError` when the values are wrong (an empty id, a duplicate). Content read from a file has no
    Python type of its own, so with `in_file=True` every problem is a `ValueError` naming the file and field.

    Args:
        item_ids: The ids to check.
        source: Who checks (a function or file name), named in the message.
        name: The argument or field name, named in the message.
        in_file: The ids come from a file: raise `ValueError` for wrong types too, and call `name` a field.
        unique: Also refuse duplicates (callers that build their own index check them there).
        compact_min_items: Return an [`ItemIds`] buffer from this many ids on (default: always a list).

    Returns:
        The ids as a `list[str]` (plain `str`), or the [`ItemIds`] given or built.

    Raises:
        TypeError: A wrong container or element type (a `ValueError` with `in_file=True`).
        ValueError: An empty id, an id that is not valid Unicode, or a duplicate.
    """
    what = f"field {name!r}" if in_file else name
    type_error = ValueError if in_file else TypeError
    if isinstance(item_ids, ItemIds):
        empty = np.flatnonzero(np.diff(item_ids.offsets) == 0)
        if empty.size:
            raise ValueError(f"{source}: {what}[{int(empty[0])}] is an empty string; item ids are non-empty.")
        if unique:
            HashedItemIndex(item_ids, source)  # raises ValueError naming the duplicates
        return item_ids
    if hasattr(item_ids, "tolist") and not isinstance(item_ids, (str, bytes)):  # numpy / pandas
        item_ids = item_ids.tolist()
    if isinstance(item_ids, (str, bytes, Mapping)) or not isinstance(item_ids, Sequence):
        hint = {
            str: " (a string would be split into characters: wrap one id in a list)",
            bytes: " (decode it and wrap it in a list)",
            set: " (a set has no order, so rows would get arbitrary ids: pass sorted(ids) or a list in row order)",
            frozenset: " (a set has no order: pass sorted(ids) or a list in row order)",
        }.get(type(item_ids), " (pass list(...) in row order)")
        raise type_error(
            f"{source}: {what} must be a list of item id strings; got {type(item_ids).__name__} "
            f"{str(item_ids)[:50]!r}{hint}."
        )
    ids = list(item_ids)
    if any(type(i) is not str for i in ids):
        bad = next((p for p, i in enumerate(ids) if not isinstance(i, str)), None)
        if bad is not None:
            raise type_error(
                f"{source}: {what} must hold strings (ids are never converted); {ids[bad]!r} "
                f"({type(ids[bad]).__name__}) at position {bad} is not. Pass [str(i) for i in ids] if integer ids "
                "are meant."
            )
        ids = [str(i) for i in ids]  # str subclasses (numpy strings) -> plain str
    try:
        "".join(ids).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): not Unicode text, cannot be saved as UTF-8
        bad = next(p for p, i in enumerate(ids) if not _is_utf8_encodable(i))
        raise ValueError(
            f"{source}: {what}[{bad}] is {ids[bad]!r}, which holds a lone surrogate and is not valid Unicode; item "
            "ids must be encodable as UTF-8. Fix the id (e.g. decode the source bytes with errors='strict', or "
            "join surrogate pairs with .encode('utf-16', 'surrogatepass').decode('utf-16'))."
        ) from None
    if unique or "" in ids:
        seen = set(ids)
        if "" in seen:
            raise ValueError(f"{source}: {what}[{ids.index('')}] is an empty string; item ids are non-empty.")
        if unique and len(seen) != len(ids):
            seen.clear()
            dups = sorted({i for i in ids if i in seen or seen.add(i)})
            raise ValueError(
                f"{source}: Duplicate item ids in {what}: {dups[:5]}{' ...' if len(dups) > 5 else ''} "
                f"({len(dups)} id(s) appear more than once); every item needs a distinct id."
            )
    if compact_min_items is not None and len(ids) >= compact_min_items:
        return ItemIds.from_list(ids)
    return ids


def _smallest_uint(max_value: int) -> type:
    """Smallest unsigned numpy integer type holding `max_value`."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def _write_bytes(data: bytes, path: str | os.PathLike) -> None:
    atomic_write(path, lambda handle: handle.write(data))
