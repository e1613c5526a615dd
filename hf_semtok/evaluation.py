"""Top-K metrics with one relevant item, the evaluation loop, and a popularity baseline.

Semantics follow TIGER (Rajput et al., 2023, arXiv 2305.05065) and LC-Rec (Zheng et al., 2024, arXiv 2311.09049):
leave-one-out, the held-out next item is the only relevant item, Recall@K is 1 if it appears in the top K,
NDCG@K is `1 / log2(rank + 1)` at its 1-based rank (0 beyond K; the ideal DCG is 1). A model that returns fewer
than K valid items is not padded or penalised otherwise: the missing ranks simply cannot hit, so they count as
misses.

Under `accelerate launch` or `torchrun` with several processes, `evaluate_recommender` ranks each process's share
of the users ([`process_shard`], contiguous, as `accelerate`'s `split_between_processes`) and gathers the rankings,
so every process returns the metrics of all users.
"""

from __future__ import annotations

import logging
import math
import operator
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from accelerate import PartialState
from accelerate.utils import gather_object

from hf_semtok.generation import recommend

__all__ = [
    "recall_at_k",
    "ndcg_at_k",
    "evaluate_recommender",
    "popularity_baseline",
    "process_shard",
    "ranking_metrics",
    "hit_ranks",
    "subsample_examples",
]

logger = logging.getLogger(__name__)


def _item_ids(ranked: Sequence[Any]) -> list[Any]:
    """Item ids of a ranking given as ids or as `(item_id, score, ...)` tuples.

    A string (its characters are no ranking), a mapping or a set (no order) is a TypeError.
    """
    if isinstance(ranked, (str, bytes, Mapping, set, frozenset)) or not isinstance(ranked, Iterable):
        raise TypeError(
            f"`ranked` must be a list of item ids (or (item_id, score) tuples), best first; got "
            f"{type(ranked).__name__} {str(ranked)[:40]!r}. Wrap a single item as [item]."
        )
    return [entry[0] if isinstance(entry, tuple) else entry for entry in ranked]


def _check_k(k: int) -> None:
    # operator.index accepts int and numpy integers (e.g. from np.arange), rejects floats and bools' look-alikes
    try:
        value = operator.index(k)
    except TypeError:
        value = None
    if value is None or isinstance(k, bool) or value < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")


def _check_ks(ks: Any) -> list[int]:
    """The cut-offs, sorted and distinct: a non-empty collection of positive integers."""
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise TypeError(
            f"ks must be a list of positive integers (e.g. [5, 10]); got {type(ks).__name__} {ks!r}."
        )
    ks = list(ks)
    if not ks:
        raise ValueError("ks must hold at least one cut-off (e.g. [5, 10]); got an empty list.")
    for k in ks:
        _check_k(k)
    return sorted({operator.index(k) for k in ks})


def _check_target(target: Any) -> None:
    if not isinstance(target, str):
        raise TypeError(
            f"target must be an item id (a string); got {type(target).__name__} {target!r}. Pass one held-out item "
            "per user."
        )


def recall_at_k(ranked: Sequence[Any], target: Any, k: int) -> float:
    """Recall@K with one relevant item (= HitRate@K).

    Args:
        ranked: Recommended item ids, best first (or `(item_id, score)` tuples as returned by `recommend`).
        target: The held-out item.
        k: Cut-off.

    Returns:
        1.0 if `target` is among the first `k` entries, else 0.0 (a ranking shorter than `k` is not padded).

    Raises:
        TypeError: `ranked` is a string, a mapping or a set (no ranking).
        ValueError: `k` is not a positive integer.
    """
    _check_k(k)
    _check_target(target)
    return 1.0 if target in _item_ids(ranked)[:k] else 0.0


def ndcg_at_k(ranked: Sequence[Any], target: Any, k: int) -> float:
    """NDCG@K with one relevant item: `1 / log2(rank + 1)` for a hit at 1-based `rank <= k`, else 0.

    Args:
        ranked: Recommended item ids, best first (or `(item_id, score)` tuples).
        target: The held-out item.
        k: Cut-off.

    Returns:
        The NDCG value in [0, 1].

    Raises:
        TypeError: `ranked` is a string, a mapping or a set (no ranking).
        ValueError: `k` is not a positive integer.
    """
    _check_k(k)
    _check_target(target)
    ids = _item_ids(ranked)[:k]
    if target not in ids:
        return 0.0
    rank = ids.index(target) + 1
    return 1.0 / math.log2(rank + 1)


def hit_ranks(rankings: Sequence[Sequence[Any]], targets: Sequence[Any], k: int) -> list[int | None]:
    """The 1-based rank of each target within its top `k`, or None when it is not there.

    Per-user ranks let anyone pair two rows on the same users (`recall@k` is the share of ranks that are not None,
    `ndcg@k` the mean of `1 / log2(rank + 1)`).

    Args:
        rankings: Per user, the ranked items (ids or `(item_id, score, ...)` tuples), best first.
        targets: Per user, the held-out item.
        k: Cut-off.

    Returns:
        One rank or None per user, in the given order.
    """
    _check_k(k)
    if len(rankings) != len(targets):
        raise ValueError(
            f"Got {len(rankings)} rankings for {len(targets)} targets; pass one ranking per target."
        )
    ranks: list[int | None] = []
    for ranked, target in zip(rankings, targets):
        top = _item_ids(ranked)[:k]
        ranks.append(top.index(target) + 1 if target in top else None)
    return ranks


def subsample_examples(examples: Sequence[Any], users: int | None, seed: int) -> list[Any]:
    """A fixed random subsample of `users` examples (all of them when `users` is None or not smaller).

    Args:
        examples: Per user, an example (e.g. a `(history, target)` pair).
        users: Size of the subsample.
        seed: Seed of the draw (the same seed draws the same users).

    Returns:
        The subsample, in draw order (or all examples, in their order).
    """
    examples = list(examples)
    if users is not None and users < len(examples):
        return random.Random(seed).sample(examples, users)
    return examples


def ranking_metrics(
    rankings: Sequence[Sequence[Any]],
    targets: Sequence[Any],
    ks: Iterable[int] = (5, 10),
    standard_errors: bool = False,
) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over users.

    Args:
        rankings: Per user, the ranked items.
        targets: Per user, the held-out item.
        ks: Cut-offs.
        standard_errors: Also return `"recall@K_se"`, the binomial standard error `sqrt(p (1 - p) / n)`, and
            `"ndcg@K_se"`, the sample standard deviation of the per-user NDCG over `sqrt(n)`. Two runs differ by
            more than noise when their gap exceeds about `2 * sqrt(se_1**2 + se_2**2)`.

    Returns:
        `{"recall@K": ..., "ndcg@K": ...}` for each K (+ the standard errors), plus `"num_examples"`.
    """
    ks = _check_ks(ks)
    if len(rankings) != len(targets):
        raise ValueError(
            f"Got {len(rankings)} rankings for {len(targets)} targets; pass one ranking per target."
        )
    if not rankings:
        raise ValueError("No examples to evaluate; pass at least one (history, target) pair.")
    n = len(targets)
    out: dict[str, float] = {}
    for k in ks:
        ndcg = [ndcg_at_k(r, t, k) for r, t in zip(rankings, targets)]  # one value per user
        out[f"recall@{k}"] = sum(recall_at_k(r, t, k) for r, t in zip(rankings, targets)) / n
        out[f"ndcg@{k}"] = sum(ndcg) / n
        if standard_errors:
            p = out[f"recall@{k}"]
            out[f"recall@{k}_se"] = math.sqrt(p * (1.0 - p) / n)
            out[f"ndcg@{k}_se"] = statistics.stdev(ndcg) / math.sqrt(n) if n > 1 else 0.0
    out["num_examples"] = n
    return out


def _split_examples(
    test_examples: Sequence[tuple[Sequence[str], str]] | Mapping[Any, tuple[Sequence[str], str]],
) -> tuple[list[list[str]], list[str]]:
    if isinstance(test_examples, Mapping):  # {user: (history, target)}, as leave_one_out_split returns
        test_examples = [test_examples[user] for user in sorted(test_examples)]
    histories, targets = [], []
    for i, example in enumerate(test_examples):
        if not isinstance(example, (tuple, list)) or len(example) != 2:
            raise ValueError(
                f"test_examples[{i}] must be a (history, target) pair, e.g. (['i1', 'i2'], 'i3'); got {example!r}."
            )
        history, target = example
        histories.append(list(history))
        targets.append(target)
    return histories, targets


def process_shard(n: int, process_index: int, num_processes: int) -> range:
    """The indices of `n` examples that process `process_index` of `num_processes` ranks: contiguous shards in
    process order, the first `n % num_processes` one longer (the split of `accelerate`'s `split_between_processes`),
    so the shards concatenated in process order are `range(n)`.

    Raises:
        ValueError: `num_processes < 1`, or `process_index` not in `[0, num_processes)`.
    """
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(
            f"process_index must be in [0, num_processes); got process {process_index} of {num_processes}."
        )
    size, extra = divmod(n, num_processes)
    start = process_index * size + min(process_index, extra)
    return range(start, start + size + (process_index < extra))


def evaluate_recommender(
    model: Any,
    tokenizer: Any,
    test_examples: Sequence[tuple[Sequence[str], str]] | Mapping[Any, tuple[Sequence[str], str]],
    ks: Iterable[int] = (5, 10),
    num_beams: int | None = None,
    batch_size: int = 16,
    exclude_seen: bool = False,
    titles: Mapping[str, str] | None = None,
    max_history: int | None = 20,
    progress: bool = True,
    return_rankings: bool = False,
    standard_errors: bool = False,
) -> dict[str, Any]:
    """Leave-one-out Recall@K / NDCG@K of a generative recommender (TIGER / LC-Rec semantics).

    Every user's history is ranked once with `hf_semtok.generation.recommend(k=max(ks))` (constrained beam search,
    batched, with a progress bar); each K is then read off the same ranking. With several processes (`accelerate
    launch`, `torchrun`), each ranks its [`process_shard`] of the users and the rankings are gathered: every process
    returns the metrics of all users (write them from the main process only). Users for whom beam search returns
    fewer than K valid items count the missing ranks as misses (see the module docstring). Targets unknown to the
    tokenizer are kept and can never be hit (a cold item the tokenizer was not told about).

    Args:
        model: The fine-tuned causal LM.
        tokenizer: Its `SemanticIDTokenizer`.
        test_examples: `(history, target)` pairs, or `{user: (history, target)}` as the test split of
            `leave_one_out_split` (users in sorted order).
        ks: Cut-offs (at least 5 and 10 in the papers).
        num_beams: Beam width (defaults to `recommend`'s, `max(max(ks), 20)`).
        batch_size: Users per `generate()` call.
        exclude_seen: Drop history items from the rankings (off by default, as in TIGER / LC-Rec).
        titles: Optional item id -> title for the prompts.
        max_history: Most recent items kept in a prompt.
        progress: Show a progress bar.
        return_rankings: Also return `"rankings"`: per user, the ranked `(item_id, score)` list.
        standard_errors: Also return a standard error beside each metric (see [`ranking_metrics`]).

    Returns:
        `{"recall@K", "ndcg@K" for each K, "num_examples", "mean_num_results"}` (+ `"rankings"`).
    """

    ks = _check_ks(ks)
    histories, targets = _split_examples(test_examples)
    if not histories:
        raise ValueError("test_examples is empty; pass at least one (history, target) pair.")
    # the processes of a launch (gloo for a model on the CPU); one process otherwise
    state = PartialState(cpu=getattr(getattr(model, "device", None), "type", "cpu") == "cpu")
    shard = process_shard(len(histories), state.process_index, state.num_processes)
    rankings = []
    if len(shard):
        rankings = recommend(
            model,
            tokenizer,
            histories[shard.start : shard.stop],
            k=max(ks),
            num_beams=num_beams,
            exclude_seen=exclude_seen,
            batch_size=batch_size,
            titles=titles,
            max_history=max_history,
            progress=progress and state.is_main_process,
        )
    if state.num_processes > 1:
        rankings = gather_object(rankings)  # the shards in process order: every user's ranking, in order
    out: dict[str, Any] = ranking_metrics(rankings, targets, ks, standard_errors=standard_errors)
    out["mean_num_results"] = sum(len(r) for r in rankings) / len(rankings)
    if return_rankings:
        out["rankings"] = rankings
    logger.info("evaluation: %s", {key: value for key, value in out.items() if key != "rankings"})
    return out


def popularity_baseline(
    train_histories: Mapping[Any, Sequence[str]] | Sequence[Sequence[str]],
    test_examples: Sequence[tuple[Sequence[str], str]] | Mapping[Any, tuple[Sequence[str], str]],
    ks: Iterable[int] = (5, 10),
    exclude_seen: bool = False,
    standard_errors: bool = False,
) -> dict[str, Any]:
    """Recall@K / NDCG@K of recommending the most frequent training items to everyone.

    Items are ranked by how often they occur in the training histories (every occurrence counts); ties are broken
    by item id, so the ranking is deterministic. By default (`exclude_seen=False`, the same default as
    `evaluate_recommender`) every user gets the same list; with `exclude_seen=True` a user's history items are
    skipped and the list is filled from further down the popularity order.

    Args:
        train_histories: Training histories, as `{user: [item, ...]}` or a list of lists (training split only,
            so that test targets do not leak into the counts).
        test_examples: `(history, target)` pairs, or `{user: (history, target)}`.
        ks: Cut-offs.
        exclude_seen: Skip items already in the user's history.
        standard_errors: Also return `"recall@K_se"` and `"ndcg@K_se"` (see `ranking_metrics`).

    Returns:
        `{"recall@K", "ndcg@K" for each K, "num_examples", "top_items"}` (`top_items`: the `max(ks)` most popular).
    """
    ks = _check_ks(ks)
    histories_iter = train_histories.values() if isinstance(train_histories, Mapping) else train_histories
    counts: Counter[Any] = Counter()
    for history in histories_iter:
        counts.update(history)
    if not counts:
        raise ValueError("train_histories contain no items; pass the training split of the interactions.")
    order = [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]
    histories, targets = _split_examples(test_examples)
    if not histories:
        raise ValueError("test_examples is empty; pass at least one (history, target) pair.")
    top = max(ks)
    rankings = []
    for history in histories:
        if exclude_seen:
            seen = set(history)
            rankings.append([item for item in order if item not in seen][:top])
        else:
            rankings.append(order[:top])
    out: dict[str, Any] = ranking_metrics(rankings, targets, ks, standard_errors=standard_errors)
    out["top_items"] = order[:top]
    return out
