"""Training corpora that teach a causal LM to speak Semantic IDs.

Two kinds of data, both built from **training** histories only (the first output of
`hf_semtok.data.leave_one_out_split`), so validation and test targets never become labels:

- Continued pretraining (CPT) documents, where SIDs and text meet (PLUM, arXiv 2510.07784; LC-Rec, arXiv
  2311.09049): item -> SID and SID -> title/category alignment sentences, user histories written as SIDs
  interleaved with titles, and plain SID sequences. They are tokenised, joined with EOS and packed into
  fixed-length blocks; every token is a label.
- Supervised fine-tuning (SFT) examples "history -> next item's SID": for every position `t >= 1` of a training
  history, the prompt is `hf_semtok.prompts.history_prompt(history[t - max_history : t])` (a sliding window of at
  most `max_history` items) and the completion is `hf_semtok.prompts.target_text(history[t])`. Only the completion
  is labelled (`-100` on prompt tokens). With `prefix_prob > 0` some targets are cut to a random SID prefix
  (progressive prefix targets), so the model can also retrieve at a coarse level.

Both kinds cut histories with `hf_semtok.data.history_windows`, the library's one windowing rule. Tokenised rows
are plain lists of dicts (the `Trainer` takes any sized, indexable dataset) and `lm_collator(tokenizer)`, the stock
`DataCollatorForSeq2Seq` with `label_pad_token_id=-100`, pads them. Everything is deterministic under `seed`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import DataCollatorForSeq2Seq

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.catalogue import history_windows
from hf_semtok.prompts import clean_item_text, history_prompt, target_text

__all__ = [
    "CPT_DOCUMENT_KINDS",
    "check_histories",
    "sft_examples",
    "cpt_documents",
    "tokenize_sft",
    "tokenize_cpt",
    "lm_collator",
]

logger = logging.getLogger(__name__)

#: The CPT document kinds `cpt_documents` can write.
CPT_DOCUMENT_KINDS = ("item_to_sid", "sid_to_item", "histories", "sequences")
IGNORE_INDEX = -100


def check_histories(tokenizer: Any, histories: Mapping[str, Sequence[str]]) -> None:
    """Raise before training when histories are empty or name items the tokenizer does not know.

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        histories: User id -> item ids.

    Raises:
        ValueError: No history has an item, or some items have no SID.
    """
    if not hasattr(tokenizer, "item_to_sid") or not getattr(tokenizer, "num_items", 0):
        raise ValueError(
            "The tokenizer has no Semantic IDs; build it with SemanticIDTokenizer.from_base(base, sid_table=...)."
        )
    if not histories or not any(len(h) for h in histories.values()):
        raise ValueError(
            "The histories are empty; pass user -> item lists (the training split of leave_one_out_split)."
        )
    known = set(tokenizer.item_ids)
    unknown = sorted({i for h in histories.values() for i in h if i not in known})
    if unknown:
        raise ValueError(
            f"{len(unknown)} items in the histories have no SID in the tokenizer, e.g. {unknown[:5]}; build the "
            "tokenizer from a SID table that covers the catalogue (or add them with add_items_to_table)."
        )


def sft_examples(
    tokenizer: Any,
    train_histories: Mapping[str, Sequence[str]],
    titles: Mapping[str, str] | None = None,
    max_history: int = 20,
    min_history: int = 1,
    max_examples_per_user: int | None = None,
    prefix_prob: float = 0.0,
    use_chat_template: bool | None = None,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, str]]:
    """ "History -> next item" examples from training histories (sliding windows of at most `max_history` items).

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        train_histories: User id -> training items (validation and test targets removed).
        titles: Optional item id -> title, written after each SID in the prompt.
        max_history: Items of context per example.
        min_history: Smallest number of context items (1: every position after the first is a target).
        max_examples_per_user: Keep only the latest this many targets of each user (`None`: all).
        prefix_prob: Probability that a target is cut to a random SID prefix of 1..L-1 levels.
        use_chat_template: Passed to `history_prompt`.
        seed: Seed of the prefix truncation.

    Returns:
        A list of `{"prompt", "completion", "user", "target"}` dicts, users in sorted order.
    """
    check_histories(tokenizer, train_histories)
    if not 0.0 <= prefix_prob <= 1.0:
        raise ValueError(f"prefix_prob must lie in [0, 1], got {prefix_prob}.")
    if min_history < 1 or max_history < min_history:
        raise ValueError(
            f"Need 1 <= min_history <= max_history; got min_history={min_history}, max_history={max_history}."
        )
    rng = random.Random(seed)
    num_levels = tokenizer.num_levels
    out = []
    for user in sorted(train_histories):
        history = list(train_histories[user])
        # stride 1: every item after the first `min_history` is a target, with the `max_history` items before it
        spans = [
            (start, t)
            for start, first_new, stop in history_windows(len(history), max_history + 1, stride=1)
            for t in range(max(first_new, min_history), stop)
        ]
        if max_examples_per_user is not None:
            spans = spans[-max_examples_per_user:]
        for start, t in spans:
            context = history[start:t]
            levels = None
            if prefix_prob > 0 and num_levels > 1 and rng.random() < prefix_prob:
                levels = rng.randint(1, num_levels - 1)
            out.append(
                {
                    "prompt": history_prompt(
                        tokenizer, context, titles, max_history=None, use_chat_template=use_chat_template
                    ),
                    "completion": target_text(tokenizer, history[t], prefix_levels=levels),
                    "user": user,
                    "target": history[t],
                }
            )
    if not out:
        raise ValueError(
            f"No training history has more than min_history={min_history} items, so there is no SFT example."
        )
    return out


def _title_part(
    tokenizer: Any,
    item: str,
    titles: Mapping[str, str] | None,
    categories: Mapping[str, Sequence[str]] | None,
) -> tuple[str, str]:
    """The item's title and category path, cleaned of SID and special tokens (`clean_item_text`)."""
    title = clean_item_text(tokenizer, titles.get(item), f"the title of {item!r}") if titles else ""
    cats = (
        " > ".join(clean_item_text(tokenizer, c, f"a category of {item!r}") for c in categories.get(item, ()))
        if categories
        else ""
    )
    return title, cats


# Long: the docstring lists each document kind; the body is ~49 lines.
def cpt_documents(
    tokenizer: Any,
    train_histories: Mapping[str, Sequence[str]] | None = None,
    titles: Mapping[str, str] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    kinds: Sequence[str] = CPT_DOCUMENT_KINDS,
    max_history: int = 20,
    window_stride: int | None = None,
    seed: int = DEFAULT_SEED,
) -> list[str]:
    """Continued-pretraining documents mixing text and SIDs.

    Kinds:
    - `"item_to_sid"`: `"{title} (category: {a > b}) has ID {SID}."` for every catalogue item.
    - `"sid_to_item"`: `"{SID} is {title}, category {a > b}."` for every catalogue item.
    - `"histories"`: a training history window as `"A user bought: {SID} {title}; {SID} {title}; ..."`.
    - `"sequences"`: the same window as a bare SID sequence.
    Items without a title or category skip the alignment sentences that need it. Titles and categories are
    written through `hf_semtok.prompts.clean_item_text` (no SID or special tokens, no line breaks).

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        train_histories: User id -> training items (needed for `"histories"` and `"sequences"`).
        titles: Item id -> title.
        categories: Item id -> category path, coarse to fine.
        kinds: Which documents to write (any of `CPT_DOCUMENT_KINDS`).
        max_history: Items per history window.
        window_stride: Items between two window starts (default `max_history`: no overlap).
        seed: Seed of the document order.

    Returns:
        Shuffled documents (strings, no EOS; `tokenize_cpt` adds it).
    """
    bad = [k for k in kinds if k not in CPT_DOCUMENT_KINDS]
    if bad or not kinds:
        raise ValueError(f"Unknown CPT document kinds {bad or kinds}; choose from {CPT_DOCUMENT_KINDS}.")
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}.")
    stride = window_stride or max_history
    docs: list[str] = []
    if "item_to_sid" in kinds or "sid_to_item" in kinds:
        if not getattr(tokenizer, "num_items", 0):
            raise ValueError(
                "The tokenizer has no Semantic IDs; build it with SemanticIDTokenizer.from_base."
            )
        for item in tokenizer.item_ids:
            title, cats = _title_part(tokenizer, item, titles, categories)
            if not title and not cats:
                continue
            sid = tokenizer.items_to_text([item])
            name = title or "an item"
            cat_text = f" (category: {cats})" if cats else ""
            if "item_to_sid" in kinds:
                docs.append(f"{name}{cat_text} has ID {sid}.")
            if "sid_to_item" in kinds:
                docs.append(f"{sid} is {name}" + (f", category {cats}." if cats else "."))
    if "histories" in kinds or "sequences" in kinds:
        if train_histories is None:
            raise ValueError("CPT kinds 'histories'/'sequences' need train_histories (the training split).")
        check_histories(tokenizer, train_histories)
        for user in sorted(train_histories):
            history = list(train_histories[user])
            for start, _, stop in history_windows(len(history), max_history, stride):
                window = history[start:stop]
                if len(window) < 2:
                    continue
                if "histories" in kinds:
                    parts = []
                    for item in window:
                        title, _ = _title_part(tokenizer, item, titles, None)
                        sid = tokenizer.items_to_text([item])
                        parts.append(f"{sid} {title}" if title else sid)
                    docs.append("A user bought: " + "; ".join(parts) + ".")
                if "sequences" in kinds:
                    docs.append(tokenizer.items_to_text(window))
    if not docs:
        raise ValueError(
            "No CPT document could be written: give titles/categories for the alignment kinds or training "
            "histories with at least 2 items."
        )
    random.Random(seed).shuffle(docs)
    return docs


def tokenize_sft(
    tokenizer: Any, examples: Sequence[Mapping[str, str]], max_length: int = 512
) -> list[dict[str, list[int]]]:
    """Tokenise SFT examples with completion-only labels.

    The prompt is tokenised as `recommend()` tokenises it (`add_special_tokens=True`), the completion without
    special tokens; labels are `-100` on the prompt. A too-long prompt loses its oldest tokens.

    Args:
        tokenizer: The `SemanticIDTokenizer`.
        examples: Dicts with `"prompt"` and `"completion"` (from `sft_examples`).
        max_length: Longest sequence kept.

    Returns:
        Rows with `input_ids`, `attention_mask`, `labels`.
    """
    rows = []
    truncated = 0
    for ex in examples:
        prompt_ids = list(tokenizer(ex["prompt"], add_special_tokens=True)["input_ids"])
        completion_ids = list(tokenizer(ex["completion"], add_special_tokens=False)["input_ids"])
        room = max_length - len(completion_ids)
        if room < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for the prompt (completion has {len(completion_ids)} "
                "tokens); raise max_length."
            )
        if len(prompt_ids) > room:
            prompt_ids = prompt_ids[-room:]
            truncated += 1
        ids = prompt_ids + completion_ids
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
            }
        )
    if truncated:
        logger.warning(
            "%d of %d prompts were cut to max_length=%d; lower max_history or raise max_length.",
            truncated, len(rows), max_length,
        )  # fmt: skip
    return rows


def tokenize_cpt(
    tokenizer: Any, documents: Sequence[str], max_length: int = 512, pack: bool = True
) -> list[dict[str, list[int]]]:
    """Tokenise CPT documents (each followed by EOS); every token is a label.

    Args:
        tokenizer: The `SemanticIDTokenizer`.
        documents: Texts from `cpt_documents`.
        max_length: Block length (packing) or longest document kept (no packing).
        pack: Join all documents and cut the stream into blocks of `max_length` tokens (the last, shorter block
            is kept); otherwise one row per document, truncated.

    Returns:
        Rows with `input_ids`, `attention_mask`, `labels`.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(
            "The tokenizer has no EOS token; set tokenizer.eos_token before building a CPT corpus."
        )
    encoded = [list(ids) + [eos] for ids in tokenizer(list(documents), add_special_tokens=False)["input_ids"]]
    if pack:
        stream = [t for ids in encoded for t in ids]
        chunks = [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
    else:
        chunks = [ids[:max_length] for ids in encoded]
    return [{"input_ids": c, "attention_mask": [1] * len(c), "labels": list(c)} for c in chunks if len(c) > 1]


def lm_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> DataCollatorForSeq2Seq:
    """The collator of every LM training in the library: the stock `DataCollatorForSeq2Seq`.

    It pads `input_ids` with the tokenizer's pad token, writes the `attention_mask`, and pads `labels` with
    `-100` (so padding is never a label), all on the tokenizer's `padding_side` (right by default).

    Args:
        tokenizer: The `SemanticIDTokenizer` (it must have a pad token).
        pad_to_multiple_of: Round the padded length up to a multiple of this (tensor cores), or `None`.

    Returns:
        `DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True, ...)`.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token before training.")
    return DataCollatorForSeq2Seq(
        tokenizer, padding=True, pad_to_multiple_of=pad_to_multiple_of, label_pad_token_id=IGNORE_INDEX
    )
