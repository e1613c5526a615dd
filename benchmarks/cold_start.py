"""Cold start: recommending items that no training interaction holds, through SIDs made from their features.

A seeded share of the catalogue (`held_out_fraction`, 5%) is held out. Every interaction with those items leaves
the training data: the histories the generator and SASRec train on, the co-occurrence (collaborative) features,
the RQ-VAE's co-occurrence pairs, the transition counts and the popularity counts. The RQ-VAE SIDs and the
generator are then trained on the rest exactly as `benchmarks/amazon.py` trains them (its loading, item features,
`train_sid_stage`, `build_sid_tokenizer`, `train_generator`, from its config `amazon_config`), the RQ-VAE on the
other items' features only. The held-out items get SIDs afterwards from their own features (their text or
attributes; their collaborative features are all zero, the RQ-VAE's missing-modality rule) with the tokenizer's
`add_items`, under the table's collision policy, without retraining anything.

Test users: those whose test target (last item) is a held-out item. Histories: held-out items are removed from
every history (training, validation and test), so a held-out item is only ever a target. Why: an item inside a
history is an interaction with it, which the cold-start question says no one has seen yet; SASRec would read it
through an untrained row and the transition counts know nothing of it while the generator would read its new SID,
so keeping it would mix "can a method read a new item" into "can it recommend one"; and every method sees the same
histories. The rest of a history keeps its order; the test history is everything before the test item (the
validation item included unless it is held out), each method cutting it to its own length (the generator 20,
SASRec 50). Users left with an empty history are dropped (counted in the JSON).

Rows, all ranking the full catalogue (held-out items included) for the same cold test users, Recall@5/10 and
NDCG@5/10 with standard errors, per-user hit ranks and the paired difference of ours against each row:
- **ours**: the generator via `recommend()` (constrained beam search, `num_beams` of the amazon config);
- **popularity**: the most frequent training items, history items dropped (a held-out item never has a count);
- **transition**: `hf_semtok.TransitionPrior` with the settings `benchmarks/transition.py` chose on validation for
  `transition_<dataset>.yaml` (`prior_*`), counts from every sequence without its test item, as there;
- **SASRec**: `benchmarks/sasrec.py`'s model and training (its config `sasrec_config`, early stopping on the
  validation users whose target is not held out) over the other items; the held-out items then get fresh rows
  drawn as at initialisation (`SASRec.add_items`), the only way it can score an item it never saw;
- **content**: cosine of the item content vectors (the config's non-collaborative features: text embeddings, or
  attribute multi-hot on Sports) to the mean of the last `n` history items' vectors, history items dropped; `n`
  chosen by NDCG@10 on the validation users whose validation target is held out (the test's situation, other users).
`held_out_in_top@K` says how many held-out items a row puts in its top K, on average: a method that cannot score
new items puts none there.

Writes `benchmarks/results/cold_start_<dataset>.json` and regenerates `benchmarks/results/cold_start.md` from every
`cold_start_*.json` there. The SIDs and the generator are saved under `benchmarks/runs/cold_start_<dataset>/`
(gitignored).

Usage:
    python benchmarks/cold_start.py --config benchmarks/configs/cold_start_scientific.yaml
    python benchmarks/cold_start.py --config benchmarks/configs/cold_start_beauty.yaml
    python benchmarks/cold_start.py --config benchmarks/configs/cold_start_sports.yaml
    python benchmarks/cold_start.py --config benchmarks/configs/cold_start_toys.yaml
    python benchmarks/cold_start.py --config benchmarks/configs/cold_start_beauty.yaml --generator.max_steps 2000
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_semtok import TransitionPrior, recommend
from hf_semtok.cli import load_yaml_text, parse_args_with_config
from hf_semtok.data import leave_one_out_split
from hf_semtok.evaluation import hit_ranks, ranking_metrics
from hf_semtok.lm.generator import train_generator
from hf_semtok.lm.sid_sequences import build_sid_tokenizer
from hf_semtok.rqvae.sid_stage import train_sid_stage

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("benchmarks.cold_start")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
import amazon as _AMAZON  # noqa: E402  (benchmarks/amazon.py)
import sasrec as _SASREC  # noqa: E402  (benchmarks/sasrec.py)
import transition as _TRANSITION  # noqa: E402  (benchmarks/transition.py)

#: The rows of the table, ours first.
ROWS = ("ours", "content", "sasrec", "transition", "popularity")
ROW_NAMES = {
    "ours": "ours: generator, held-out items given SIDs by `add_items`",
    "content": "content similarity (mean of the last n history items)",
    "sasrec": "SASRec, fresh rows for held-out items",
    "transition": "transition heuristic",
    "popularity": "popularity",
}


@dataclass
class ColdStartConfig:
    """Settings of one cold-start run (the SID, generator and SASRec settings come from their own configs).

    Args:
        amazon_config: The `benchmarks/amazon.py` config whose loading, features, SIDs and generator are used.
        sasrec_config: The `benchmarks/sasrec.py` config of the SASRec row.
        data_root: Folder holding the dataset folders (relative paths from the repository root).
        cache_dir: Embedding cache (relative to the repository root).
        results_dir: Where the JSON and the Markdown table go (relative to the repository root).
        run_dir: Where the SIDs and the generator are saved (default: `benchmarks/runs/cold_start_<dataset>`).
        num_threads: Torch CPU threads of every stage (the two configs' own `num_threads` are not read).
        held_out_fraction: Share of the catalogue's items held out of training.
        held_out_seed: Seed of the held-out draw.
        prior_window: The transition heuristic's `window` (chosen by `benchmarks/transition.py` on validation).
        prior_num_history: Its `num_history`.
        prior_decay: Its `decay`.
        content_histories: Grid of `n` (newest history items averaged) of the content row, chosen on validation.
        progress: Show progress bars.
        run_name: Suffix of the result file (`cold_start_<dataset>_<run_name>.json`) for a run beside the main row.
        sid: Overrides of the amazon config's `sid:` section (default: room for the added items in the dedup
            level, `extra_level_size: 64`; `add_items` fails on a full group).
        generator: Overrides of its `generator:` section (`--generator.max_steps 2`).
        sasrec: Overrides of the SASRec config (`--sasrec.max_steps 2`).
    """

    amazon_config: str = "benchmarks/configs/amazon_beauty.yaml"
    sasrec_config: str = "benchmarks/configs/sasrec_beauty.yaml"
    data_root: str = "../shared/data"
    cache_dir: str = "benchmarks/cache"
    results_dir: str = "benchmarks/results"
    run_dir: str | None = None
    num_threads: int | None = None
    held_out_fraction: float = 0.05
    held_out_seed: int = 0
    prior_window: int = 10
    prior_num_history: int = 20
    prior_decay: float = 0.5
    content_histories: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10, 20])
    progress: bool = True
    run_name: str | None = None
    sid: dict | str | None = field(
        default_factory=lambda: {"extra_level_size": 64},
        metadata={"help": "Overrides of the amazon config's sid section (--sid.KEY VALUE)."},
    )
    generator: dict | str | None = field(
        default=None,
        metadata={"help": "Overrides of the amazon config's generator section (--generator.KEY VALUE)."},
    )
    sasrec: dict | str | None = field(
        default=None, metadata={"help": "Overrides of the SASRec config (--sasrec.KEY VALUE)."}
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must lie in (0, 1), got {self.held_out_fraction}.")
        if not self.content_histories or min(self.content_histories) < 1:
            raise ValueError(f"content_histories must be values >= 1, got {self.content_histories}.")
        for name in ("sid", "generator", "sasrec"):
            value = getattr(self, name)
            value = load_yaml_text(value) if isinstance(value, str) else value
            if value is not None and not isinstance(value, dict):
                raise ValueError(
                    f"{name} must be a mapping of overrides such as {{max_steps: 2}}, got {value!r}."
                )
            setattr(self, name, value or {})


def script_config(cls: type, path: str, overrides: Mapping[str, Any]) -> Any:
    """`cls` read from the YAML file `path` as its own script reads it, `overrides` given as its command line.

    Args:
        cls: The script's config dataclass (`AmazonBenchConfig`, `SASRecBenchConfig`).
        path: Its YAML file (relative to the repository root).
        overrides: `{"data_root": ..., "generator.max_steps": 2}`: options and dotted section keys.

    Returns:
        The parsed config.
    """
    argv = ["--config", str(REPO / path)]
    for key, value in overrides.items():
        argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    (parsed,) = parse_args_with_config(cls, argv, prog=Path(path).name)
    return parsed


@dataclass
class ColdStartSplit:
    """Leave-one-out with a share of the items held out of everything but the targets (see the module docstring).

    Attributes:
        held_out: The held-out items, in catalogue order.
        train: User -> training items (the leave-one-out train part), held-out items removed.
        valid: User -> (history, target) validation examples whose target is not held out.
        cold_valid: User -> (history, target) validation examples whose target is held out.
        test: User -> (history, target) test examples whose target is held out (the cold test users).
        test_sequences: User -> every item before the test item, held-out items removed (the transition counts of
            the test, as `benchmarks/transition.py` counts them).
        dropped_users: Cold validation or test users left with an empty history.
    """

    held_out: list[str]
    train: dict[str, list[str]]
    valid: dict[str, tuple[list[str], str]]
    cold_valid: dict[str, tuple[list[str], str]]
    test: dict[str, tuple[list[str], str]]
    test_sequences: dict[str, list[str]]
    dropped_users: dict[str, int]


def hold_out_items(item_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A seeded draw of `round(fraction * len(item_ids))` items (at least one), in catalogue order."""
    count = max(1, round(fraction * len(item_ids)))
    drawn = set(random.Random(seed).sample(list(item_ids), count))
    return [item for item in item_ids if item in drawn]


def cold_start_split(histories: Mapping[str, Sequence[str]], held_out: Sequence[str]) -> ColdStartSplit:
    """`leave_one_out_split(histories)` with the items `held_out` removed from every history (targets stay).

    Args:
        histories: User -> chronological items.
        held_out: The held-out items.

    Returns:
        The `ColdStartSplit`.
    """
    held = set(held_out)
    train, valid, test = leave_one_out_split(histories)

    def keep(items: Sequence[str]) -> list[str]:
        return [item for item in items if item not in held]

    split = ColdStartSplit(
        held_out=list(held_out),
        train={user: keep(items) for user, items in train.items()},
        valid={},
        cold_valid={},
        test={},
        test_sequences={
            user: keep(test[user][0]) if user in test else keep(items) for user, items in train.items()
        },
        dropped_users={"validation": 0, "test": 0},
    )
    for user, (history, target) in valid.items():
        examples = split.cold_valid if target in held else split.valid
        if keep(history):
            examples[user] = (keep(history), target)
        else:
            split.dropped_users["validation"] += 1
    for user, (history, target) in test.items():
        if target in held and keep(history):
            split.test[user] = (keep(history), target)
        elif target in held:
            split.dropped_users["test"] += 1
    return split


def ranked_row(
    rankings: list[list[str]], users: list[str], targets: list[str], ks: list[int], held_out: set[str]
) -> dict[str, Any]:
    """A row of the table: metrics with standard errors, per-user hit ranks, and held-out items per top K."""
    top = max(ks)
    metrics = ranking_metrics(rankings, targets, ks, standard_errors=True)
    metrics[f"held_out_in_top@{top}"] = float(
        np.mean([sum(i in held_out for i in r[:top]) for r in rankings])
    )
    return {"metrics": metrics, "per_user": {"user_ids": users, "rank": hit_ranks(rankings, targets, top)}}


def train_ours(
    amazon_cfg: Any,
    catalogue: Any,
    features: dict[str, np.ndarray],
    split: ColdStartSplit,
    run_dir: Path,
    progress: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    """SIDs and generator trained without the held-out items (as `benchmarks/amazon.py`), then `add_items` for them.

    Returns:
        `(generator, tokenizer holding every item, facts)`.
    """
    gen = amazon_cfg.generator
    held = set(split.held_out)
    warm = [j for j, item in enumerate(catalogue.item_ids) if item not in held]
    cold = [j for j, item in enumerate(catalogue.item_ids) if item in held]
    began = time.perf_counter()
    sids = train_sid_stage(
        {name: m[warm] for name, m in features.items()},
        [catalogue.item_ids[j] for j in warm],
        split.train,
        amazon_cfg.sid,
        seed=gen.seed,
        output_dir=run_dir / "sids",
        progress=progress,
    )
    sid_seconds = time.perf_counter() - began
    tokenizer = build_sid_tokenizer(sids, sid_layout=gen.sid_layout)  # carries the RQ-VAE, for add_items
    valid_examples = [split.valid[user] for user in sorted(split.valid)]
    model, training, curve = train_generator(
        tokenizer, split.train, gen, valid_examples=valid_examples, output_dir=run_dir, progress=progress
    )
    tokenizer.add_items(split.held_out, embeddings={name: m[cold] for name, m in features.items()})
    tokenizer.save_pretrained(
        run_dir / "model"
    )  # the saved generator's tokenizer holds the held-out items too
    stats = tokenizer.sid_table.stats
    facts = {
        "sid_seconds": round(sid_seconds, 1),
        "codebook_sizes": list(tokenizer.codebook_sizes),
        "sid_quality": sids.report,
        "added_items": stats.get("added_items", 0),
        "added_items_needing_extra_level": stats.get("added_items_needing_extra_level", 0),
        "training": {k: v for k, v in training.items() if not isinstance(v, (list, dict))},
        "curve": curve,
    }
    return model.eval(), tokenizer, facts


def rank_ours(
    model: Any, tokenizer: Any, histories: list[list[str]], gen: Any, progress: bool
) -> list[list[str]]:
    """The generator's top `max(gen.ks)` items per history: `recommend()` with the amazon config's beam search."""
    ranked = recommend(
        model,
        tokenizer,
        histories,
        k=max(gen.ks),
        num_beams=gen.num_beams,
        batch_size=gen.eval_batch_size,
        max_history=gen.max_history,
        progress=progress,
    )
    return [[item for item, *_ in items] for items in ranked]


def rank_sasrec(
    sasrec_cfg: Any, split: ColdStartSplit, item_ids: list[str], examples: list[tuple[list[str], str]]
) -> tuple[list[list[str]], dict[str, Any]]:
    """SASRec trained over the other items (`benchmarks/sasrec.py`), held-out items added as fresh rows; its
    top-K per example and its training facts."""
    held = set(split.held_out)
    warm = [item for item in item_ids if item not in held]
    valid_examples = [split.valid[user] for user in sorted(split.valid)]
    model, training, curve = _SASREC.fit_sasrec(sasrec_cfg, split.train, valid_examples, warm)
    model.add_items(len(split.held_out), generator=torch.Generator().manual_seed(sasrec_cfg.seed))
    items = warm + split.held_out  # row j + 1 is items[j]
    index = {item: j + 1 for j, item in enumerate(items)}
    rankings = _SASREC.rank_all_items(
        model, examples, index, items, max(sasrec_cfg.ks), sasrec_cfg.eval_batch_size, sasrec_cfg.progress
    )
    return rankings, {"training": training, "curve": curve}


def content_vectors(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Unit-norm content vectors: the non-collaborative features, each L2-normalised, side by side, normalised.

    Raises:
        ValueError: Only collaborative features (the content row needs text or attributes).
    """
    blocks = [np.asarray(m, dtype=np.float32) for name, m in features.items() if name != "collab"]
    if not blocks:
        raise ValueError(
            "The content row needs text or attribute features; the amazon config has only collab."
        )
    blocks = [b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12) for b in blocks]
    joined = np.concatenate(blocks, axis=1)  # (n_items, sum of dims)
    return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)


def content_rankings(
    vectors: np.ndarray,
    item_ids: list[str],
    histories: list[list[str]],
    n: int,
    k: int,
    batch_size: int = 512,
) -> list[list[str]]:
    """Top `k` items by cosine to the mean vector of each history's last `n` items, history items dropped.

    Args:
        vectors: `(n_items, dim)` unit-norm content vectors, rows in `item_ids` order.
        item_ids: The catalogue.
        histories: Chronological histories (non-empty).
        n: Newest history items averaged.
        k: Items per ranking.
        batch_size: Histories scored at once.
    """
    index = {item: j for j, item in enumerate(item_ids)}
    rankings = []
    for begin in range(0, len(histories), batch_size):
        batch = histories[begin : begin + batch_size]
        queries = np.stack([vectors[[index[i] for i in h[-n:]]].mean(axis=0) for h in batch])  # (batch, dim)
        scores = queries @ vectors.T  # (batch, n_items)
        for row, history in enumerate(batch):
            scores[row, [index[i] for i in history]] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (batch, k)
        rankings += [[item_ids[j] for j in row] for row in top.tolist()]
    return rankings


def choose_content_history(
    vectors: np.ndarray,
    item_ids: list[str],
    examples: list[tuple[list[str], str]],
    grid: list[int],
    ks: list[int],
) -> tuple[int, list[dict[str, Any]]]:
    """The content row's `n` with the best validation NDCG@max(ks) (the first of equal points) and the grid."""
    histories, targets = [h for h, _ in examples], [t for _, t in examples]
    points = []
    for n in grid:
        rankings = content_rankings(vectors, item_ids, histories, n, max(ks))
        points.append({"n": n, **ranking_metrics(rankings, targets, ks, standard_errors=True)})
    best = max(points, key=lambda point: point[f"ndcg@{max(ks)}"])
    return best["n"], points


def _facts_line(r: Mapping[str, Any]) -> str:
    """What stands behind one dataset's rows: the added SIDs, the training runs, the settings, the cost."""
    ours, sasrec, ev = r["ours"], r["sasrec"]["training"], r["evaluation"]
    prior = r["transition"]["settings"]
    return (
        f"SIDs {ours['codebook_sizes']}: {ours['added_items']} held-out items added by `add_items` "
        f"({ours['added_items_needing_extra_level']} of them into the dedup level). Generator: "
        f"{_AMAZON._steps(ours['training'])} steps. SASRec: {_AMAZON._steps(sasrec)} steps, {sasrec['epochs']} epochs, "
        f"stopped by {sasrec['stop_reason']}. Content: n = {r['content']['n']} of "
        f"{[p['n'] for p in r['content']['validation_grid']]}, chosen on {ev['cold_validation_users']} validation "
        f"users whose target is held out. Transition: window {prior['window']}, history {prior['num_history']}, "
        f"decay {prior['decay']}. Users dropped for an empty history: {ev['dropped_users_empty_history']}. "
        f"{r['total_seconds'] / 60:.0f} min, {r['num_threads']} threads."
    )


def write_markdown(results_dir: Path) -> str:
    """Regenerate `cold_start.md` from every `cold_start_*.json` in `results_dir` and return its text."""
    return _AMAZON.write_table(results_dir, "cold_start", _table_lines)


def _table_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The cold-start tables: one section per result, its rows, what stands behind them, its command."""
    lines = [
        "# Cold start: recommending items no training interaction holds",
        "",
        "A seeded 5% of the items is held out of all training data (histories, co-occurrence features, transition "
        "and popularity counts); SIDs and generator are trained on the rest as `benchmarks/amazon.py` trains them, "
        "and the held-out items get SIDs from their features with `SemanticIDTokenizer.add_items`. Test users: those "
        "whose last item is held out; held-out items are removed from every history. Full-catalogue ranking; means "
        "± one standard error; `ours - row`: paired per-user difference of NDCG@10 ± its standard error; held-out "
        "in top 10: held-out items per top-10 list. Written by `benchmarks/cold_start.py`; one JSON per dataset.",
    ]
    for r in runs:
        lines += [
            "",
            f"## {r['dataset']}{' (' + r['run_name'] + ')' if r.get('run_name') else ''}: {r['held_out_items']} "
            f"held-out items, {r['evaluation']['test_users']} test users",
            "",
            "| row | R@5 | N@5 | R@10 | N@10 | ours - row N@10 | held-out in top 10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ROWS:
            m = r["metrics"] if name == "ours" else r["baselines"][name]["metrics"]
            paired = r["paired_vs_ours"].get(name)
            diff = f"{paired['ndcg@10']:+.4f} ± {paired['ndcg@10_se']:.4f}" if paired else ""
            label = ROW_NAMES[name] + (f", n = {r['content']['n']}" if name == "content" else "")
            cells = " | ".join(
                _AMAZON._with_se(m, key) for key in ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
            )
            lines.append(f"| {label} | {cells} | {diff} | {m['held_out_in_top@10']:.2f} |")
        lines += ["", _facts_line(r), "", f"Command: `{r['command']}`"]
    return lines


def load_configs(cfg: ColdStartConfig) -> tuple[Any, Any]:
    """The amazon and SASRec configs `cfg` names, read as their scripts read them, with `cfg`'s overrides."""
    amazon_cfg = script_config(
        _AMAZON.AmazonBenchConfig,
        cfg.amazon_config,
        {"data_root": cfg.data_root, "cache_dir": cfg.cache_dir}
        | {f"sid.{k}": v for k, v in cfg.sid.items()}
        | {f"generator.{k}": v for k, v in cfg.generator.items()},
    )
    sasrec_cfg = script_config(
        _SASREC.SASRecBenchConfig,
        cfg.sasrec_config,
        {"data_root": cfg.data_root, "progress": cfg.progress, **cfg.sasrec},
    )
    if amazon_cfg.dataset != sasrec_cfg.dataset or amazon_cfg.sids != "rqvae":
        raise ValueError(
            f"amazon_config ({amazon_cfg.dataset}, sids {amazon_cfg.sids}) and sasrec_config ({sasrec_cfg.dataset}) "
            "must name the same dataset, and the SIDs must be trained (sids: rqvae) to give new items SIDs."
        )
    return amazon_cfg, sasrec_cfg


def training_free_rankings(
    cfg: ColdStartConfig,
    split: ColdStartSplit,
    features: Mapping[str, np.ndarray],
    item_ids: list[str],
    histories: list[list[str]],
    ks: list[int],
) -> tuple[dict[str, list[list[str]]], dict[str, Any]]:
    """The content, transition and popularity rankings of the test histories, and their settings."""
    top = max(ks)
    vectors = content_vectors(features)
    cold_valid = [split.cold_valid[user] for user in sorted(split.cold_valid)]
    n, grid = choose_content_history(vectors, item_ids, cold_valid, cfg.content_histories, ks)
    settings = {"window": cfg.prior_window, "num_history": cfg.prior_num_history, "decay": cfg.prior_decay}
    prior = TransitionPrior.fit(split.test_sequences, item_ids=item_ids, **settings)
    rankings = {
        "content": content_rankings(vectors, item_ids, histories, n, top),
        "transition": prior.recommend(histories, k=top),
        "popularity": _TRANSITION.popularity_rankings(prior, histories, top),
    }
    facts = {
        "content": {"n": n, "validation_grid": grid, "features": [k for k in features if k != "collab"]},
        "transition": {
            "settings": settings,
            "counts": "every sequence without its test item, held-out items removed",
        },
    }
    return rankings, facts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the cold-start benchmark on one dataset and write its results; returns the result dict."""
    cfg, argv = _AMAZON.parse_bench_args(ColdStartConfig, argv, "cold_start.py")
    amazon_cfg, sasrec_cfg = load_configs(cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    began = time.perf_counter()
    commit = _AMAZON._git_commit()  # the code this run imports, read at the start
    dataset, gen = amazon_cfg.dataset, amazon_cfg.generator
    catalogue = _AMAZON._load(amazon_cfg)
    item_ids = list(catalogue.item_ids)
    split = cold_start_split(
        catalogue.histories, hold_out_items(item_ids, cfg.held_out_fraction, cfg.held_out_seed)
    )
    if not split.test or not split.cold_valid:
        raise ValueError("No test or validation user has a held-out target; raise held_out_fraction.")
    names = (
        _AMAZON.DATASETS[dataset]["features"] if amazon_cfg.features == "auto" else amazon_cfg.features
    ).split("+")
    features = _AMAZON._features(amazon_cfg, catalogue, names, train=split.train)
    users = sorted(split.test)
    examples = [split.test[user] for user in users]
    histories, ks = [h for h, _ in examples], list(gen.ks)
    seconds = {"data": round(time.perf_counter() - began, 1)}

    stage = time.perf_counter()
    run_dir = REPO / (cfg.run_dir or f"benchmarks/runs/cold_start_{dataset}")
    model, tokenizer, ours = train_ours(amazon_cfg, catalogue, features, split, run_dir, cfg.progress)
    rankings = {"ours": rank_ours(model, tokenizer, histories, gen, cfg.progress)}
    seconds["ours"] = round(time.perf_counter() - stage, 1)
    stage = time.perf_counter()
    training_free, facts = training_free_rankings(cfg, split, features, item_ids, histories, ks)
    rankings.update(training_free)
    seconds["content_transition_popularity"] = round(time.perf_counter() - stage, 1)
    stage = time.perf_counter()
    rankings["sasrec"], facts["sasrec"] = rank_sasrec(sasrec_cfg, split, item_ids, examples)
    seconds["sasrec"] = round(time.perf_counter() - stage, 1)

    rows = {
        name: ranked_row(r, users, [t for _, t in examples], ks, set(split.held_out))
        for name, r in rankings.items()
    }
    ranks = {name: r["per_user"]["rank"] for name, r in rows.items()}
    result = {
        "dataset": dataset,
        "run_name": cfg.run_name,
        "metrics": rows["ours"]["metrics"],
        "per_user": rows["ours"]["per_user"],
        "baselines": {name: r for name, r in rows.items() if name != "ours"},
        "paired_vs_ours": {
            name: _AMAZON._paired(ranks["ours"], r, max(ks)) for name, r in ranks.items() if name != "ours"
        },
        "held_out_items": len(split.held_out),
        "held_out": split.held_out,
        "evaluation": {
            "test_users": len(users),
            "cold_validation_users": len(split.cold_valid),
            "warm_validation_users": len(split.valid),
            "dropped_users_empty_history": split.dropped_users,
            "ranking": "full catalogue, held-out items included",
            "histories": "held-out items removed from every history; each row cuts to its own length",
        },
        "ours": ours,
        **facts,
        "seeds": {"held_out": cfg.held_out_seed, "generator": gen.seed, "sasrec": sasrec_cfg.seed},
        "num_threads": torch.get_num_threads(),
        "config": dataclasses.asdict(cfg),
        "amazon_config": dataclasses.asdict(amazon_cfg),
        "sasrec_config": dataclasses.asdict(sasrec_cfg),
        "command": "python benchmarks/cold_start.py " + " ".join(argv),
        "git_commit": commit,
        "device": f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)",
        "stage_seconds": seconds,
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    logger.info("test (cold users) NDCG@10 %s", {name: r["metrics"]["ndcg@10"] for name, r in rows.items()})
    _AMAZON.write_result(result, REPO / cfg.results_dir, "cold_start", cfg.run_name, write_markdown)
    return result


if __name__ == "__main__":
    main()
