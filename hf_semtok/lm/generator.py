"""A TIGER-style generator trained from scratch on training histories written as SID sequences.

TIGER (Rajput et al., NeurIPS 2023, arXiv 2305.05065) with a decoder-only generator: a `SemanticIDTokenizer` on a
tiny base tokenizer (a model trained from scratch needs almost no text vocabulary) and a small Qwen2/Llama-style
causal LM. The next-item loss on every SID position of a history trains on every prefix of it in one pass.

Prompts: the generator reads bare SID sequences. `build_sid_tokenizer` gives the tokenizer a chat template
(`sid_only_chat_template`) that renders `hf_semtok.prompts.history_prompt` as the concatenated SIDs of the
history, so training and `recommend()` see the same tokens. By default an item is written in the bare SID layout
(its `L` code tokens, no `<|sid_start|>`/`<|sid_end|>`; `SemanticIDTokenizer.sid_layout`): 4 tokens per item
instead of 6 for 4 levels, a third fewer tokens for the same items.

Training sequences: a user's training history `[i_1, ..., i_n]` (validation and test targets removed by
`leave_one_out_split`) is cut by `hf_semtok.data.history_windows` into windows of at most `max_history + 1`
items. The first window starts at `i_1` and every item in it is a target. Later windows start `window_stride`
items further on, and only their items not yet covered are targets. So every training item is predicted once,
with between `max_history + 1 - window_stride` and `max_history` items of context once the history is long enough.
(In the bare layout the very first token of a window has no context and no label.)

Reproducibility: a run bounded by `max_steps` with the same seed and torch threads gives the same model and
metrics on a loaded machine, only later; `max_train_minutes` stays an option for exploration.

Regularisation: `embedding_dropout` (on the token embeddings), `hidden_dropout` (on the output of every attention
and MLP block before it joins the residual stream, as GPT-2's residual dropout; Qwen2 and Llama have none),
`attention_dropout` and `weight_decay`. The dropouts are forward hooks, active in train mode only; the saved
model is a plain checkpoint. `label_smoothing` moves a share of each SID label's target mass onto the other codes
of the same level (`level_smoothed_loss`): the codes the constrained decoder chooses among, never text tokens.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from hf_semtok.constants import DEFAULT_SEED, SID_LAYOUTS
from hf_semtok.evaluation import evaluate_recommender, subsample_examples
from hf_semtok.io_utils import save_file_set
from hf_semtok.lm.corpus import lm_collator
from hf_semtok.lm.sid_sequences import (
    check_prompt_is_sid_sequence,
    history_sequences,
    order_by_history_length,
)
from hf_semtok.small_models import build_causal_lm

logger = logging.getLogger(__name__)


@dataclass
class GeneratorConfig:
    """The generator LM (trained from scratch) and its training and evaluation settings.

    Args:
        arch: `"qwen2"` or `"llama"` (`hf_semtok.small_models.build_causal_lm`).
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (default: `num_heads`).
        intermediate_size: MLP width (default: `4 * hidden_size`).
        sid_layout: How the generator writes an item: `"bare"` (its `L` code tokens) or `"marked"`
            (`<|sid_start|>` codes `<|sid_end|>`); saved with the tokenizer (`SemanticIDTokenizer.sid_layout`).
        attention_dropout: Dropout on the attention weights during training.
        embedding_dropout: Dropout on the token embeddings during training.
        hidden_dropout: Dropout on each attention and MLP block's output before it is added to the residual
            stream, during training (GPT-2's residual dropout).
        label_smoothing: Share of each SID label's target mass spread evenly over the codes of its level
            (`level_smoothed_loss`; 0: the model's own cross-entropy).
        learning_rate: Peak AdamW learning rate.
        min_lr_ratio: The cosine schedule ends at `learning_rate * min_lr_ratio`.
        weight_decay: AdamW weight decay (on matrices; biases and norms get none).
        warmup_steps: Linear warm-up steps.
        batch_size: Sequences per step.
        num_epochs: Passes over the training sequences.
        max_steps: Stop after this many steps (overrides `num_epochs` when > 0). Runs meant to be reproduced
            (benchmark rows) are bounded by steps.
        max_train_minutes: Optional wall-clock budget of training (periodic evaluations excluded), for exploring.
            The learning-rate schedule follows whichever of steps and time runs out first, so a budgeted run still
            anneals; its step count depends on the machine's load, so its numbers do not reproduce.
        window_stride: Items between the starts of two training windows of a long history (see module doc).
        max_history: Items of history the model sees (TIGER: 20), in training and evaluation.
        eval_every_steps: Evaluate on `eval_users` validation users every this many steps (0: never).
        eval_users: Size of the fixed validation subsample of the curve during training (`None`: all users).
        select_best: Model selection on the curve: keep the weights of the curve's point with the highest
            `select_metric` (the first one on ties) instead of the last step's. The curve is measured on the
            `eval_users` validation subsample only, never on test. Needs `eval_every_steps > 0`.
        select_metric: The curve's metric that `select_best` maximises, e.g. `"ndcg@10"` or `"recall@10"`.
        valid_users: Validation users of the final validation evaluation that `run_pipeline` reports beside the
            test metrics (`None`: all; 0: skip it).
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
    sid_layout: str = "bare"
    attention_dropout: float = 0.0
    embedding_dropout: float = 0.0
    hidden_dropout: float = 0.0
    label_smoothing: float = 0.0
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
    eval_users: int | None = 500
    select_best: bool = False
    select_metric: str = "ndcg@10"
    valid_users: int | None = None
    eval_batch_size: int = 32
    num_beams: int = 20
    ks: list[int] = field(default_factory=lambda: [5, 10])
    test_users: int | None = None
    bf16: bool = False
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.sid_layout not in SID_LAYOUTS:
            raise ValueError(f"sid_layout must be one of {list(SID_LAYOUTS)}, got {self.sid_layout!r}.")
        for name in ("attention_dropout", "embedding_dropout", "hidden_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        for name in ("eval_users", "valid_users", "test_users"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None (all users), got {value}.")
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
        if self.select_best and self.eval_every_steps <= 0:
            raise ValueError(
                "select_best picks the best point of the validation curve, which needs eval_every_steps > 0; "
                "set eval_every_steps (e.g. a tenth of max_steps) or select_best=False."
            )
        metric, _, cutoff = self.select_metric.partition("@")
        if metric not in ("recall", "ndcg") or not cutoff.isdigit() or int(cutoff) not in self.ks:
            raise ValueError(
                f"select_metric must be 'recall@K' or 'ndcg@K' with K in ks={self.ks}; got {self.select_metric!r}."
            )
        if self.max_steps <= 0 and self.num_epochs <= 0 and not self.max_train_minutes:
            raise ValueError(
                "Give a positive num_epochs, max_steps or max_train_minutes, or training never runs."
            )


def evaluate_with_standard_errors(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[Sequence[str], str]],
    config: GeneratorConfig,
    progress: bool = False,
) -> dict[str, Any]:
    """`evaluate_recommender` with the config's beam search, plus a standard error beside every metric.

    Args:
        model: The generator.
        tokenizer: Its `SemanticIDTokenizer`.
        examples: `(history, target)` pairs.
        config: Gives `ks`, `num_beams`, `eval_batch_size` and `max_history`.
        progress: Show a progress bar.

    Returns:
        `evaluate_recommender`'s metrics plus `"recall@K_se"` and `"ndcg@K_se"` for each K (see
        `hf_semtok.evaluation.ranking_metrics`).
    """
    return evaluate_recommender(
        model,  # recommend() prefills each prompt once (PrefillOnceLM) by default
        tokenizer,
        list(examples),
        ks=config.ks,
        num_beams=config.num_beams,
        batch_size=config.eval_batch_size,
        max_history=config.max_history,
        progress=progress,
        standard_errors=True,
    )


def _dropout_hook(p: float) -> Any:
    """A forward hook that applies dropout `p` to a module's output (the first element of a tuple), in train mode."""

    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if not module.training:
            return None  # eval mode: the output is left as it is
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, training=True), *output[1:])
        return F.dropout(output, p, training=True)

    return hook


def add_dropout_hooks(
    model: torch.nn.Module, embedding_dropout: float = 0.0, hidden_dropout: float = 0.0
) -> list[Any]:
    """Add embedding and residual (hidden-state) dropout to a Qwen2/Llama-style causal LM, as forward hooks.

    Qwen2 and Llama configs have attention dropout only. These hooks add dropout on the token embeddings and on
    the output of every attention and MLP block before it is added to the residual stream (GPT-2's `embd_pdrop`
    and `resid_pdrop`), active only while the module is in train mode. Hooks are not saved: the checkpoint stays
    a plain model.

    Args:
        model: A causal LM whose decoder layers have `self_attn` and `mlp` submodules.
        embedding_dropout: Dropout probability on the input embeddings (0: none).
        hidden_dropout: Dropout probability on each block's output (0: none).

    Returns:
        The hook handles (`handle.remove()` takes a hook off).
    """
    handles = []
    if embedding_dropout > 0:
        handles.append(model.get_input_embeddings().register_forward_hook(_dropout_hook(embedding_dropout)))
    if hidden_dropout > 0:
        layers = [m for m in model.modules() if hasattr(m, "self_attn") and hasattr(m, "mlp")]
        if not layers:
            raise ValueError(
                f"hidden_dropout needs decoder layers with `self_attn` and `mlp` submodules; "
                f"{type(model).__name__} has none. Use arch 'qwen2' or 'llama', or set hidden_dropout to 0."
            )
        for layer in layers:
            for block in (layer.self_attn, layer.mlp):
                handles.append(block.register_forward_hook(_dropout_hook(hidden_dropout)))
    return handles


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


def _make_callback(
    clock: _Clock, tokenizer: Any, config: GeneratorConfig, valid: Sequence[tuple[list[str], str]]
):

    class _BudgetAndCurve(TrainerCallback):
        """Stops training when the time budget is spent; evaluates the validation subsample every N steps and,
        with `select_best`, keeps a copy of the weights at the best point so far."""

        def __init__(self) -> None:
            self.curve: list[dict[str, Any]] = []
            self.stop_reason = "steps"
            self.best: dict[str, Any] | None = None  # {"step", "value", "state"}

        def _evaluate(self, state: Any, model: Any) -> None:
            began = time.perf_counter()
            metrics = evaluate_with_standard_errors(model, tokenizer, valid, config)
            model.train()
            record = {
                "step": state.global_step,
                "tokens_seen": int(state.num_input_tokens_seen),
                "train_seconds": round(clock.train_seconds(), 1),
                **{k: v for k, v in metrics.items() if k.startswith(("recall", "ndcg"))},
            }
            self.curve.append(record)
            logger.info("validation at step %d: %s", state.global_step, record)
            value = record[config.select_metric]
            if config.select_best and (self.best is None or value > self.best["value"]):
                weights = {
                    k: v.detach().clone() for k, v in getattr(model, "module", model).state_dict().items()
                }
                self.best = {"step": state.global_step, "value": value, "state": weights}
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
        tokenizer: The `SemanticIDTokenizer` whose history prompt is the plain SID sequence
            (`build_sid_tokenizer`), in the SID layout of `config.sid_layout`.
        train_histories: User -> training items.
        config: Model and training settings.
        valid_examples: `(history, target)` validation pairs for the curve (subsampled to `eval_users`).
        output_dir: If set, the trained model and the tokenizer are saved to `output_dir/model`.
        progress: Show the Trainer's progress bar.

    Returns:
        `(model, training_facts, curve)`. The facts hold steps, epochs, tokens seen, training seconds, torch
        threads, tokens per item, tokens/s and target items/s (target items seen: tokens seen times the epoch's
        target items per token), and the step whose weights the model holds (`selected_step`: the last one, or
        the curve's best with `config.select_best`).
    """

    config = config or GeneratorConfig()
    layout = tokenizer.sid_layout
    if layout != config.sid_layout:
        raise ValueError(
            f"The tokenizer writes items in the {layout!r} SID layout but config.sid_layout is "
            f"{config.sid_layout!r}; build the tokenizer with build_sid_tokenizer(..., sid_layout="
            f"{config.sid_layout!r}) or set GeneratorConfig(sid_layout={layout!r})."
        )
    train_histories = {u: list(h) for u, h in train_histories.items() if h}
    if not train_histories:
        raise ValueError("train_histories are empty; pass the training split of leave_one_out_split.")
    check_prompt_is_sid_sequence(tokenizer, next(iter(train_histories.values()))[:3])
    rows = history_sequences(tokenizer, train_histories, config.max_history, config.window_stride)
    n_tokens = sum(len(r["input_ids"]) for r in rows)
    # Every training item is a target once per epoch.
    n_targets = sum(len(h) for h in train_histories.values())
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    planned = config.max_steps if config.max_steps > 0 else math.ceil(config.num_epochs * steps_per_epoch)
    if config.max_train_minutes and config.max_steps <= 0 and config.num_epochs <= 0:
        planned = 10**9
    set_seed(config.seed)
    per_item = tokenizer.tokens_per_item
    model = _build_model(tokenizer, config)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "Generator: %s, %.2fM parameters; %d training windows, %d tokens per epoch, %d steps planned",
        config.arch, n_params / 1e6, len(rows), n_tokens, planned,
    )  # fmt: skip
    valid = subsample_examples(valid_examples or [], config.eval_users, config.seed)
    valid = order_by_history_length(valid, config.max_history)
    clock = _Clock(
        60.0 * config.max_train_minutes if config.max_train_minutes else None,
        planned,
        config.warmup_steps,
        config.min_lr_ratio,
    )
    callback = _make_callback(clock, tokenizer, config, valid)
    state = _run_trainer(model, tokenizer, rows, config, clock, callback, planned, progress)
    selected_step = state.global_step
    if callback.best is not None:
        model.load_state_dict(callback.best["state"])
        selected_step = callback.best["step"]
        logger.info(
            "select_best: keeping the weights of step %d (validation %s %.4f on %d users)",
            selected_step, config.select_metric, callback.best["value"], len(valid),
        )  # fmt: skip
    model.eval()
    facts = _training_facts(
        state, clock, callback, config, layout, per_item, rows, n_tokens, n_targets, len(valid)
    )
    facts["num_parameters"] = n_params
    facts["epochs"] = round(state.global_step / steps_per_epoch, 3)
    facts["selected_step"] = selected_step
    if output_dir is not None:
        _save_atomic(model, tokenizer, Path(output_dir) / "model")
    return model, facts, callback.curve


def _run_trainer(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Any],
    config: GeneratorConfig,
    clock: _Clock,
    callback: Any,
    planned: int,
    progress: bool,
) -> Any:
    """Train `model` on the windows `rows` with the stock `Trainer` for `planned` steps; returns its state."""
    optimizer, scheduler = _optimizer(model, config, clock)
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
            train_dataset=rows,  # the Trainer takes any sized, indexable dataset
            data_collator=lm_collator(tokenizer),
            optimizers=(optimizer, scheduler),
            callbacks=[callback],
            compute_loss_func=(
                level_smoothed_loss(tokenizer.sid_token_ids, len(tokenizer), config.label_smoothing)
                if config.label_smoothing > 0
                else None  # the model's own loss: runs without smoothing stay bit-identical
            ),
        )
        clock.start = time.perf_counter()
        trainer.train()
        return trainer.state


def level_smoothed_loss(level_token_ids: Sequence[Sequence[int]], vocab_size: int, smoothing: float) -> Any:
    """A causal-LM loss with label smoothing inside each SID level, for `Trainer(compute_loss_func=...)`.

    For a label that is a level-`l` SID token the loss is `(1 - smoothing) * -log p(label)` plus `smoothing` times
    the mean of `-log p(c)` over the codes `c` of level `l`, with `p` the softmax over the whole vocabulary. So the
    mass taken from the label goes to the codes constrained decoding chooses among at that step, not to text
    tokens or other levels. Any other label (an end marker, text) keeps the plain cross-entropy. Labels are
    shifted as the model's own loss shifts them (position `t` predicts label `t + 1`); `-100` is ignored.

    Args:
        level_token_ids: `level_token_ids[l]` lists the token ids of level `l`
            (`SemanticIDTokenizer.sid_token_ids`).
        vocab_size: The model's vocabulary size.
        smoothing: The share in `[0, 1)`; 0 gives the plain cross-entropy.

    Returns:
        `loss(outputs, labels, num_items_in_batch=None)`: the summed loss over labelled positions divided by
        `num_items_in_batch` (the Trainer's count of labels in the batch) or, without it, by the local count.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}.")
    level_of = torch.full((vocab_size,), -1, dtype=torch.long)
    averaging = torch.zeros(len(level_token_ids), vocab_size)  # row l: 1/|level l| on level l's tokens
    for level, ids in enumerate(level_token_ids):
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        if ids.numel() == 0 or int(ids.max()) >= vocab_size or int(ids.min()) < 0:
            raise ValueError(f"Level {level}'s token ids must be non-empty and lie in [0, {vocab_size}).")
        level_of[ids] = level
        averaging[level, ids] = 1.0 / ids.numel()

    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        shifted = labels[:, 1:].to(logits.device)
        keep = shifted != -100
        log_probs = torch.log_softmax(logits[:, :-1][keep].float(), dim=-1)  # (N, V): labelled positions only
        target = shifted[keep]
        nll = -log_probs.gather(1, target[:, None]).squeeze(1)
        levels = level_of.to(target.device)[target]
        # (N, levels): the mean -log p over each level's codes
        level_mean = -(log_probs @ averaging.to(log_probs.device).T)
        smoothed = level_mean.gather(1, levels.clamp(min=0)[:, None]).squeeze(1)
        per_label = torch.where(levels >= 0, (1.0 - smoothing) * nll + smoothing * smoothed, nll)
        count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        return per_label.sum() / torch.as_tensor(count, device=per_label.device).clamp(min=1)

    return loss


def _build_model(tokenizer: Any, config: GeneratorConfig) -> Any:
    """The untrained generator: `build_causal_lm` sized by `config`, with its attention and residual dropouts."""
    model = build_causal_lm(
        len(tokenizer),
        arch=config.arch,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        num_kv_heads=config.num_kv_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=(config.max_history + 2) * tokenizer.tokens_per_item + 8,
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
    add_dropout_hooks(model, config.embedding_dropout, config.hidden_dropout)
    return model


def _optimizer(model: Any, config: GeneratorConfig, clock: _Clock) -> tuple[Any, Any]:
    """AdamW (no weight decay on biases and norms) and the warm-up + cosine schedule driven by `clock`."""
    decay = [p for _, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.98),
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, clock.lr_factor)


def _training_facts(
    state: Any,
    clock: _Clock,
    callback: Any,
    config: GeneratorConfig,
    layout: str,
    per_item: int,
    rows: Sequence[Any],
    n_tokens: int,
    n_targets: int,
    n_valid: int,
) -> dict[str, Any]:
    """What a run did and cost: steps, tokens and target items seen, seconds, throughput, why it stopped."""
    seconds = max(clock.train_seconds(), 1e-9)
    targets_seen = state.num_input_tokens_seen * n_targets / max(n_tokens, 1)
    return {
        "steps": state.global_step,
        "sid_layout": layout,
        "tokens_per_item": per_item,
        "threads": torch.get_num_threads(),
        "tokens_seen": int(state.num_input_tokens_seen),
        "tokens_per_epoch": n_tokens,
        "target_items_per_epoch": n_targets,
        "target_items_seen": round(targets_seen),
        "train_windows": len(rows),
        "train_seconds": round(clock.train_seconds(), 1),
        "tokens_per_second": round(state.num_input_tokens_seen / seconds, 1),
        "target_items_per_second": round(targets_seen / seconds, 1),
        "stop_reason": callback.stop_reason,
        "selection": (
            f"best validation {config.select_metric} of the curve ({n_valid} users)"
            if callback.best is not None
            else "last step"
        ),
        "final_train_loss": next((r["loss"] for r in reversed(state.log_history) if "loss" in r), None),
    }


#: The kind of file set `_save_atomic` writes (`hf_semtok.io_utils.save_file_set`).
GENERATOR_FILE_SET_KIND = "generator"


def _save_atomic(model: Any, tokenizer: Any, target: Path) -> None:
    """Save `model` and `tokenizer` together into `target` as one atomic set of files (`save_file_set`, kind
    `"generator"`): the files of the previous generator save there are replaced, everything else stays."""
    with save_file_set(target, GENERATOR_FILE_SET_KIND) as tmp:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
