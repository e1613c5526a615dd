"""SID tokens <-> codes: reading `<|sid_{level}_{code}|>` tokens in text and in token ids.

Copied beside a saved tokenizer for `trust_remote_code=True` (like `sid_table.py`), so it imports only the standard
library, numpy and `.constants` (relatively).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .constants import MAX_CODEBOOK_SIZE, SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_TEMPLATE
from .sid_checks import as_code_rows

__all__ = [
    "EV_END",
    "EV_OTHER",
    "EV_SID",
    "EV_START",
    "SID_RE",
    "SIDTokenLookup",
    "group_sid_events",
    "parse_sid_string",
    "scan_sid_text",
    "token_id_rows",
]

# One SID token: ASCII digits without leading zeros only, so `<|sid_0_01|>` or full-width digits (which are not
# tokens of the tokenizer) are never read as SIDs; text and token ids then always agree.
_NUM = "(0|[1-9][0-9]*)"
_HEAD, _REST = SID_TOKEN_TEMPLATE.split("{level}")
_MID, _TAIL = _REST.split("{code}")
SID_RE = re.compile(re.escape(_HEAD) + _NUM + re.escape(_MID) + _NUM + re.escape(_TAIL))
# One SID token or marker in text (markers first so they are not read as SID tokens).
_SCAN_RE = re.compile(
    "(" + re.escape(SID_START_TOKEN) + ")|(" + re.escape(SID_END_TOKEN) + ")|" + SID_RE.pattern
)
#: Event kinds produced by `scan_sid_text` and consumed by `group_sid_events`.
EV_START, EV_END, EV_SID, EV_OTHER = 0, 1, 2, 3


def _bounded_level_code(
    match: re.Match[str], token: str, expected: Sequence[int], source: str, tokens_source: str
) -> tuple[int, int]:
    """`(level, code)` of a SID token, refused when outside the table's levels and codebook sizes.

    Counting levels and codes up to a token's numbers would let one hostile added token (`<|sid_999999999999_0|>`)
    make the loader build a list of 10^12 entries; the digits are checked before they are even converted.
    """
    level_text, code_text = match.group(1), match.group(2)
    bound = len(str(MAX_CODEBOOK_SIZE))
    level = int(level_text) if len(level_text) <= bound else None
    code = int(code_text) if len(code_text) <= bound else None
    if (
        level is None
        or level >= len(expected)
        or code is None
        or code >= min(expected[level], MAX_CODEBOOK_SIZE)
    ):
        where = (
            f"level {_short(level_text)} (the table has {len(expected)} levels)"
            if level is None or level >= len(expected)
            else f"code {_short(code_text)} at level {level} (codebook size {expected[level]})"
        )
        raise ValueError(
            f"{tokens_source}: added token {token[:80]!r} names SID {where}, outside the item table's "
            f"codebook_sizes {list(expected)} ({source}). The file was edited or comes from another tokenizer; "
            "re-save the tokenizer with save_pretrained()."
        )
    return level, code


def _short(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:12]}... ({len(digits)} digits)"


class SIDTokenLookup:
    """Token id <-> (level, code) for the SID tokens of one tokenizer, checked against the table's sizes.

    Args:
        added_vocab: The tokenizer's added tokens (`get_added_vocab()`).
        codebook_sizes: The table's codes per level.
        source: File or field named in errors.
        tokens_source: The file that holds the added tokens (`tokenizer.json`), named in errors.

    Raises:
        ValueError: when the SID tokens do not match `codebook_sizes`, a SID token names a level or code outside
            them (or beyond `MAX_CODEBOOK_SIZE`), or a marker is missing.
    """

    def __init__(
        self,
        added_vocab: Mapping[str, int],
        codebook_sizes: Sequence[int],
        source: str,
        tokens_source: str = "tokenizer.json",
    ) -> None:
        expected = [int(s) for s in codebook_sizes]
        found: dict[int, list[int]] = {}
        for token in added_vocab:
            m = SID_RE.fullmatch(token)
            if m:
                level, code = _bounded_level_code(m, token, expected, source, tokens_source)
                found.setdefault(level, []).append(code)
        found_sizes = [len(found.get(level, [])) for level in range(max(found) + 1)] if found else []
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
        """`(n, k)` codes (k <= levels), or one SID's `(k,)` codes, -> `(n, k)` token ids.

        Raises:
            ValueError: codes that are not integers (floats, bools, digit strings), input that is not 1-D or 2-D,
                more levels than the tokenizer has, or a code out of range.
        """
        codes = as_code_rows(codes, "SID codes")
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


def check_token_ids(x: Any, what: str = "token_ids") -> Any:
    """Any-shaped integer token ids, checked: a torch tensor is returned as is, anything else as an int64 array.

    Raises:
        TypeError: floats, bools, strings, None or other non-integers (a tensor or array of such a dtype too).
        ValueError: an id outside int64 (e.g. `2**70`, or a uint64 past `2**63 - 1`).
    """
    if type(x).__module__.startswith("torch"):
        if x.dtype.is_floating_point or x.dtype.is_complex or str(x.dtype) == "torch.bool":
            raise TypeError(f"{what} must hold integer token ids; got a tensor of dtype {x.dtype}.")
        return x
    if isinstance(x, np.ndarray) and x.dtype != object:
        if x.size and (x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"{what} must hold integer token ids; got an array of dtype {x.dtype}.")
        if x.dtype == np.uint64 and x.size and int(x.max()) > np.iinfo(np.int64).max:
            raise ValueError(
                f"{what}: token id {int(x.max())} is out of range (too large for any vocabulary)."
            )
        return x.astype(np.int64, copy=False)
    if isinstance(x, (str, bytes, Mapping)):
        raise TypeError(f"{what} must be integer token ids; got {type(x).__name__} {str(x)[:40]!r}.")
    flat = np.asarray(x, dtype=object)
    for value in flat.reshape(-1):
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{what} must hold integer token ids; got {type(value).__name__} {value!r}.")
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{what}: token id {value} is out of range (too large for any vocabulary).")
    return np.asarray(flat.tolist() if flat.ndim else flat.item(), dtype=np.int64)


def token_id_rows(x: Any) -> np.ndarray | list[np.ndarray]:
    """Token ids as a 1-D or 2-D int64 array, or a list of 1-D rows for a ragged batch.

    Raises:
        TypeError: for bytes, mappings, floats, bools and other things that are not token ids.
        ValueError: for 3-D (or deeper) input.
    """
    hint = "parse_items takes a string, a list of strings, or 1-D / 2-D integer token ids"
    if isinstance(x, (bytes, bytearray, memoryview)):
        raise TypeError(f"{hint}; got {type(x).__name__} (decode bytes to str first).")
    if isinstance(x, Mapping):
        raise TypeError(f"{hint}; got a {type(x).__name__} (pass encoding['input_ids']).")
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.size and not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"{hint}; got an array of dtype {x.dtype} (token ids are integers).")
        if x.ndim not in (1, 2):
            raise ValueError(f"{hint}; got a {x.ndim}-D array of shape {tuple(x.shape)}.")
        if x.dtype == np.uint64 and x.size and int(x.max()) > np.iinfo(np.int64).max:
            raise ValueError(
                f"{hint}; token id {int(x.max())} is out of range (too large for any vocabulary)."
            )
        return x.astype(np.int64)
    if not isinstance(x, (list, tuple)):
        raise TypeError(f"{hint}; got {type(x).__name__}.")
    if all(isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)) for t in x):
        try:
            return np.asarray(x, dtype=np.int64).reshape(-1)
        except OverflowError:
            big = max(x, key=abs)
            raise ValueError(
                f"{hint}; token id {big} is out of range (too large for any vocabulary)."
            ) from None
    rows = []
    for row in x:
        if isinstance(row, (str, bytes, int, float, np.generic)):
            raise TypeError(f"{hint}; got a list mixing {type(row).__name__} with other items.")
        row = token_id_rows(row)
        if not isinstance(row, np.ndarray) or row.ndim != 1:
            raise ValueError(f"{hint}; got 3-D input (a list of 2-D rows).")
        rows.append(row)
    return rows
