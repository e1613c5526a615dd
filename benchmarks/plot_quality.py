"""The README's results table as a picture: test Recall@10 and NDCG@10 of every row, per Amazon dataset.

Reads only result JSONs that the benchmarks already wrote (nothing is trained or evaluated here):
- `transition_<dataset>.json` (`benchmarks/transition.py`): the transition heuristic, the popularity baseline and
  TIGER's published row;
- `sasrec_<dataset>.json` (`benchmarks/sasrec.py`), where present;
- `amazon_<dataset>_prior-fusion.json` and `refit_<dataset>.json` (`benchmarks/amazon.py --prior_weights`,
  `benchmarks/refit.py`), where present: ours fused with the prior, and ours final;
- `amazon_<dataset>_<run_name>.json` (`benchmarks/amazon.py`), `run_name` read from
  `benchmarks/configs/amazon_<dataset>.yaml`: our generator alone.

Writes `quality.json` (the plotted numbers, with the file each came from) and `quality.png` to `--output_dir`.

Usage:
    python benchmarks/plot_quality.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATASETS = ["beauty", "sports", "toys", "scientific"]
ROWS = [
    "popularity",
    "transition heuristic",
    "SASRec (capped)",
    "SASRec (converged)",
    "TIGER (published)",
    "ours",
    "ours, fused with the prior",
    "ours, final",
]
METRICS = ["recall@10", "ndcg@10"]


def _metrics(values: dict, source: str) -> dict:
    return {
        **{m: values[m] for m in METRICS},
        **{f"{m}_se": values[f"{m}_se"] for m in METRICS if f"{m}_se" in values},
        "source": source,
    }


def collect(results_dir: Path, configs_dir: Path) -> dict[str, dict[str, dict]]:
    """`{dataset: {row: {"recall@10", "ndcg@10", optional "_se" values, "source"}}}` from the result JSONs."""
    table: dict[str, dict[str, dict]] = {}
    for dataset in DATASETS:
        rows: dict[str, dict] = {}
        transition_file = results_dir / f"transition_{dataset}.json"
        if not transition_file.is_file():
            continue
        transition = json.loads(transition_file.read_text())
        rows["popularity"] = _metrics(transition["popularity"], transition_file.name)
        rows["transition heuristic"] = _metrics(transition["metrics"], transition_file.name)
        sasrec_file = results_dir / f"sasrec_{dataset}.json"
        if sasrec_file.is_file():
            sasrec = json.loads(sasrec_file.read_text())
            converged = sasrec.get("stop_reason") in ("early_stop", "max_epochs")  # not stopped by a step cap
            rows["SASRec (converged)" if converged else "SASRec (capped)"] = _metrics(
                sasrec["metrics"], sasrec_file.name
            )
        if transition.get("tiger"):
            source = f"TIGER, Table 1 (in {transition_file.name})"
            rows["TIGER (published)"] = _metrics(transition["tiger"], source)
        run_name = yaml.safe_load((configs_dir / f"amazon_{dataset}.yaml").read_text())["run_name"]
        ours_file = results_dir / f"amazon_{dataset}_{run_name}.json"
        if ours_file.is_file():
            rows["ours"] = _metrics(json.loads(ours_file.read_text())["metrics"], ours_file.name)
        fusion_file = (
            results_dir / f"amazon_{dataset}_prior-fusion.json"
        )  # benchmarks/amazon.py --prior_weights
        if fusion_file.is_file():
            fused = json.loads(fusion_file.read_text())["prior_fusion"]["test"]["fused"]
            rows["ours, fused with the prior"] = _metrics(fused, fusion_file.name)
        final_file = results_dir / f"refit_{dataset}.json"  # benchmarks/refit.py
        if final_file.is_file():
            rows["ours, final"] = _metrics(json.loads(final_file.read_text())["metrics"], final_file.name)
        table[dataset] = rows
    return table


def plot(table: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(table)
    width = 0.8 / len(ROWS)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(11, 4.2))
    for ax, metric in zip(axes, METRICS):
        for i, row in enumerate(ROWS):
            xs = [d + (i - (len(ROWS) - 1) / 2) * width for d in range(len(datasets))]
            values = [table[ds].get(row, {}).get(metric, float("nan")) for ds in datasets]  # nan: no bar
            errors = [table[ds].get(row, {}).get(f"{metric}_se", float("nan")) for ds in datasets]
            ax.bar(xs, values, width, yerr=errors, capsize=2, label=row if ax is axes[0] else None)
        ax.set_xticks(range(len(datasets)), [ds.capitalize() for ds in datasets])
        ax.set_title(f"test {metric.replace('recall', 'Recall').replace('ndcg', 'NDCG')}, every test user")
        ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="lower center", ncol=len(ROWS), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results_dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--configs_dir", type=Path, default=REPO / "benchmarks" / "configs")
    parser.add_argument("--output_dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    table = collect(args.results_dir, args.configs_dir)
    if not table:
        print(f"[skip] plot_quality: no transition_*.json in {args.results_dir}")
        return
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "quality.json").write_text(json.dumps(table, indent=2) + "\n")
    plot(table, args.output_dir / "quality.png")
    print(f"wrote {args.output_dir / 'quality.png'} and quality.json")


if __name__ == "__main__":
    main()
