"""SASRec with full cross-entropy over all items: the baseline users would pick instead of generative retrieval.

SASRec (Kang & McAuley, ICDM 2018): an item embedding plus a learned positional embedding, causal self-attention
blocks (`torch.nn.TransformerEncoderLayer`, pre-LN), and the next item scored against every item with the shared
item embedding (`hidden @ item_embedding.T`). Trained on every position of each training history with
cross-entropy over the whole catalogue (no negative sampling), AdamW.

Trained to convergence: every `eval_every_steps` steps the model ranks a fixed validation subsample (`eval_users`,
seeded; all validation users by default) and the curve records its Recall/NDCG. Training stops early once
`patience` evaluation points in a row bring no new best validation NDCG@10, and is bounded in any case by
`max_epochs` (and `max_steps` when set), never by wall time. At the end the weights of the best point are restored,
and only then come the full validation and test passes; the JSON records the curve, the best step, why training
stopped (`early_stop`, `max_epochs` or `max_steps`) and the epochs run.

Same protocol as `benchmarks/amazon.py`: its datasets (`DATASETS`), `leave_one_out_split` of the same histories
(training = all but the last two items; validation and test examples with the history cut to the most recent
`max_len` items, the test history including the validation item), every validation and test user, Recall@5/10 and
NDCG@5/10 through `hf_semtok.evaluation.ranking_metrics` with standard errors, seen items not excluded (as
`evaluate_recommender`'s default, which the generator's evaluation uses), and the popularity baseline on the same
test users. Ranking is exact over the full catalogue. Test is read once, at the end. Per-user test ranks
(`"per_user"`, as `benchmarks/transition.py` writes them) let anyone pair this row with another run.

Writes `benchmarks/results/sasrec_<dataset>.json`, regenerates `benchmarks/results/sasrec.md` from every
`sasrec_*.json` there, and `benchmarks/amazon.py` shows the row beside TIGER and ours in `amazon.md`.

Usage:
    python benchmarks/sasrec.py --config benchmarks/configs/sasrec_beauty.yaml
    python benchmarks/sasrec.py --config benchmarks/configs/sasrec_sports.yaml
    python benchmarks/sasrec.py --config benchmarks/configs/sasrec_toys.yaml
    python benchmarks/sasrec.py --config benchmarks/configs/sasrec_scientific.yaml
    python benchmarks/sasrec.py --dataset scientific --max_steps 500   # a quick look
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hf_semtok.data import history_windows, leave_one_out_split, load_catalogue
from hf_semtok.evaluation import hit_ranks, popularity_baseline, ranking_metrics, subsample_examples

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("benchmarks.sasrec")


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
import amazon as _AMAZON  # noqa: E402  (benchmarks/amazon.py)

#: The datasets of benchmarks/amazon.py: folder, loader and TIGER's published row.
DATASETS: dict[str, dict[str, Any]] = _AMAZON.DATASETS


@dataclass
class SASRecBenchConfig:
    """Settings of one SASRec run.

    Args:
        dataset: One of scientific, beauty, sports, toys (`benchmarks/amazon.py`'s `DATASETS`).
        data_root: Folder holding the dataset folders (relative paths are taken from the repository root).
        results_dir: Where the JSON and the Markdown table go (relative to the repository root).
        max_len: Items of history the model sees, in training windows and in evaluation (SASRec: 50).
        hidden_size: Width of the item and position embeddings and of every block.
        num_blocks: Causal self-attention blocks.
        num_heads: Attention heads per block.
        ffn_size: Width of each block's feed-forward layer.
        dropout: Dropout on the embeddings, the attention weights and inside every block.
        learning_rate: AdamW learning rate (constant).
        weight_decay: AdamW weight decay.
        batch_size: Training windows per step.
        bucket_batches: Batches per length bucket: each run of `bucket_batches * batch_size` shuffled windows is
            sorted by length before it is cut into batches, so batches carry little padding (1: plain random
            batches).
        max_epochs: Epoch cap: training stops after this many passes over the training windows at the latest.
        max_steps: Optional step cap (`None`: the epoch cap alone bounds the run).
        eval_every_steps: Steps between two points of the validation curve; `None` or 0: no curve, no early stop,
            the last step's weights.
        eval_users: Size of the curve's fixed validation subsample (seeded by `seed`; `None`: all validation users).
        patience: Evaluation points in a row without a new best validation NDCG at the largest K (NDCG@10) after
            which training stops early (`None` or 0: never; train to the cap). The best point's weights are
            restored before the final validation and test passes in every case.
        eval_batch_size: Users per forward pass in evaluation.
        ks: Cut-offs of Recall@K / NDCG@K.
        seed: Seed of the weights, the dropout and the batch order.
        num_threads: Torch CPU threads (`torch.set_num_threads`; `None`: torch's default).
        progress: Show progress bars.
        run_name: Suffix of the result file (`sasrec_<dataset>_<run_name>.json`) for a run beside the main row.
    """

    dataset: str = "beauty"
    data_root: str = "../shared/data"
    results_dir: str = "benchmarks/results"
    max_len: int = 50
    hidden_size: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    ffn_size: int = 256
    dropout: float = 0.5
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    bucket_batches: int = 50
    max_epochs: float = 200.0
    max_steps: int | None = None
    eval_every_steps: int | None = 1000
    eval_users: int | None = None
    patience: int | None = 10
    eval_batch_size: int = 512
    ks: list[int] = field(default_factory=lambda: [5, 10])
    seed: int = 42
    num_threads: int | None = None
    progress: bool = True
    run_name: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}.")
        for name in (
            "max_len",
            "hidden_size",
            "num_blocks",
            "num_heads",
            "ffn_size",
            "batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.patience is not None and self.patience < 0:
            raise ValueError(f"patience must be >= 0 or None, got {self.patience}.")
        for name in ("max_steps", "eval_users"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}.")
        if not self.max_epochs > 0:
            raise ValueError(f"max_epochs must be > 0 (the cap of every run), got {self.max_epochs}.")
        if self.patience and not self.eval_every_steps:
            raise ValueError(
                "patience counts points of the validation curve, which needs eval_every_steps > 0; set "
                "eval_every_steps (e.g. one epoch of steps) or patience to 0."
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; change one."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}.")


class SASRec(nn.Module):
    """SASRec: item + learned position embeddings, causal pre-LN self-attention blocks, shared output embedding.

    Args:
        num_items: Items in the catalogue; item `i` (1-based) is row `i` of the embedding, row 0 is padding.
        max_len: Longest input (positions are counted back from the last item, so left padding is free).
        hidden_size: Embedding and block width.
        num_blocks: Self-attention blocks.
        num_heads: Attention heads.
        ffn_size: Feed-forward width.
        dropout: Dropout rate.
    """

    def __init__(
        self,
        num_items: int,
        max_len: int,
        hidden_size: int,
        num_blocks: int,
        num_heads: int,
        ffn_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.num_heads = num_heads
        self.item_embedding = nn.Embedding(num_items + 1, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.embedding_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            ffn_size,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, num_blocks, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden_size)
        for embedding in (self.item_embedding, self.position_embedding):
            nn.init.normal_(embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states of left-padded item sequences.

        Args:
            items: `(batch, length)` item indices (1-based; 0 = padding on the left), `length <= max_len`.

        Returns:
            `(batch, length, hidden_size)`: position `t` has seen items `0..t` only.
        """
        batch, length = items.shape
        if length > self.max_len:
            raise ValueError(f"Sequences of {length} items exceed max_len={self.max_len}; cut them first.")
        pad = items == 0
        positions = torch.arange(self.max_len - length, self.max_len, device=items.device)
        x = self.item_embedding(items) + self.position_embedding(positions)[None]
        x = self.embedding_dropout(x) * (~pad)[..., None]
        future = torch.ones(length, length, dtype=torch.bool, device=items.device).triu(1)
        eye = torch.eye(length, dtype=torch.bool, device=items.device)
        # A query never sees the future nor a padding key, but always itself (a padding query would see no key).
        blocked = future[None] | (pad[:, None, :] & ~eye[None])
        x = self.blocks(x, mask=blocked.repeat_interleave(self.num_heads, dim=0))
        return self.final_norm(x)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over every item (column `j` = item `j + 1`) from hidden states `(..., hidden_size)`."""
        return hidden @ self.item_embedding.weight[1:].T

    def add_items(self, count: int, generator: torch.Generator | None = None) -> None:
        """Append `count` item rows, drawn as at construction (normal, std 0.02) and never trained: what SASRec
        gives items that arrive after training (cold start; `benchmarks/cold_start.py`). Rows keep their indices.

        Args:
            count: New items; they get indices `num_items + 1 ... num_items + count`.
            generator: Seeded generator of the new rows.
        """
        old = self.item_embedding
        new = nn.Embedding(old.num_embeddings + count, old.embedding_dim, padding_idx=0)
        with torch.no_grad():
            new.weight[: old.num_embeddings] = old.weight
            new.weight[old.num_embeddings :].normal_(std=0.02, generator=generator)
        self.item_embedding = new


def _left_pad(rows: list[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
    return out


def training_windows(
    train: dict[str, list[str]], index: dict[str, int], max_len: int
) -> list[tuple[list[int], list[int]]]:
    """Every next-item pair of the training histories, as `(inputs, targets)` windows of at most `max_len` items.

    A history is cut by `hf_semtok.data.history_windows` (width `max_len + 1`, stride `max_len`), so every item
    but the first is a target exactly once; in a window, `targets[t] = window[t + 1]`, and a target an earlier
    window already held is 0 (ignored). Histories of one item give no pair.

    Args:
        train: User -> training items (the train part of `leave_one_out_split`).
        index: Item id -> 1-based index.
        max_len: Longest input.

    Returns:
        `(inputs, targets)` per window, in sorted user order.
    """
    windows = []
    for user in sorted(train):
        ids = [index[i] for i in train[user]]
        for start, first_new, stop in history_windows(len(ids), max_len + 1, max_len):
            if stop - start < 2:
                continue
            targets = [t if start + 1 + k >= first_new else 0 for k, t in enumerate(ids[start + 1 : stop])]
            windows.append((ids[start : stop - 1], targets))
    return windows


@torch.no_grad()
def rank_all_items(
    model: SASRec,
    examples: list[tuple[list[str], str]],
    index: dict[str, int],
    item_ids: list[str],
    k: int,
    batch_size: int,
    progress: bool = False,
) -> list[list[str]]:
    """The top-`k` items of the full catalogue for every example's history (seen items are not excluded).

    Args:
        model: A trained `SASRec`.
        examples: `(history, target)` pairs; each history already cut to the most recent `max_len` items.
        index: Item id -> 1-based index.
        item_ids: Item ids in index order (`item_ids[j]` has index `j + 1`).
        k: Items per ranking.
        batch_size: Users per forward pass.
        progress: Show a progress bar.

    Returns:
        Per example, in the given order, `k` item ids, best first.
    """
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))  # similar lengths share a batch
    rankings: list[list[str]] = [[] for _ in examples]
    for begin in tqdm(range(0, len(order), batch_size), desc="rank", disable=not progress, leave=False):
        chunk = order[begin : begin + batch_size]
        rows = [[index[i] for i in examples[j][0][-model.max_len :]] for j in chunk]
        if any(not row for row in rows):
            raise ValueError("An evaluation history is empty; leave_one_out_split gives at least one item.")
        top = model.scores(model(_left_pad(rows))[:, -1]).topk(k, dim=-1).indices.tolist()
        for j, columns in zip(chunk, top):
            rankings[j] = [item_ids[c] for c in columns]
    return rankings


def evaluate(
    model: SASRec,
    examples: list[tuple[list[str], str]],
    index: dict[str, int],
    item_ids: list[str],
    cfg: SASRecBenchConfig,
) -> tuple[dict[str, Any], list[list[str]]]:
    """Recall@K / NDCG@K with standard errors (`hf_semtok.evaluation.ranking_metrics`) of full-catalogue ranking,
    and the rankings (top `max(cfg.ks)` per example)."""
    rankings = rank_all_items(
        model, examples, index, item_ids, max(cfg.ks), cfg.eval_batch_size, progress=cfg.progress
    )
    metrics = ranking_metrics(rankings, [target for _, target in examples], cfg.ks, standard_errors=True)
    return metrics, rankings


def epoch_batches(
    lengths: list[int], batch_size: int, bucket_batches: int, generator: torch.Generator
) -> list[list[int]]:
    """One epoch of training batches: every window once, in a seeded random order.

    With `bucket_batches > 1`, each run of `bucket_batches * batch_size` shuffled windows is sorted by length
    before it is cut into batches (and the batches are shuffled again), so a batch holds windows of similar length
    and little padding: the same windows and the same model, several times fewer padded positions per step.

    Args:
        lengths: Input length of each window.
        batch_size: Windows per batch.
        bucket_batches: Batches per length bucket (1: plain random batches).
        generator: The seeded generator of the run.

    Returns:
        Batches of window indices, to be taken from the end.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = batch_size * max(1, bucket_batches)
    batches = []
    for begin in range(0, len(order), span):
        chunk = order[begin : begin + span]
        if bucket_batches > 1:
            chunk.sort(key=lambda i: lengths[i])
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def step_limit(cfg: SASRecBenchConfig, steps_per_epoch: int) -> tuple[int, str]:
    """The run's bound in steps and which cap sets it: `max_epochs` of `steps_per_epoch`, or `max_steps` if fewer."""
    by_epochs = max(1, math.ceil(cfg.max_epochs * steps_per_epoch))
    if cfg.max_steps is not None and cfg.max_steps < by_epochs:
        return cfg.max_steps, "max_steps"
    return by_epochs, "max_epochs"


class BestPoint:
    """The best point of a validation curve so far, the weights measured there, and the points since (patience).

    Args:
        metric: The curve's key that is maximised (the first of equal points is kept).
        patience: Points in a row without a new best after which `exhausted` is True (`None` or 0: never).
    """

    def __init__(self, metric: str, patience: int | None) -> None:
        self.metric = metric
        self.patience = patience
        self.point: dict[str, Any] | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.points_since = 0

    def update(self, point: dict[str, Any], model: nn.Module) -> None:
        """Take in a new point of the curve, measured on `model`'s current weights (copied if it is the best)."""
        if self.point is None or point[self.metric] > self.point[self.metric]:
            self.point, self.state, self.points_since = point, copy.deepcopy(model.state_dict()), 0
        else:
            self.points_since += 1

    @property
    def exhausted(self) -> bool:
        """Whether `patience` points in a row brought no new best."""
        return bool(self.patience) and self.points_since >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best point's weights into `model` (nothing happens before the first point)."""
        if self.state is not None:
            model.load_state_dict(self.state)


def train_step(
    model: SASRec,
    optimizer: torch.optim.Optimizer,
    windows: list[tuple[list[int], list[int]]],
    batch: list[int],
) -> float:
    """One AdamW step of full cross-entropy over all items on the windows `batch`; returns the loss."""
    model.train()
    inputs = _left_pad([windows[i][0] for i in batch])  # (batch, length)
    targets = _left_pad([windows[i][1] for i in batch])  # (batch, length), 0 = no target
    hidden = model(inputs)
    keep = targets > 0
    loss = F.cross_entropy(model.scores(hidden[keep]), targets[keep] - 1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_sasrec(
    model: SASRec,
    windows: list[tuple[list[int], list[int]]],
    cfg: SASRecBenchConfig,
    validate: Callable[[SASRec], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train `model` until validation NDCG@10 stops rising (`cfg.patience`) or a cap; keep the best point's weights.

    Args:
        model: The model (trained in place; on return it holds the weights of the curve's best point, or the last
            step's when there is no curve).
        windows: `(inputs, targets)` training windows (`training_windows`).
        cfg: Settings.
        validate: `model -> metrics dict` on the validation users, called every `cfg.eval_every_steps` steps and
            at the last step.

    Returns:
        `(training facts, validation curve)`: the facts hold the steps run, the kept step, why training stopped
        (`stop_reason`: `early_stop`, `max_epochs` or `max_steps`) and the epochs run.
    """
    if not windows:
        raise ValueError("No training pair: every training history has a single item; check the histories.")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    span = cfg.batch_size * max(1, cfg.bucket_batches)
    steps_per_epoch = sum(
        math.ceil(min(span, len(windows) - begin) / cfg.batch_size) for begin in range(0, len(windows), span)
    )
    limit, stop_reason = step_limit(cfg, steps_per_epoch)
    every = cfg.eval_every_steps if validate is not None else None
    best = BestPoint(f"ndcg@{max(cfg.ks)}", cfg.patience)
    curve: list[dict[str, Any]] = []
    order: list[list[int]] = []
    losses: list[float] = []
    train_seconds = 0.0
    began = time.perf_counter()
    bar = tqdm(total=limit, desc="sasrec", disable=not cfg.progress)
    for step in range(1, limit + 1):
        if not order:
            order = epoch_batches([len(w[0]) for w in windows], cfg.batch_size, cfg.bucket_batches, generator)
        losses.append(train_step(model, optimizer, windows, order.pop()))
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if not every or (step % every and step != limit):
            continue
        train_seconds += time.perf_counter() - began
        point = {"step": step, "train_seconds": round(train_seconds, 1), **validate(model)}
        point["loss"] = float(np.mean(losses[-every:]))
        curve.append(point)
        best.update(point, model)
        logger.info("step %d: validation %s", step, point)
        if best.exhausted:
            stop_reason = "early_stop"
            break
        began = time.perf_counter()
    else:
        train_seconds += time.perf_counter() - began
    bar.close()
    best.restore(model)
    steps = len(losses)
    return {
        "steps": steps,
        "selected_step": best.point["step"] if best.point else steps,
        "stop_reason": stop_reason,
        "stopped_early": stop_reason == "early_stop",
        "step_limit": limit,
        "epochs": round(steps / steps_per_epoch, 2),
        "steps_per_epoch": steps_per_epoch,
        "windows": len(windows),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / steps, 4),
        "final_loss": float(np.mean(losses[-50:])),
        "threads": torch.get_num_threads(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }, curve


def fit_sasrec(
    cfg: SASRecBenchConfig,
    train: dict[str, list[str]],
    valid_examples: list[tuple[list[str], str]],
    item_ids: list[str],
) -> tuple[SASRec, dict[str, Any], list[dict[str, Any]]]:
    """Build SASRec over `item_ids` and train it on `train`, its curve on a fixed subsample of `valid_examples`.

    Args:
        cfg: Settings (the model's sizes, training, `eval_users`, `seed`).
        train: User -> training items (every item in `item_ids`).
        valid_examples: `(history, target)` validation pairs, in a fixed order; the curve draws `cfg.eval_users`.
        item_ids: The items the model scores (row `j + 1` of its embedding is `item_ids[j]`).

    Returns:
        `(model, training facts, curve)`; the model holds the best validation point's weights (`train_sasrec`).
    """
    torch.manual_seed(cfg.seed)
    index = {item: j + 1 for j, item in enumerate(item_ids)}
    windows = training_windows(train, index, cfg.max_len)
    model = SASRec(
        len(item_ids), cfg.max_len, cfg.hidden_size, cfg.num_blocks, cfg.num_heads, cfg.ffn_size, cfg.dropout
    )
    curve_examples = subsample_examples(valid_examples, cfg.eval_users, cfg.seed)
    logger.info(
        "%d items, %d training windows, the curve on %d validation users",
        len(item_ids),
        len(windows),
        len(curve_examples),
    )
    training, curve = train_sasrec(
        model, windows, cfg, validate=lambda m: evaluate(m, curve_examples, index, item_ids, cfg)[0]
    )
    training["curve_users"] = len(curve_examples)
    return model, training, curve


def _with_se(m: dict[str, Any], key: str) -> str:
    return f"{m[key]:.4f} ± {m[key + '_se']:.4f}"


def write_markdown(results_dir: Path) -> str:
    """Regenerate `sasrec.md` from every `sasrec_*.json` in `results_dir` and return its text."""
    return _AMAZON.write_table(results_dir, "sasrec", _table_lines)


def _table_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The SASRec table: one row per result (dataset, and run name beside a main row), then the commands."""
    lines = [
        "# SASRec with full cross-entropy over all items",
        "",
        "The baseline users would pick instead of generative retrieval: SASRec (Kang & McAuley 2018) trained with "
        "cross-entropy over the whole catalogue, on the splits, users and metrics of `benchmarks/amazon.py` "
        "(leave-one-out, full-catalogue ranking, seen items not excluded; history cut to the last 50 items). "
        "Trained until validation NDCG@10 stops rising (`patience` evaluation points) or the epoch cap, then the best "
        "point's weights are restored (steps (kept): steps run and the step kept; rows before early stopping were "
        "bounded by steps alone). Test and validation metrics are means over all users ± one standard error. Written by "
        "`benchmarks/sasrec.py`; one JSON per row.",
        "",
        "| dataset | R@5 | N@5 | R@10 | N@10 | R@10 valid | N@10 valid | TIGER R@10 / N@10 | popularity R@10 / N@10 "
        "| params | steps (kept) | epochs | stopped by | threads | train min | total min | test users |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        m, v, t, p = r["metrics"], r["validation"], r["training"], r["popularity"]
        tiger = f"{r['tiger']['recall@10']:.4f} / {r['tiger']['ndcg@10']:.4f}" if r.get("tiger") else ""
        lines.append(
            f"| {r['dataset']}{' (' + r['config']['run_name'] + ')' if r['config'].get('run_name') else ''} "
            f"| {_with_se(m, 'recall@5')} | {_with_se(m, 'ndcg@5')} | {_with_se(m, 'recall@10')} "
            f"| {_with_se(m, 'ndcg@10')} | {_with_se(v, 'recall@10')} | {_with_se(v, 'ndcg@10')} | {tiger} "
            f"| {p['recall@10']:.4f} / {p['ndcg@10']:.4f} | {t['num_parameters'] / 1e6:.2f}M "
            f"| {t['steps']} ({t['selected_step']}) | {t['epochs']} | {t.get('stop_reason', 'max_steps')} | {t['threads']} "
            f"| {t['train_seconds'] / 60:.1f} | {r['total_seconds'] / 60:.1f} | {r['evaluation']['test_users']} |"
        )
    lines += ["", "Commands:", ""] + [f"- {r['dataset']}: `{r['command']}`" for r in runs]
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train and evaluate SASRec on one dataset and write its results; returns the result dict."""
    cfg, argv = _AMAZON.parse_bench_args(SASRecBenchConfig, argv, "sasrec.py")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    began = time.perf_counter()
    commit = _AMAZON._git_commit()  # the code this run imports, read at the start
    info = DATASETS[cfg.dataset]
    folder = (REPO / cfg.data_root / info["folder"]).resolve()
    if not folder.is_dir():
        raise ValueError(
            f"Dataset folder {folder} not found; pass --data_root pointing at the dataset folders."
        )
    catalogue = load_catalogue(info["loader"], folder)
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=cfg.max_len)
    if not test:
        raise ValueError("No user has 3 or more items, so there is nothing to test; check the histories.")
    item_ids = list(catalogue.item_ids)
    index = {item: j + 1 for j, item in enumerate(item_ids)}
    users = sorted(test)
    valid_examples = [valid[u] for u in sorted(valid)]
    test_examples = [test[u] for u in users]
    logger.info("%s: %d validation and %d test users", cfg.dataset, len(valid_examples), len(test_examples))
    data_seconds = time.perf_counter() - began
    model, training, curve = fit_sasrec(cfg, train, valid_examples, item_ids)
    eval_began = time.perf_counter()
    validation, _ = evaluate(model, valid_examples, index, item_ids, cfg)
    metrics, rankings = evaluate(model, test_examples, index, item_ids, cfg)
    targets = [target for _, target in test_examples]
    popularity = popularity_baseline(train, test_examples, ks=cfg.ks)
    popularity.pop("top_items", None)
    result = {
        "dataset": cfg.dataset,
        "model": "SASRec, full cross-entropy over all items",
        "metrics": metrics,
        "validation": validation,
        "per_user": {"user_ids": users, "rank": hit_ranks(rankings, targets, max(cfg.ks))},
        "popularity": popularity,
        "tiger": info["tiger"],
        "training": training,
        "curve": curve,
        "evaluation": {
            "test_users": len(test_examples),
            "validation_users": len(valid_examples),
            "curve_users": training["curve_users"],
            "ranking": "exact, full catalogue",
            "exclude_seen": False,
            "max_history": cfg.max_len,
            "eval_seconds": round(time.perf_counter() - eval_began, 1),
            "selection": "best validation NDCG@10 of the curve" if curve else "last step",
        },
        "data_seconds": round(data_seconds, 1),
        "config": dataclasses.asdict(cfg),
        "command": "python benchmarks/sasrec.py " + " ".join(argv),
        "git_commit": commit,
        "seed": cfg.seed,
        "num_threads": torch.get_num_threads(),
        "device": f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)",  # never moved to a GPU
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    logger.info("test %s", metrics)
    _AMAZON.write_result(result, REPO / cfg.results_dir, "sasrec", cfg.run_name, write_markdown)
    return result


if __name__ == "__main__":
    main()
