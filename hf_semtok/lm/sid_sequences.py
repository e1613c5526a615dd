"""The input side of a generator trained from scratch: its tokenizer and its training sequences.

- `build_sid_tokenizer`: a `SemanticIDTokenizer` on a tiny byte-level BPE base (a model trained from scratch needs
  almost no text vocabulary), with `sid_only_chat_template`, so that a history prompt is the bare concatenation
  of the items' SIDs and one training sequence trains every prefix of a history at once.
- `history_sequences`: training histories cut into windows (`hf_semtok.data.history_windows`) of token ids with
  next-item labels; `order_by_history_length` for evaluation batches with little padding.

`hf_semtok.lm.generator` trains the model on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hf_semtok.data.catalogue import history_windows
from hf_semtok.prompts import HISTORY_PREFIX, NEXT_ITEM_SUFFIX, history_prompt
from hf_semtok.sids.assignment import sid_table_from_codes
from hf_semtok.small_models import train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

__all__ = [
    "build_sid_tokenizer",
    "check_prompt_is_sid_sequence",
    "history_sequences",
    "order_by_history_length",
    "sid_only_chat_template",
]


def sid_only_chat_template() -> str:
    """A chat template that renders a history prompt as the bare concatenation of the items' SIDs.

    `hf_semtok.prompts.history_prompt` writes `"User history: <sids>\\nNext item:"`, or, when the tokenizer has a
    chat template, passes that text through it. A TIGER-style generator trained from scratch reads nothing but
    SIDs, so this template drops the two text markers: the prompt for `[i_1, ..., i_k]` is then exactly
    `SID(i_1)...SID(i_k)`, and one training sequence `SID(i_1)...SID(i_n)` trains every prefix at once.
    The template is saved with the tokenizer, so `recommend()` on the reloaded tokenizer builds the same prompts.

    Returns:
        The Jinja template string.
    """

    return (
        "{%- for message in messages -%}{{ message['content'] | replace("
        + json.dumps(HISTORY_PREFIX + " ")
        + ", '') | replace("
        + json.dumps(NEXT_ITEM_SUFFIX)
        + ", '') }}{%- endfor -%}"
    )


def build_sid_tokenizer(
    sid_table: Any,
    base_texts: Sequence[str] | None = None,
    vocab_size: int = 300,
    sid_only_prompt: bool = True,
    sid_layout: str = "bare",
) -> Any:
    """A `SemanticIDTokenizer` on a tiny byte-level BPE base tokenizer, for a generator trained from scratch.

    Args:
        sid_table: A `SIDTable` or `{item_id: codes}`.
        base_texts: Text the base tokenizer is trained on (default: a few words; only SID tokens matter here).
        vocab_size: Base vocabulary size (the 256 byte symbols and 4 special tokens are always in).
        sid_only_prompt: Give the tokenizer `sid_only_chat_template()`, so history prompts are bare SID sequences.
        sid_layout: `"bare"` (an item is its code tokens) or `"marked"` (with `<|sid_start|>`/`<|sid_end|>`);
            saved in `tokenizer_config.json` (`SemanticIDTokenizer.sid_layout`).

    Returns:
        The tokenizer.
    """

    if isinstance(sid_table, Mapping):
        sid_table = sid_table_from_codes(sid_table, list(sid_table))
    texts = list(base_texts) if base_texts else ["the user bought these items next"]
    base = train_base_tokenizer(texts, vocab_size=vocab_size, kind="byte_bpe")
    tokenizer = SemanticIDTokenizer.from_base(base, sid_table=sid_table, sid_layout=sid_layout)
    if sid_only_prompt:
        tokenizer.chat_template = sid_only_chat_template()
    return tokenizer


def check_prompt_is_sid_sequence(tokenizer: Any, history: Sequence[str]) -> None:
    """The efficient training layout needs the inference prompt to be the plain concatenation of the items' SIDs."""

    prompt = history_prompt(tokenizer, list(history), max_history=None)
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if list(prompt_ids) != tokenizer.encode_items(list(history)):
        raise ValueError(
            f"The tokenizer's history prompt ({prompt[:60]!r}...) is not the bare concatenation of the items' "
            "SIDs, so training on whole SID sequences would not match inference. Build the tokenizer with "
            "build_sid_tokenizer(..., sid_only_prompt=True), or train on the SFT corpus of hf_semtok.lm.corpus."
        )


def history_sequences(
    tokenizer: Any,
    train_histories: Mapping[str, Sequence[str]],
    max_history: int = 20,
    window_stride: int = 10,
) -> list[dict[str, list[int]]]:
    """Token sequences with next-item labels on every SID position (see the module docstring for the windows).

    Args:
        tokenizer: The `SemanticIDTokenizer`.
        train_histories: User -> training items (validation and test targets removed).
        max_history: Most items of context a target sees (a window holds `max_history + 1` items).
        window_stride: Items between two window starts.

    Returns:
        One dict per window: `input_ids` and `labels` (`-100` on context-only items and the first token). Items
        are written in the tokenizer's SID layout (`tokenizer.tokens_per_item` tokens each).
    """
    per_item = tokenizer.tokens_per_item  # L + 2 marked (<|sid_start|>, codes, <|sid_end|>), L bare
    out = []
    for history in train_histories.values():
        history = list(history)
        if not history:
            continue
        ids = tokenizer.encode_items(history)  # (len(history) * per_item,)
        for start, first_new, stop in history_windows(len(history), max_history + 1, window_stride):
            window = list(ids[start * per_item : stop * per_item])
            n_masked = max(1, (first_new - start) * per_item)  # items an earlier window predicted; token 0
            out.append({"input_ids": window, "labels": [-100] * n_masked + window[n_masked:]})
    return out


def order_by_history_length(examples: list[tuple[Any, str]], max_history: int) -> list[tuple[Any, str]]:
    """Order `(history, target)` pairs by prompt length: batches of similar length need far less padding.

    Beam search copies every padded position of the KV cache at each step, so this halves evaluation time;
    the metrics are means over users and do not depend on the order.
    """
    return sorted(examples, key=lambda ex: min(len(ex[0]), max_history))
