"""Ours, final: the generator of a finished prior-fusion run trained again on train + validation items, fused.

`benchmarks/amazon.py --prior_weights ...` chooses the prior's weight (and, with `select_best`, the generator's
steps) on the validation users. For the test, the transition heuristic counts every sequence without its test item,
the validation item included (`benchmarks/transition.py`); the generator of that run never saw the validation items.
This script gives the generator the same data: it trains it again, with the run's settings and its kept step count,
on every sequence without its test item, and tests it alone and fused with the heuristic's prior at the chosen
weight. Nothing is chosen on test. It reads the run's result JSON and its SID tokenizer (under `benchmarks/runs/`,
written by the run on this machine), so run it after that run:

    python benchmarks/amazon.py --config benchmarks/configs/amazon_scientific.yaml --num_threads 1 \\
        --run_name prior-fusion --prior_weights "[0.5, 1.0, 2.0, 4.0]" --prior_window 10 --prior_num_history 20 \\
        --prior_decay 0.5
    python benchmarks/refit.py --run benchmarks/results/amazon_scientific_prior-fusion.json

Writes `benchmarks/results/refit_<dataset>.json` (`"dataset"`, `"metrics"`: the fused test metrics, the rows
generator / prior / fused with per-user ranks, the paired differences against the heuristic, `"total_seconds"`)
and `benchmarks/results/refit.md`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import amazon as _AMAZON  # noqa: E402  (benchmarks/amazon.py)


@dataclass
class RefitConfig:
    """Args:
    run: The result JSON of a `benchmarks/amazon.py --prior_weights ...` run (its settings, chosen weight and kept
        step are read from it).
    num_threads: torch threads (default: the run's).
    results_dir: Where the JSON and the Markdown table go.
    """

    run: str = "benchmarks/results/amazon_scientific_prior-fusion.json"
    num_threads: int | None = None
    results_dir: str = "benchmarks/results"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg, argv = _AMAZON.parse_bench_args(RefitConfig, argv, "benchmarks/refit.py")
    began = time.perf_counter()
    run = json.loads(Path(cfg.run).read_text(encoding="utf-8"))
    if "prior_fusion" not in run:
        raise ValueError(
            f"{cfg.run} has no prior_fusion: run benchmarks/amazon.py with --prior_weights first."
        )
    bench = _AMAZON.AmazonBenchConfig(**run["bench_config"])
    threads = cfg.num_threads or bench.num_threads
    if threads:
        torch.set_num_threads(threads)
    from hf_semtok import SemanticIDTokenizer, TransitionPrior, leave_one_out_split

    fusion, gen = run["prior_fusion"], bench.generator
    catalogue = _AMAZON._load(bench)
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=gen.max_history)
    users = sorted(test)
    test_examples = [test[u] for u in users]
    sequences = {u: train[u] + ([valid[u][1]] if u in valid else []) for u in train}
    prior = TransitionPrior.fit(sequences, item_ids=list(catalogue.item_ids), **fusion["prior_settings"])
    model_dir = _AMAZON.REPO / "benchmarks" / "runs" / f"amazon_{bench.dataset}_{run['run_name']}" / "model"
    tokenizer = SemanticIDTokenizer.from_pretrained(model_dir)
    weight, steps = fusion["chosen_prior_weight"], run["training"].get("selected_step")
    top = max(gen.ks)

    def evaluate(prior_: Any, weight_: float, examples: list[Any], lm: Any = None) -> Any:
        return _AMAZON.evaluate_ranks(gen, tokenizer, lm, prior_, weight_, examples)

    refit = _AMAZON.refit_generator(
        bench, tokenizer, sequences, steps, weight, prior, test_examples, evaluate
    )
    heuristic_ranks = fusion["per_user"]["prior_rank"]
    result = {
        "dataset": bench.dataset,
        "source_run": cfg.run,
        "metrics": refit["test"]["fused"],
        "chosen_prior_weight": weight,
        "test": {**refit["test"], "prior": fusion["test"]["prior"]},
        "paired_vs_prior": {
            row: _AMAZON._paired(refit["per_user"][f"{row}_rank"], heuristic_ranks, top)
            for row in ("generator", "fused")
        },
        "per_user": {"user_ids": users, **refit["per_user"], "prior_rank": heuristic_ranks},
        "training": refit["training"],
        "selection": refit["selection"],
        "config": dataclasses.asdict(cfg),
        "command": "python benchmarks/refit.py " + " ".join(argv),
        "threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    _AMAZON.write_result(result, Path(cfg.results_dir), "refit", None, _write_markdown)
    return result


def _render(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "# Ours, final: the generator trained again on train + validation items, fused with the transition prior",
        "",
        "Test Recall@10 / NDCG@10 ± SE, all test users; the paired columns are the per-user difference from the "
        "heuristic ± its standard error. Written by `benchmarks/refit.py`.",
        "",
        "| dataset | heuristic | generator (refit) | fused (refit) | weight | fused - heuristic R@10 | fused - heuristic "
        "N@10 | steps | threads | total min | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        t, d = r["test"], r["paired_vs_prior"]["fused"]

        def cell(m: dict[str, float]) -> str:
            return (
                f"{m['recall@10']:.4f} ± {m['recall@10_se']:.4f} / {m['ndcg@10']:.4f} ± {m['ndcg@10_se']:.4f}"
            )

        lines.append(
            f"| {r['dataset']} | {cell(t['prior'])} | {cell(t['generator'])} | {cell(t['fused'])} | "
            f"{r['chosen_prior_weight']} | {d['recall@10']:+.4f} ± {d['recall@10_se']:.4f} | "
            f"{d['ndcg@10']:+.4f} ± {d['ndcg@10_se']:.4f} | {r['training']['steps']} | {r['threads']} | "
            f"{r['total_seconds'] / 60:.0f} | `{r['command']}` |"
        )
    return lines


def _write_markdown(results_dir: Path) -> str:
    return _AMAZON.write_table(results_dir, "refit", _render)


if __name__ == "__main__":
    main()
