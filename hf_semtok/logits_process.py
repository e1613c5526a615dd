"""SIDLogitsProcessor: constrained decoding so that `generate()` only produces SIDs of real catalogue items.

How the constraint works. The catalogue's SIDs are turned once into a [`~hf_semtok.prefix_index.SIDPrefixIndex`]:
for every SID prefix that occurs in the catalogue, a bit-packed row over the next level's codebook says which codes
may follow, under one sorted int64 key per prefix. One call costs one `searchsorted` (or a direct table lookup)
plus one gather and one scatter, whatever the batch size or the number of beams; no Python runs per beam. Where a
row is inside its SID is read from `input_ids` on every call (the processor keeps no state between calls).

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

from hf_semtok.constants import SID_LAYOUTS
from hf_semtok.prefix_index import MAX_TOKEN_ID, SIDPrefixIndex
from hf_semtok.tokenizer.sid_checks import mixed_radix_keys
from hf_semtok.transition_prior import TransitionPrior

__all__ = ["DEAD_END_SCORE", "SIDLogitsProcessor", "SIDPrefixIndex", "TransitionPriorLogitsProcessor"]

logger = logging.getLogger(__name__)


#: Score given to EOS in a row where no SID continuation exists (see `SIDLogitsProcessor`). Finite, so sampling and
#: beam search still have one token to pick, and low enough that such a beam ranks below every real one.
DEAD_END_SCORE = -1.0e4

#: Score dtypes that numpy shares with torch (masked on the host through views; bfloat16 stays in torch).
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)

_SOURCE = "SIDLogitsProcessor"


# --------------------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------------------
def _check_token_id(name: str, value: Any) -> int:
    """`value` as a token id: an int >= 0 (numpy ints too); TypeError for anything else, ValueError if negative."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{_SOURCE}: {name} must be a token id (an int >= 0); got {type(value).__name__} {value!r}."
        )
    if not 0 <= value <= MAX_TOKEN_ID:
        raise ValueError(
            f"{_SOURCE}: {name} must be a token id >= 0 and at most {MAX_TOKEN_ID}; got {value}. Pass "
            f"tokenizer.{name}."
        )
    return int(value)


def _check_special_ids(start: Any, end: Any, eos: Any, code_tokens: set[int]) -> tuple[int, int, int]:
    """The start, end and (first) EOS ids, validated: ints >= 0, none of them a SID code token, start distinct
    from end and EOS (EOS may equal `<|sid_end|>`: generation then stops right after the SID)."""
    start = _check_token_id("sid_start_token_id", start)
    end = _check_token_id("sid_end_token_id", end)
    if eos is None or (isinstance(eos, (list, tuple)) and not eos):
        raise ValueError(
            f"{_SOURCE}: eos_token_id is required (the token that ends a finished or dead-end row)."
        )
    eos_ids = [_check_token_id("eos_token_id", e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
    for name, value in (
        ("sid_start_token_id", start),
        ("sid_end_token_id", end),
        *(("eos_token_id", e) for e in eos_ids),
    ):
        if value in code_tokens:
            raise ValueError(
                f"{_SOURCE}: {name}={value} is also a SID code token; the markers, EOS and code tokens must be "
                "distinct token ids (tokenizer.sid_start_token_id, sid_end_token_id, eos_token_id, sid_token_ids)."
            )
    if start == end or start in eos_ids:
        raise ValueError(
            f"{_SOURCE}: sid_start_token_id={start} equals "
            f"{'sid_end_token_id' if start == end else 'eos_token_id'}; the start marker must be its own token."
        )
    return start, end, eos_ids[0]


def _check_mode(
    mode: Any, prompt_length: Any, num_levels_to_generate: Any, layout: Any, num_levels: int
) -> None:
    """The mode, prompt length, number of levels and layout, and their combinations."""
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
    for name, value in (("prompt_length", prompt_length), ("num_levels_to_generate", num_levels_to_generate)):
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

    Memory: follows the distinct prefixes (`SIDPrefixIndex`), plus in "sid" mode a direct prefix -> row table,
    4 bytes per possible prefix, for levels where that costs at most 16 bytes per prefix present (`nbytes`): about
    2.2 MB for 100k random items with 3 levels of 256 codes, about 135 MB for 10M items with [256, 256, 256]
    plus a dedup level. The "free" mode's index tensors are copied to each device on first use and cached (they
    are constants, so calls stay stateless); the "sid" mode reads the host copy (one small device-to-host copy of
    the written codes per step on an accelerator). Every tensor the processor makes lives on the scores' device.

    Args:
        sid_codes: `(n_items, L)` integer codes of the catalogue, one row per item.
        sid_token_ids: Per level, the token id of each code (`sid_token_ids[l][c]`), distinct ints >= 0.
        sid_start_token_id: Id of `<|sid_start|>` (an int >= 0, not a code token).
        sid_end_token_id: Id of `<|sid_end|>` (an int >= 0, not a code token, not the start marker).
        eos_token_id: EOS id (or a list; the first one is forced after `<|sid_end|>` in `"sid"` mode). It may equal
            `<|sid_end|>`, never the start marker or a code token.
        mode: `"sid"` or `"free"`, see above.
        prompt_length: Padded prompt length; required in `"sid"` mode, not accepted in `"free"` mode.
        num_levels_to_generate: In `"sid"` mode, stop the SID after this many levels (a coarse prefix, for
            category-level retrieval); `<|sid_end|>` is still forced after it. Defaults to all `L` levels.
        layout: `"marked"` or `"bare"` (`"sid"` mode only), see above.

    Raises:
        TypeError: A token id, `prompt_length` or `num_levels_to_generate` that is not an int.
        ValueError: Any other inconsistent argument (the message names it); at call time, scores narrower than
            the largest token id.
    """

    #: "sid" mode on CPU: scores (float16/32/64) of at most this many elements (rows x vocabulary) are written in
    #: numpy, through views of the torch tensors: a new `-inf` tensor, then only the allowed entries copied from
    #: `scores` (one masked copy of the level's columns when its token ids are consecutive, else by flat index). A
    #: handful of numpy calls: a torch `masked_fill` over the whole vocabulary cost more than the lookup on small
    #: models. Other scores (accelerators, bfloat16) get a new `-inf` tensor with the level's columns copied and
    #: masked in torch (only a `(rows, codebook)` mask crosses to the device). No limit by default; 0 forces the
    #: torch path.
    host_mask_max_elements: int = 2**62

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
        """Validate every argument (see the class docstring), then build the prefix index and, in "sid" mode, the
        lookup from written tokens."""
        self.index = SIDPrefixIndex(sid_codes, sid_token_ids, source=_SOURCE)
        num_levels = self.index.num_levels
        _check_mode(mode, prompt_length, num_levels_to_generate, layout, num_levels)
        start, end, eos = _check_special_ids(
            sid_start_token_id, sid_end_token_id, eos_token_id, set(self.index.token_ids.tolist())
        )
        self.mode = mode
        self.layout = layout
        self.prompt_length = prompt_length
        self.num_levels = num_levels
        self.codebook_sizes = self.index.codebook_sizes
        self.levels_to_generate = num_levels_to_generate or num_levels
        self.sid_start_token_id, self.sid_end_token_id, self.eos_token_id = start, end, eos
        self._lookup = (
            self.index.token_lookup(self.levels_to_generate, None if layout == "bare" else start)
            if mode == "sid"
            else None
        )
        self._fast_sid_path = True  # "sid" mode looks prefixes up in numpy (tests switch it off to compare)
        self._vocab_cache: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
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
            layout: `"marked"` or `"bare"`; default: the tokenizer's saved SID layout (`tokenizer.sid_layout`) in
                `"sid"` mode, `"marked"` in `"free"` mode.

        Returns:
            A `SIDLogitsProcessor`.

        Raises:
            TypeError: `tokenizer` is not a `SemanticIDTokenizer`.
            ValueError: The tokenizer has no EOS token and none is given.
        """
        missing = [
            name
            for name in ("sid_codes", "sid_token_ids", "sid_start_token_id", "sid_end_token_id")
            if not hasattr(tokenizer, name)
        ]
        if missing:
            raise TypeError(
                f"{_SOURCE}.from_tokenizer needs a SemanticIDTokenizer; got {type(tokenizer).__name__} without "
                f"{', '.join(missing)}. Build one with SemanticIDTokenizer.from_base(...) or load it with "
                "AutoTokenizer.from_pretrained(..., trust_remote_code=True)."
            )
        eos = eos_token_id if eos_token_id is not None else getattr(tokenizer, "eos_token_id", None)
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
            layout=layout or (tokenizer.sid_layout if mode == "sid" else "marked"),
        )

    @property
    def num_prefixes(self) -> int:
        """Distinct SID prefixes in the index (`SIDPrefixIndex.num_prefixes`)."""
        return self.index.num_prefixes

    @property
    def nbytes(self) -> int:
        """Host memory in bytes: the prefix index plus the "sid" mode's lookup tables."""
        return self.index.nbytes + (self._lookup.nbytes if self._lookup is not None else 0)

    def _check_vocab(self, vocab_size: int) -> None:
        """Refuse scores narrower than the token ids (a model whose embeddings were not resized)."""
        if vocab_size in self._checked_vocab:
            return
        top = int(self.index.token_ids.max())
        if max(top, self.sid_start_token_id, self.sid_end_token_id) >= vocab_size:
            raise ValueError(
                f"The scores have {vocab_size} columns but SID token ids go up to "
                f"{max(top, self.sid_start_token_id, self.sid_end_token_id)}: the model's vocabulary lacks the SID "
                "tokens. Resize its embeddings with hf_semtok.extend_model(model, tokenizer) (or "
                "model.resize_token_embeddings(len(tokenizer)))."
            )
        if self.eos_token_id >= vocab_size:
            raise ValueError(
                f"{_SOURCE}: eos_token_id={self.eos_token_id} is outside the scores' {vocab_size} columns; pass the "
                "EOS id of the model's tokenizer (tokenizer.eos_token_id)."
            )
        self._checked_vocab.add(vocab_size)

    # ----------------------------------------------------------------------------------------------------------
    # The per-step call (stateless)
    # ----------------------------------------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask `scores` so that only tokens that keep every SID valid remain.

        Args:
            input_ids: `(rows, cur_len)` tokens so far (rows = batch x beams / return sequences).
            scores: `(rows, vocab)` next-token scores (log-probs in beam search, logits otherwise).

        Returns:
            A new `(rows, vocab)` tensor on `scores`' device; `scores` is not modified.

        Raises:
            TypeError: `scores` is not a floating-point tensor, or `input_ids` is not an integer tensor.
            ValueError: Shapes that do not match, fewer tokens than `prompt_length`, or scores narrower than the
                token ids.
        """
        if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
            got = (
                f"a tensor of dtype {scores.dtype}"
                if isinstance(scores, torch.Tensor)
                else type(scores).__name__
            )
            raise TypeError(
                f"{_SOURCE}: scores must be a floating-point tensor (the model's logits or log-probs, e.g. "
                f"torch.float32); got {got}. Cast them with scores.float()."
            )
        if (
            not isinstance(input_ids, torch.Tensor)
            or input_ids.is_floating_point()
            or input_ids.dtype == torch.bool
        ):
            got = (
                f"a tensor of dtype {input_ids.dtype}"
                if isinstance(input_ids, torch.Tensor)
                else type(input_ids).__name__
            )
            raise TypeError(f"{_SOURCE}: input_ids must be an integer tensor (torch.long); got {got}.")
        if input_ids.dim() != 2 or scores.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
            raise ValueError(
                f"{_SOURCE}: input_ids {tuple(input_ids.shape)} and scores {tuple(scores.shape)} must be "
                "(rows, cur_len) and (rows, vocab) with the same rows, as generate() passes them."
            )
        cur_len = input_ids.shape[1]
        if self.mode == "sid" and cur_len < self.prompt_length:
            raise ValueError(
                f"input_ids has {cur_len} tokens, fewer than prompt_length={self.prompt_length}; build the "
                "processor with prompt_length=input_ids.shape[1] of the batch passed to generate()."
            )
        self._check_vocab(scores.shape[-1])
        if self.mode == "sid" and (self._fast_sid_path or self.layout == "bare"):
            return self._call_sid(input_ids, scores)  # the host index; no index tensors on the device
        return self._call_general(input_ids, scores)

    # -- "free" mode (and the general form of "sid" mode): vectorised torch on the scores' device --------------
    def _tensors(self, device: torch.device, vocab_size: int) -> dict[str, torch.Tensor]:
        """The index tensors on `device` plus this vocabulary's masks (cached; constant, so calls stay stateless).

        Adds `code_token` (`(L, max codebook)` token ids; slots past a level's codebook point at `<|sid_end|>`,
        which no code row allows) and `free_allowed` (`(vocab,)`: tokens free text may use).
        """
        key = (str(device), vocab_size)
        cached = self._vocab_cache.get(key)
        if cached is not None:
            return cached
        code_token = self.index.code_token.copy()
        code_token[code_token < 0] = self.sid_end_token_id
        free_allowed = np.ones(vocab_size, dtype=bool)
        free_allowed[self.index.token_ids] = False
        free_allowed[self.sid_end_token_id] = False
        t = dict(self.index.device_tensors(device))
        t["code_token"] = torch.as_tensor(code_token, device=device)
        t["free_allowed"] = torch.as_tensor(free_allowed, device=device)
        self._vocab_cache[key] = t
        return t

    def _span_states(
        self, input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per row: where its SID span starts (index of `<|sid_start|>`), the step inside it (1 = first code),
        whether the row is inside a span, and whether the span opens with the marker. All `(rows,)`."""
        rows, cur_len = input_ids.shape
        device = input_ids.device
        if self.mode == "sid":
            offset = cur_len - self.prompt_length  # same for every row
            start_pos = torch.full((rows,), self.prompt_length, device=device)
            step = torch.full((rows,), offset, device=device)
            in_span = torch.ones(rows, dtype=torch.bool, device=device)
            span_opened = (
                input_ids[:, self.prompt_length] == self.sid_start_token_id
                if offset > 0
                else torch.ones(rows, dtype=torch.bool, device=device)
            )
            return start_pos, step, in_span, span_opened
        positions = torch.arange(cur_len, device=device)  # (cur_len,)
        # index of the last start / end marker, -1 if none
        last_start = torch.where(input_ids == self.sid_start_token_id, positions, -1).amax(dim=1)
        last_end = torch.where(input_ids == self.sid_end_token_id, positions, -1).amax(dim=1)
        step = cur_len - last_start  # >= 1 inside a span
        in_span = (last_start >= 0) & (last_end < last_start) & (step <= self.num_levels + 1)
        # a free-mode span starts at a marker by definition
        return last_start.clamp(min=0), step, in_span, torch.ones(rows, dtype=torch.bool, device=device)

    def _allowed_in_span(
        self,
        input_ids: torch.Tensor,
        t: dict[str, torch.Tensor],
        start_pos: torch.Tensor,
        level: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes allowed next (`(rows, max codebook)` bool) and whether the written prefix is a catalogue prefix
        whose codes are each of the right level (`(rows,)` bool)."""
        cur_len = input_ids.shape[1]
        level_range = t["level_range"][None, :]
        window = start_pos[:, None] + 1 + level_range  # (rows, L) positions after the start marker
        window_tokens = input_ids.gather(1, window.clamp(max=cur_len - 1))  # (rows, L)
        window_tokens = window_tokens.clamp(min=0, max=len(t["token_level"]) - 1)
        window_levels = t["token_level"][window_tokens]  # (rows, L)
        window_codes = t["token_code"][window_tokens].clamp(min=0)  # (rows, L)
        written = level_range < level[:, None]  # (rows, L) codes already written
        codes_ok = ((window_levels == level_range) | ~written).all(dim=1)  # (rows,)
        prefix_key = (window_codes * t["radix"][level]).sum(dim=1) + t["offsets"][level]  # (rows,)
        idx = torch.searchsorted(t["keys"], prefix_key).clamp(max=len(t["keys"]) - 1)  # (rows,)
        found = (t["keys"][idx] == prefix_key) & codes_ok  # (rows,)
        max_size = max(self.codebook_sizes)
        allowed = self.index.children(t, idx, level, (max_size + 7) // 8)[:, :max_size]  # (rows, max_size)
        allowed = allowed & (t["code_range"][None, :] < t["sizes"][level][:, None]) & found[:, None]
        return allowed, found

    def _forced_tokens(
        self,
        step: torch.Tensor,
        in_span: torch.Tensor,
        found: torch.Tensor,
        opened: torch.Tensor,
        cur_len: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per row: the forced token (start / end / EOS, -1 if none), whether it is a dead end, and whether the row
        picks a code. All `(rows,)`."""
        levels_here = self.levels_to_generate if self.mode == "sid" else self.num_levels
        is_code = in_span & (step >= 1) & (step <= levels_here)
        forced = torch.full_like(step, -1)
        if self.mode == "sid":
            offset = cur_len - self.prompt_length
            if offset == 0:
                forced.fill_(self.sid_start_token_id)
            elif offset == levels_here + 1:
                forced.fill_(self.sid_end_token_id)
            elif offset > levels_here + 1:
                forced.fill_(self.eos_token_id)
        else:
            forced = torch.where(in_span & (step == self.num_levels + 1), self.sid_end_token_id, forced)
        # Dead end: a code step with no valid continuation, or a "sid" span that does not start with the marker.
        dead = (is_code & ~found) | (~opened & (forced != self.sid_start_token_id))
        forced = torch.where(dead, self.eos_token_id, forced)
        return forced, dead, is_code & ~dead

    def _call_general(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Every row on its own: free text, inside a SID, or forced; fully vectorised on the scores' device."""
        device = scores.device
        t = self._tensors(device, scores.shape[-1])
        input_ids = input_ids.to(device)
        start_pos, step, in_span, opened = self._span_states(input_ids)
        level = (step - 1).clamp(min=0, max=self.num_levels - 1)  # (rows,) level of the next code
        allowed_codes, found = self._allowed_in_span(input_ids, t, start_pos, level)
        forced, dead, is_code = self._forced_tokens(step, in_span, found & opened, opened, input_ids.shape[1])
        neg_inf = float("-inf")
        # 1. Free-text rows keep every non-SID token; all other rows start from -inf. (One pass over the vocab.)
        if self.mode == "sid":
            out = torch.full_like(scores, neg_inf)  # (rows, vocab)
        else:
            is_free = ~in_span & (forced < 0)
            out = scores.masked_fill(~(is_free[:, None] & t["free_allowed"][None, :]), neg_inf)
        # 2. Code rows: copy the scores of the allowed codes of their level. Slots beyond a level's codebook point at
        #    <|sid_end|>, which no code row allows; non-code rows only write -inf over SID tokens, already -inf.
        candidates = t["code_token"][level]  # (rows, max_codebook) token ids
        values = scores.gather(1, candidates).masked_fill(~(allowed_codes & is_code[:, None]), neg_inf)
        out.scatter_(1, candidates, values)  # `out` is a new tensor; `scores` is never written
        # 3. Forced rows: their single token gets 0, or DEAD_END_SCORE for a dead end.
        forced_value = torch.where(
            dead,
            torch.tensor(DEAD_END_SCORE, dtype=scores.dtype, device=device),
            torch.zeros((), dtype=scores.dtype, device=device),
        )
        forced_col = forced.clamp(min=0)[:, None]  # (rows, 1)
        current = out.gather(1, forced_col)
        out.scatter_(1, forced_col, torch.where(forced[:, None] >= 0, forced_value[:, None], current))
        return out

    # -- "sid" mode: every row at the same step, prefixes looked up on the host ---------------------------------
    def _call_sid(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`"sid"` mode: every row is at the same step, so the level is a Python int and only that level's columns
        are touched. Same result as the general path (tested).

        The prefix lookup runs in numpy on the few tokens written so far (`(rows, positions)` ids, copied to the
        host when generating on an accelerator): a generate step of a small model takes a few milliseconds, and a
        dozen small torch ops would cost a sizeable part of it."""
        cur_len = input_ids.shape[1]
        prompt_length, levels = self.prompt_length, self.levels_to_generate
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
            allowed, ok = self.index.root_allowed, opened  # (1, size), broadcast below
        else:  # the start marker check is part of the key (see TokenPrefixLookup)
            allowed, ok = self._lookup.allowed(span[:, : first_code + level], level)
        dead = None if ok is None or ok.all() else ~ok  # (rows,) rows with no valid continuation
        if dead is not None:
            allowed = allowed & ~dead[:, None]  # (rows, size)
        out = self._copy_allowed(scores, level, allowed)
        if dead is not None:
            self._mark_dead_ends(out, dead)
        return out

    def _copy_allowed(self, scores: torch.Tensor, level: int, allowed: np.ndarray) -> torch.Tensor:
        """A new `-inf` tensor holding `scores` at the allowed `(rows or 1, codebook)` codes of `level`.

        CPU scores are written in numpy through views; others in torch on their device, with only the
        `(rows, codebook)` mask sent there (see `host_mask_max_elements`)."""
        neg_inf = float("-inf")
        columns = self.index.level_columns[level]
        out = torch.full_like(scores, neg_inf, memory_format=torch.contiguous_format)  # (rows, vocab), new
        if self._on_host(scores):
            target, source = out.numpy(), scores.detach().numpy()
            if isinstance(columns, slice):  # the level's tokens are consecutive columns: one masked copy
                np.copyto(target[:, columns], source[:, columns], where=allowed)
            else:  # scattered token ids: the allowed (row, token) entries, by flat index
                rows = scores.shape[0]
                allowed_rows, allowed_slots = np.nonzero(np.broadcast_to(allowed, (rows, allowed.shape[1])))
                flat = allowed_rows * scores.shape[1] + self.index.code_token[level].take(
                    allowed_slots
                )  # (k,)
                target.reshape(-1)[flat] = source.reshape(-1).take(flat)
            return out
        mask = torch.from_numpy(~allowed).to(out.device)
        if isinstance(columns, slice):
            start, width = columns.start, columns.stop - columns.start
            region = out.narrow(1, start, width)  # a view: filled in place
            region.copy_(scores.narrow(1, start, width))
            region.masked_fill_(mask, neg_inf)
        else:
            cols = self._level_ids(out.device, level)
            out.index_copy_(1, cols, scores.index_select(1, cols).masked_fill_(mask, neg_inf))
        return out

    def _level_ids(self, device: torch.device, level: int) -> torch.Tensor:
        """Token ids of one level's codes on `device` (cached): the scattered columns of the "sid" path."""
        key = (str(device), level)
        if key not in self._level_ids_cache:
            ids = self.index.code_token[level, : self.codebook_sizes[level]]
            self._level_ids_cache[key] = torch.as_tensor(ids, device=device)
        return self._level_ids_cache[key]

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


# --------------------------------------------------------------------------------------------------------------
# A collaborative prior fused into constrained decoding
# --------------------------------------------------------------------------------------------------------------
_PRIOR_SOURCE = "TransitionPriorLogitsProcessor"


class TransitionPriorLogitsProcessor(LogitsProcessor):
    """Adds a per-user prior over catalogue items to the SID code scores, level by level (shallow fusion).

    Each input of the batch comes with prior mass over the catalogue's items (e.g.
    [`~hf_semtok.TransitionPrior.batch_scores`] of its history). At SID level `l`, for a row whose codes so far are
    the prefix `p`, each code `c` of the level gets

        `weight * log(eps + m(p + c) / m(p))`

    added to its score, where `m(q)` is the prior mass of the items whose SID starts with `q` (normalised per row,
    so the term is the prior's probability of `c` given `p`; 0 when `m(p)` is 0). Over the `L` levels the terms
    sum to about `weight * log(prior probability of the item)`, so beam search ranks items by
    `log p_LM(item) + weight * log p_prior(item)` (shallow fusion, Gulcehre et al. 2015, arXiv 1503.03535), for any
    causal LM. `eps` keeps items the prior never saw reachable: each level costs them at most
    `weight * log(eps)`.

    Put it after a [`SIDLogitsProcessor`] in the `logits_processor` list: that one masks invalid codes to `-inf`
    (which stay `-inf` here), this one only moves the allowed ones. Forced tokens (the start marker, the end
    marker, EOS) and rows whose written tokens are not SID codes of the right levels are left alone. Positions are
    read from `input_ids` after `prompt_length` (the padded prompt length, left padding included), like
    `SIDLogitsProcessor`'s `"sid"` mode: `layout="bare"` (the first generated token is the level-0 code, also what
    `recommend()` uses after putting the marked layout's `<|sid_start|>` into the prompt) or `layout="marked"`
    (`<|sid_start|>` first). The processor keeps no state between calls and returns a new tensor.

    Rows: `generate()` expands each input to `num_beams` (or `num_return_sequences`) consecutive rows; the
    processor maps row `r` to input `r // (rows / batch)`, so it needs only the batch's priors.

    Cost: per step, two `searchsorted` calls over the `(n_items,)` sorted prefix keys for `(rows, codebook)` keys and
    one gather of the inputs' cumulative masses (`(batch, n_items + 1)` float64, made once at construction).

    Args:
        prior_mass: `(batch, n_items)` non-negative prior mass of each catalogue item (column `j` = row `j` of
            `sid_codes`) for each input of the batch.
        sid_codes: `(n_items, L)` integer codes of the catalogue.
        sid_token_ids: Per level, the token id of each code.
        prompt_length: Padded prompt length (`input_ids.shape[1]` of the batch given to `generate()`).
        weight: Weight of the prior's log-probability (0: the processor changes nothing).
        eps: Added to each conditional probability before the log (> 0).
        layout: `"bare"` or `"marked"`, see above.
        sid_start_token_id: `<|sid_start|>` (needed with `layout="marked"`).

    Raises:
        TypeError, ValueError: Inconsistent arguments (the message names the field).
    """

    def __init__(
        self,
        prior_mass: np.ndarray | torch.Tensor,
        sid_codes: np.ndarray | torch.Tensor | Sequence[Sequence[int]],
        sid_token_ids: Sequence[Sequence[int]],
        prompt_length: int,
        weight: float = 1.0,
        eps: float = 1e-3,
        layout: Literal["marked", "bare"] = "bare",
        sid_start_token_id: int | None = None,
    ) -> None:
        self.index = SIDPrefixIndex(sid_codes, sid_token_ids, source=_PRIOR_SOURCE)
        codes = np.asarray(
            sid_codes.detach().cpu().numpy() if isinstance(sid_codes, torch.Tensor) else sid_codes,
            dtype=np.int64,
        )
        mass = np.asarray(
            prior_mass.detach().cpu().numpy() if isinstance(prior_mass, torch.Tensor) else prior_mass,
            dtype=np.float64,
        )
        if mass.ndim != 2 or mass.shape[1] != codes.shape[0] or mass.shape[0] == 0:
            raise ValueError(
                f"{_PRIOR_SOURCE}: prior_mass must be (batch, n_items) = (batch, {codes.shape[0]}); got "
                f"{mass.shape}. Give one row per input of the batch, columns in sid_codes' item order."
            )
        if not np.all(np.isfinite(mass)) or mass.min() < 0:
            raise ValueError(f"{_PRIOR_SOURCE}: prior_mass must be finite and >= 0.")
        for name, value, low in (("weight", weight, None), ("eps", eps, 0.0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise TypeError(f"{_PRIOR_SOURCE}: {name} must be a finite number; got {value!r}.")
            if low is not None and value <= low:
                raise ValueError(f"{_PRIOR_SOURCE}: {name} must be > {low}; got {value}.")
        if (
            isinstance(prompt_length, bool)
            or not isinstance(prompt_length, numbers.Integral)
            or prompt_length < 0
        ):
            raise ValueError(f"{_PRIOR_SOURCE}: prompt_length must be an int >= 0; got {prompt_length!r}.")
        if layout not in SID_LAYOUTS:
            raise ValueError(f"{_PRIOR_SOURCE}: layout must be one of {list(SID_LAYOUTS)}; got {layout!r}.")
        if layout == "marked":
            if sid_start_token_id is None:
                raise ValueError(f"{_PRIOR_SOURCE}: layout='marked' needs sid_start_token_id.")
            sid_start_token_id = _check_token_id("sid_start_token_id", sid_start_token_id)
        sizes = self.index.codebook_sizes
        if math.prod(sizes) >= 2**62:
            raise ValueError(
                f"{_PRIOR_SOURCE}: codebook sizes {sizes} are too large to key whole SIDs in int64."
            )
        self.prompt_length = int(prompt_length)
        self.weight, self.eps = float(weight), float(eps)
        self.layout, self.sid_start_token_id = layout, sid_start_token_id
        self.num_levels = self.index.num_levels
        # Items in SID order: the items under any prefix are one run, and their mass a difference of cumulative sums.
        order = np.lexsort(codes.T[::-1])
        sorted_codes = codes[order]
        # (L + 1) sorted key arrays: keys of each item's first l codes (l = 0: all zeros)
        self._prefix_keys = [
            mixed_radix_keys(sorted_codes[:, :lv], sizes[:lv]) for lv in range(self.num_levels + 1)
        ]
        self._cumulative = np.zeros((mass.shape[0], mass.shape[1] + 1))  # (batch, n_items + 1)
        np.cumsum(mass[:, order], axis=1, out=self._cumulative[:, 1:])

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        prior: TransitionPrior,
        histories: Sequence[Sequence[str]],
        prompt_length: int,
        weight: float = 1.0,
        eps: float = 1e-3,
        layout: Literal["marked", "bare"] | None = None,
    ) -> TransitionPriorLogitsProcessor:
        """The processor for a batch of histories, with the prior's scores mapped onto the tokenizer's items.

        Args:
            tokenizer: A `SemanticIDTokenizer` (its `item_ids`, `sid_codes`, `sid_token_ids`).
            prior: A fitted [`~hf_semtok.TransitionPrior`]. Tokenizer items it does not know get no mass, and history
                items it does not know add none.
            histories: One history per input of the batch, item ids oldest first.
            prompt_length: Padded prompt length of the batch.
            weight: Weight of the prior.
            eps: See the class docstring.
            layout: Default: the tokenizer's `sid_layout`.

        Returns:
            A `TransitionPriorLogitsProcessor`.
        """
        if not isinstance(prior, TransitionPrior):
            raise TypeError(f"{_PRIOR_SOURCE}: prior must be a TransitionPrior; got {type(prior).__name__}.")
        known = [[item for item in history if item in prior.index] for history in histories]
        scores = prior.batch_scores(known)  # (batch, prior items)
        columns = np.asarray([prior.index.get(str(item), -1) for item in tokenizer.item_ids], dtype=np.int64)
        if columns.size and columns.max() < 0:
            raise ValueError(
                f"{_PRIOR_SOURCE}: the prior knows none of the tokenizer's {columns.size} items (e.g. "
                f"{tokenizer.item_ids[0]!r}); fit it on this catalogue's histories (TransitionPrior.fit(histories, "
                "item_ids=tokenizer.item_ids))."
            )
        mass = np.where(columns >= 0, scores[:, np.maximum(columns, 0)], 0.0)  # (batch, tokenizer items)
        return cls(
            mass,
            tokenizer.sid_codes,
            tokenizer.sid_token_ids,
            prompt_length,
            weight=weight,
            eps=eps,
            layout=layout or tokenizer.sid_layout,
            sid_start_token_id=tokenizer.sid_start_token_id,
        )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Add the prior's term to the scores of the current level's codes.

        Args:
            input_ids: `(rows, cur_len)` tokens so far (rows = batch x beams / return sequences).
            scores: `(rows, vocab)` next-token scores.

        Returns:
            A new `(rows, vocab)` tensor (`scores` itself, unmodified, at steps with no code to score or weight 0).
        """
        rows, cur_len = input_ids.shape
        batch = self._cumulative.shape[0]
        if scores.shape[0] != rows or rows % batch:
            raise ValueError(
                f"{_PRIOR_SOURCE}: {rows} rows of input_ids and {scores.shape[0]} of scores for a batch of {batch}; "
                "build the processor with one prior row per input given to generate()."
            )
        if cur_len < self.prompt_length:
            raise ValueError(
                f"{_PRIOR_SOURCE}: input_ids has {cur_len} tokens, fewer than prompt_length={self.prompt_length}."
            )
        first_code = self.prompt_length + (1 if self.layout == "marked" else 0)
        level = cur_len - first_code  # codes written so far = the level of the next one
        if self.weight == 0.0 or not 0 <= level < self.num_levels:
            return scores
        ids = input_ids.numpy() if input_ids.device.type == "cpu" else input_ids.cpu().numpy()
        written_levels, written_codes = self.index.token_codes(ids[:, first_code:])  # (rows, level)
        ok = (written_levels == np.arange(level)).all(axis=1)  # (rows,) codes of the right levels
        if self.layout == "marked":
            ok &= ids[:, self.prompt_length] == self.sid_start_token_id
        size = self.index.codebook_sizes[level]
        prefix = mixed_radix_keys(np.maximum(written_codes, 0), self.index.codebook_sizes[:level])  # (rows,)
        children = prefix[:, None] * size + np.arange(size)  # (rows, size) keys of the prefix + each code
        keys = self._prefix_keys[level + 1]
        low, high = np.searchsorted(keys, children, "left"), np.searchsorted(keys, children, "right")
        user = (np.arange(rows) // (rows // batch))[:, None]  # (rows, 1) input of each row
        mass = np.maximum(self._cumulative[user, high] - self._cumulative[user, low], 0.0)  # (rows, size)
        total = mass.sum(axis=1, keepdims=True)
        conditional = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
        bonus = self.weight * np.log(self.eps + conditional)  # (rows, size)
        bonus[~ok] = 0.0
        columns = torch.as_tensor(self.index.code_token[level, :size], device=scores.device)
        out = scores.clone()
        out[:, columns] += torch.as_tensor(bonus, dtype=scores.dtype, device=scores.device)
        return out
