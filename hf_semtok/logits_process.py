"""SIDLogitsProcessor: constrained decoding so that `generate()` only produces SIDs of real catalogue items.

How the constraint works. The catalogue's SIDs (`(n_items, L)` codes) are turned once into a prefix index: for
every level `l` and every SID prefix of length `l` that occurs in the catalogue, a bit-packed row over the
level-`l` codebook says which codes may follow. Prefixes are packed into one int64 key each (mixed radix over the
codebook sizes, offset per level) and kept sorted, so one call costs one `searchsorted` plus one gather and one
scatter, whatever the batch size or the number of beams; no Python runs per beam. A level whose possible
prefixes are few next to those present (the deep levels of a large catalogue) maps a prefix straight to its
row instead. Where a row is inside its SID is read from `input_ids` on every call (the processor keeps no state
between calls).

Recommendation ("sid" mode, every row at the same SID position) looks the prefixes up in numpy on the host and
only masks the scores in torch: a beam-search step of a small model takes a few milliseconds, so the processor's
own cost is counted in microseconds (`benchmarks/scale.py` reports the constrained / unconstrained step ratio).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from transformers import LogitsProcessor

from hf_semtok.prompts import SID_LAYOUTS, get_sid_layout
from hf_semtok.sid_checks import mixed_radix_keys

__all__ = ["DEAD_END_SCORE", "SIDLogitsProcessor"]

logger = logging.getLogger(__name__)


#: Score given to EOS in a row where no SID continuation exists (see `SIDLogitsProcessor`). Finite, so sampling and
#: beam search still have one token to pick, and low enough that such a beam ranks below every real one.
DEAD_END_SCORE = -1.0e4

#: Score dtypes that numpy shares with torch (masked on the host through views; bfloat16 stays in torch).
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


class SIDLogitsProcessor(LogitsProcessor):
    """Restricts generation so that every Semantic ID written is the (prefix of a) SID of a catalogue item.

    Two modes:

    - `mode="sid"` (recommendation): the prompt (`prompt_length` tokens, left padding included) ends right before
      the SID. The processor forces `<|sid_start|>`, then `L` code tokens (`num_levels_to_generate` of them if
      given) that form a catalogue prefix at every step, then `<|sid_end|>`, then EOS for as long as generation
      runs. `prompt_length` is required: it is `input_ids.shape[1]` of the (padded) batch given to `generate()`.
    - `mode="free"` (mixed text): the model writes text, SID code tokens and `<|sid_end|>` are banned outside a
      SID, and whenever the last `<|sid_start|>` of a row is not yet closed, the next `L` tokens are restricted to
      a catalogue item and `<|sid_end|>` is forced after them; then text resumes. The span is found from the last
      `<|sid_start|>` anywhere in the row, so a prompt may end with an opened SID.

    Layout (`"sid"` mode): `layout="marked"` (the default, and every text + SID model) writes the SID between
    `<|sid_start|>` and `<|sid_end|>` as above. `layout="bare"` (a generator trained from scratch on bare code
    sequences, `hf_semtok.prompts`) has no markers: the first generated token is the level-0 code, and EOS is
    forced once the SID's levels are written.

    Scores of allowed code tokens are left as they are (no renormalisation, as with `prefix_allowed_tokens_fn`);
    a forced single token (start, end, EOS) gets score 0, i.e. probability 1, as in transformers' forced-token
    processors. All other tokens get `-inf`.

    Dead ends: a row whose SID so far is not a catalogue prefix (it can only come from the prompt, e.g. a prompt
    that ends with a malformed SID, or from tokens the processor did not choose) has no valid continuation. The
    processor never drops the constraint for it: it allows only EOS, with score `DEAD_END_SCORE` (-1e4), so the
    sequence ends at once and ranks below every valid beam; `recommend()` and `tokenizer.parse_items` drop it.

    Memory: follows the distinct prefixes. Per prefix, one sorted int64 key and its children as a bit-packed row
    of `ceil(codebook_size / 8)` bytes of the next level, plus (in "sid" mode) a direct prefix -> row table, 4 bytes
    per possible prefix, for levels where that costs at most 16 bytes per prefix present (`nbytes`): about
    2.2 MB for 100k random items with 3 levels of 256 codes, about 135 MB for 10M items with [256, 256, 256]
    plus a dedup level. The "free" mode's index
    tensors are copied to each device on first use and cached (they are constants, so calls stay stateless); the
    "sid" mode reads the host copy (one small device-to-host copy of the written codes per step on an
    accelerator). The processor works on CUDA scores as well as CPU.

    Args:
        sid_codes: `(n_items, L)` integer codes of the catalogue, one row per item.
        sid_token_ids: Per level, the token id of each code (`sid_token_ids[l][c]`).
        sid_start_token_id: Id of `<|sid_start|>`.
        sid_end_token_id: Id of `<|sid_end|>`.
        eos_token_id: EOS id (or a list; the first one is forced after `<|sid_end|>` in `"sid"` mode).
        mode: `"sid"` or `"free"`, see above.
        prompt_length: Padded prompt length; required in `"sid"` mode, not accepted in `"free"` mode.
        num_levels_to_generate: In `"sid"` mode, stop the SID after this many levels (a coarse prefix, for
            category-level retrieval); `<|sid_end|>` is still forced after it. Defaults to all `L` levels.
        layout: `"marked"` or `"bare"` (`"sid"` mode only), see above.
    """

    #: Below this many bytes, each device's index also keeps the children bits unpacked (one bool per code), which
    #: makes a step about as cheap as a dense mask; above it, steps unpack only the rows they touch.
    dense_children_max_bytes: int = 64 * 2**20

    #: "sid" mode on CPU: scores (float16/32/64) of at most this many elements (rows x vocabulary) are written in
    #: numpy, through views of the torch tensors: a new `-inf` tensor, then only the allowed entries copied from
    #: `scores` (one masked copy of the level's columns when its token ids are consecutive, else by flat index). A
    #: handful of numpy calls: a torch `masked_fill` over the whole vocabulary cost more than the lookup on small
    #: models. Other scores (accelerators, bfloat16) get a new `-inf` tensor with the level's columns copied and
    #: masked in torch (only a `(rows, codebook)` mask crosses to the device). No limit by default; 0 forces the
    #: torch path.
    host_mask_max_elements: int = 2**62

    #: "sid" mode: a level is looked up in a direct table (one int32 row index per possible prefix) instead of a
    #: binary search of its keys when that table takes at most this many bytes per prefix present (16: twice the
    #: keys' own 8 bytes), or at most `direct_lookup_min_bytes` in all. Memory keeps following the prefixes present.
    #: Read when the processor is built (unlike the two limits above, read on every call).
    direct_lookup_max_bytes_per_prefix: int = 16
    direct_lookup_min_bytes: int = 2**20

    def __init__(
        self,
        sid_codes: np.ndarray | torch.Tensor | Sequence[Sequence[int]],
        sid_token_ids: Sequence[Sequence[int]],
        sid_start_token_id: int,
        sid_end_token_id: int,
        eos_token_id: int | Sequence[int],
        mode: Literal["sid", "free"] = "sid",
        prompt_length: int | None = None,
        num_levels_to_generate: int | None = None,
        layout: Literal["marked", "bare"] = "marked",
    ) -> None:
        try:
            raw_codes = np.asarray(
                sid_codes.detach().cpu().numpy() if isinstance(sid_codes, torch.Tensor) else sid_codes
            )
        except ValueError as err:
            raise ValueError(
                "sid_codes is ragged (rows of different lengths); pass a (n_items, num_levels) integer array."
            ) from err
        if raw_codes.size and not (
            np.issubdtype(raw_codes.dtype, np.integer)
            or (
                np.issubdtype(raw_codes.dtype, np.floating) and np.array_equal(raw_codes, np.round(raw_codes))
            )
        ):
            raise ValueError(
                f"sid_codes must hold integer codes, got dtype {raw_codes.dtype}; pass tokenizer.sid_codes or "
                "SIDTable.codes."
            )
        codes = raw_codes.astype(np.int64, copy=False)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(
                f"sid_codes must be a non-empty (n_items, num_levels) array; got shape {codes.shape}. "
                "Pass tokenizer.sid_codes or SIDTable.codes."
            )
        num_levels = codes.shape[1]
        if len(sid_token_ids) != num_levels:
            raise ValueError(
                f"sid_token_ids has {len(sid_token_ids)} levels but sid_codes has {num_levels} columns; "
                "pass one list of token ids per SID level."
            )
        sizes = [len(level_ids) for level_ids in sid_token_ids]
        if codes.min() < 0 or any(int(codes[:, lv].max()) >= sizes[lv] for lv in range(num_levels)):
            raise ValueError(
                f"sid_codes contain codes outside the codebooks (sizes {sizes}); codes must lie in "
                "[0, codebook_size) at each level."
            )
        if mode not in ("sid", "free"):
            raise ValueError(f"mode must be 'sid' or 'free'; got {mode!r}.")
        if mode == "sid" and prompt_length is None:
            raise ValueError(
                "mode='sid' needs prompt_length, the padded length of the prompts given to generate() "
                "(input_ids.shape[1]); use mode='free' to constrain SIDs opened anywhere in the text."
            )
        if mode == "free" and prompt_length is not None:
            raise ValueError(
                "prompt_length is only used in mode='sid'; in mode='free' the SID span is found from the last "
                "<|sid_start|> token, so drop prompt_length."
            )
        for name, value in (
            ("prompt_length", prompt_length),
            ("num_levels_to_generate", num_levels_to_generate),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
        if prompt_length is not None and prompt_length < 0:
            raise ValueError(f"prompt_length must be >= 0; got {prompt_length}.")
        if num_levels_to_generate is not None:
            if mode != "sid":
                raise ValueError("num_levels_to_generate is only supported in mode='sid'.")
            if not 1 <= num_levels_to_generate <= num_levels:
                raise ValueError(
                    f"num_levels_to_generate must be between 1 and {num_levels}; got {num_levels_to_generate}."
                )
        if layout not in SID_LAYOUTS:
            raise ValueError(f"layout must be one of {list(SID_LAYOUTS)}; got {layout!r}.")
        if layout == "bare" and mode != "sid":
            raise ValueError(
                "layout='bare' is only supported in mode='sid': free text needs <|sid_start|> to open a SID."
            )
        if isinstance(eos_token_id, numbers.Integral):
            eos_ids = [eos_token_id]
        elif eos_token_id is None or isinstance(eos_token_id, (list, tuple)):
            eos_ids = list(eos_token_id or [])
        else:
            raise TypeError(
                f"eos_token_id must be a token id (int >= 0) or a list of them; got {eos_token_id!r}."
            )
        if any(isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < 0 for e in eos_ids):
            raise TypeError(
                f"eos_token_id must be a token id (int >= 0) or a list of them; got {eos_token_id!r}."
            )
        if not eos_ids:
            raise ValueError("eos_token_id is required (the token that ends a finished or dead-end row).")

        self.mode = mode
        self.layout = layout
        self.prompt_length = prompt_length
        self.num_levels = num_levels
        self.codebook_sizes = sizes
        self.levels_to_generate = num_levels_to_generate or num_levels
        self.sid_start_token_id = int(sid_start_token_id)
        self.sid_end_token_id = int(sid_end_token_id)
        self.eos_token_id = int(eos_ids[0])
        self._build_index(codes, sid_token_ids)
        self._device_cache: dict[tuple[str, int], dict[str, torch.Tensor]] = {}  # the general path's index
        self._level_ids_cache: dict[tuple[str, int], torch.Tensor] = {}
        self._checked_vocab: set[int] = set()

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        mode: Literal["sid", "free"] = "sid",
        prompt_length: int | None = None,
        num_levels_to_generate: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        layout: Literal["marked", "bare"] | None = None,
    ) -> SIDLogitsProcessor:
        """Build the processor from a `SemanticIDTokenizer` (its item table and SID token ids).

        Args:
            tokenizer: A `SemanticIDTokenizer` (anything with `sid_codes`, `sid_token_ids`, `sid_start_token_id`,
                `sid_end_token_id` and `eos_token_id`).
            mode: `"sid"` or `"free"`.
            prompt_length: Padded prompt length (`"sid"` mode).
            num_levels_to_generate: Generate only this many levels (`"sid"` mode).
            eos_token_id: Overrides `tokenizer.eos_token_id`.
            layout: `"marked"` or `"bare"`; default: the tokenizer's saved SID layout (`get_sid_layout`) in
                `"sid"` mode, `"marked"` in `"free"` mode.

        Returns:
            A `SIDLogitsProcessor`.
        """
        eos = eos_token_id if eos_token_id is not None else tokenizer.eos_token_id
        if eos is None:
            raise ValueError("The tokenizer has no eos_token; pass eos_token_id= explicitly.")
        return cls(
            sid_codes=tokenizer.sid_codes,
            sid_token_ids=tokenizer.sid_token_ids,
            sid_start_token_id=tokenizer.sid_start_token_id,
            sid_end_token_id=tokenizer.sid_end_token_id,
            eos_token_id=eos,
            mode=mode,
            prompt_length=prompt_length,
            num_levels_to_generate=num_levels_to_generate,
            layout=layout or (get_sid_layout(tokenizer) if mode == "sid" else "marked"),
        )

    # ----------------------------------------------------------------------------------------------------------
    # Index construction (numpy, once)
    # ----------------------------------------------------------------------------------------------------------
    def _build_index(self, codes: np.ndarray, sid_token_ids: Sequence[Sequence[int]]) -> None:
        num_levels, sizes = self.num_levels, self.codebook_sizes
        max_size = max(sizes)
        # Keys of level-l prefixes live in [offset[l], offset[l] + prod(sizes[:l])): one sorted array for all levels.
        spans = [math.prod(sizes[:lv]) for lv in range(num_levels)]
        offsets = np.concatenate([[0], np.cumsum(spans)]).astype(np.int64)
        if sum(spans) >= 2**62:
            raise ValueError(
                f"Codebook sizes {sizes} are too large to pack SID prefixes into int64 keys; "
                "use fewer or smaller levels."
            )
        # radix[l, j] = prod(sizes[j+1:l]) for j < l, else 0: key of a level-l prefix = sum_j code_j * radix[l, j].
        radix = np.zeros((num_levels, num_levels), dtype=np.int64)
        for lv in range(num_levels):
            for j in range(lv):
                radix[lv, j] = math.prod(sizes[j + 1 : lv])
        # A level-l prefix is one integer, its mixed-radix value P_l over sizes[:l]; P_(l+1) = P_l * sizes[l] + code_l.
        # From the distinct (P_(L-1), last code) pairs in sorted order, each level's distinct prefixes and their
        # children follow by integer division, level by level upwards: one sort of n integers in all, and the
        # temporaries are a few integer arrays of at most n entries (no copy of the code matrix).
        parent, child = self._deepest_pairs(codes)
        keys_per_level, packed_per_level = [], []
        for lv in range(num_levels - 1, -1, -1):
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
            keys_per_level.append(prefixes + offsets[lv])
            packed_per_level.append(packed)
            if lv:
                parent, child = np.divmod(prefixes, sizes[lv - 1])
        keys_per_level.reverse()
        packed_per_level.reverse()
        counts = [len(k) for k in keys_per_level]
        widths = [(size + 7) // 8 for size in sizes]
        level_first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        level_base = np.concatenate([[0], np.cumsum([c * w for c, w in zip(counts, widths)])[:-1]])
        level_bytes = widths
        self._prefix_keys = np.concatenate(keys_per_level)  # (n_prefixes,) sorted
        self._packed_children = np.concatenate(packed_per_level)  # (n_bytes,) uint8
        self._level_first = np.asarray(level_first, dtype=np.int64)  # (L,) index of a level's first prefix
        self._level_base = np.asarray(level_base, dtype=np.int64)  # (L,) byte offset of its first row
        self._level_bytes = np.asarray(level_bytes, dtype=np.int64)  # (L,) bytes per row
        self._radix = radix
        self._offsets = offsets[:num_levels]

        all_ids = [int(t) for level_ids in sid_token_ids for t in level_ids]
        top = max([*all_ids, self.sid_start_token_id, self.sid_end_token_id]) + 1
        # Token id -> (level, code); ids beyond the table (and at index `top`) map to -1.
        token_level = np.full(top + 1, -1, dtype=np.int64)
        token_code = np.full(top + 1, -1, dtype=np.int64)
        # (L, max_size) code -> token id; codes beyond a level's size point at a dummy column (filled in per call).
        code_token = np.full((num_levels, max_size), -1, dtype=np.int64)
        for lv, level_ids in enumerate(sid_token_ids):
            ids = np.asarray(level_ids, dtype=np.int64)
            if len(np.unique(ids)) != len(ids) or (token_level[ids] >= 0).any():
                raise ValueError(f"sid_token_ids must be distinct token ids; level {lv} repeats an id.")
            token_level[ids] = lv
            token_code[ids] = np.arange(len(ids))
            code_token[lv, : len(ids)] = ids
        self._token_level = token_level
        self._token_code = token_code
        self._code_token = code_token
        self._sid_token_ids = np.asarray(all_ids, dtype=np.int64)
        self.num_prefixes = len(self._prefix_keys)
        # Per level, the columns of its tokens: a slice when the ids are consecutive (as added by the tokenizer).
        self._level_columns: list[slice | None] = []
        for level_ids in sid_token_ids:
            first = int(level_ids[0])
            consecutive = list(map(int, level_ids)) == list(range(first, first + len(level_ids)))
            self._level_columns.append(slice(first, first + len(level_ids)) if consecutive else None)
        self._fast_sid_path = True
        # For the "sid" path, which looks prefixes up in numpy: each level's children as a (n_prefixes_l, bytes_l)
        # view of the packed bytes, and its sorted keys.
        bounds = [*self._level_first.tolist(), len(self._prefix_keys)]
        self._level_blocks = [
            self._packed_children[base : base + (bounds[lv + 1] - bounds[lv]) * nbytes].reshape(-1, nbytes)
            for lv, (base, nbytes) in enumerate(zip(self._level_base.tolist(), level_bytes))
        ]
        self._level_keys = [self._prefix_keys[bounds[lv] : bounds[lv + 1]] for lv in range(num_levels)]
        root = np.unpackbits(self._level_blocks[0][:1], axis=1, count=sizes[0], bitorder="little")
        self._root_allowed = root.view(bool)  # (1, size): codes some SID starts with
        self._key_parts: list[np.ndarray | None] = []  # the "sid" mode's lookup tables, per level
        self._direct_rows: list[np.ndarray | None] = []
        if self.mode == "sid":
            self._build_sid_lookup(sid_token_ids, spans, offsets)

    def _build_sid_lookup(
        self, sid_token_ids: Sequence[Sequence[int]], spans: list[int], offsets: np.ndarray
    ) -> None:
        """Tables that turn the tokens written so far into the prefix's row in two or three numpy calls.

        Key parts: per level `l >= 1`, a `(token rows, columns)` int64 table whose columns are the SID's positions
        (the `<|sid_start|>` marker first in the marked layout, then codes 0 .. l-1). Entry `[t, j]` is what token
        `t` at position `j` adds to the prefix's key: `code * radix` for a code of the right level (plus the
        level's key offset at the first code, for a searched level), 0 for the start marker in its column, and
        `_key_miss` (past every key) for anything else. A row's key is the sum over its positions, so a wrong token
        anywhere sends the key past every real one: the token checks cost nothing extra.

        Direct rows: a level whose possible prefixes (`spans[l]`, the product of the codebook sizes above it) are
        few next to the prefixes present (`direct_lookup_max_bytes_per_prefix`), or that fits in
        `direct_lookup_min_bytes`, maps a prefix straight to its row (-1 if absent) instead of a binary search of
        its keys: one memory access per row instead of ~log2(n) (the catalogue's deepest level at 10M items).

        Built for "sid" mode only, for the levels it looks up (1 .. levels_to_generate - 1), in the layout given.
        """
        num_levels = self.num_levels
        self._key_miss = int(sum(spans)) + 1
        # A key sums at most L parts (the marker and L - 1 codes), each at most `_key_miss`: int64 must hold L of them.
        if num_levels * self._key_miss >= 2**63:
            raise ValueError(
                f"Codebook sizes {self.codebook_sizes} are too large to pack SID prefixes into int64 keys; "
                "use fewer or smaller levels."
            )
        ids = [int(t) for level_ids in sid_token_ids for t in level_ids]
        first_id = min([*ids, self.sid_start_token_id])
        last_id = max([*ids, self.sid_start_token_id])
        # Token t reads table row t - shift: rows 0 and -1 are all misses, where ids outside [first, last] clip to.
        self._key_shift = first_id - 1
        marked = int(self.layout == "marked")  # 1: the start marker's column comes first
        self._key_parts = [None] * num_levels  # level 0 (the root) and levels never generated: no lookup
        self._direct_rows = [None] * num_levels
        for lv in range(1, self.levels_to_generate):
            present = len(self._level_keys[lv])
            index_dtype = np.int32 if present < 2**31 else np.int64
            table_bytes = (spans[lv] + 1) * np.dtype(index_dtype).itemsize
            direct = table_bytes <= max(
                self.direct_lookup_min_bytes, self.direct_lookup_max_bytes_per_prefix * present
            )
            parts = np.full((last_id - first_id + 3, lv + marked), self._key_miss, dtype=np.int64)
            if marked:
                parts[self.sid_start_token_id - self._key_shift, 0] = 0
            for j in range(lv):
                level_ids = np.asarray(sid_token_ids[j], dtype=np.int64)
                # a direct level's keys are the prefixes P_l themselves; a searched level's carry its key offset
                first = 0 if direct or j else int(offsets[lv])
                parts[level_ids - self._key_shift, marked + j] = (
                    first + np.arange(len(level_ids)) * self._radix[lv, j]
                )
            if direct:  # a miss (key past spans[l]) clips to the last entry, -1
                rows = np.full(spans[lv] + 1, -1, dtype=index_dtype)
                rows[self._level_keys[lv] - offsets[lv]] = np.arange(present, dtype=index_dtype)
                self._direct_rows[lv] = rows
            self._key_parts[lv] = parts

    @property
    def nbytes(self) -> int:
        """Host memory of the index in bytes: prefix keys, packed children and the "sid" path's lookup tables."""
        tables = [t for t in (*self._key_parts, *self._direct_rows) if t is not None]
        return int(self._prefix_keys.nbytes + self._packed_children.nbytes + sum(t.nbytes for t in tables))

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

    def _check_vocab(self, vocab_size: int) -> None:
        """Refuse scores narrower than the SID token ids (a model whose embeddings were not resized)."""
        if vocab_size in self._checked_vocab:
            return
        if int(self._sid_token_ids.max()) >= vocab_size or max(
            self.sid_start_token_id, self.sid_end_token_id
        ) >= (vocab_size):
            raise ValueError(
                f"The scores have {vocab_size} columns but SID token ids go up to {int(self._sid_token_ids.max())}: "
                "the model's vocabulary lacks the SID tokens. Resize its embeddings with "
                "hf_semtok.extend_model(model, tokenizer) (or model.resize_token_embeddings(len(tokenizer)))."
            )
        self._checked_vocab.add(vocab_size)

    def _level_ids(self, device: torch.device, level: int) -> torch.Tensor:
        """Token ids of one level's codes on `device` (cached): the scattered columns of the "sid" path."""
        key = (str(device), level)
        if key not in self._level_ids_cache:
            ids = self._code_token[level, : self.codebook_sizes[level]]
            self._level_ids_cache[key] = torch.as_tensor(ids, device=device)
        return self._level_ids_cache[key]

    def _tensors(self, device: torch.device, vocab_size: int) -> dict[str, torch.Tensor]:
        """Index tensors on `device` for a score width of `vocab_size` (cached; constant, so calls stay stateless)."""
        key = (str(device), vocab_size)
        cached = self._device_cache.get(key)
        if cached is not None:
            return cached
        self._check_vocab(vocab_size)
        code_token = self._code_token.copy()
        code_token[code_token < 0] = self.sid_end_token_id  # harmless target, see __call__ step 2
        free_allowed = np.ones(vocab_size, dtype=bool)
        free_allowed[self._sid_token_ids] = False
        free_allowed[self.sid_end_token_id] = False
        t = {
            "keys": torch.as_tensor(self._prefix_keys, device=device),
            "packed": torch.as_tensor(self._packed_children, device=device),
            "level_first": torch.as_tensor(self._level_first, device=device),
            "level_base": torch.as_tensor(self._level_base, device=device),
            "level_bytes": torch.as_tensor(self._level_bytes, device=device),
            "sizes": torch.as_tensor(self.codebook_sizes, device=device),
            "code_range": torch.arange(max(self.codebook_sizes), device=device),
            "radix": torch.as_tensor(self._radix, device=device),
            "offsets": torch.as_tensor(self._offsets, device=device),
            "token_level": torch.as_tensor(self._token_level, device=device),
            "token_code": torch.as_tensor(self._token_code, device=device),
            "code_token": torch.as_tensor(code_token, device=device),
            "free_allowed": torch.as_tensor(free_allowed, device=device),
            "level_range": torch.arange(self.num_levels, device=device),
        }
        t["unpack"] = (
            (torch.arange(256, device=device)[:, None] >> torch.arange(8, device=device)) & 1
        ).bool()
        width = int(self._level_bytes.max())
        if len(self._prefix_keys) * width * 8 <= self.dense_children_max_bytes:
            dense = np.zeros(
                (len(self._prefix_keys), width * 8), dtype=bool
            )  # zero past each level's codebook
            for level, block in enumerate(self._level_blocks):
                first, size = int(self._level_first[level]), self.codebook_sizes[level]
                bits = np.unpackbits(block, axis=1, count=size, bitorder="little")
                dense[first : first + len(block), :size] = bits
            t["dense"] = torch.as_tensor(dense, device=device)
        self._device_cache[key] = t
        return t

    # ----------------------------------------------------------------------------------------------------------
    # The per-step call (torch, vectorised, stateless)
    # ----------------------------------------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask `scores` so that only tokens that keep every SID valid remain.

        Args:
            input_ids: `(rows, cur_len)` tokens so far (rows = batch x beams / return sequences).
            scores: `(rows, vocab)` next-token scores (log-probs in beam search, logits otherwise).

        Returns:
            A new `(rows, vocab)` tensor; `scores` is not modified.
        """
        rows, cur_len = input_ids.shape
        vocab = scores.shape[-1]
        device = scores.device
        num_levels = self.num_levels
        if self.mode == "sid" and cur_len < self.prompt_length:
            raise ValueError(
                f"input_ids has {cur_len} tokens, fewer than prompt_length={self.prompt_length}; build the "
                "processor with prompt_length=input_ids.shape[1] of the batch passed to generate()."
            )
        if self.mode == "sid" and (self._fast_sid_path or self.layout == "bare"):
            self._check_vocab(vocab)
            return self._call_sid(input_ids, scores)  # the host index; no device tensors
        t = self._tensors(device, vocab)
        input_ids = input_ids.to(device)

        # Per row: where the SID span starts (index of <|sid_start|>) and how far into it we are.
        if self.mode == "sid":
            offset = cur_len - self.prompt_length  # same for every row
            start_pos = torch.full((rows,), self.prompt_length, device=device)  # (rows,)
            step = torch.full((rows,), offset, device=device)  # (rows,)
            in_span = torch.ones(rows, dtype=torch.bool, device=device)
            span_opened = (
                input_ids[:, self.prompt_length] == self.sid_start_token_id
                if offset > 0
                else torch.ones(rows, dtype=torch.bool, device=device)
            )
            levels_here = self.levels_to_generate
        else:
            positions = torch.arange(cur_len, device=device)  # (cur_len,)
            # (rows,) index of the last start / end marker, -1 if none
            last_start = torch.where(input_ids == self.sid_start_token_id, positions, -1).amax(dim=1)
            last_end = torch.where(input_ids == self.sid_end_token_id, positions, -1).amax(dim=1)
            start_pos = last_start.clamp(min=0)
            step = cur_len - last_start  # >= 1 inside a span
            in_span = (last_start >= 0) & (last_end < last_start) & (step <= num_levels + 1)
            # a free-mode span starts at a marker by definition
            span_opened = torch.ones(rows, dtype=torch.bool, device=device)
            levels_here = num_levels

        # Codes written so far in the span: (rows, L) window after the start marker.
        window = start_pos[:, None] + 1 + t["level_range"][None, :]  # (rows, L)
        window_tokens = input_ids.gather(1, window.clamp(max=cur_len - 1))  # (rows, L)
        window_tokens = window_tokens.clamp(min=0, max=len(self._token_level) - 1)
        window_levels = t["token_level"][window_tokens]  # (rows, L)
        window_codes = t["token_code"][window_tokens].clamp(min=0)  # (rows, L)

        level = (step - 1).clamp(min=0, max=num_levels - 1)  # (rows,) level of the next code
        written = t["level_range"][None, :] < level[:, None]  # (rows, L) codes already written
        codes_ok = ((window_levels == t["level_range"][None, :]) | ~written).all(dim=1)  # (rows,)
        prefix_key = (window_codes * t["radix"][level]).sum(dim=1) + t["offsets"][level]  # (rows,)
        idx = torch.searchsorted(t["keys"], prefix_key).clamp(max=len(self._prefix_keys) - 1)  # (rows,)
        found = (t["keys"][idx] == prefix_key) & codes_ok & span_opened  # (rows,)
        max_size = max(self.codebook_sizes)
        allowed_codes = self._children(t, idx, level, (max_size + 7) // 8)[
            :, :max_size
        ]  # (rows, max_codebook)
        allowed_codes = (
            allowed_codes & (t["code_range"][None, :] < t["sizes"][level][:, None]) & found[:, None]
        )
        # Row states: forced token (start / end / eos), code step, or free text.
        is_code = in_span & (step >= 1) & (step <= levels_here)
        forced = torch.full((rows,), -1, device=device)  # (rows,) forced token id or -1
        forced_value = torch.zeros(rows, dtype=scores.dtype, device=device)
        if self.mode == "sid":
            if offset == 0:
                forced.fill_(self.sid_start_token_id)
            elif offset == levels_here + 1:
                forced.fill_(self.sid_end_token_id)
            elif offset > levels_here + 1:
                forced.fill_(self.eos_token_id)
        else:
            forced = torch.where(in_span & (step == num_levels + 1), self.sid_end_token_id, forced)
        # Dead end: a code step with no valid continuation, or a "sid" span that does not start with the marker.
        dead = (is_code & ~found) | (~span_opened & (forced != self.sid_start_token_id))
        forced = torch.where(dead, self.eos_token_id, forced)
        forced_value = torch.where(dead, torch.full_like(forced_value, DEAD_END_SCORE), forced_value)
        is_code = is_code & ~dead

        # 1. Free-text rows keep every non-SID token; all other rows start from -inf. (One pass over the vocab.)
        if self.mode == "sid":
            out = torch.full_like(scores, float("-inf"))  # (rows, vocab)
        else:
            is_free = ~in_span & (forced < 0)
            out = scores.masked_fill(~(is_free[:, None] & t["free_allowed"][None, :]), float("-inf"))
        # 2. Code rows: copy the scores of the allowed codes of their level. Slots beyond a level's codebook point at
        #    <|sid_end|>, which no code row allows; non-code rows only write -inf over SID tokens, already -inf.
        candidates = t["code_token"][level]  # (rows, max_codebook) token ids
        values = scores.gather(1, candidates).masked_fill(~(allowed_codes & is_code[:, None]), float("-inf"))
        out.scatter_(1, candidates, values)  # `out` is a new tensor; `scores` is never written
        # 3. Forced rows: their single token gets `forced_value` (0, or DEAD_END_SCORE for a dead end).
        forced_col = forced.clamp(min=0)[:, None]  # (rows, 1)
        current = out.gather(1, forced_col)
        out.scatter_(1, forced_col, torch.where(forced[:, None] >= 0, forced_value[:, None], current))
        return out

    def _children(
        self, t: dict[str, torch.Tensor], idx: torch.Tensor, level: torch.Tensor | int, width: int
    ) -> torch.Tensor:
        """Unpack the children bits of prefixes `idx` (at `level`, an int or one per row): `(rows, width * 8)` bool.

        Bits past a level's codebook are zero or belong to the next row; callers cut or mask them."""
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

    def _call_sid(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`"sid"` mode: every row is at the same step, so the level is a Python int and only that level's columns
        are touched. Same result as the general path (tested).

        The prefix lookup runs in numpy on the few tokens written so far (`(rows, positions)` ids, copied to the
        host when generating on an accelerator): a generate step of a small model takes a few milliseconds, and a
        dozen small torch ops would cost a sizeable part of it. CPU scores are masked in numpy through views too;
        scores on an accelerator are masked there, with only a `(rows, codebook)` mask sent (see
        `host_mask_max_elements`)."""
        rows, cur_len = input_ids.shape
        prompt_length, levels = self.prompt_length, self.levels_to_generate
        neg_inf = float("-inf")
        # The tokens after the prompt, on the host (a view on CPU): numpy slicing costs far less than torch's.
        ids = input_ids.numpy() if input_ids.device.type == "cpu" else input_ids.cpu().numpy()
        span = ids[:, prompt_length:]
        if self.layout == "bare":  # as if <|sid_start|> stood after the prompt: the first code is step 1
            offset, first_code = cur_len - prompt_length + 1, 0
            opened = None  # every row: a bare SID has no start marker to check
        else:
            offset, first_code = cur_len - prompt_length, 1
            if offset == 0:
                return self._forced(scores, self.sid_start_token_id, None)
            opened = span[:, 0] == self.sid_start_token_id  # (rows,)
        if offset > levels:  # the SID is complete: force <|sid_end|> (marked) or EOS
            marked_end = offset == levels + 1 and self.layout == "marked"
            dead = None if opened is None or opened.all() else ~opened
            return self._forced(scores, self.sid_end_token_id if marked_end else self.eos_token_id, dead)
        level = offset - 1
        if level == 0:  # the empty prefix: the same children for every row
            allowed, ok = self._root_allowed, opened  # (1, size), broadcast below
        else:
            # The start marker (marked layout) and the codes written: each token's key part at its own position
            # (the diagonal of the (rows, positions, positions) gather), summed. See _build_sid_lookup.
            written = span[:, : first_code + level] - self._key_shift  # (rows, positions) table rows
            positions = written.shape[1]
            parts = self._key_parts[level].take(written, axis=0, mode="clip")  # (rows, positions, positions)
            key = parts.reshape(rows, positions * positions)[:, :: positions + 1].sum(axis=1)  # (rows,)
            direct = self._direct_rows[level]
            if direct is not None:  # prefix -> row, -1 if absent (wrong tokens give keys past the end: -1)
                local = direct.take(key, mode="clip")  # (rows,)
                ok = local >= 0
            else:
                keys = self._level_keys[level]  # this level's sorted keys
                local = np.searchsorted(keys, key)  # (rows,) row of the prefix in the level, if it is there
                ok = keys.take(local, mode="clip") == key
            row_bytes = self._level_blocks[level].take(local, axis=0, mode="clip")  # (rows, bytes_l)
            allowed = np.unpackbits(
                row_bytes, axis=1, count=self.codebook_sizes[level], bitorder="little"
            ).view(bool)  # (rows, size): 0/1 bytes read as bools
        dead = None if ok is None or ok.all() else ~ok  # (rows,) rows with no valid continuation
        if dead is not None:
            allowed = allowed & ~dead[:, None]  # (rows, size)
        columns = self._level_columns[level]
        out = torch.full_like(scores, neg_inf, memory_format=torch.contiguous_format)  # (rows, vocab), new
        if self._on_host(scores):
            # Views of both tensors: numpy ops cost less than torch's on small arrays.
            target, source = out.numpy(), scores.detach().numpy()
            if isinstance(columns, slice):  # the level's tokens are consecutive columns: one masked copy
                np.copyto(target[:, columns], source[:, columns], where=allowed)
            else:  # scattered token ids: the allowed (row, token) entries, by flat index
                allowed_rows, allowed_slots = np.nonzero(np.broadcast_to(allowed, (rows, allowed.shape[1])))
                flat = allowed_rows * scores.shape[1] + self._code_token[level].take(allowed_slots)  # (k,)
                target.reshape(-1)[flat] = source.reshape(-1).take(flat)
        else:
            mask = torch.from_numpy(~allowed).to(out.device)
            if isinstance(columns, slice):
                start, width = columns.start, columns.stop - columns.start
                region = out.narrow(1, start, width)  # a view: filled in place
                region.copy_(scores.narrow(1, start, width))
                region.masked_fill_(mask, neg_inf)
            else:
                cols = self._level_ids(out.device, level)
                out.index_copy_(1, cols, scores.index_select(1, cols).masked_fill_(mask, neg_inf))
        if dead is not None:
            self._mark_dead_ends(out, dead)
        return out

    def _on_host(self, scores: torch.Tensor) -> bool:
        """Whether `scores` can be masked in numpy through views (see `host_mask_max_elements`)."""
        return (
            scores.device.type == "cpu"
            and scores.dtype in _NUMPY_FLOATS
            and scores.numel() <= self.host_mask_max_elements
        )

    def _forced(self, scores: torch.Tensor, token_id: int, dead: np.ndarray | None) -> torch.Tensor:
        """A new `-inf` tensor where `token_id` scores 0 on every row (rows in `dead`: EOS at DEAD_END_SCORE)."""
        out = torch.full_like(scores, float("-inf"), memory_format=torch.contiguous_format)  # (rows, vocab)
        if self._on_host(out):
            out.numpy()[:, token_id] = 0.0  # numpy indexing costs a fraction of torch's on a small tensor
        else:
            out[:, token_id] = 0.0
        if dead is not None:
            self._mark_dead_ends(out, dead)
        return out

    def _mark_dead_ends(self, out: torch.Tensor, dead: np.ndarray) -> None:
        """Rows in `dead` allow only EOS, at DEAD_END_SCORE (see the class docstring). `out` is contiguous."""
        if self._on_host(out):  # through a numpy view
            view = out.numpy()
            view[dead, :] = float("-inf")
            view[dead, self.eos_token_id] = DEAD_END_SCORE
            return
        dead_rows = torch.from_numpy(dead).to(out.device)
        out.masked_fill_(dead_rows[:, None], float("-inf"))
        out[:, self.eos_token_id].masked_fill_(dead_rows, DEAD_END_SCORE)
