"""The item table behind a SemanticIDTokenizer: validated item id <-> SID lookups and SID-text parsing.

Pure numpy and dicts (picklable; torch is used only on tensors the caller passes in). Imported relatively by `tokenization_semtok.py` and copied beside a
saved tokenizer for `trust_remote_code=True`, so it must not import hf_semtok.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .constants import SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_PATTERN, SID_TOKEN_TEMPLATE

__all__ = ["ItemIndex", "SIDTokenLookup", "parse_sid_string", "scan_sid_text", "group_sid_events"]

TABLE_FORMAT = "hf_semtok.sid_table"
TABLE_VERSION = 1
SID_RE = re.compile(SID_TOKEN_PATTERN)
# One SID token or marker in text (markers first so they are not read as SID tokens).
_SCAN_RE = re.compile(
    "(" + re.escape(SID_START_TOKEN) + ")|(" + re.escape(SID_END_TOKEN) + ")|" + SID_TOKEN_PATTERN
)
#: Event kinds produced by `scan_sid_text` and consumed by `group_sid_events`.
EV_START, EV_END, EV_SID, EV_OTHER = 0, 1, 2, 3


class ItemIndex:
    """Item id <-> SID lookups over a validated table (pure numpy + dicts, picklable).

    Codes are packed into one int64 key per item (`sum(code[l] * stride[l])`), kept sorted, so exact lookups
    and prefix ranges are one `searchsorted`.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        codes: np.ndarray,
        codebook_sizes: Sequence[int],
        num_semantic_levels: int | None = None,
        collision_strategy: str | None = None,
        stats: Mapping[str, Any] | None = None,
        source: str = "sid_table",
    ) -> None:
        item_ids = [str(i) for i in item_ids]
        codes = np.asarray(codes)
        sizes = [int(s) for s in codebook_sizes]
        if codes.ndim != 2 or codes.shape[0] != len(item_ids):
            raise ValueError(
                f"{source}: 'codes' must have shape (num_items, num_levels) = ({len(item_ids)}, L); "
                f"got {tuple(codes.shape)}."
            )
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(
                f"{source}: 'codebook_sizes' must be a non-empty list of positive ints; got {sizes}."
            )
        if codes.shape[1] != len(sizes):
            raise ValueError(
                f"{source}: every SID has {codes.shape[1]} codes but 'codebook_sizes' lists {len(sizes)} levels "
                f"({sizes}); give one size per level."
            )
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{source}: 'codes' must be integers; got dtype {codes.dtype}.")
        # A private copy: the caller's array (e.g. a SIDTable's) may change later; the index must not.
        codes = np.array(codes, dtype=np.int64).reshape(len(item_ids), len(sizes))
        for level, size in enumerate(sizes):
            bad = np.flatnonzero((codes[:, level] < 0) | (codes[:, level] >= size))
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"{source}: code {int(codes[i, level])} of item {item_ids[i]!r} at level {level} is out of "
                    f"range [0, {size}) ('codebook_sizes'[{level}] = {size}); {bad.size} item(s) affected."
                )
        index = {item: row for row, item in enumerate(item_ids)}
        if len(index) != len(item_ids):
            seen: set[str] = set()
            dups = [i for i in item_ids if i in seen or seen.add(i)]
            raise ValueError(f"{source}: duplicate item ids in 'item_ids': {sorted(set(dups))[:5]}.")
        if float(np.prod([float(s) for s in sizes])) >= 2.0**62:
            raise ValueError(
                f"{source}: codebook_sizes {sizes} give more than 2**62 SIDs; use fewer levels/codes."
            )
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
                f"{source}: items {a!r} and {b!r} share the SID {tuple(int(c) for c in codes[index[a]])}; SIDs must "
                "be unique (build the table with hf_semtok.sids.assign_unique_sids)."
            )
        self.item_ids = item_ids
        self.codes = codes
        self.codes.flags.writeable = False
        self.codebook_sizes = sizes
        self.num_semantic_levels = int(num_semantic_levels) if num_semantic_levels is not None else len(sizes)
        self.collision_strategy = collision_strategy
        self.stats = dict(stats or {})
        self.index = index
        self.strides = strides
        self.sorted_keys = sorted_keys
        self.order = order

    @classmethod
    def from_any(
        cls, table: Any, codebook_sizes: Sequence[int] | None = None, rqvae: Any = None
    ) -> ItemIndex:
        """Build from a `ItemIndex`, a `hf_semtok.sids.SIDTable` (or any object with its fields) or a mapping."""
        if isinstance(table, ItemIndex):
            if codebook_sizes is not None and list(codebook_sizes) != table.codebook_sizes:
                return cls(
                    table.item_ids,
                    table.codes,
                    codebook_sizes,
                    table.num_semantic_levels,
                    table.collision_strategy,
                    table.stats,
                )
            return table
        if all(hasattr(table, name) for name in ("item_ids", "codes", "codebook_sizes")):
            return cls(
                table.item_ids,
                np.asarray(table.codes),
                codebook_sizes if codebook_sizes is not None else table.codebook_sizes,
                getattr(table, "num_semantic_levels", None),
                getattr(table, "collision_strategy", None),
                getattr(table, "stats", None),
            )
        if not isinstance(table, Mapping):
            raise ValueError(
                f"sid_table must be a dict item_id -> tuple of codes or a hf_semtok.sids.SIDTable; got "
                f"{type(table).__name__}."
            )
        if not table:
            raise ValueError("sid_table is empty; the tokenizer needs at least one item.")
        item_ids = [str(k) for k in table]
        rows = []
        for item, value in zip(item_ids, table.values()):
            row = tuple(int(c) for c in value)
            if any(c != v for c, v in zip(row, value)):
                raise ValueError(
                    f"sid_table: the SID of item {item!r} has non-integer codes {tuple(value)!r}."
                )
            rows.append(row)
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            by_len = {len(r): item for item, r in zip(item_ids, rows)}
            raise ValueError(
                f"sid_table: all SIDs must have the same length; found lengths {sorted(lengths)} "
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
            sizes = [int(s) for s in rqvae.config.codebook_sizes]
            num_semantic = len(sizes)
            if codes.shape[1] == len(sizes) + 1:  # a dedup level the RQ-VAE does not know: size from the data
                sizes.append(int(codes[:, -1].max()) + 1)
            codebook_sizes = sizes
        return cls(item_ids, codes, codebook_sizes, num_semantic)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ItemIndex:
        """Read `sid_table.json` (or a `SIDTable.to_json` file); errors name the file and field."""
        name = os.path.basename(str(path))
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name} is not valid JSON ({err}); re-save the tokenizer.") from err
        if not isinstance(data, dict):
            raise ValueError(
                f"{name} holds a JSON {type(data).__name__}, not an object; it is not a SID table."
            )
        for field in ("item_ids", "codes", "codebook_sizes"):
            if field not in data:
                raise ValueError(
                    f"{name} has no field {field!r}; it is not a SID table written by hf_semtok."
                )
        try:
            # No dtype: __init__ then rejects non-integer codes instead of truncating them.
            codes = np.asarray(data["codes"])
        except ValueError as err:
            raise ValueError(
                f"{name}: 'codes' must be a list of equal-length integer lists ({err})."
            ) from None
        if codes.size == 0:
            codes = codes.astype(np.int64).reshape(0, len(data["codebook_sizes"]))
        return cls(
            data["item_ids"],
            codes,
            data["codebook_sizes"],
            data.get("num_semantic_levels"),
            data.get("collision_strategy"),
            data.get("stats"),
            source=name,
        )

    def to_json_dict(self) -> dict[str, Any]:
        """What `sid_table.json` holds (the fields of `hf_semtok.sids.SIDTable.to_dict`, plus format/version)."""
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "codebook_sizes": self.codebook_sizes,
            "num_semantic_levels": self.num_semantic_levels,
            "collision_strategy": self.collision_strategy,
            "stats": self.stats,
            "item_ids": self.item_ids,
            "codes": self.codes.tolist(),
        }

    def sid_texts(self) -> list[str]:
        """Per row, the item's SID string `<|sid_start|><|sid_0_a|>...<|sid_end|>` (built once, then cached)."""
        if getattr(self, "_sid_texts", None) is None:
            tokens = [
                [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for c in range(k)]
                for lv, k in enumerate(self.codebook_sizes)
            ]
            self._sid_texts = [
                SID_START_TOKEN + "".join(tokens[lv][c] for lv, c in enumerate(row)) + SID_END_TOKEN
                for row in self.codes.tolist()
            ]
        return self._sid_texts

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


class SIDTokenLookup:
    """Token id <-> (level, code) for the SID tokens of one tokenizer, checked against the table's sizes.

    Args:
        added_vocab: The tokenizer's added tokens (`get_added_vocab()`).
        codebook_sizes: The table's codes per level.
        source: File or field named in errors.

    Raises:
        ValueError: when the SID tokens do not match `codebook_sizes` or a marker is missing.
    """

    def __init__(self, added_vocab: Mapping[str, int], codebook_sizes: Sequence[int], source: str) -> None:
        found: dict[int, list[int]] = {}
        for token in added_vocab:
            m = SID_RE.fullmatch(token)
            if m:
                found.setdefault(int(m.group(1)), []).append(int(m.group(2)))
        found_sizes = [len(found.get(level, [])) for level in range(max(found) + 1)] if found else []
        expected = [int(s) for s in codebook_sizes]
        complete = all(sorted(found.get(lv, [])) == list(range(s)) for lv, s in enumerate(expected))
        if found_sizes != expected or not complete:
            raise ValueError(
                f"{source}: field 'codebook_sizes' = {expected} ({len(expected)} levels) disagrees with the "
                f"tokenizer's SID tokens ({len(found_sizes)} levels, codes per level {found_sizes}). The table and "
                "tokenizer.json come from different tokenizers; save them together with save_pretrained()."
            )
        for marker in (SID_START_TOKEN, SID_END_TOKEN):
            if marker not in added_vocab:
                raise ValueError(
                    f"{source}: the tokenizer has no {marker} token; rebuild it with from_base()."
                )
        self.codebook_sizes = expected
        self.per_level = [
            np.array(
                [added_vocab[SID_TOKEN_TEMPLATE.format(level=lv, code=c)] for c in range(k)], dtype=np.int64
            )
            for lv, k in enumerate(expected)
        ]
        self.per_level_lists = [ids.tolist() for ids in self.per_level]
        self.start, self.end = int(added_vocab[SID_START_TOKEN]), int(added_vocab[SID_END_TOKEN])
        all_ids = np.concatenate(self.per_level)
        self.offset = int(all_ids.min())
        span = int(all_ids.max()) - self.offset + 1
        self.id_level = np.full(span, -1, dtype=np.int64)  # (span,) level of token offset + i, -1 if not SID
        self.id_code = np.full(span, -1, dtype=np.int64)
        for lv, ids in enumerate(self.per_level):
            self.id_level[ids - self.offset] = lv
            self.id_code[ids - self.offset] = np.arange(len(ids))
        self._torch: dict[str, tuple[Any, Any]] = {}  # device -> (id_level, id_code) tensors

    def codes_to_ids(self, codes: Any) -> np.ndarray:
        """`(n, k)` codes (k <= levels) -> `(n, k)` token ids."""
        codes = np.asarray(codes, dtype=np.int64)
        codes = codes[None, :] if codes.ndim == 1 else codes
        if codes.shape[1] > len(self.per_level):
            raise ValueError(f"Codes have {codes.shape[1]} levels; the tokenizer has {len(self.per_level)}.")
        for lv in range(codes.shape[1]):
            bad = (codes[:, lv] < 0) | (codes[:, lv] >= self.codebook_sizes[lv])
            if bad.any():
                raise ValueError(
                    f"Code {int(codes[bad, lv][0])} at level {lv} is out of range [0, {self.codebook_sizes[lv]})."
                )
        return np.stack([self.per_level[lv][codes[:, lv]] for lv in range(codes.shape[1])], axis=1)  # (n, k)

    def ids_to_codes(self, token_ids: Any) -> tuple[Any, Any]:
        """Any-shaped token ids (numpy / list / torch) -> `(levels, codes)`, -1 for non-SID tokens."""
        if type(token_ids).__module__.startswith("torch"):
            torch = sys.modules["torch"]  # already imported: the input is a tensor
            key = str(token_ids.device)
            if key not in self._torch:
                self._torch[key] = (
                    torch.as_tensor(self.id_level, device=token_ids.device),
                    torch.as_tensor(self.id_code, device=token_ids.device),
                )
            lv_t, code_t = self._torch[key]
            rel = token_ids.long() - self.offset
            inside = (rel >= 0) & (rel < lv_t.numel())
            rel = rel.clamp(0, lv_t.numel() - 1)
            minus = torch.full_like(rel, -1)
            return torch.where(inside, lv_t[rel], minus), torch.where(inside, code_t[rel], minus)
        rel = np.asarray(token_ids, dtype=np.int64) - self.offset
        inside = (rel >= 0) & (rel < len(self.id_level))
        rel = np.clip(rel, 0, len(self.id_level) - 1)
        return np.where(inside, self.id_level[rel], -1), np.where(inside, self.id_code[rel], -1)

    def scan_ids(self, ids: Any) -> list[tuple[int, int, int]]:
        """Events `(kind, level, code)` of a 1-D sequence of token ids (see `group_sid_events`)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        levels, codes = self.ids_to_codes(ids)
        kinds = np.where(levels >= 0, EV_SID, EV_OTHER)
        kinds[ids == self.start] = EV_START
        kinds[ids == self.end] = EV_END
        return list(zip(kinds.tolist(), levels.tolist(), codes.tolist()))


def parse_sid_string(text: str) -> tuple[int, ...]:
    """Codes of one item's SID string (`<|sid_start|><|sid_0_a|>...<|sid_end|>`, markers optional).

    Raises:
        ValueError: when the string is not exactly SID tokens of levels 0, 1, 2, ... in order.
    """
    body = text.strip()
    if body.startswith(SID_START_TOKEN) and body.endswith(SID_END_TOKEN):
        body = body[len(SID_START_TOKEN) : -len(SID_END_TOKEN)]
    pieces = SID_RE.findall(body)
    rebuilt = "".join(SID_TOKEN_TEMPLATE.format(level=lv, code=c) for lv, c in pieces)
    if not pieces or rebuilt != re.sub(r"\s+", "", body):
        raise ValueError(
            f"Malformed SID string {text!r}: expected {SID_START_TOKEN}"
            f"{SID_TOKEN_TEMPLATE.format(level=0, code='a')}...{SID_END_TOKEN}."
        )
    levels = [int(lv) for lv, _ in pieces]
    if levels != list(range(len(levels))):
        raise ValueError(f"Malformed SID string {text!r}: levels {levels} are not 0, 1, 2, ... in order.")
    return tuple(int(c) for _, c in pieces)


def scan_sid_text(text: str) -> list[tuple[int, int, int]]:
    """Events `(kind, level, code)` for the markers, SID tokens and other text found in `text`."""
    events: list[tuple[int, int, int]] = []
    last_end = 0
    for m in _SCAN_RE.finditer(text):
        if text[last_end : m.start()].strip():
            events.append((EV_OTHER, -1, -1))  # other text breaks a SID
        last_end = m.end()
        if m.group(1):
            events.append((EV_START, -1, -1))
        elif m.group(2):
            events.append((EV_END, -1, -1))
        else:
            events.append((EV_SID, int(m.group(3)), int(m.group(4))))
    return events


def group_sid_events(
    events: Sequence[tuple[int, int, int]], codebook_sizes: Sequence[int]
) -> list[tuple[list[int], str]]:
    """Group events into candidate SIDs `(codes, reason)`; `reason` is `""` for a well-formed SID.

    A SID is consecutive SID tokens of levels 0..L-1. A level-0 token, a marker or other text ends a SID in
    progress (reason "cut short"); a level out of order or a code outside its codebook marks it broken.
    """
    num_levels, sizes = len(codebook_sizes), list(codebook_sizes)
    out: list[tuple[list[int], str]] = []
    current: list[int] = []
    broken = ""
    for kind, level, code in events:
        if kind != EV_SID:
            if current:
                out.append((current, broken or "cut short"))
                current, broken = [], ""
            continue
        if level == 0 and current:  # a new SID starts before the previous one ended
            out.append((current, broken or "cut short"))
            current, broken = [], ""
        if not broken:
            if level != len(current):
                broken = f"level {level} where level {len(current)} was expected"
            elif level >= num_levels:
                broken = f"level {level} beyond the tokenizer's {num_levels} levels"
            elif not 0 <= code < sizes[level]:
                broken = f"code {code} out of range [0, {sizes[level]}) at level {level}"
        current.append(code)
        if len(current) == num_levels and not broken:
            out.append((current, ""))
            current = []
    if current:
        out.append((current, broken or "cut short"))
    return out
