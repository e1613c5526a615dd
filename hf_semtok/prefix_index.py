"""`SIDPrefixIndex`: which code may follow each SID prefix of a catalogue, bit-packed, for constrained decoding.

The catalogue's SIDs (`(n_items, L)` codes) are turned once into a prefix index: for every level `l` and every SID
prefix of length `l` that occurs in the catalogue, a bit-packed row over the level-`l` codebook says which codes
may follow. Prefixes are packed into one int64 key each (mixed radix over the codebook sizes, offset per level)
and kept sorted, so a batch of prefixes costs one `searchsorted` plus one gather, whatever the batch size.

Three ways in:

- [`SIDPrefixIndex.allowed_codes`] / [`SIDPrefixIndex.allowed_token_ids`] /
  [`SIDPrefixIndex.allowed_token_mask`]: a batch of code prefixes in, the codes (or SID token ids) that may follow
  out. For servers and custom decoders.
- [`SIDPrefixIndex.token_lookup`]: a [`TokenPrefixLookup`] that reads the prefix straight from the tokens a row
  has written, in numpy (`SIDLogitsProcessor`'s `"sid"` mode).
- [`SIDPrefixIndex.device_tensors`] + [`SIDPrefixIndex.children`]: the index as torch tensors on a device, for
  fully vectorised lookups inside `generate()` (`SIDLogitsProcessor`'s `"free"` mode).

Memory follows the distinct prefixes: per prefix, one sorted int64 key and its children as a bit-packed row of
`ceil(codebook_size / 8)` bytes of the next level (`nbytes`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hf_semtok.tokenizer.sid_checks import mixed_radix_keys

#: Largest token id accepted anywhere (a vocabulary of 2**31 tokens is beyond any model).
MAX_TOKEN_ID = 2**31 - 1

__all__ = ["MAX_TOKEN_ID", "SIDPrefixIndex", "TokenPrefixLookup", "as_sid_codes", "check_sid_token_ids"]


def as_sid_codes(sid_codes: Any, source: str) -> np.ndarray:
    """`(n_items, L)` int64 codes from an integer array, tensor or nested lists (floats and bools are refused).

    Raises:
        ValueError: Ragged, non-integer or empty codes, or a uint64 code past int64 (the message names `source`).
    """
    try:
        raw = np.asarray(
            sid_codes.detach().cpu().numpy() if isinstance(sid_codes, torch.Tensor) else sid_codes
        )
    except ValueError as err:
        raise ValueError(
            f"{source}: sid_codes is ragged (rows of different lengths); pass a (n_items, num_levels) integer "
            "array."
        ) from err
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(
            f"{source}: sid_codes must hold integer codes, got dtype {raw.dtype}; pass tokenizer.sid_codes or "
            "SIDTable.codes."
        )
    if raw.dtype == np.uint64 and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
        raise ValueError(
            f"{source}: sid_codes contain code {int(raw.max())}, outside the codebooks; codes must lie in "
            "[0, codebook_size) at each level."
        )
    codes = raw.astype(np.int64, copy=False)
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(
            f"{source}: sid_codes must be a non-empty (n_items, num_levels) array; got shape {codes.shape}. "
            "Pass tokenizer.sid_codes or SIDTable.codes."
        )
    return codes


def check_sid_token_ids(sid_token_ids: Any, num_levels: int, source: str) -> list[list[int]]:
    """Per level, the token id of each code, as lists of Python ints (validated).

    Args:
        sid_token_ids: One sequence of token ids per SID level (`sid_token_ids[l][c]` is the token of code `c`).
        num_levels: Levels the SIDs have.
        source: Name of the caller, for error messages.

    Returns:
        `list[list[int]]`, one non-empty list per level.

    Raises:
        TypeError: Not a sequence of sequences, or an id that is not an int (floats, bools and strings are refused).
        ValueError: Wrong number of levels, an empty level, a negative id, or an id used twice.
    """
    if isinstance(sid_token_ids, (str, bytes)) or not isinstance(sid_token_ids, (Sequence, np.ndarray)):
        raise TypeError(
            f"{source}: sid_token_ids must be one list of token ids per SID level (tokenizer.sid_token_ids); "
            f"got {type(sid_token_ids).__name__}."
        )
    if len(sid_token_ids) != num_levels:
        raise ValueError(
            f"{source}: sid_token_ids has {len(sid_token_ids)} levels but sid_codes has {num_levels} columns; "
            "pass one list of token ids per SID level."
        )
    levels: list[list[int]] = []
    seen: set[int] = set()
    for level, level_ids in enumerate(sid_token_ids):
        if isinstance(level_ids, (str, bytes)) or not isinstance(level_ids, (Sequence, np.ndarray)):
            raise TypeError(
                f"{source}: sid_token_ids[{level}] must be a list of token ids; got {type(level_ids).__name__}."
            )
        if len(level_ids) == 0:
            raise ValueError(f"{source}: sid_token_ids[{level}] is empty; each level needs one id per code.")
        ids = []
        for token in level_ids:
            if isinstance(token, (bool, np.bool_)) or not isinstance(token, numbers.Integral):
                raise TypeError(
                    f"{source}: sid_token_ids[{level}] holds {type(token).__name__} {token!r}; token ids are "
                    "ints (tokenizer.sid_token_ids)."
                )
            if not 0 <= token <= MAX_TOKEN_ID:
                raise ValueError(
                    f"{source}: sid_token_ids[{level}] holds {token}; token ids are >= 0 and at most {MAX_TOKEN_ID} "
                    "(no vocabulary is larger)."
                )
            ids.append(int(token))
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError(
                f"{source}: sid_token_ids must be distinct token ids; level {level} repeats an id."
            )
        seen.update(ids)
        levels.append(ids)
    return levels


class SIDPrefixIndex:
    """The SID prefixes of a catalogue and the codes that may follow each, bit-packed (see the module docstring).

    Args:
        sid_codes: `(n_items, L)` integer codes of the catalogue (numpy, torch or nested lists).
        sid_token_ids: Per level, the token id of each code (`sid_token_ids[l][c]`); its lengths are the
            codebook sizes.
        source: Name used in error messages.

    Attributes:
        num_levels: `L`.
        codebook_sizes: Codes per level (`len(sid_token_ids[l])`).
        num_prefixes: Distinct prefixes of every length `0 .. L-1` (the empty prefix counts once).
        token_ids: Every SID code token id, level after level (int64).
        code_token: `(L, max codebook)` code -> token id, -1 past a level's codebook.
        level_columns: Per level, `slice(first, last + 1)` when the level's token ids are consecutive, else None.

    Raises:
        TypeError: Token ids that are not ints (see [`check_sid_token_ids`]).
        ValueError: Ragged, empty or non-integer codes, codes outside the codebooks, or codebook sizes too large
            to pack prefixes into int64 keys.
    """

    #: Below this many bytes, each device's index also keeps the children bits unpacked (one bool per code), which
    #: makes a lookup about as cheap as a dense mask; above it, lookups unpack only the rows they touch.
    dense_children_max_bytes: int = 64 * 2**20

    def __init__(self, sid_codes: Any, sid_token_ids: Any, source: str = "SIDPrefixIndex") -> None:
        codes = as_sid_codes(sid_codes, source)
        self.num_levels = codes.shape[1]
        token_ids = check_sid_token_ids(sid_token_ids, self.num_levels, source)
        self.codebook_sizes = [len(level_ids) for level_ids in token_ids]
        if codes.min() < 0 or any(int(codes[:, lv].max()) >= s for lv, s in enumerate(self.codebook_sizes)):
            raise ValueError(
                f"{source}: sid_codes contain codes outside the codebooks (sizes {self.codebook_sizes}); codes "
                "must lie in [0, codebook_size) at each level."
            )
        sizes = self.codebook_sizes
        # Keys of level-l prefixes live in [offset[l], offset[l] + prod(sizes[:l])): one sorted array for all levels.
        self._spans = [math.prod(sizes[:lv]) for lv in range(self.num_levels)]
        offsets = np.concatenate([[0], np.cumsum(self._spans)]).astype(np.int64)
        if sum(self._spans) >= 2**62:
            raise ValueError(
                f"Codebook sizes {sizes} are too large to pack SID prefixes into int64 keys; "
                "use fewer or smaller levels."
            )
        # radix[l, j] = prod(sizes[j+1:l]) for j < l, else 0: key of a level-l prefix = sum_j code_j * radix[l, j].
        self._radix = np.zeros((self.num_levels, self.num_levels), dtype=np.int64)
        for lv in range(self.num_levels):
            for j in range(lv):
                self._radix[lv, j] = math.prod(sizes[j + 1 : lv])
        self._offsets = offsets[: self.num_levels]
        self._build_prefixes(codes)
        self._build_token_maps(token_ids)
        self._device_cache: dict[str, dict[str, torch.Tensor]] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SIDPrefixIndex:
        """The index of a `SemanticIDTokenizer`'s catalogue (`tokenizer.sid_codes`, `tokenizer.sid_token_ids`).

        Args:
            tokenizer: A `SemanticIDTokenizer` (anything with `sid_codes` and `sid_token_ids`).

        Returns:
            A `SIDPrefixIndex`.

        Raises:
            TypeError: `tokenizer` has no SID table.
        """
        if not hasattr(tokenizer, "sid_codes") or not hasattr(tokenizer, "sid_token_ids"):
            raise TypeError(
                f"SIDPrefixIndex.from_tokenizer needs a SemanticIDTokenizer (with sid_codes and sid_token_ids); "
                f"got {type(tokenizer).__name__}."
            )
        return cls(tokenizer.sid_codes, tokenizer.sid_token_ids)

    # ----------------------------------------------------------------------------------------------------------
    # Construction (numpy, once)
    # ----------------------------------------------------------------------------------------------------------
    def _build_prefixes(self, codes: np.ndarray) -> None:
        """Sorted prefix keys of every level and their bit-packed children.

        A level-l prefix is one integer, its mixed-radix value P_l over sizes[:l]; P_(l+1) = P_l * sizes[l] + code_l.
        From the distinct (P_(L-1), last code) pairs in sorted order, each level's distinct prefixes and their
        children follow by integer division, level by level upwards: one sort of n integers in all, and the
        temporaries are a few integer arrays of at most n entries (no copy of the code matrix).
        """
        sizes = self.codebook_sizes
        parent, child = self._deepest_pairs(codes)
        keys_per_level, packed_per_level = [], []
        for lv in range(self.num_levels - 1, -1, -1):
            starts = np.empty(len(parent), dtype=bool)
            starts[:1] = True
            np.not_equal(parent[1:], parent[:-1], out=starts[1:])
            prefixes = parent[starts]  # (n_prefixes_l,) sorted P_l
            width = (sizes[lv] + 7) // 8
            # Children bit-packed: byte `c >> 3`, bit `c & 7` of the prefix's row says whether code `c` may follow.
            flat = (np.cumsum(starts) - 1) * width + (child >> 3)  # non-decreasing: pairs are sorted
            del starts
            bits = np.left_shift(1, child & 7).astype(np.uint8)
            runs = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
            packed = np.zeros(len(prefixes) * width, dtype=np.uint8)
            packed[flat[runs]] = np.bitwise_or.reduceat(bits, runs)
            del flat, bits, runs
            keys_per_level.append(prefixes + self._offsets[lv])
            packed_per_level.append(packed)
            if lv:
                parent, child = np.divmod(prefixes, sizes[lv - 1])
        keys_per_level.reverse()
        packed_per_level.reverse()
        counts = [len(k) for k in keys_per_level]
        widths = [(size + 7) // 8 for size in sizes]
        self._prefix_keys = np.concatenate(keys_per_level)  # (n_prefixes,) sorted
        self._packed_children = np.concatenate(packed_per_level)  # (n_bytes,) uint8
        # (L,) index of a level's first prefix, byte offset of its first row, bytes per row
        self._level_first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._level_base = np.concatenate([[0], np.cumsum([c * w for c, w in zip(counts, widths)])[:-1]])
        self._level_base = self._level_base.astype(np.int64)
        self._level_bytes = np.asarray(widths, dtype=np.int64)
        self.num_prefixes = len(self._prefix_keys)
        # Per level: its children as a (n_prefixes_l, bytes_l) view of the packed bytes, and its sorted keys.
        bounds = [*self._level_first.tolist(), self.num_prefixes]
        self._level_blocks = [
            self._packed_children[base : base + (bounds[lv + 1] - bounds[lv]) * nbytes].reshape(-1, nbytes)
            for lv, (base, nbytes) in enumerate(zip(self._level_base.tolist(), widths))
        ]
        self._level_keys = [self._prefix_keys[bounds[lv] : bounds[lv + 1]] for lv in range(self.num_levels)]
        root = np.unpackbits(self._level_blocks[0][:1], axis=1, count=sizes[0], bitorder="little")
        self.root_allowed = root.view(bool)  # (1, size): codes some SID starts with

    def _deepest_pairs(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct `(P_(L-1), last code)` pairs of the catalogue, sorted: the prefixes of `L - 1` levels as one
        integer each, and the code that follows."""
        sizes = self.codebook_sizes
        if math.prod(sizes) < 2**62:  # whole SIDs fit in one integer: sort those
            full = mixed_radix_keys(codes, sizes)
            full.sort()
            full = full[np.r_[True, full[1:] != full[:-1]]]
            return np.divmod(full, sizes[-1])
        order = np.lexsort(codes.T[::-1])  # rows in lexicographic order
        parent = mixed_radix_keys(codes[:, :-1], sizes[:-1])[order]
        child = codes[order, -1].astype(np.int64)
        distinct = np.r_[True, (parent[1:] != parent[:-1]) | (child[1:] != child[:-1])]
        return parent[distinct], child[distinct]

    def _build_token_maps(self, sid_token_ids: Sequence[Sequence[int]]) -> None:
        """Token id <-> (level, code) tables; ids past the table map to level and code -1."""
        all_ids = [int(t) for level_ids in sid_token_ids for t in level_ids]
        top = max(all_ids) + 1  # index `top` (where larger ids are clipped to) stays -1
        self._token_level = np.full(top + 1, -1, dtype=np.int64)
        self._token_code = np.full(top + 1, -1, dtype=np.int64)
        self.code_token = np.full((self.num_levels, max(self.codebook_sizes)), -1, dtype=np.int64)
        self.level_columns: list[slice | None] = []
        for lv, level_ids in enumerate(sid_token_ids):
            ids = np.asarray(level_ids, dtype=np.int64)
            self._token_level[ids] = lv
            self._token_code[ids] = np.arange(len(ids))
            self.code_token[lv, : len(ids)] = ids
            first = int(ids[0])
            consecutive = ids.tolist() == list(range(first, first + len(ids)))
            self.level_columns.append(slice(first, first + len(ids)) if consecutive else None)
        self.token_ids = np.asarray(all_ids, dtype=np.int64)
        self._sid_token_ids = [list(map(int, level_ids)) for level_ids in sid_token_ids]

    def token_codes(self, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The SID level and code of each token id.

        Args:
            token_ids: Integer token ids >= 0, any shape.

        Returns:
            `(levels, codes)`, int64 arrays of `token_ids`' shape; both -1 for a token that is no SID code.
        """
        table = np.clip(
            np.asarray(token_ids, dtype=np.int64), 0, len(self._token_level) - 1
        )  # past: the -1 slot
        return self._token_level[table], self._token_code[table]

    @property
    def nbytes(self) -> int:
        """Host memory of the index in bytes: prefix keys and packed children (token lookups count their own)."""
        return int(self._prefix_keys.nbytes + self._packed_children.nbytes)

    # ----------------------------------------------------------------------------------------------------------
    # Lookups by code prefix (numpy)
    # ----------------------------------------------------------------------------------------------------------
    def _as_prefixes(self, prefixes: Any) -> np.ndarray:
        """`(rows, l)` int64 prefixes, all of one length `l < L`, codes inside the codebooks."""
        if isinstance(prefixes, torch.Tensor):
            prefixes = prefixes.detach().cpu().numpy()
        try:
            array = np.asarray(prefixes)
        except ValueError as err:
            raise ValueError(
                "SIDPrefixIndex: prefixes have different lengths; pass prefixes of one length at a time."
            ) from err
        if array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
            raise TypeError(
                f"SIDPrefixIndex: prefixes must hold integer codes, got dtype {array.dtype}; pass a (rows, length) "
                "int array."
            )
        if array.ndim != 2:
            raise ValueError(
                f"SIDPrefixIndex: prefixes must be a (rows, length) array of codes; got shape {array.shape}."
            )
        if array.shape[1] >= self.num_levels:
            raise ValueError(
                f"SIDPrefixIndex: prefixes of length {array.shape[1]} leave no level to follow; the SIDs have "
                f"{self.num_levels} levels, so a prefix has 0 to {self.num_levels - 1} codes."
            )
        for level in range(array.shape[1]):  # checked before the cast: a uint64 code keeps its value
            column = array[:, level]
            bad = column[(column < 0) | (column >= self.codebook_sizes[level])]
            if bad.size:
                raise ValueError(
                    f"SIDPrefixIndex: code {int(bad[0])} at level {level} is outside the codebook "
                    f"[0, {self.codebook_sizes[level]})."
                )
        return array.astype(np.int64, copy=False)

    def allowed_codes(self, prefixes: Any) -> np.ndarray:
        """The codes that may follow each prefix in the catalogue.

        Args:
            prefixes: `(rows, l)` integer codes (numpy, torch or nested lists), one prefix per row, all of length
                `l` with `0 <= l < L`; `l = 0` asks for the first level (`np.zeros((rows, 0), int)`).

        Returns:
            `(rows, codebook_sizes[l])` bool; all False for a prefix that no catalogue item starts with.

        Raises:
            TypeError: Codes that are not integers.
            ValueError: A prefix of length `L` or more, prefixes of different lengths, or a code outside its codebook.
        """
        array = self._as_prefixes(prefixes)
        level = array.shape[1]
        key = (array * self._radix[level, :level]).sum(axis=1) + self._offsets[level]  # (rows,)
        local = np.searchsorted(self._level_keys[level], key)  # (rows,) row of the prefix in its level
        found = self._level_keys[level].take(local, mode="clip") == key  # (rows,)
        row_bytes = self._level_blocks[level].take(local, axis=0, mode="clip")  # (rows, bytes_l)
        bits = np.unpackbits(row_bytes, axis=1, count=self.codebook_sizes[level], bitorder="little").view(
            bool
        )
        return bits & found[:, None]

    def allowed_token_ids(self, prefix: Sequence[int]) -> list[int]:
        """The SID token ids that may follow one prefix (empty if no catalogue item starts with it).

        Args:
            prefix: The codes written so far, `0 <= len(prefix) < L`.

        Returns:
            Sorted by code, the token ids of the level-`len(prefix)` codes allowed next.
        """
        level = len(prefix)
        allowed = self.allowed_codes(np.asarray([list(prefix)], dtype=np.int64).reshape(1, level))[0]
        return self.code_token[level, np.flatnonzero(allowed)].tolist()

    def allowed_token_mask(
        self, prefixes: Any, vocab_size: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """A `(rows, vocab_size)` bool mask of the SID tokens that may follow each prefix (True = allowed).

        Args:
            prefixes: As in [`allowed_codes`]: `(rows, l)` integer codes, all of one length.
            vocab_size: Columns of the mask (the model's vocabulary, at least every SID token id + 1).
            device: Device of the mask (default CPU); only the `(rows, codebook)` mask is sent there.

        Returns:
            `torch.BoolTensor` of shape `(rows, vocab_size)`.

        Raises:
            ValueError: `vocab_size` smaller than a SID token id + 1, or as [`allowed_codes`].
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral):
            raise TypeError(f"SIDPrefixIndex: vocab_size must be an int, got {type(vocab_size).__name__}.")
        if int(self.token_ids.max()) >= vocab_size:
            raise ValueError(
                f"SIDPrefixIndex: vocab_size={vocab_size} but SID token ids go up to {int(self.token_ids.max())}; "
                "pass the model's vocabulary size (len(tokenizer) after hf_semtok.extend_model)."
            )
        array = self._as_prefixes(prefixes)
        level = array.shape[1]
        allowed = torch.from_numpy(self.allowed_codes(array)).to(device)  # (rows, size)
        columns = torch.as_tensor(self.code_token[level, : self.codebook_sizes[level]], device=allowed.device)
        mask = torch.zeros((allowed.shape[0], int(vocab_size)), dtype=torch.bool, device=allowed.device)
        mask[:, columns] = allowed
        return mask

    # ----------------------------------------------------------------------------------------------------------
    # Lookups by written tokens (numpy), and the index as device tensors (torch)
    # ----------------------------------------------------------------------------------------------------------
    def token_lookup(self, levels: int, start_token_id: int | None) -> TokenPrefixLookup:
        """A [`TokenPrefixLookup`] that reads prefixes of up to `levels - 1` codes from written tokens.

        Args:
            levels: Levels that will be generated (lookups are built for prefixes of 1 .. levels - 1 codes).
            start_token_id: The `<|sid_start|>` id that precedes the codes (marked layout), or None (bare layout).

        Returns:
            A `TokenPrefixLookup`.
        """
        return TokenPrefixLookup(self, levels, start_token_id)

    def device_tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The index as torch tensors on `device`, cached per device (constants, so lookups stay stateless).

        Keys: `keys`, `packed`, `level_first`, `level_base`, `level_bytes`, `sizes`, `code_range`, `radix`,
        `offsets`, `token_level`, `token_code`, `level_range`, `unpack` and, for an index of at most
        `dense_children_max_bytes` unpacked, `dense` (`(n_prefixes, 8 * max bytes)` bool children).
        """
        key = str(device)
        cached = self._device_cache.get(key)
        if cached is not None:
            return cached
        t = {
            name: torch.as_tensor(value, device=device)
            for name, value in (
                ("keys", self._prefix_keys),
                ("packed", self._packed_children),
                ("level_first", self._level_first),
                ("level_base", self._level_base),
                ("level_bytes", self._level_bytes),
                ("sizes", np.asarray(self.codebook_sizes, dtype=np.int64)),
                ("radix", self._radix),
                ("offsets", self._offsets),
                ("token_level", self._token_level),
                ("token_code", self._token_code),
            )
        }
        t["code_range"] = torch.arange(max(self.codebook_sizes), device=device)
        t["level_range"] = torch.arange(self.num_levels, device=device)
        t["unpack"] = (
            (torch.arange(256, device=device)[:, None] >> torch.arange(8, device=device)) & 1
        ).bool()
        width = int(self._level_bytes.max())
        if self.num_prefixes * width * 8 <= self.dense_children_max_bytes:
            dense = np.zeros((self.num_prefixes, width * 8), dtype=bool)  # zero past each level's codebook
            for level, block in enumerate(self._level_blocks):
                first, size = int(self._level_first[level]), self.codebook_sizes[level]
                bits = np.unpackbits(block, axis=1, count=size, bitorder="little")
                dense[first : first + len(block), :size] = bits
            t["dense"] = torch.as_tensor(dense, device=device)
        self._device_cache[key] = t
        return t

    @staticmethod
    def children(
        t: dict[str, torch.Tensor], idx: torch.Tensor, level: torch.Tensor | int, width: int
    ) -> torch.Tensor:
        """Unpack the children bits of prefixes `idx` (global prefix rows, at `level`, an int or one per row).

        Args:
            t: [`device_tensors`] of the device `idx` is on.
            idx: `(rows,)` indices into the sorted keys.
            level: The prefixes' level (an int, or a `(rows,)` tensor).
            width: Bytes to unpack per row.

        Returns:
            `(rows, width * 8)` bool on `idx`'s device. Bits past a level's codebook are zero or belong to the next
            row; callers cut or mask them.
        """
        if "dense" in t:
            return t["dense"].index_select(0, idx)[:, : width * 8]
        first, base, nbytes = t["level_first"][level], t["level_base"][level], t["level_bytes"][level]
        start = base + (idx - first) * nbytes  # (rows,) byte offset of each row
        pos = (start[:, None] + torch.arange(width, device=idx.device)[None, :]).clamp_(
            min=0, max=len(t["packed"]) - 1
        )
        row_bytes = t["packed"].index_select(0, pos.reshape(-1))
        # byte -> its 8 bits (bit k = code 8 * byte_index + k): one lookup in a (256, 8) table
        return t["unpack"].index_select(0, row_bytes.long()).view(len(idx), width * 8)


class TokenPrefixLookup:
    """Tables that turn the tokens a row has written into its prefix's children in two or three numpy calls.

    Key parts: per level `l >= 1`, a `(token rows, columns)` int64 table whose columns are the SID's positions
    (the `<|sid_start|>` marker first in the marked layout, then codes 0 .. l-1). Entry `[t, j]` is what token
    `t` at position `j` adds to the prefix's key: `code * radix` for a code of the right level (plus the level's
    key offset at the first code, for a searched level), 0 for the start marker in its column, and a miss value
    (past every key) for anything else. A row's key is the sum over its positions, so a wrong token anywhere sends
    the key past every real one: the token checks cost nothing extra.

    Direct rows: a level whose possible prefixes (the product of the codebook sizes above it) are few next to the
    prefixes present (`direct_lookup_max_bytes_per_prefix`), or that fits in `direct_lookup_min_bytes`, maps a
    prefix straight to its row (-1 if absent) instead of a binary search of its keys: one memory access per row
    instead of ~log2(n) (the catalogue's deepest level at 10M items).

    Args:
        index: The `SIDPrefixIndex`.
        levels: Levels generated; tables are built for prefixes of 1 .. levels - 1 codes.
        start_token_id: `<|sid_start|>` (marked layout: the first written token) or None (bare layout).

    Raises:
        ValueError: Codebook sizes too large for the summed keys to fit in int64.
    """

    #: A level is looked up in a direct table (one int32 row index per possible prefix) instead of a binary search
    #: of its keys when that table takes at most this many bytes per prefix present (16: twice the keys' own 8
    #: bytes), or at most `direct_lookup_min_bytes` in all. Memory keeps following the prefixes present.
    direct_lookup_max_bytes_per_prefix: int = 16
    direct_lookup_min_bytes: int = 2**20

    def __init__(self, index: SIDPrefixIndex, levels: int, start_token_id: int | None) -> None:
        self.index = index
        spans = index._spans
        self._key_miss = int(sum(spans)) + 1
        # A key sums at most L parts (the marker and L - 1 codes), each at most `_key_miss`: int64 must hold them.
        if index.num_levels * self._key_miss >= 2**63:
            raise ValueError(
                f"Codebook sizes {index.codebook_sizes} are too large to pack SID prefixes into int64 keys; "
                "use fewer or smaller levels."
            )
        marked = int(start_token_id is not None)  # 1: the start marker's column comes first
        ids = index.token_ids.tolist() + ([start_token_id] if marked else [])
        first_id, last_id = min(ids), max(ids)
        # Token t reads table row t - shift: rows 0 and -1 are all misses, where ids outside [first, last] clip to.
        self.key_shift = first_id - 1
        self.key_parts: list[np.ndarray | None] = [
            None
        ] * index.num_levels  # level 0 and levels never generated
        self.direct_rows: list[np.ndarray | None] = [None] * index.num_levels
        for lv in range(1, levels):
            present = len(index._level_keys[lv])
            index_dtype = np.int32 if present < 2**31 else np.int64
            table_bytes = (spans[lv] + 1) * np.dtype(index_dtype).itemsize
            direct = table_bytes <= max(
                self.direct_lookup_min_bytes, self.direct_lookup_max_bytes_per_prefix * present
            )
            parts = np.full((last_id - first_id + 3, lv + marked), self._key_miss, dtype=np.int64)
            if marked:
                parts[start_token_id - self.key_shift, 0] = 0
            for j in range(lv):
                level_ids = np.asarray(index._sid_token_ids[j], dtype=np.int64)
                # a direct level's keys are the prefixes P_l themselves; a searched level's carry its key offset
                first = 0 if direct or j else int(index._offsets[lv])
                parts[level_ids - self.key_shift, marked + j] = (
                    first + np.arange(len(level_ids)) * index._radix[lv, j]
                )
            if direct:  # a miss (key past spans[l]) clips to the last entry, -1
                rows = np.full(spans[lv] + 1, -1, dtype=index_dtype)
                rows[index._level_keys[lv] - index._offsets[lv]] = np.arange(present, dtype=index_dtype)
                self.direct_rows[lv] = rows
            self.key_parts[lv] = parts

    @property
    def nbytes(self) -> int:
        """Host memory of the lookup tables in bytes."""
        return int(sum(t.nbytes for t in (*self.key_parts, *self.direct_rows) if t is not None))

    def allowed(self, written: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """Children of the prefixes written by each row.

        Args:
            written: `(rows, positions)` token ids: the start marker (marked layout) then `level` code tokens.
            level: Codes written, `1 <= level < levels`.

        Returns:
            `(allowed, found)`: `(rows, codebook_sizes[level])` bool (rows of unknown prefixes hold arbitrary bits:
            mask them with `found`) and `(rows,)` bool.
        """
        rows = written.shape[0]
        table_rows = written - self.key_shift  # (rows, positions)
        positions = table_rows.shape[1]
        parts = self.key_parts[level].take(table_rows, axis=0, mode="clip")  # (rows, positions, positions)
        # each token's key part at its own position: the diagonal of the gather, summed
        key = parts.reshape(rows, positions * positions)[:, :: positions + 1].sum(axis=1)  # (rows,)
        direct = self.direct_rows[level]
        if direct is not None:  # prefix -> row, -1 if absent (wrong tokens give keys past the end: -1)
            local = direct.take(key, mode="clip")  # (rows,)
            found = local >= 0
        else:
            keys = self.index._level_keys[level]  # this level's sorted keys
            local = np.searchsorted(keys, key)  # (rows,) row of the prefix in the level, if it is there
            found = keys.take(local, mode="clip") == key
        row_bytes = self.index._level_blocks[level].take(local, axis=0, mode="clip")  # (rows, bytes_l)
        allowed = np.unpackbits(
            row_bytes, axis=1, count=self.index.codebook_sizes[level], bitorder="little"
        ).view(bool)  # (rows, size): 0/1 bytes read as bools
        return allowed, found
