"""End to end generative retrieval on a catalogue: item features -> Semantic IDs -> a small LM -> evaluation.

This is TIGER's recipe (Rajput et al., NeurIPS 2023, arXiv 2305.05065) with a decoder-only generator: an RQ-VAE
turns item features into Semantic IDs (the collaborative contrastive loss uses co-occurrence pairs from the
**training** histories only), a `SemanticIDTokenizer` is built on a tiny base tokenizer (a model trained from
scratch needs almost no text vocabulary), and a small Qwen2/Llama-style causal LM is trained from scratch on the
training histories written as SID sequences. The next-item loss on every SID position of a history trains on
every prefix of it in one pass. Evaluation is leave-one-out: the history is cut to the last `max_history` items,
and constrained beam search over the catalogue's SIDs gives the ranking (`hf_semtok.metrics.evaluate_recommender`).

Prompts: the generator reads bare SID sequences. `build_sid_tokenizer` gives the tokenizer a chat template
(`sid_only_chat_template`) that renders `hf_semtok.prompts.history_prompt` as the concatenated SIDs of the history,
so training and `recommend()` see the same tokens.

Training sequences: a user's training history `[i_1, ..., i_n]` (validation and test targets removed by
`leave_one_out_split`) is cut into windows of at most `max_history + 1` items. The first window starts at `i_1`
and every item in it is a target. Later windows start `window_stride` items further on, and only their items
not yet covered are targets. So every training item is predicted once, with between `max_history + 1 -
window_stride` and `max_history` items of context once the history is long enough.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "SIDStageConfig",
    "GeneratorConfig",
    "PipelineResult",
    "sid_table_from_codes",
    "build_sids",
    "build_sid_tokenizer",
    "sid_only_chat_template",
    "history_sequences",
    "train_generator",
    "run_pipeline",
    "PrefillOnceLM",
    "multi_hot_features",
    "cooccurrence_features",
]

logger = logging.getLogger(__name__)


@dataclass
class SIDStageConfig:
    """How the RQ-VAE Semantic IDs are made (arguments of `RQVAEConfig` and `train_rqvae`).

    Args:
        codebook_sizes: Codes per RQ-VAE level (TIGER `[256, 256, 256]`; multi-resolution e.g. `[1024, 512, 256]`).
        hidden_sizes: Encoder MLP sizes.
        latent_dim: Size of the quantized latent.
        contrastive_weight: Weight of the co-occurrence InfoNCE loss (0 disables it).
        cooccurrence_window: Positions within which two training items co-occur.
        modality_weights: Optional weight per embedding modality.
        collision_strategy: `"extra_level"` (TIGER) or `"reassign"`.
        epochs: RQ-VAE training epochs.
        batch_size: Items per RQ-VAE step.
        learning_rate: RQ-VAE learning rate.
        extra: Further `RQVAEConfig` fields (e.g. `{"progressive_masking_prob": 0.2}`).
    """

    codebook_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 32
    contrastive_weight: float = 0.0
    cooccurrence_window: int = 3
    modality_weights: dict[str, float] | None = None
    collision_strategy: str = "extra_level"
    epochs: float = 100.0
    batch_size: int = 1024
    learning_rate: float = 2e-3
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratorConfig:
    """The generator LM (trained from scratch) and its training and evaluation settings.

    Args:
        arch: `"qwen2"` or `"llama"` (`hf_semtok.base_models.build_causal_lm`).
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (default: `num_heads`).
        intermediate_size: MLP width (default: `4 * hidden_size`).
        attention_dropout: Dropout on the attention weights during training.
        learning_rate: Peak AdamW learning rate.
        min_lr_ratio: The cosine schedule ends at `learning_rate * min_lr_ratio`.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps.
        batch_size: Sequences per step.
        num_epochs: Passes over the training sequences.
        max_steps: Stop after this many steps (overrides `num_epochs` when > 0).
        max_train_minutes: Wall-clock budget of training (periodic evaluations excluded). The learning-rate
            schedule follows whichever of steps and time runs out first, so a budgeted run still anneals.
        window_stride: Items between the starts of two training windows of a long history (see module doc).
        max_history: Items of history the model sees (TIGER: 20), in training and evaluation.
        eval_every_steps: Evaluate on `eval_users` validation users every this many steps (0: never).
        eval_users: Size of the fixed validation subsample used during training.
        eval_batch_size: Users per `generate()` call.
        num_beams: Beam width of the constrained beam search (20 in TIGER's protocol).
        ks: Cut-offs of Recall@K / NDCG@K.
        test_users: Evaluate on a fixed random subsample of this many test users (`None`: all).
        bf16: Train in bfloat16 (GPU).
        seed: Seed of the model initialisation, batches and subsamples.
    """

    arch: str = "qwen2"
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    intermediate_size: int | None = None
    attention_dropout: float = 0.0
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    warmup_steps: int = 200
    batch_size: int = 64
    num_epochs: float = 20.0
    max_steps: int = 0
    max_train_minutes: float | None = None
    window_stride: int = 10
    max_history: int = 20
    eval_every_steps: int = 0
    eval_users: int = 500
    eval_batch_size: int = 32
    num_beams: int = 20
    ks: list[int] = field(default_factory=lambda: [5, 10])
    test_users: int | None = None
    bf16: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}.")
        if not 1 <= self.window_stride <= self.max_history:
            raise ValueError(
                f"window_stride must lie in [1, max_history={self.max_history}], got {self.window_stride}."
            )
        if self.num_beams < max(self.ks):
            raise ValueError(
                f"num_beams={self.num_beams} is smaller than max(ks)={max(self.ks)}; raise num_beams."
            )
        if self.max_steps <= 0 and self.num_epochs <= 0 and not self.max_train_minutes:
            raise ValueError(
                "Give a positive num_epochs, max_steps or max_train_minutes, or training never runs."
            )


@dataclass
class PipelineResult:
    """What `run_pipeline` returns (JSON-able through `to_dict`).

    Attributes:
        metrics: Test Recall@K / NDCG@K of the generator (`evaluate_recommender`).
        popularity: The popularity baseline on the same test users.
        curve: Validation metrics during training: one record per evaluation (step, tokens, seconds, metrics).
        sid: SID facts: levels, codebook sizes, collision statistics, RQ-VAE training time.
        model: Generator facts: architecture, parameter count, vocabulary size.
        training: Steps, tokens seen (non-padding), training wall time, stop reason.
        evaluation: Test users, evaluation wall time, beam width, history length.
        config: The `GeneratorConfig` used.
    """

    metrics: dict[str, Any]
    popularity: dict[str, Any]
    curve: list[dict[str, Any]]
    sid: dict[str, Any]
    model: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-able dict."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Features and Semantic IDs


def multi_hot_features(
    item_ids: Sequence[str], attributes: Mapping[str, Sequence[str]], min_count: int = 1
) -> np.ndarray:
    """Encode each item's attribute set (categories, tags, opaque attribute ids) as a multi-hot row.

    Args:
        item_ids: Items in row order.
        attributes: Item id -> its attributes (items absent get an all-zero row, i.e. "missing" for the RQ-VAE).
        min_count: Drop attributes held by fewer items.

    Returns:
        A float32 array `(len(item_ids), n_attributes)`.
    """
    counts: dict[str, int] = {}
    for item in item_ids:
        for attr in set(attributes.get(item, ())):
            counts[attr] = counts.get(attr, 0) + 1
    vocab = {a: j for j, a in enumerate(sorted(a for a, c in counts.items() if c >= min_count))}
    if not vocab:
        raise ValueError(
            "No item has an attribute (after min_count); give attributes for the catalogue's items."
        )
    out = np.zeros((len(item_ids), len(vocab)), dtype=np.float32)  # (n_items, n_attributes)
    for row, item in enumerate(item_ids):
        cols = [vocab[a] for a in attributes.get(item, ()) if a in vocab]
        out[row, cols] = 1.0
    return out


def cooccurrence_features(
    item_ids: Sequence[str],
    train_histories: Mapping[str, Sequence[str]],
    dim: int = 64,
    window: int = 3,
    seed: int = 42,
) -> np.ndarray:
    """Collaborative item vectors: a truncated SVD of the item-item co-occurrence matrix (PPMI-weighted).

    Build it from **training** histories only. Items that never co-occur get an all-zero row ("missing").

    Args:
        item_ids: Items in row order.
        train_histories: User -> training items.
        dim: Output dimension.
        window: Co-occurrence window (see `hf_semtok.data.cooccurrence.build_cooccurrence_pairs`).
        seed: Seed of the randomised SVD.

    Returns:
        A float32 array `(len(item_ids), dim)`.
    """
    from hf_semtok.data.cooccurrence import build_cooccurrence_pairs

    pairs = build_cooccurrence_pairs(train_histories, window=window, item_ids=item_ids, symmetric=True)
    n = len(item_ids)
    if not len(pairs):
        raise ValueError(
            "The training histories hold no co-occurring items; cooccurrence_features needs some."
        )
    idx = torch.from_numpy(pairs.T.copy())  # (2, n_pairs)
    mat = torch.sparse_coo_tensor(
        idx, torch.ones(idx.shape[1]), (n, n), check_invariants=True
    ).coalesce()  # (n, n) counts
    rows, vals = mat.indices(), mat.values()
    row_sum = torch.zeros(n).index_add_(0, rows[0], vals)
    total = vals.sum()
    pmi = torch.log(vals * total / (row_sum[rows[0]] * row_sum[rows[1]]))
    ppmi = torch.sparse_coo_tensor(rows, pmi.clamp_min(0), (n, n), check_invariants=True).coalesce()
    torch.manual_seed(seed)
    u, s, _ = torch.svd_lowrank(ppmi, q=min(dim, n - 1), niter=4)  # (n, dim), (dim,)
    out = (u * s.sqrt()).numpy().astype(np.float32)
    if out.shape[1] < dim:
        out = np.pad(out, ((0, 0), (0, dim - out.shape[1])))
    return out


def sid_table_from_codes(
    codes: Mapping[str, Sequence[int]], item_ids: Sequence[str], codebook_sizes: Sequence[int] | None = None
) -> Any:
    """Make a `SIDTable` from given codes, e.g. published SIDs (LC-Rec `*.index.json`).

    Items sharing a SID get TIGER's extra disambiguating level (`assign_unique_sids(strategy="extra_level")`),
    so every item is retrievable and a hit counts only for the exact item; without collisions the codes are
    kept as they are.

    Args:
        codes: Item id -> code tuple (same length for every item).
        item_ids: Items to include, in row order; every one needs codes.
        codebook_sizes: Codes per level (default: the largest code + 1 of each level).

    Returns:
        A `hf_semtok.sids.SIDTable`.
    """
    from hf_semtok.sids import SIDTable, assign_unique_sids

    missing = [i for i in item_ids if i not in codes]
    if missing:
        raise ValueError(
            f"{len(missing)} items have no codes, e.g. {missing[:5]}; give codes for every item."
        )
    mat = np.asarray([codes[i] for i in item_ids], dtype=np.int64)  # (n_items, L)
    sizes = list(codebook_sizes) if codebook_sizes is not None else [int(c) + 1 for c in mat.max(axis=0)]
    if len(np.unique(mat, axis=0)) == len(mat):
        return SIDTable(list(item_ids), mat, sizes, num_semantic_levels=len(sizes), collision_strategy="none")
    return assign_unique_sids(mat, list(item_ids), sizes, strategy="extra_level")


def build_sids(
    embeddings: np.ndarray | Mapping[str, np.ndarray],
    item_ids: Sequence[str],
    train_histories: Mapping[str, Sequence[str]],
    config: SIDStageConfig | None = None,
    seed: int = 42,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Train an RQ-VAE on item features and assign unique Semantic IDs.

    Args:
        embeddings: `(n_items, dim)` or modality name -> `(n_items, dim_m)`, rows in `item_ids` order.
        item_ids: The catalogue's items.
        train_histories: Training histories (validation/test targets removed); the source of co-occurrence pairs.
        config: RQ-VAE settings.
        seed: Seed (same seed, same SIDs).
        output_dir: Where `train_rqvae` saves the model, table and report.
        progress: Show progress bars.

    Returns:
        `(sid_table, report)`; the report is `train_rqvae`'s quality report.
    """
    from hf_semtok.configuration_rqvae import RQVAEConfig
    from hf_semtok.data.cooccurrence import build_cooccurrence_pairs
    from hf_semtok.training import train_rqvae

    config = config or SIDStageConfig()
    if isinstance(embeddings, Mapping):
        dims: dict[str, int] | int = {name: int(np.asarray(m).shape[1]) for name, m in embeddings.items()}
    else:
        dims = int(np.asarray(embeddings).shape[1])
    rq_config = RQVAEConfig(
        modality_dims=dims,
        modality_weights=config.modality_weights,
        hidden_sizes=list(config.hidden_sizes),
        latent_dim=config.latent_dim,
        codebook_sizes=list(config.codebook_sizes),
        contrastive_weight=config.contrastive_weight,
        **config.extra,
    )
    pairs = None
    if config.contrastive_weight > 0:
        pairs = build_cooccurrence_pairs(
            train_histories, window=config.cooccurrence_window, item_ids=item_ids
        )
    result = train_rqvae(
        embeddings,
        config=rq_config,
        item_ids=list(item_ids),
        cooccurrence_pairs=pairs,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=seed,
        output_dir=output_dir,
        collision_strategy=config.collision_strategy,
        progress=progress,
    )
    return result.sid_table, result.report


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
    from hf_semtok.prompts import HISTORY_PREFIX, NEXT_ITEM_SUFFIX

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
) -> Any:
    """A `SemanticIDTokenizer` on a tiny byte-level BPE base tokenizer, for a generator trained from scratch.

    Args:
        sid_table: A `SIDTable` or `{item_id: codes}`.
        base_texts: Text the base tokenizer is trained on (default: a few words; only SID tokens matter here).
        vocab_size: Base vocabulary size (the 256 byte symbols and 4 special tokens are always in).
        sid_only_prompt: Give the tokenizer `sid_only_chat_template()`, so history prompts are bare SID sequences.

    Returns:
        The tokenizer.
    """
    from hf_semtok.base_models import train_base_tokenizer
    from hf_semtok.tokenization_semtok import SemanticIDTokenizer

    if isinstance(sid_table, Mapping):
        sid_table = sid_table_from_codes(sid_table, list(sid_table))
    texts = list(base_texts) if base_texts else ["the user bought these items next"]
    base = train_base_tokenizer(texts, vocab_size=vocab_size, kind="byte_bpe")
    tokenizer = SemanticIDTokenizer.from_base(base, sid_table=sid_table)
    if sid_only_prompt:
        tokenizer.chat_template = sid_only_chat_template()
    return tokenizer


# ---------------------------------------------------------------------------------------------------------
# Generator training


def _check_prompt_is_sid_sequence(tokenizer: Any, history: Sequence[str]) -> None:
    """The efficient training layout needs the inference prompt to be the plain concatenation of the items' SIDs."""
    from hf_semtok.prompts import history_prompt

    prompt = history_prompt(tokenizer, list(history), max_history=None)
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if list(prompt_ids) != list(tokenizer.encode_items(list(history))):
        raise ValueError(
            f"The tokenizer's history prompt ({prompt[:60]!r}...) is not the bare concatenation of the items' "
            "SIDs, so training on whole SID sequences would not match inference. Build the tokenizer with "
            "build_sid_tokenizer(..., sid_only_prompt=True), or train on the SFT corpus of hf_semtok.corpus."
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
        One dict per window: `input_ids` and `labels` (`-100` on context-only items and the first token).
    """
    width = max_history + 1
    per_item = tokenizer.num_levels + 2  # <|sid_start|>, codes, <|sid_end|>
    out = []
    for history in train_histories.values():
        history = list(history)
        if not history:
            continue
        ids = tokenizer.encode_items(history)  # (len(history) * per_item,)
        covered = 0
        start = 0
        while True:
            stop = min(start + width, len(history))
            window = ids[start * per_item : stop * per_item]
            labels = list(window)
            n_context = covered - start  # items already predicted by an earlier window
            labels[: max(1, n_context * per_item)] = [-100] * max(1, n_context * per_item)
            out.append({"input_ids": list(window), "labels": labels})
            covered = stop
            if stop >= len(history):
                break
            start += window_stride
    return out


class _SequenceDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


class _Clock:
    """Training time (periodic evaluations excluded) and the progress that drives the learning rate."""

    def __init__(
        self, budget_s: float | None, total_steps: int, warmup_steps: int, min_lr_ratio: float
    ) -> None:
        self.budget_s, self.total_steps = budget_s, max(1, total_steps)
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        self.start = time.perf_counter()
        self.paused = 0.0

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def progress(self, step: int) -> float:
        by_time = self.train_seconds() / self.budget_s if self.budget_s else 0.0
        return min(1.0, max(step / self.total_steps, by_time))

    def lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


class PrefillOnceLM:
    """Wrap a causal LM so beam search computes each prompt's KV cache once instead of once per beam.

    `generate(num_beams=B)` copies every prompt `B` times *before* the prefill, so the prompt's forward pass runs
    `B` times (20x for TIGER's 20 beams). This wrapper runs the prompt minus its last token once, repeats the
    cache `B` times and lets `generate` continue from it. The rankings are the same up to float rounding (checked
    in the tests); on 2 CPU cores evaluation is ~4x faster. Every other attribute is the wrapped model's, so
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
        if expand == 1 or input_ids.shape[1] < 2 or kwargs.get("past_key_values") is not None:
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
        cache = out.past_key_values
        cache.batch_repeat_interleave(expand)  # (batch * expand, ...) in generate's beam order
        return self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kwargs
        )


def _make_callback(
    clock: _Clock, tokenizer: Any, config: GeneratorConfig, valid: Sequence[tuple[list[str], str]]
):
    from transformers import TrainerCallback

    from hf_semtok.metrics import evaluate_recommender

    class _BudgetAndCurve(TrainerCallback):
        """Stops training when the time budget is spent; evaluates the validation subsample every N steps."""

        def __init__(self) -> None:
            self.curve: list[dict[str, Any]] = []
            self.stop_reason = "steps"

        def _evaluate(self, state: Any, model: Any) -> None:
            began = time.perf_counter()
            metrics = evaluate_recommender(
                PrefillOnceLM(model),
                tokenizer,
                valid,
                ks=config.ks,
                num_beams=config.num_beams,
                batch_size=config.eval_batch_size,
                max_history=config.max_history,
                progress=False,
            )
            model.train()
            record = {
                "step": state.global_step,
                "tokens_seen": int(state.num_input_tokens_seen),
                "train_seconds": round(clock.train_seconds(), 1),
                **{k: v for k, v in metrics.items() if k.startswith(("recall", "ndcg"))},
            }
            self.curve.append(record)
            logger.info("validation at step %d: %s", state.global_step, record)
            clock.paused += time.perf_counter() - began

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
            if config.max_train_minutes and clock.train_seconds() >= 60.0 * config.max_train_minutes:
                control.should_training_stop = True
                self.stop_reason = "time budget"
            if valid and config.eval_every_steps > 0 and state.global_step % config.eval_every_steps == 0:
                self._evaluate(state, model)
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
            if (
                valid
                and config.eval_every_steps > 0
                and (not self.curve or self.curve[-1]["step"] != state.global_step)
            ):
                self._evaluate(state, model)
            return control

    return _BudgetAndCurve()


def train_generator(
    tokenizer: Any,
    train_histories: Mapping[str, Sequence[str]],
    config: GeneratorConfig | None = None,
    valid_examples: Sequence[tuple[Sequence[str], str]] | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Train a small causal LM from scratch on training histories written as SID sequences.

    Uses the stock `transformers.Trainer` with an AdamW + warm-up + cosine schedule whose progress is the larger
    of steps done / steps planned and time spent / `max_train_minutes`, and a callback that stops at the time
    budget and records validation Recall/NDCG on a fixed subsample every `eval_every_steps` steps.

    Args:
        tokenizer: The `SemanticIDTokenizer` (no chat template: the prompt must be the plain SID sequence).
        train_histories: User -> training items.
        config: Model and training settings.
        valid_examples: `(history, target)` validation pairs for the curve (subsampled to `eval_users`).
        output_dir: If set, the trained model and the tokenizer are saved to `output_dir/model`.
        progress: Show the Trainer's progress bar.

    Returns:
        `(model, training_facts, curve)`.
    """
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from hf_semtok.base_models import build_causal_lm

    config = config or GeneratorConfig()
    train_histories = {u: list(h) for u, h in train_histories.items() if h}
    if not train_histories:
        raise ValueError("train_histories are empty; pass the training split of leave_one_out_split.")
    _check_prompt_is_sid_sequence(tokenizer, next(iter(train_histories.values()))[:3])
    rows = history_sequences(tokenizer, train_histories, config.max_history, config.window_stride)
    n_tokens = sum(len(r["input_ids"]) for r in rows)
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    planned = config.max_steps if config.max_steps > 0 else math.ceil(config.num_epochs * steps_per_epoch)
    if config.max_train_minutes and config.max_steps <= 0 and config.num_epochs <= 0:
        planned = 10**9
    set_seed(config.seed)
    per_item = tokenizer.num_levels + 2
    model = build_causal_lm(
        len(tokenizer),
        arch=config.arch,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        num_kv_heads=config.num_kv_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=(config.max_history + 2) * per_item + 8,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        seed=config.seed,
    )
    if config.attention_dropout > 0:
        model.config.attention_dropout = config.attention_dropout
        for module in model.modules():  # attention layers read the rate at construction
            if hasattr(module, "attention_dropout"):
                module.attention_dropout = config.attention_dropout
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "Generator: %s, %.2fM parameters; %d training windows, %d tokens per epoch, %d steps planned",
        config.arch, n_params / 1e6, len(rows), n_tokens, planned,
    )  # fmt: skip
    valid = list(valid_examples or [])
    if len(valid) > config.eval_users:
        valid = random.Random(config.seed).sample(valid, config.eval_users)
    valid = _by_length(valid, config.max_history)
    clock = _Clock(
        60.0 * config.max_train_minutes if config.max_train_minutes else None,
        planned,
        config.warmup_steps,
        config.min_lr_ratio,
    )
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, clock.lr_factor)
    callback = _make_callback(clock, tokenizer, config, valid)
    with tempfile.TemporaryDirectory(prefix="semtok-generator-") as trainer_dir:
        args = TrainingArguments(
            output_dir=trainer_dir,
            per_device_train_batch_size=config.batch_size,
            max_steps=planned,
            logging_steps=max(1, min(200, planned // 20)),
            save_strategy="no",
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            bf16=config.bf16,
            seed=config.seed,
            train_sampling_strategy="group_by_length",
            include_num_input_tokens_seen="non_padding",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_SequenceDataset(rows),
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True),
            optimizers=(optimizer, scheduler),
            callbacks=[callback],
        )
        clock.start = time.perf_counter()
        trainer.train()
        state = trainer.state
    model.eval()
    facts = {
        "steps": state.global_step,
        "epochs": round(state.global_step / steps_per_epoch, 3),
        "tokens_seen": int(state.num_input_tokens_seen),
        "tokens_per_epoch": n_tokens,
        "train_windows": len(rows),
        "train_seconds": round(clock.train_seconds(), 1),
        "tokens_per_second": round(state.num_input_tokens_seen / max(clock.train_seconds(), 1e-9), 1),
        "stop_reason": callback.stop_reason,
        "num_parameters": n_params,
        "final_train_loss": next((r["loss"] for r in reversed(state.log_history) if "loss" in r), None),
    }
    if output_dir is not None:
        _save_atomic(model, tokenizer, Path(output_dir) / "model")
    return model, facts, callback.curve


def _by_length(examples: list[tuple[Any, str]], max_history: int) -> list[tuple[Any, str]]:
    """Order `(history, target)` pairs by prompt length: batches of similar length need far less padding.

    Beam search copies every padded position of the KV cache at each step, so this halves evaluation time;
    the metrics are means over users and do not depend on the order.
    """
    return sorted(examples, key=lambda ex: min(len(ex[0]), max_history))


def _save_atomic(model: Any, tokenizer: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------------------
# End to end


def run_pipeline(
    catalogue: Any,
    sid_table: Any = None,
    embeddings: np.ndarray | Mapping[str, np.ndarray] | None = None,
    sid_config: SIDStageConfig | None = None,
    config: GeneratorConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PipelineResult:
    """Run Semantic IDs -> generator training -> leave-one-out test evaluation on a catalogue.

    Args:
        catalogue: A `hf_semtok.data.Catalogue` with chronological histories.
        sid_table: Ready-made SIDs (a `SIDTable` or `{item_id: codes}`, e.g. published ones); or
        embeddings: Item features, rows in `catalogue.item_ids` order, for an RQ-VAE trained here (`sid_config`).
        sid_config: RQ-VAE settings when `embeddings` are given.
        config: Generator settings.
        output_dir: If set: `sids/` (RQ-VAE output) and `model/` (generator + tokenizer) are written there.
        progress: Show progress bars.

    Returns:
        A `PipelineResult`.
    """
    from hf_semtok.data.formats import leave_one_out_split
    from hf_semtok.metrics import evaluate_recommender, popularity_baseline

    config = config or GeneratorConfig()
    if (sid_table is None) == (embeddings is None):
        raise ValueError("Pass exactly one of sid_table (ready-made SIDs) and embeddings (train an RQ-VAE).")
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=config.max_history)
    if not test:
        raise ValueError("No user has 3 or more items, so there is nothing to test; check the histories.")
    sid_facts: dict[str, Any] = {}
    if embeddings is not None:
        began = time.perf_counter()
        sid_dir = Path(output_dir) / "sids" if output_dir is not None else None
        sid_table, report = build_sids(
            embeddings,
            catalogue.item_ids,
            train,
            sid_config,
            seed=config.seed,
            output_dir=sid_dir,
            progress=progress,
        )
        sid_facts["rqvae_seconds"] = round(time.perf_counter() - began, 1)
        sid_facts["quality"] = report
    elif isinstance(sid_table, Mapping):
        sid_table = sid_table_from_codes(sid_table, catalogue.item_ids)
    sid_facts.update(
        num_levels=len(sid_table.codebook_sizes),
        codebook_sizes=list(sid_table.codebook_sizes),
        num_semantic_levels=sid_table.num_semantic_levels,
        collision_strategy=sid_table.collision_strategy,
        collision_stats={k: v for k, v in sid_table.stats.items() if isinstance(v, (int, float, str))},
    )
    tokenizer = build_sid_tokenizer(sid_table)
    model, training, curve = train_generator(
        tokenizer,
        train,
        config,
        valid_examples=list(valid.values()),
        output_dir=output_dir,
        progress=progress,
    )
    test_examples = [test[u] for u in sorted(test)]
    if config.test_users is not None and config.test_users < len(test_examples):
        test_examples = random.Random(config.seed + 1).sample(test_examples, config.test_users)
    test_examples = _by_length(test_examples, config.max_history)
    began = time.perf_counter()
    metrics = evaluate_recommender(
        PrefillOnceLM(model),
        tokenizer,
        test_examples,
        ks=config.ks,
        num_beams=config.num_beams,
        batch_size=config.eval_batch_size,
        max_history=config.max_history,
        progress=progress,
    )
    eval_seconds = time.perf_counter() - began
    popularity = popularity_baseline(train, test_examples, ks=config.ks)
    popularity.pop("top_items", None)
    return PipelineResult(
        metrics=metrics,
        popularity=popularity,
        curve=curve,
        sid=sid_facts,
        model={
            "arch": config.arch,
            "num_parameters": training["num_parameters"],
            "vocab_size": len(tokenizer),
            "hidden_size": config.hidden_size,
            "num_layers": config.num_layers,
        },
        training=training,
        evaluation={
            "test_users": len(test_examples),
            "all_test_users": len(test),
            "eval_seconds": round(eval_seconds, 1),
            "num_beams": config.num_beams,
            "max_history": config.max_history,
        },
        config=dataclasses.asdict(config),
    )
