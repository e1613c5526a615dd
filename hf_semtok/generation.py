"""Constrained decoding of Semantic IDs and top-k recommendation with `generate()`.

`SIDLogitsProcessor` (`hf_semtok.logits_process`) is a stock transformers `LogitsProcessor`: pass it to `model.generate(logits_processor=...)`
and every SID the model writes is a real catalogue item, under greedy search, sampling and beam search, for
left-padded batches of mixed prompt lengths. `recommend()` wraps it: histories in, ranked items out, in the
tokenizer's SID layout (`tokenizer.sid_layout`): `<|sid_start|>` codes `<|sid_end|>` when marked,
the `L` code tokens alone when bare.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import numbers
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.generation import utils as _generation_utils

from hf_semtok.logits_process import DEAD_END_SCORE, SIDLogitsProcessor, TransitionPriorLogitsProcessor
from hf_semtok.prompts import check_titles, history_prompt
from hf_semtok.transition_prior import TransitionPrior

__all__ = ["SIDLogitsProcessor", "recommend", "PrefillOnceLM", "DEAD_END_SCORE"]

logger = logging.getLogger(__name__)


# The name `generate()` takes a ready KV cache under: `cache` since transformers 5.2x, `past_key_values` before.
_CACHE_KWARGS = (
    ("cache", "past_key_values")
    if "cache" in getattr(_generation_utils, "ALL_CACHE_NAMES", ())
    else ("past_key_values",)
)

# Widest beam search `recommend` runs: far beyond any catalogue's useful width, before memory runs out.
_MAX_BEAMS = 10_000

# Beam search pads unused or never-finished beams with scores of about -1e9; anything below this is not a result.
_MIN_VALID_BEAM_SCORE = -1.0e8


# --------------------------------------------------------------------------------------------------------------
# recommend()
# --------------------------------------------------------------------------------------------------------------
def _check_model_vocab(model: Any, tokenizer: Any) -> None:
    # `.weight`, not `.num_embeddings`: a peft wrapper of trainable SID rows has no `num_embeddings`.
    num_embeddings = model.get_input_embeddings().weight.shape[0]
    if num_embeddings < len(tokenizer):
        raise ValueError(
            f"The model has {num_embeddings} embedding rows but the tokenizer has {len(tokenizer)} tokens: the "
            "model's vocabulary lacks the SID tokens. Call hf_semtok.extend_model(model, tokenizer) before "
            "training, or load the fine-tuned model that was trained with this tokenizer."
        )


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> int | None:
    """`value` as an int >= `minimum`; a bool, float or string is a TypeError (numpy integers are accepted)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"recommend(): `{name}` must be an int, got {type(value).__name__} {value!r}"
            + (" (or None)." if optional else ".")
        )
    if value < minimum:
        raise ValueError(f"recommend(): `{name}` must be >= {minimum}; got {value}.")
    return int(value)


def _encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt (special tokens added, never truncated), without touching `tokenizer`'s state.

    A fast tokenizer's `__call__` sets and resets truncation and padding on its shared Rust backend, so a call from
    one thread can change what another thread's call returns. Encoding with a private copy of the backend, with
    truncation and padding switched off, keeps `recommend` out of that state entirely.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer: no shared backend state
        return [list(ids) for ids in tokenizer(list(prompts), padding=False, truncation=False)["input_ids"]]
    encoder = _private_encoder(tokenizer, backend)
    return [encoding.ids for encoding in encoder.encode_batch(list(prompts), add_special_tokens=True)]


# tokenizer -> (vocabulary size with added tokens, its private backend copy): the copy (tens of ms for a large
# vocabulary) is made once per tokenizer and remade when tokens are added. Nothing ever changes a copy's state,
# so threads may share it.
_PRIVATE_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PRIVATE_ENCODERS_LOCK = threading.Lock()


def _private_encoder(tokenizer: Any, backend: Any) -> Any:
    """A copy of `backend` with truncation and padding off, cached per tokenizer."""
    size = backend.get_vocab_size(with_added_tokens=True)
    with _PRIVATE_ENCODERS_LOCK:
        try:
            cached = _PRIVATE_ENCODERS.get(tokenizer)
        except TypeError:  # a tokenizer object that cannot be weakly referenced or hashed: no cache
            cached = None
        if cached is not None and cached[0] == size:
            return cached[1]
        encoder = copy.deepcopy(backend)
        encoder.no_truncation()
        encoder.no_padding()
        try:
            _PRIVATE_ENCODERS[tokenizer] = (size, encoder)
        except TypeError:
            pass
        return encoder


def _left_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded `(batch, max_len)` input ids and attention mask from per-row ids."""
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        if row:
            input_ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def _sequence_scores(out: Any, prompt_len: int, levels: int) -> torch.Tensor:
    """Per returned sequence, the score `recommend` ranks by: the sum of the SID code tokens' log-probabilities.

    `recommend` generates the code tokens alone (a marked layout's `<|sid_start|>` ends the prompt). Beam search
    returns the score as `sequences_scores` (with `length_penalty=0`). Greedy search and sampling do not: there it
    is recomputed from the raw logits (`output_logits=True`), log-softmaxed, at the first `levels` steps, so all
    decoding modes rank on the same scale.
    """
    scores = getattr(out, "sequences_scores", None)
    if scores is not None:
        return scores
    if not out.logits:
        raise ValueError("generate() returned neither sequences_scores nor logits; cannot score the SIDs.")
    steps = min(levels, len(out.logits))
    logits = torch.stack(out.logits[:steps], dim=1).float()  # (rows, steps, vocab)
    tokens = out.sequences[:, prompt_len : prompt_len + steps].to(logits.device)  # (rows, steps)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (rows, steps)
    return logp.sum(dim=1)


def _check_histories(histories: Sequence[Sequence[str]], known: set[str]) -> None:
    if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
        raise TypeError(
            f"recommend(): histories must be a list of per-user item id lists, e.g. [['i1', 'i7'], ['i3']], or a "
            f"mapping user id -> such a list; got {type(histories).__name__}. Pass list(...) for a generator or "
            "an array."
        )
    for user, history in enumerate(histories):
        if isinstance(history, (str, bytes)):
            raise ValueError(
                f"histories[{user}] is a string ({history!r}); each history must be a list of item ids."
            )
        if not isinstance(history, Sequence):
            raise TypeError(
                f"histories[{user}] is a {type(history).__name__}; each history must be a list of item ids."
            )
        odd = [item for item in history if not isinstance(item, str)]
        if odd:
            raise TypeError(
                f"histories[{user}] holds {type(odd[0]).__name__} {odd[0]!r}; item ids are strings "
                "(as in tokenizer.item_ids)."
            )
        if len(history) == 0:
            raise ValueError(
                f"histories[{user}] is empty; recommend() needs at least one item per user (use "
                "hf_semtok.evaluation.popularity_baseline for users with no history)."
            )
        unknown = [item for item in history if item not in known]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5])
            raise ValueError(
                f"histories[{user}] contains {len(unknown)} item(s) unknown to the tokenizer: {shown}. Add them "
                "with tokenizer.add_items(...) (cold start) or drop them from the history."
            )


@dataclass
class _Plan:
    """What every batch of one `recommend` call shares: the checked arguments and the tokenizer's SID lookups."""

    k: int
    num_beams: int
    prefix_level: int | None
    exclude_seen: bool
    do_sample: bool
    bare: bool
    levels_out: int
    eos: int
    pad: int
    codes_to_item: dict[tuple[int, ...], str]
    token_to_code: dict[int, int]
    prior: TransitionPrior | None = None
    prior_weight: float = 0.0

    @property
    def beam_search(self) -> bool:
        return self.num_beams > 1 and not self.do_sample

    @property
    def new_tokens(self) -> int:
        """Positions one SID takes in the layout: `[<|sid_start|>]`, the codes, `[<|sid_end|>]`."""
        return self.levels_out if self.bare else self.levels_out + 2


def _check_tokenizer(tokenizer: Any) -> None:
    """A `SemanticIDTokenizer` (anything with its item table and SID token ids), else a TypeError."""
    needed = ("sid_codes", "sid_token_ids", "item_ids", "num_items", "num_levels", "sid_start_token_id")
    missing = [name for name in needed if not hasattr(tokenizer, name)]
    if isinstance(tokenizer, type):
        raise TypeError(
            f"recommend(): `tokenizer` is the class {tokenizer.__name__}, not a tokenizer; pass an instance, e.g. "
            f"{tokenizer.__name__}.from_pretrained(path)."
        )
    if missing:
        raise TypeError(
            f"recommend(): `tokenizer` must be the SemanticIDTokenizer the model was trained with; got "
            f"{type(tokenizer).__name__} (it has no {missing[0]}). Build one with SemanticIDTokenizer.from_base(...) "
            "or load it with AutoTokenizer.from_pretrained(path, trust_remote_code=True)."
        )


def _check_model(model: Any) -> None:
    """A causal LM with `generate()` and input embeddings, else a TypeError."""
    if (
        isinstance(model, type)
        or not callable(getattr(model, "generate", None))
        or not callable(getattr(model, "get_input_embeddings", None))
    ):
        raise TypeError(
            f"recommend(): `model` must be a causal LM (a transformers model with generate()); got "
            f"{type(model).__name__}."
        )


def _plan(
    tokenizer: Any,
    k: Any,
    num_beams: Any,
    prefix_level: Any,
    exclude_seen: bool,
    do_sample: bool,
    prior: Any = None,
    prior_weight: Any = 0.0,
) -> _Plan:
    """Check `k`, `num_beams`, `prefix_level` and the prior against the catalogue and gather the tokenizer's SID
    lookups."""
    num_items, num_levels = int(tokenizer.num_items), int(tokenizer.num_levels)
    k = _check_int("k", k, 1)
    num_beams = _check_int("num_beams", num_beams, 1, optional=True)
    prefix_level = _check_int("prefix_level", prefix_level, 1, optional=True)
    if prefix_level is None and k > num_items:
        raise ValueError(f"k={k} is larger than the catalogue ({num_items} items); use k <= {num_items}.")
    if prefix_level is not None and not 1 <= prefix_level < num_levels:
        raise ValueError(
            f"prefix_level must be between 1 and {num_levels - 1} (the SIDs have {num_levels} levels; use "
            f"prefix_level=None for whole items); got {prefix_level}."
        )
    if num_beams is None:
        num_beams = max(2 * k if exclude_seen else k, 20)
    if num_beams > _MAX_BEAMS:
        raise ValueError(
            f"num_beams={num_beams} is more than {_MAX_BEAMS}: beam search keeps every beam's cache in memory. "
            "Use fewer beams (k <= num_beams)."
        )
    if num_beams < k:
        raise ValueError(
            f"num_beams={num_beams} is smaller than k={k}; beam search returns at most num_beams."
        )
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sid_end_token_id
    prior, prior_weight = _check_prior(prior, prior_weight)
    return _Plan(
        k=k,
        num_beams=num_beams,
        prefix_level=prefix_level,
        exclude_seen=bool(exclude_seen),
        do_sample=bool(do_sample),
        bare=tokenizer.sid_layout == "bare",
        levels_out=prefix_level or num_levels,
        eos=eos,
        pad=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        codes_to_item={
            tuple(row): item for item, row in zip(tokenizer.item_ids, tokenizer.sid_codes.tolist())
        },
        token_to_code={int(t): c for level_ids in tokenizer.sid_token_ids for c, t in enumerate(level_ids)},
        prior=prior,
        prior_weight=prior_weight,
    )


def _check_prior(prior: Any, prior_weight: Any) -> tuple[TransitionPrior | None, float]:
    """The prior and its weight, checked; `(None, 0.0)` when there is no prior or its weight is 0."""
    if (
        isinstance(prior_weight, bool)
        or not isinstance(prior_weight, numbers.Real)
        or not math.isfinite(prior_weight)
    ):
        raise TypeError(f"recommend(): `prior_weight` must be a finite number; got {prior_weight!r}.")
    if prior_weight < 0:
        raise ValueError(f"recommend(): `prior_weight` must be >= 0; got {prior_weight}.")
    if prior is None:
        if prior_weight > 0:
            raise ValueError(
                f"recommend(): `prior_weight={prior_weight}` has no prior to weigh; pass `prior=` (a "
                "TransitionPrior), or leave prior_weight at 0."
            )
        return None, 0.0
    if not isinstance(prior, TransitionPrior):
        raise TypeError(
            f"recommend(): `prior` must be a hf_semtok.TransitionPrior (TransitionPrior.fit(train_histories)); got "
            f"{type(prior).__name__}."
        )
    return (prior, float(prior_weight)) if prior_weight > 0 else (None, 0.0)


def _check_prompt_lengths(
    model: Any, lengths: Sequence[int], new_tokens: int, max_history: int | None
) -> None:
    """The longest prompt plus the SID's tokens must fit the model's positions, where its config bounds them
    (`max_position_embeddings`, or GPT-2's `n_positions`): past them GPT-2 fails inside torch and rotary models
    run on positions they never saw."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        limit = getattr(config, name, None)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            break
    else:
        return
    user = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[user] + new_tokens > limit:
        raise ValueError(
            f"recommend(): the prompt of histories[{user}] has {lengths[user]} tokens; with the {new_tokens} "
            f"tokens of its SID it needs {lengths[user] + new_tokens} positions, but the model has {limit} "
            f"(config.{name}). Shorten the prompts: lower max_history (now {max_history}) or leave out titles."
        )


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the block; afterwards, even after an error, every submodule's train/eval flag as before."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
# Long: 15 documented arguments (the docstring is most of it); the body is ~46 lines of named steps.
def recommend(
    model: Any,
    tokenizer: Any,
    histories: Sequence[Sequence[str]] | Mapping[Any, Sequence[str]],
    k: int = 10,
    num_beams: int | None = None,
    prefix_level: int | None = None,
    exclude_seen: bool = False,
    batch_size: int = 16,
    titles: Mapping[str, str] | None = None,
    max_history: int | None = 20,
    progress: bool = True,
    do_sample: bool = False,
    prefill_once: bool = True,
    *,
    prior: TransitionPrior | None = None,
    prior_weight: float = 0.0,
) -> list[list[tuple[Any, ...]]] | dict[Any, list[tuple[Any, ...]]]:
    """Recommend the next items for each user by constrained beam search over Semantic IDs.

    Each history becomes a prompt (`hf_semtok.prompts.history_prompt`, the same text the model was fine-tuned on);
    the tokenizer's SID layout (`tokenizer.sid_layout`) says whether the model writes
    `<|sid_start|>` codes `<|sid_end|>` (marked) or the code tokens alone (bare), and generation follows it (in
    the marked layout the forced `<|sid_start|>` ends the prompt and decoding stops after the last code, which
    saves two forward passes per SID and changes no score);
    users go through `model.generate()` in left-padded batches of `batch_size`, with beam search
    (`num_return_sequences=num_beams`) under a `SIDLogitsProcessor`, so every output is a catalogue SID. Outputs are
    ranked by their score, the sum of the log-probabilities of the SID's code tokens (forced markers count 0;
    `length_penalty=0`), de-duplicated and cut to `k`. `num_beams=1` is greedy search (one item per user), and
    `do_sample=True` draws `num_beams` sampled SIDs per user instead of running beam search; both are scored the
    same way (from the raw logits), so scores are comparable across modes.

    Fewer than `k` results: beam search returns at most `num_beams` distinct SIDs, and beams that never reached a
    real SID (e.g. a level with fewer valid codes than beams) are dropped; `exclude_seen` drops more, and samples
    may repeat. A user can therefore get fewer than `k` items; evaluation counts the missing ranks as misses. Raise
    `num_beams` to get closer to `k`.

    Settings and threads: `recommend` changes no setting of the tokenizer or the model. It runs the model in eval
    mode and restores every submodule's train/eval flag afterwards, also when it raises. It encodes prompts with
    a private copy of the tokenizer's backend. The fast tokenizer's own `__call__` is not thread-safe: it switches
    truncation and padding on its shared backend for every call, so two threads calling `tokenizer(...)` with
    different `truncation`/`padding` can change each other's results. Give each thread its own tokenizer if
    other code tokenizes concurrently.

    Args:
        model: A causal LM whose vocabulary includes the tokenizer's SID tokens.
        tokenizer: The `SemanticIDTokenizer` the model was trained with.
        histories: Per user, the item ids in chronological order (non-empty, all known to the tokenizer): a list
            of histories, or a mapping user id -> history (as `evaluate_recommender` takes).
        k: Items (or prefixes) to return per user (an int, 1 <= k <= the catalogue size).
        num_beams: Beam width (samples per user with `do_sample`), at least `k`. Defaults to `max(k, 20)`, or
            `max(2 * k, 20)` with `exclude_seen`.
        prefix_level: If given (1 <= prefix_level < num_levels), retrieve SID prefixes of that many levels (coarse
            categories) instead of items; each result is then `(prefix_codes, score, [item_ids under it])`.
        exclude_seen: Drop items already in the user's history (for `prefix_level`: nothing is dropped).
        batch_size: Users per `generate()` call.
        titles: Optional mapping item id -> title (e.g. `catalogue.titles`), passed to the prompt builder.
        max_history: Most recent items kept in the prompt (same default as the prompt builder).
        progress: Show a progress bar over batches.
        do_sample: Sample `num_beams` SIDs per user (under the model's generation config: temperature, top-k...)
            instead of beam search.
        prefill_once: For beam search, wrap the model in `PrefillOnceLM` (the prompt's forward pass runs once
            instead of once per beam; same rankings). Ignored if the model is already wrapped.
        prior: A [`~hf_semtok.TransitionPrior`] fused into decoding with `prior_weight` (keyword only): a
            `TransitionPriorLogitsProcessor` after the SID constraint adds `prior_weight * log(eps + prior
            probability of each code given the prefix)` at every level, so beam search ranks items by
            `log p_LM(item) + prior_weight * log p_prior(item)` and the returned scores are those fused scores
            (sampling and greedy search still report the LM's own scores). History items the prior does not know
            add nothing. None (or `prior_weight=0`): no processor, the results of a call without a prior.
        prior_weight: Weight of the prior (>= 0; keyword only).

    Returns:
        Per user, a list of `(item_id, score)` sorted by decreasing score (no duplicates), or with `prefix_level`,
        `(prefix_codes: tuple[int, ...], score, item_ids: list[str])`. A list in the order of `histories`, or a
        dict user id -> that list when `histories` is a mapping. No users (`[]` or `{}`) give `[]` (or `{}`), once
        the other arguments are checked.

    Raises:
        TypeError: `tokenizer` is not a `SemanticIDTokenizer`, `model` is not a causal LM, `titles` is not a
            mapping, or an argument or history has the wrong type.
        ValueError: A bad value (the message names it), a model without the SID tokens, or a prompt that with
            the SID's tokens needs more positions than the model has (`config.max_position_embeddings` /
            `n_positions`).
    """
    from tqdm.auto import tqdm

    _check_tokenizer(tokenizer)
    flags = {"exclude_seen": exclude_seen, "do_sample": do_sample, "prefill_once": prefill_once}
    for name, flag in flags.items():
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"recommend(): {name} must be True or False; got {type(flag).__name__} {flag!r}.")
    exclude_seen, do_sample, prefill_once = (bool(flag) for flag in flags.values())
    if isinstance(histories, Mapping):
        users = list(histories)
        ranked = recommend(
            model,
            tokenizer,
            [histories[u] for u in users],
            k=k,
            num_beams=num_beams,
            prefix_level=prefix_level,
            exclude_seen=exclude_seen,
            batch_size=batch_size,
            titles=titles,
            max_history=max_history,
            progress=progress,
            do_sample=do_sample,
            prefill_once=prefill_once,
            prior=prior,
            prior_weight=prior_weight,
        )
        return dict(zip(users, ranked))
    plan = _plan(tokenizer, k, num_beams, prefix_level, exclude_seen, do_sample, prior, prior_weight)
    batch_size = _check_int("batch_size", batch_size, 1)
    max_history = _check_int("max_history", max_history, 1, optional=True)
    _check_model(model)
    _check_model_vocab(model, tokenizer)
    _check_histories(histories, set(tokenizer.item_ids))
    check_titles(titles, "recommend()")
    if len(histories) == 0:
        return []  # no users, no recommendations (as a batch call in transformers); a mapping gives {}
    prompts = [history_prompt(tokenizer, list(h), titles=titles, max_history=max_history) for h in histories]
    all_ids = _encode_prompts(tokenizer, prompts)
    _check_prompt_lengths(model, [len(ids) for ids in all_ids], plan.new_tokens, max_history)
    if not plan.bare:
        # The marked layout's `<|sid_start|>` is forced and `<|sid_end|>` follows the last code: putting the start
        # marker into the prompt and stopping after the codes gives the same SIDs and scores (forced tokens score
        # 0) with two forward passes fewer per SID, which is a third of a 4-level SID's decoding cost. From here
        # on, both layouts decode the code tokens alone.
        all_ids = [ids + [int(tokenizer.sid_start_token_id)] for ids in all_ids]
    generator = model
    if plan.beam_search and prefill_once and not isinstance(model, PrefillOnceLM):
        generator = PrefillOnceLM(model)
    # Users with prompts of similar length share a batch (less padding); results go back in input order.
    order = sorted(range(len(histories)), key=lambda i: len(all_ids[i]))
    results: list[list[tuple[Any, ...]]] = [[] for _ in histories]
    with _eval_mode(model):
        starts = range(0, len(histories), batch_size)
        for first in tqdm(starts, desc="recommend", unit="batch", disable=not progress):
            users = order[first : first + batch_size]
            ranked = _recommend_batch(
                generator, tokenizer, [all_ids[i] for i in users], [histories[i] for i in users], plan
            )
            for user, items in zip(users, ranked):
                results[user] = items
    return results


def _recommend_batch(
    generator: Any, tokenizer: Any, ids: list[list[int]], batch: list[Sequence[str]], plan: _Plan
) -> list[list[tuple[Any, ...]]]:
    """One `generate()` call for a batch of users: their ranked results, in batch order."""
    device = next(generator.parameters()).device
    input_ids, attention_mask = _left_pad(ids, plan.pad)  # (batch, prompt_len)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    prompt_len = input_ids.shape[1]
    processors = [
        SIDLogitsProcessor.from_tokenizer(
            tokenizer,
            mode="sid",
            prompt_length=prompt_len,
            num_levels_to_generate=plan.prefix_level,
            eos_token_id=plan.eos,
            layout="bare",  # the code tokens alone: a marked layout's <|sid_start|> ends the prompt
        )
    ]
    if plan.prior is not None:  # after the constraint: it only moves the codes the constraint allows
        processors.append(
            TransitionPriorLogitsProcessor.from_tokenizer(
                tokenizer, plan.prior, batch, prompt_len, weight=plan.prior_weight, layout="bare"
            )
        )
    decoding: dict[str, Any] = (
        {"num_beams": plan.num_beams, "length_penalty": 0.0, "early_stopping": True, "do_sample": False}
        if plan.beam_search
        else {"num_beams": 1, "do_sample": plan.do_sample, "output_logits": True}
    )
    out = generator.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_processor=processors,
        max_new_tokens=plan.levels_out,
        num_return_sequences=plan.num_beams,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=plan.pad,
        eos_token_id=plan.eos,
        **decoding,
    )
    sequences = out.sequences[:, prompt_len:].reshape(len(batch), plan.num_beams, -1).tolist()
    scores = _sequence_scores(out, prompt_len, plan.levels_out)
    scores = scores.reshape(len(batch), plan.num_beams).tolist()
    return [
        _rank(sequences[user], scores[user], history, tokenizer, plan) for user, history in enumerate(batch)
    ]


def _rank(
    sequences: list[list[int]], scores: list[float], history: Sequence[str], tokenizer: Any, plan: _Plan
) -> list[tuple[Any, ...]]:
    """One user's generated SIDs, best score first: valid, distinct, unseen (with `exclude_seen`), at most `k`."""
    seen = set(history) if plan.exclude_seen else set()
    ranked: list[tuple[Any, ...]] = []
    taken: set[Any] = set()
    for seq, score in sorted(zip(sequences, scores), key=lambda pair: -pair[1]):
        if not math.isfinite(score) or score < _MIN_VALID_BEAM_SCORE:
            continue
        sid = _parse_generated_sid(seq, plan.levels_out, tokenizer, plan.token_to_code)
        if sid is None or sid in taken:
            continue
        if plan.prefix_level is None:
            item = plan.codes_to_item.get(sid)
            if item is None or item in seen:
                continue
            ranked.append((item, float(score)))
        else:
            ranked.append((sid, float(score), list(tokenizer.items_with_prefix(sid))))
        taken.add(sid)
        if len(ranked) == plan.k:
            break
    return ranked


def _parse_generated_sid(
    tokens: Sequence[int], levels: int, tokenizer: Any, token_to_code: Mapping[int, int]
) -> tuple[int, ...] | None:
    """Codes of the generated code tokens `c_0 .. c_{levels-1}` at the start of `tokens`, or None if malformed."""
    if len(tokens) < levels:
        return None
    codes = []
    for level, token in enumerate(tokens[:levels]):
        code = token_to_code.get(int(token))
        if code is None or int(tokenizer.sid_token_ids[level][code]) != int(token):
            return None
        codes.append(code)
    return tuple(codes)


class PrefillOnceLM:
    """Wrap a causal LM so beam search computes each prompt's KV cache once instead of once per beam.

    `generate(num_beams=B)` copies every prompt `B` times *before* the prefill, so the prompt's forward pass runs
    `B` times (20x for TIGER's 20 beams). This wrapper runs the prompt minus its last token once, repeats the
    cache `B` times and lets `generate` continue from it. The rankings are the same up to float rounding (checked
    in the tests); on 2 CPU cores evaluation is ~4x faster. `recommend()` wraps the model in it for beam search
    unless told not to (`prefill_once=False`). Every other attribute is the wrapped model's, so
    `hf_semtok.generation.recommend` and `evaluate_recommender` accept it in place of the model.

    Args:
        model: A decoder-only `PreTrainedModel` with a `DynamicCache`.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> Any:
        """`model.generate` with the prompt prefilled once and its cache repeated for every beam."""
        expand = max(kwargs.get("num_beams") or 1, kwargs.get("num_return_sequences") or 1)
        if (
            expand == 1
            or input_ids.shape[1] < 2
            or any(kwargs.get(name) is not None for name in _CACHE_KWARGS)
        ):
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(
            0
        )  # (batch, prompt_len), left padding
        out = self.model(
            input_ids=input_ids[:, :-1],
            attention_mask=attention_mask[:, :-1],
            position_ids=position_ids[:, :-1],
            use_cache=True,
            logits_to_keep=1,
        )
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.batch_repeat_interleave(expand)  # (batch * expand, ...) in generate's beam order
        return self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, **{_CACHE_KWARGS[0]: cache}, **kwargs
        )
