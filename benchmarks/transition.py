"""Item-transition heuristic: the training-free recommender users try first, on the protocol of `amazon.py`.

`hf_semtok.TransitionPrior`: `T(i -> j)` counts how often item `j` follows item `i` within `window` steps in the
users' training sequences, each occurrence weighted `1 / distance`; a history `[..., i_2, i_1]` (`i_1` newest)
scores `score(j) = sum_{k=1..num_history} decay^(k-1) * T(i_k -> j)`. History items are dropped, ties go to the
more popular item (training counts), and when fewer than 10 items score the list is filled by popularity.

Same splits, users, ranking and metrics as `benchmarks/amazon.py`: `leave_one_out_split` of the dataset's
histories (history cut to the last `max_history` = 20 items), every validation and test user, full-catalogue
ranking, Recall@5/10 and NDCG@5/10 with standard errors (`hf_semtok.evaluation.ranking_metrics`). Counts never
hold a target: for validation they come from every user's sequence without its last two items (the train part of
the split); for test from every sequence without its last item (the test history includes the validation item,
so its transitions count, as the history itself does). The JSON also gives the test metrics with validation-style
counts (`"test_counts_train_only"`), the counts a generator trained on the train part sees.

`window`, `num_history` and `decay` are chosen on the validation split (best NDCG@10 over the grid; test is read
once, with those settings). A popularity row is computed the same way (same counts, history items dropped).
Per-user hit ranks of the test split (`"per_user"`) let anyone pair this row with another run.

Writes `benchmarks/results/transition_<dataset>.json` and regenerates `benchmarks/results/transition.md` from
every `transition_*.json` there.

Usage:
    python benchmarks/transition.py --config benchmarks/configs/transition_beauty.yaml
    python benchmarks/transition.py --config benchmarks/configs/transition_scientific.yaml
    python benchmarks/transition.py --dataset toys --windows "[1]" --num_histories "[1]" --decays "[1.0]"
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_semtok.data import leave_one_out_split, load_catalogue
from hf_semtok.evaluation import hit_ranks, ranking_metrics
from hf_semtok.transition_prior import TransitionPrior

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("benchmarks.transition")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
import amazon as _AMAZON  # noqa: E402  (benchmarks/amazon.py)

#: The datasets of benchmarks/amazon.py: folder, loader and TIGER's published row.
DATASETS: dict[str, dict[str, Any]] = _AMAZON.DATASETS


@dataclass
class TransitionBenchConfig:
    """Settings of one transition-heuristic run.

    Args:
        dataset: One of scientific, beauty, sports, toys (`benchmarks/amazon.py`'s `DATASETS`).
        data_root: Folder holding the dataset folders (relative paths are taken from the repository root).
        results_dir: Where the JSON and the Markdown table go (relative to the repository root).
        max_history: Most recent items of a validation or test history (TIGER: 20, as `amazon.py`).
        windows: Grid of `window` (steps ahead counted).
        num_histories: Grid of `num_history` (newest history items scored).
        decays: Grid of `decay` (weight factor per step back; only varied when `num_history > 1`).
        ks: Cut-offs of Recall@K / NDCG@K.
        batch_size: Histories scored at once (None: `TransitionPrior.recommend`'s default, about 8M floats).
        run_name: Suffix of the result file (`transition_<dataset>_<run_name>.json`) for a run beside the main row.
    """

    dataset: str = "beauty"
    data_root: str = "../shared/data"
    results_dir: str = "benchmarks/results"
    max_history: int = 20
    windows: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10])
    num_histories: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10, 20])
    decays: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0])
    ks: list[int] = field(default_factory=lambda: [5, 10])
    batch_size: int | None = None
    run_name: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}.")
        for name in ("windows", "num_histories", "decays", "ks"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; give at least one value.")


def popularity_rankings(prior: TransitionPrior, histories: list[list[str]], k: int) -> list[list[str]]:
    """The `k` most frequent items of the prior's counts, history items skipped (the heuristic's padding order)."""
    order = [prior.item_ids[j] for j in prior.popularity_order[: k + max(map(len, histories))].tolist()]
    rankings = []
    for history in histories:
        seen = set(history)
        rankings.append([item for item in order if item not in seen][:k])
    return rankings


def evaluate(
    prior: TransitionPrior, examples: list[tuple[list[str], str]], cfg: TransitionBenchConfig
) -> tuple[dict[str, Any], list[list[str]]]:
    """Metrics (with standard errors) and rankings of `prior`'s heuristic on `(history, target)` examples."""
    histories = [h for h, _ in examples]
    rankings = prior.recommend(histories, k=max(cfg.ks), batch_size=cfg.batch_size)
    metrics = ranking_metrics(rankings, [t for _, t in examples], cfg.ks, standard_errors=True)
    return metrics, rankings


def validation_grid(
    train: dict[str, list[str]],
    item_ids: list[str],
    valid_examples: list[tuple[list[str], str]],
    cfg: TransitionBenchConfig,
) -> list[dict[str, Any]]:
    """Validation metrics of every grid point (counts from the train part only)."""
    grid = []
    key = f"ndcg@{max(cfg.ks)}"
    for window in cfg.windows:
        prior = TransitionPrior.fit(train, item_ids=item_ids, window=window)
        for num_history in cfg.num_histories:
            for decay in cfg.decays if num_history > 1 else cfg.decays[-1:]:
                began = time.perf_counter()
                scored = prior.with_settings(num_history=num_history, decay=decay)
                metrics, _ = evaluate(scored, valid_examples, cfg)
                point = {"window": window, "num_history": num_history, "decay": decay, **metrics}
                point["seconds"] = round(time.perf_counter() - began, 2)
                grid.append(point)
                logger.info(
                    "window %d, num_history %d, decay %.2f: %s %.4f",
                    window,
                    num_history,
                    decay,
                    key,
                    point[key],
                )
    return grid


def _with_se(m: dict[str, Any], key: str) -> str:
    return f"{m[key]:.4f} ± {m[key + '_se']:.4f}"


def _fusion_lines(results_dir: Path) -> list[str]:
    """The table of `benchmarks/amazon.py --prior_weights` runs (`"prior_fusion"` in `amazon_*.json`), if any."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("amazon_*.json"))]
    runs = [r for r in runs if r.get("prior_fusion")]
    if not runs:
        return []
    lines = [
        "",
        "## The generator fused with the transition prior (`benchmarks/amazon.py --prior_weights`)",
        "",
        "`recommend(prior=TransitionPrior, prior_weight=w)`: beam search ranks by `log p_LM(item) + w log p_prior(item)` "
        "(per SID level, `w log(1e-3 + prior mass of the code given the prefix)`). `w` chosen by validation NDCG@10 on "
        "all validation users (0 = the generator alone); test read once. Paired differences: mean per-user "
        "difference ± its standard error, same test users.",
        "",
        "| run | prior (window / history / decay) | w (valid N@10 per w) | generator R@10 / N@10 | prior R@10 / N@10 "
        "| fused R@10 / N@10 | fused - prior N@10 | generator - prior N@10 | fused - generator N@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        f = r["prior_fusion"]
        s, t, d = f["prior_settings"], f["test"], f["paired_vs_prior"]
        grid = ", ".join(f"{p['prior_weight']}: {p['ndcg@10']:.4f}" for p in f["validation_grid"])

        def row(m: dict[str, Any]) -> str:
            return f"{_with_se(m, 'recall@10')} / {_with_se(m, 'ndcg@10')}"

        def diff(m: dict[str, Any]) -> str:
            return f"{m['ndcg@10']:+.4f} ± {m['ndcg@10_se']:.4f}"

        lines.append(
            f"| {r['dataset']} {r['run_name']} | {s['window']} / {s['num_history']} / {s['decay']} "
            f"| {f['chosen_prior_weight']} ({grid}) | {row(t['generator'])} | {row(t['prior'])} | {row(t['fused'])} "
            f"| {diff(d['fused_minus_prior'])} | {diff(d['generator_minus_prior'])} "
            f"| {diff(d['fused_minus_generator'])} |"
        )
    lines += ["", "Commands:", ""] + [f"- {r['dataset']} {r['run_name']}: `{r['command']}`" for r in runs]
    return lines


def write_markdown(results_dir: Path) -> str:
    """Regenerate `transition.md` from every `transition_*.json` in `results_dir` and return its text."""
    return _AMAZON.write_table(
        results_dir, "transition", lambda runs: _table_lines(runs) + _fusion_lines(results_dir)
    )


def _table_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The heuristic's table: one row per result."""
    ks = (
        sorted(runs[0]["config"]["ks"]) if runs else [5, 10]
    )  # the columns: every row of a table has the same ks
    top = max(ks)
    lines = [
        "# Item-transition heuristic (training-free)",
        "",
        "`T(i -> j)`: how often item j follows item i within `window` steps in the training sequences, weighted "
        "1/distance; `score(j) = sum_k decay^(k-1) T(i_k -> j)` over the `num_history` newest history items; history "
        "items dropped, ties to the more popular item, padded by popularity. Splits, users, full-catalogue ranking "
        "and metrics of `benchmarks/amazon.py` (leave-one-out, history cut to 20). Settings chosen by validation "
        "NDCG@10 on the grid in each JSON; test read once. Test counts: every sequence without its test item; "
        "validation counts: without the validation item too. Means over all users ± one standard error. Popularity: "
        "the same counts, history items dropped. Written by `benchmarks/transition.py`; one JSON per row.",
        "",
        "| dataset | window / history / decay | "
        + " | ".join(f"R@{k} | N@{k}" for k in ks)
        + f" | R@{top} valid "
        f"| N@{top} valid | R@{top} / N@{top}, test counts w/o valid items | popularity R@{top} / N@{top} | grid points "
        "| seconds | test users |",
        "|---|---|" + "---|" * (2 * len(ks) + 7),
    ]
    for r in runs:
        m, v, s, p, c = (
            r["metrics"],
            r["validation"],
            r["settings"],
            r["popularity"],
            r["test_counts_train_only"],
        )
        name = r["dataset"] + (f" ({r['config']['run_name']})" if r["config"].get("run_name") else "")
        cells = " | ".join(f"{_with_se(m, f'recall@{k}')} | {_with_se(m, f'ndcg@{k}')}" for k in ks)
        lines.append(
            f"| {name} | {s['window']} / {s['num_history']} / {s['decay']} | {cells} "
            f"| {_with_se(v, f'recall@{top}')} | {_with_se(v, f'ndcg@{top}')} "
            f"| {c[f'recall@{top}']:.4f} / {c[f'ndcg@{top}']:.4f} | {p[f'recall@{top}']:.4f} / {p[f'ndcg@{top}']:.4f} "
            f"| {len(r['validation_grid'])} | {r['total_seconds']:.0f} | {m['num_examples']} |"
        )
    lines += ["", "Commands:", ""] + [f"- {r['dataset']}: `{r['command']}`" for r in runs]
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Choose the heuristic's settings on validation, evaluate on test, write the results; returns the result."""
    cfg, argv = _AMAZON.parse_bench_args(TransitionBenchConfig, argv, "transition.py")
    began = time.perf_counter()
    commit = _AMAZON._git_commit()
    info = DATASETS[cfg.dataset]
    folder = (REPO / cfg.data_root / info["folder"]).resolve()
    if not folder.is_dir():
        raise ValueError(
            f"Dataset folder {folder} not found; pass --data_root pointing at the dataset folders."
        )
    catalogue = load_catalogue(info["loader"], folder)
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=cfg.max_history)
    if not test:
        raise ValueError("No user has 3 or more items, so there is nothing to test; check the histories.")
    item_ids = list(catalogue.item_ids)
    users = sorted(test)
    valid_examples = [valid[u] for u in users]
    test_examples = [test[u] for u in users]
    # Test counts: every sequence without its test item (the validation item is part of the test history).
    test_sequences = {u: train[u] + ([valid[u][1]] if u in valid else []) for u in train}

    grid = validation_grid(train, item_ids, valid_examples, cfg)
    key = f"ndcg@{max(cfg.ks)}"
    best = max(grid, key=lambda point: point[key])  # the first of equal points (grid order)
    settings = {"window": best["window"], "num_history": best["num_history"], "decay": best["decay"]}
    logger.info("chosen on validation: %s (%s %.4f)", settings, key, best[key])

    scoring = {"num_history": settings["num_history"], "decay": settings["decay"]}
    valid_prior = TransitionPrior.fit(train, item_ids=item_ids, window=settings["window"], **scoring)
    prior = TransitionPrior.fit(test_sequences, item_ids=item_ids, window=settings["window"], **scoring)
    metrics, rankings = evaluate(prior, test_examples, cfg)
    train_only, _ = evaluate(valid_prior, test_examples, cfg)
    top = max(cfg.ks)
    targets = [t for _, t in test_examples]
    popularity = ranking_metrics(
        popularity_rankings(prior, [h for h, _ in test_examples], top), targets, cfg.ks, standard_errors=True
    )
    valid_popularity = ranking_metrics(
        popularity_rankings(valid_prior, [h for h, _ in valid_examples], top),
        [t for _, t in valid_examples],
        cfg.ks,
        standard_errors=True,
    )
    validation = {k: v for k, v in best.items() if k not in settings and k != "seconds"}
    result = {
        "dataset": cfg.dataset,
        "model": "item-transition heuristic (training-free)",
        "metrics": metrics,
        "validation": validation,
        "settings": settings,
        "selection": f"best validation {key} over the grid",
        "validation_grid": grid,
        "popularity": popularity,
        "validation_popularity": valid_popularity,
        "test_counts_train_only": train_only,
        "per_user": {"user_ids": users, "rank": hit_ranks(rankings, targets, top)},
        "evaluation": {
            "test_users": len(test_examples),
            "validation_users": len(valid_examples),
            "ranking": "exact, full catalogue",
            "exclude_seen": True,
            "max_history": cfg.max_history,
            "test_counts": "every sequence without its test item",
            "validation_counts": "every sequence without its validation and test items",
        },
        "tiger": info["tiger"],
        "config": dataclasses.asdict(cfg),
        "command": "python benchmarks/transition.py " + " ".join(argv),
        "git_commit": commit,
        "device": f"cpu ({os.cpu_count()} cores, numpy)",
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    logger.info("test %s", metrics)
    _AMAZON.write_result(result, REPO / cfg.results_dir, "transition", cfg.run_name, write_markdown)
    return result


if __name__ == "__main__":
    main()
