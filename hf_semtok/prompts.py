"""The text formats shared by training and inference.

A training example and a recommendation prompt must be tokenised the same way, so both are built here:

- `history_prompt(tokenizer, history)`: the text the model reads before it writes the next item. It ends
  right before the next SID, with no trailing space, so the first generated token is the SID's first token.
- `target_text(tokenizer, item_id)`: what the model should write: the item's SID string then the EOS token.

SID layout. How an item is written is a saved property of the tokenizer (`sid_layout`, a key of
`tokenizer_config.json`, read by `get_sid_layout` and set by `set_sid_layout`):

- `"marked"` (the default, and what a tokenizer saved without the key gets): `<|sid_start|>` + the `L` code
  tokens + `<|sid_end|>`. LLM fine-tuning uses it: the markers delimit SIDs inside text.
- `"bare"`: the `L` code tokens only. A generator trained from scratch reads nothing but SIDs, and the
  level-specific code tokens already mark every boundary, so the two markers would be a third of its tokens,
  both fully predictable. `hf_semtok.generation.recommend` then generates exactly `L` tokens per item.

The layout is stored beside the chat template rather than derived from it, because it decides more than the
prompt: how `recommend()` constrains and parses what the model writes, and how training sequences are cut.

Without a chat template the prompt is `"User history: <sid><sid>...\\nNext item:"` (each SID optionally
followed by its title); with one (and `use_chat_template` not False) the same content is the user message and
the template's generation prompt follows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hf_semtok.constants import SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_TEMPLATE

__all__ = [
    "history_prompt",
    "target_text",
    "HISTORY_PREFIX",
    "NEXT_ITEM_SUFFIX",
    "SID_LAYOUTS",
    "get_sid_layout",
    "set_sid_layout",
    "items_to_layout_text",
    "encode_items_in_layout",
    "tokens_per_item",
]

HISTORY_PREFIX = "User history:"
NEXT_ITEM_SUFFIX = "\nNext item:"
_TITLE_SEPARATOR = "; "

#: The ways an item can be written (see the module docstring); the first is the default.
SID_LAYOUTS = ("marked", "bare")
#: The `tokenizer_config.json` key that holds the layout.
SID_LAYOUT_KEY = "sid_layout"


def _check_layout(layout: Any, source: str) -> str:
    if layout not in SID_LAYOUTS:
        raise ValueError(f"{source}: sid_layout must be one of {list(SID_LAYOUTS)}, got {layout!r}.")
    return layout


def get_sid_layout(tokenizer: Any) -> str:
    """The tokenizer's SID layout: `"marked"` (markers around every SID) or `"bare"` (code tokens only).

    Read from the tokenizer's init kwargs, i.e. the `sid_layout` key of its `tokenizer_config.json`; a tokenizer
    saved without it is `"marked"`.

    Raises:
        ValueError: if the saved value is not a known layout.
    """
    kwargs = getattr(tokenizer, "init_kwargs", None) or {}
    return _check_layout(
        kwargs.get(SID_LAYOUT_KEY, SID_LAYOUTS[0]), "the sid_layout key of tokenizer_config.json"
    )


def set_sid_layout(tokenizer: Any, layout: str) -> Any:
    """Set the tokenizer's SID layout (saved with it in `tokenizer_config.json`); returns the tokenizer.

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        layout: `"marked"` or `"bare"`.
    """
    tokenizer.init_kwargs[SID_LAYOUT_KEY] = _check_layout(layout, "set_sid_layout")
    return tokenizer


def tokens_per_item(tokenizer: Any) -> int:
    """Tokens one item takes in the tokenizer's layout: `L + 2` marked, `L` bare."""
    return tokenizer.num_levels + (2 if get_sid_layout(tokenizer) == "marked" else 0)


def items_to_layout_text(tokenizer: Any, item_ids: Sequence[str]) -> str:
    """The SID token string of items in the tokenizer's layout (no separator between items)."""
    if get_sid_layout(tokenizer) == "marked":
        return tokenizer.items_to_text(list(item_ids))
    return "".join(
        SID_TOKEN_TEMPLATE.format(level=level, code=code)
        for item_id in item_ids
        for level, code in enumerate(tokenizer.item_to_sid(item_id))
    )


def encode_items_in_layout(tokenizer: Any, item_ids: Sequence[str]) -> list[int]:
    """Token ids of `items_to_layout_text(tokenizer, item_ids)`: `tokens_per_item` ids per item."""
    if get_sid_layout(tokenizer) == "marked":
        return list(tokenizer.encode_items(list(item_ids)))
    codes = [tokenizer.item_to_sid(item_id) for item_id in item_ids]
    if not codes:
        return []
    return [int(t) for t in tokenizer.codes_to_token_ids(codes).reshape(-1)]  # (n_items * L,)


def _history_body(
    tokenizer: Any, history: Sequence[str], titles: Mapping[str, str] | None, max_history: int | None
) -> str:
    if isinstance(history, str):
        raise ValueError("history must be a sequence of item ids, not one string; wrap it in a list.")
    if max_history is not None:
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {max_history}.")
        history = list(history)[-max_history:]
    parts = []
    for item_id in history:
        sid = items_to_layout_text(tokenizer, [item_id])
        title = titles.get(item_id) if titles else None
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
        titles: Optional item id -> title; titles are written after each SID.
        max_history: Keep only the most recent `max_history` items (TIGER uses 20); `None` keeps all.
        use_chat_template: `None` uses the tokenizer's chat template when it has one; `False` never does;
            `True` requires one.

    Returns:
        The prompt text, items written in the tokenizer's SID layout (`get_sid_layout`). It ends right before the
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
        return items_to_layout_text(tokenizer, [item_id]) + eos
    num_levels = tokenizer.num_levels
    if not 1 <= prefix_levels <= num_levels:
        raise ValueError(f"prefix_levels must be in [1, {num_levels}], got {prefix_levels}.")

    codes = tokenizer.item_to_sid(item_id)[:prefix_levels]
    sid = "".join(SID_TOKEN_TEMPLATE.format(level=lvl, code=c) for lvl, c in enumerate(codes))
    if get_sid_layout(tokenizer) == "bare":
        return sid + eos
    return SID_START_TOKEN + sid + SID_END_TOKEN + eos
