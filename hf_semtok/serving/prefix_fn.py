"""The SID constraint as plain token-id lists and masks, for stacks that take a callable or a batch mask.

`SIDConstraint` reads the tokens a row has written and says which token ids may follow, with the rules of
`SIDLogitsProcessor` (tested equal): in `"sid"` mode the completion is `<|sid_start|>`, `L` codes forming a
catalogue prefix at every step, `<|sid_end|>`, then EOS (the bare layout: the `L` codes, then EOS); in `"free"`
mode text may use any token but SID codes and `<|sid_end|>`, and an open `<|sid_start|>` is followed by a real
item's codes and `<|sid_end|>`. A row that cannot continue (a wrong token it was given) may only write EOS.
The codes allowed after a prefix come from the packed prefix index (`hf_semtok.prefix_index.SIDPrefixIndex`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from hf_semtok.prefix_index import SIDPrefixIndex

__all__ = ["SIDConstraint", "export_prefix_allowed_tokens_fn"]

# Row states: one forced token, codes of a level after a prefix, or free text.
_FORCED, _CODES, _TEXT = 0, 1, 2


class SIDConstraint:
    """Allowed next tokens of rows of written tokens (see the module docstring).

    Args:
        index: The catalogue's `SIDPrefixIndex`.
        sid_start_token_id: Id of `<|sid_start|>`.
        sid_end_token_id: Id of `<|sid_end|>`.
        eos_token_id: The EOS id forced after a SID and at dead ends.
        vocab_size: Width of masks and of the text rows' allowed ids (the model's vocabulary).
        mode: `"sid"` (the tokens given are the completion only) or `"free"` (any tokens; the SID span is found
            from the last `<|sid_start|>`).
        layout: `"marked"` or `"bare"` (`"sid"` mode only).

    Raises:
        ValueError: An unknown mode or layout, bare free mode, or a vocabulary narrower than the SID token ids.
    """

    def __init__(
        self,
        index: SIDPrefixIndex,
        sid_start_token_id: int,
        sid_end_token_id: int,
        eos_token_id: int,
        vocab_size: int,
        mode: Literal["sid", "free"] = "sid",
        layout: Literal["marked", "bare"] = "marked",
    ) -> None:
        if mode not in ("sid", "free"):
            raise ValueError(f"mode must be 'sid' or 'free'; got {mode!r}.")
        if layout not in ("marked", "bare"):
            raise ValueError(f"layout must be 'marked' or 'bare'; got {layout!r}.")
        if mode == "free" and layout != "marked":
            raise ValueError(
                "mode='free' needs layout='marked': free text needs <|sid_start|> to open a SID."
            )
        for name, value in (("eos_token_id", eos_token_id), ("vocab_size", vocab_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise TypeError(f"{name} must be an int >= 0; got {value!r}.")
        top = max(int(index.token_ids.max()), sid_start_token_id, sid_end_token_id, eos_token_id)
        if top >= vocab_size:
            raise ValueError(
                f"vocab_size={vocab_size} but the SID tokens and EOS go up to id {top}; pass the model's "
                "vocabulary size (len(tokenizer) after hf_semtok.extend_model)."
            )
        self.index = index
        self.num_levels = index.num_levels
        self.mode, self.layout = mode, layout
        self.start, self.end, self.eos = int(sid_start_token_id), int(sid_end_token_id), int(eos_token_id)
        self.vocab_size = int(vocab_size)
        self._token_level = np.full(top + 2, -1, dtype=np.int64)  # token id -> level, -1: not a code
        self._token_code = np.full(top + 2, -1, dtype=np.int64)
        for level in range(self.num_levels):
            ids = index.code_token[level, : index.codebook_sizes[level]]
            self._token_level[ids] = level
            self._token_code[ids] = np.arange(len(ids))
        text = np.ones(self.vocab_size, dtype=bool)
        text[index.token_ids] = False
        text[self.end] = False
        self.text_mask = text  # (vocab,) what free text may write (<|sid_start|> included)
        self._text_ids = np.flatnonzero(text).tolist()

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        mode: Literal["sid", "free"] = "sid",
        layout: Literal["marked", "bare"] | None = None,
        vocab_size: int | None = None,
        eos_token_id: int | None = None,
    ) -> SIDConstraint:
        """Build the constraint from a `SemanticIDTokenizer`.

        Args:
            tokenizer: A `SemanticIDTokenizer`.
            mode: `"sid"` or `"free"`.
            layout: Default: the tokenizer's `sid_layout` (`"marked"` in `"free"` mode).
            vocab_size: The model's vocabulary size; default `len(tokenizer)`.
            eos_token_id: Default: `tokenizer.eos_token_id`.

        Returns:
            A `SIDConstraint`.
        """
        eos = eos_token_id if eos_token_id is not None else tokenizer.eos_token_id
        if eos is None:
            raise ValueError("The tokenizer has no eos_token; pass eos_token_id= explicitly.")
        if layout is None:
            layout = "marked" if mode == "free" else getattr(tokenizer, "sid_layout", "marked")
        return cls(
            SIDPrefixIndex.from_tokenizer(tokenizer),
            sid_start_token_id=tokenizer.sid_start_token_id,
            sid_end_token_id=tokenizer.sid_end_token_id,
            eos_token_id=int(eos),
            vocab_size=int(vocab_size if vocab_size is not None else len(tokenizer)),
            mode=mode,
            layout=layout,
        )

    def _levels_of(self, tokens: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.clip(np.asarray(tokens, dtype=np.int64), -1, len(self._token_level) - 1)
        return self._token_level[ids], self._token_code[ids]

    def _state(self, tokens: Sequence[int]) -> tuple[int, Any]:
        """`(_FORCED, token)`, `(_CODES, prefix codes)` or `(_TEXT, None)` for one row."""
        num_levels = self.num_levels
        if self.mode == "free":
            window = list(tokens[-(num_levels + 1) :])
            starts = [i for i, t in enumerate(window) if t == self.start]
            if not starts or self.end in window[starts[-1] :]:
                return _TEXT, None
            codes = window[starts[-1] + 1 :]
            if len(codes) == num_levels:
                return _FORCED, self.end
        else:
            written = len(tokens)
            if self.layout == "marked":
                if written == 0:
                    return _FORCED, self.start
                if tokens[0] != self.start:
                    return _FORCED, self.eos  # dead end: the span does not open with the marker
                if written > num_levels:
                    return _FORCED, self.end if written == num_levels + 1 else self.eos
                codes = list(tokens[1:])
            else:
                if written >= num_levels:
                    return _FORCED, self.eos
                codes = list(tokens)
        levels, values = self._levels_of(codes)
        if (levels != np.arange(len(codes))).any():
            return _FORCED, self.eos  # a wrong token inside the SID: dead end
        return _CODES, values

    def allowed_token_ids(self, tokens: Sequence[int]) -> list[int]:
        """The token ids that may follow one row.

        Args:
            tokens: In `"sid"` mode the completion written so far (no prompt); in `"free"` mode the row (the
                prompt may be left out unless it ends inside an open SID).

        Returns:
            Sorted token ids; `[eos]` where the row can only end.
        """
        tokens = [int(t) for t in tokens]
        kind, value = self._state(tokens)
        if kind == _FORCED:
            return [value]
        if kind == _TEXT:
            return list(self._text_ids)
        allowed = self.index.allowed_token_ids(value.tolist())
        return sorted(allowed) if allowed else [self.eos]

    def mask(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """`(len(rows), vocab_size)` bool mask of the allowed next tokens of each row (True = allowed).

        Code rows are looked up in the prefix index in one batch per level.

        Args:
            rows: One sequence of token ids per row, as in `allowed_token_ids`.

        Returns:
            A numpy bool array.
        """
        out = np.zeros((len(rows), self.vocab_size), dtype=bool)
        by_level: dict[int, list[tuple[int, np.ndarray]]] = {}
        for r, tokens in enumerate(rows):
            kind, value = self._state([int(t) for t in tokens])
            if kind == _FORCED:
                out[r, value] = True
            elif kind == _TEXT:
                out[r] = self.text_mask
            else:
                by_level.setdefault(len(value), []).append((r, value))
        for level, entries in by_level.items():
            row_ids = np.asarray([r for r, _ in entries], dtype=np.int64)
            prefixes = np.asarray([v for _, v in entries], dtype=np.int64).reshape(len(entries), level)
            allowed = self.index.allowed_codes(prefixes)  # (rows, codebook)
            columns = self.index.code_token[level, : self.index.codebook_sizes[level]]
            out[row_ids[:, None], columns[None, :]] = allowed
            dead = row_ids[~allowed.any(axis=1)]
            out[dead, self.eos] = True
        return out


def _one_row(input_ids: Any) -> list[int]:
    """`input_ids` of a `prefix_allowed_tokens_fn` call as a list of ints: one row of integer token ids >= 0.

    Raises:
        TypeError: not a 1-D tensor, array, list or tuple of integers (floats, bools and strings are refused).
        ValueError: a 2-D (or deeper) input, or a negative id.
    """
    hint = "prefix_allowed_tokens_fn takes one row of token ids (a 1-D tensor, array or list of ints)"
    if isinstance(input_ids, torch.Tensor):
        input_ids = input_ids.detach().cpu().numpy()
    if isinstance(input_ids, np.ndarray):
        if input_ids.ndim != 1:
            raise ValueError(
                f"{hint}; got a {input_ids.ndim}-D input of shape {tuple(input_ids.shape)} (pass input_ids[row])."
            )
        if input_ids.size and (input_ids.dtype == np.bool_ or not np.issubdtype(input_ids.dtype, np.integer)):
            raise TypeError(f"{hint}; got dtype {input_ids.dtype}.")
        row = input_ids.tolist()
    elif isinstance(input_ids, (list, tuple)):
        row = list(input_ids)
    else:
        raise TypeError(f"{hint}; got {type(input_ids).__name__} {str(input_ids)[:40]!r}.")
    for t in row:
        if isinstance(t, (list, tuple, np.ndarray, torch.Tensor)):
            raise ValueError(f"{hint}; got a nested sequence (pass input_ids[row]).")
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (numbers.Integral, np.integer)):
            raise TypeError(f"{hint}; got {type(t).__name__} {t!r} among the ids.")
        if t < 0:
            raise ValueError(f"{hint}; got the negative id {t} (token ids are >= 0).")
    return [int(t) for t in row]


def export_prefix_allowed_tokens_fn(
    tokenizer: Any,
    mode: Literal["sid", "free"] = "sid",
    prompt_length: int | None = None,
    layout: Literal["marked", "bare"] | None = None,
    vocab_size: int | None = None,
    eos_token_id: int | None = None,
) -> Callable[[int, Any], list[int]]:
    """The SID constraint as a `prefix_allowed_tokens_fn(batch_id, input_ids) -> list[int]` callable.

    For stacks that take such a callable (transformers' `generate(prefix_allowed_tokens_fn=...)`, and servers or
    decoders with the same signature). It allows the same tokens as `SIDLogitsProcessor` with the same arguments;
    inside `generate()` the processor is faster (vectorised over rows).

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        mode: `"sid"` or `"free"` (see `SIDConstraint`).
        prompt_length: `"sid"` mode: tokens of `input_ids` before the completion (the padded prompt length given
            to `generate()`; 0 for a stack that passes the generated tokens only). Required in `"sid"` mode, not
            accepted in `"free"` mode.
        layout: Default: the tokenizer's `sid_layout` (`"marked"` in `"free"` mode).
        vocab_size: The model's vocabulary size (free text may use every id below it); default `len(tokenizer)`.
        eos_token_id: Default: `tokenizer.eos_token_id`.

    Returns:
        A callable `(batch_id, input_ids) -> list[int]`; `input_ids` is one row (a 1-D tensor, array or list).

    Raises:
        ValueError: `prompt_length` missing in `"sid"` mode or given in `"free"` mode, or as `SIDConstraint`.
    """
    if mode == "sid" and prompt_length is None:
        raise ValueError(
            "mode='sid' needs prompt_length: the tokens of input_ids before the completion (input_ids.shape[1] "
            "of the batch given to generate(), or 0 when the callable only sees generated tokens)."
        )
    if mode == "free" and prompt_length is not None:
        raise ValueError("prompt_length is only used in mode='sid'; drop it in mode='free'.")
    if prompt_length is not None and (
        isinstance(prompt_length, bool)
        or not isinstance(prompt_length, numbers.Integral)
        or prompt_length < 0
    ):
        raise ValueError(f"prompt_length must be an int >= 0; got {prompt_length!r}.")
    constraint = SIDConstraint.from_tokenizer(
        tokenizer, mode=mode, layout=layout, vocab_size=vocab_size, eos_token_id=eos_token_id
    )
    skip = int(prompt_length or 0)

    def prefix_allowed_tokens_fn(batch_id: int, input_ids: Any) -> list[int]:
        return constraint.allowed_token_ids(_one_row(input_ids)[skip:])

    return prefix_allowed_tokens_fn
