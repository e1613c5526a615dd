"""The text formats shared by training and inference.

A training example and a recommendation prompt must be tokenised the same way, so both are built here:

- `history_prompt(tokenizer, history)`: the text the model reads before it writes the next item. It ends
  right before the next SID, with no trailing space, so the first generated token is the SID's first token.
- `target_text(tokenizer, item_id)`: what the model should write: the item's SID string then the EOS token.

Items are written in the tokenizer's SID layout (`SemanticIDTokenizer.sid_layout`: `"marked"` or `"bare"`), the
same layout `recommend()` constrains and parses.

Item text (titles, categories) is written through `clean_item_text`: it cannot carry SID tokens, special tokens
or line breaks, so a title can neither add an item to the history nor start a second instruction.

Without a chat template the prompt is `"User history: <sid><sid>...\\nNext item:"` (each SID optionally
followed by its title); with one (and `use_chat_template` not False) the same content is the user message and
the template's generation prompt follows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hf_semtok.constants import SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_PATTERN, SID_TOKEN_TEMPLATE

__all__ = [
    "history_prompt",
    "target_text",
    "check_titles",
    "clean_item_text",
    "HISTORY_PREFIX",
    "NEXT_ITEM_SUFFIX",
]

HISTORY_PREFIX = "User history:"
NEXT_ITEM_SUFFIX = "\nNext item:"
_TITLE_SEPARATOR = "; "
_SID_TOKEN_RE = re.compile(SID_TOKEN_PATTERN)


def clean_item_text(tokenizer: Any, text: Any, what: str = "item text") -> str:
    """`text` made safe to write beside SIDs in a prompt or a training document.

    Any SID token (`<|sid_3_17|>`, whatever its level or code), the SID markers and the tokenizer's special tokens
    (e.g. a chat template's `<|im_start|>`) are replaced by a space, repeatedly (so that removing one cannot
    join two halves into another), and all whitespace, line breaks included, collapses to single spaces. A
    title therefore cannot add an item to a history, end an item early, or start a new line such as
    `"Next item:"` that reads as a second instruction.

    Args:
        tokenizer: The tokenizer whose special tokens are removed.
        text: The title or other item text. `None` gives `""`.
        what: How to name the text in an error.

    Returns:
        The cleaned text (possibly empty).

    Raises:
        TypeError: if `text` is neither a string nor None.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string; got {type(text).__name__} {text!r}.")
    specials = [
        t for t in {SID_START_TOKEN, SID_END_TOKEN, *getattr(tokenizer, "all_special_tokens", [])} if t
    ]
    while True:
        cleaned = _SID_TOKEN_RE.sub(" ", text)
        for token in specials:
            cleaned = cleaned.replace(token, " ")
        if cleaned == text:
            break
        text = cleaned
    return " ".join(text.split())


def check_titles(titles: Any, where: str = "history_prompt()") -> None:
    """`titles` must be None or a mapping item id -> title, else a TypeError saying so (a list of titles has no
    item ids to look them up by)."""
    if titles is not None and not isinstance(titles, Mapping):
        raise TypeError(
            f"{where}: titles must be a mapping item id -> title (e.g. catalogue.titles) or None; got "
            f"{type(titles).__name__} {str(titles)[:40]!r}. For a list in item order, pass "
            "dict(zip(item_ids, titles))."
        )


def _history_body(
    tokenizer: Any, history: Sequence[str], titles: Mapping[str, str] | None, max_history: int | None
) -> str:
    if isinstance(history, str):
        raise ValueError("history must be a sequence of item ids, not one string; wrap it in a list.")
    if hasattr(history, "tolist") and not isinstance(history, str):  # a numpy array or pandas Series of ids
        history = history.tolist()
    if isinstance(history, (set, frozenset, Mapping)) or not isinstance(history, Sequence):
        raise TypeError(
            f"history must be a list of item ids, oldest first; got {type(history).__name__} (pass [] for none)."
        )
    check_titles(titles)
    if max_history is not None:
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {max_history}.")
        history = list(history)[-max_history:]
    parts = []
    for item_id in history:
        sid = tokenizer.items_to_text([item_id])
        title = clean_item_text(tokenizer, titles.get(item_id), f"the title of {item_id!r}") if titles else ""
        parts.append(f"{sid} {title}{_TITLE_SEPARATOR}" if title else sid)
    return HISTORY_PREFIX + " " + "".join(parts).rstrip()


def history_prompt(
    tokenizer: Any,
    history: Sequence[str],
    titles: Mapping[str, str] | None = None,
    max_history: int | None = 20,
    use_chat_template: bool | None = None,
) -> str:
    """Build the prompt that precedes the next item's SID.

    Args:
        tokenizer: A `SemanticIDTokenizer` (anything with `items_to_text` and, optionally, a chat template).
        history: The user's item ids, oldest first.
        titles: Optional item id -> title; titles are written after each SID, cleaned by `clean_item_text`.
        max_history: Keep only the most recent `max_history` items (TIGER uses 20); `None` keeps all.
        use_chat_template: `None` uses the tokenizer's chat template when it has one; `False` never does;
            `True` requires one.

    Returns:
        The prompt text, items written in the tokenizer's SID layout (`tokenizer.sid_layout`). It ends right before the
        next SID (`<|sid_start|>`, or its first code token in the bare layout) with no trailing space.
    """
    body = _history_body(tokenizer, history, titles, max_history)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template and not has_template:
        raise ValueError(
            "use_chat_template=True but the tokenizer has no chat template; set tokenizer.chat_template or "
            "pass use_chat_template=None/False."
        )
    if has_template and use_chat_template is not False:
        messages = [{"role": "user", "content": body + NEXT_ITEM_SUFFIX}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text.rstrip(" ")
    return body + NEXT_ITEM_SUFFIX


def target_text(tokenizer: Any, item_id: str, prefix_levels: int | None = None) -> str:
    """The completion for `item_id`: its SID string in the tokenizer's layout followed by the EOS token.

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        item_id: The next item.
        prefix_levels: If given, only the first `prefix_levels` codes are written (then `<|sid_end|>` in the
            marked layout): a coarse target for progressive-prefix training.

    Returns:
        The target text.
    """
    eos = tokenizer.eos_token or ""
    if prefix_levels is None:
        return tokenizer.items_to_text([item_id]) + eos
    num_levels = tokenizer.num_levels
    if not 1 <= prefix_levels <= num_levels:
        raise ValueError(f"prefix_levels must be in [1, {num_levels}], got {prefix_levels}.")

    codes = tokenizer.item_to_sid(item_id)[:prefix_levels]
    sid = "".join(SID_TOKEN_TEMPLATE.format(level=lvl, code=c) for lvl, c in enumerate(codes))
    if tokenizer.sid_layout == "bare":
        return sid + eos
    return SID_START_TOKEN + sid + SID_END_TOKEN + eos
