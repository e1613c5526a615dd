"""Why validation reads higher than test under leave-one-out: the same gap for a model-free baseline.

Under the protocol (each user's last item is the test target, the one before it the validation target), our
generator scores 1.4x higher on the full validation set than on test. This script measures, per dataset and
without any model, how the two targets differ:

- Recall@10 / NDCG@10 of the popularity baseline (most frequent training items) on validation and on test;
- the share of targets that never occur in the training histories, and the mean training count of a target;
- the share of (last prompt item, target) transitions that occur in the training histories;
- beside them, the validation / test ratio of the generator's main README row (its result JSON, if present).

If the baseline's ratio matches the generator's, the gap comes from the split (last items are rarer, newer and
less often a transition seen in training), not from over-fitting to validation.

Usage (from the repository root; no training, about a minute):
    python benchmarks/split_gap.py
    python benchmarks/split_gap.py --data_root ../shared/data --datasets toys beauty
Writes benchmarks/results/split_gap.json and benchmarks/results/split_gap.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import leave_one_out_split, load_catalogue
from hf_semtok.evaluation import popularity_baseline
from hf_semtok.io_utils import write_json_atomic, write_text_atomic

REPO = Path(__file__).resolve().parents[1]


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
import amazon as _AMAZON  # noqa: E402  (benchmarks/amazon.py)

#: Dataset name -> folder under --data_root (benchmarks/amazon.py's DATASETS).
FOLDERS = {name: info["folder"] for name, info in _AMAZON.DATASETS.items()}


def main_row(name: str) -> str:
    """File name of the dataset's README row: the result JSON that `benchmarks/configs/amazon_<name>.yaml` writes."""
    config = REPO / "benchmarks" / "configs" / f"amazon_{name}.yaml"
    (cfg,) = parse_args_with_config(_AMAZON.AmazonBenchConfig, ["--config", str(config)], prog="amazon.py")
    return f"amazon_{name}_{_AMAZON._run_name(cfg)}.json"


def split_facts(histories: dict, max_history: int = 20) -> dict[str, dict[str, float]]:
    """Model-free facts of the validation and test targets of a leave-one-out split."""
    train, valid, test = leave_one_out_split(histories, max_history=max_history)
    counts = Counter(item for history in train.values() for item in history)
    pairs = Counter((h[i], h[i + 1]) for h in train.values() for i in range(len(h) - 1))
    facts = {}
    for name, examples in (("validation", valid), ("test", test)):
        pop = popularity_baseline(train, examples, ks=(10,))
        targets = [target for _, target in examples.values()]
        facts[name] = {
            "users": len(examples),
            "popularity_recall@10": pop["recall@10"],
            "popularity_ndcg@10": pop["ndcg@10"],
            "target_unseen_in_train": sum(counts[t] == 0 for t in targets) / len(targets),
            "target_mean_train_count": sum(counts[t] for t in targets) / len(targets),
            "transition_seen_in_train": sum(pairs[(h[-1], t)] > 0 for h, t in examples.values())
            / len(examples),
        }
    return facts


def to_markdown(report: dict) -> str:
    lines = [
        "# Validation vs test under leave-one-out",
        "",
        f"Command: `{report['command']}`. Model-free; the generator's ratio is read from its README row's JSON.",
        "",
        "| dataset | popularity R@10 valid / test | ratio | generator R@10 valid / test | ratio | "
        "target unseen in train valid / test | mean train count valid / test | transition seen valid / test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in report["datasets"].items():
        v, t = d["validation"], d["test"]
        g = d.get("generator")
        gen = f"{g['validation_recall@10']:.4f} / {g['test_recall@10']:.4f} | {g['ratio']:.2f}" if g else "| "
        lines.append(
            f"| {name} | {v['popularity_recall@10']:.4f} / {t['popularity_recall@10']:.4f} | "
            f"{d['popularity_ratio']:.2f} | {gen} | "
            f"{v['target_unseen_in_train']:.4f} / {t['target_unseen_in_train']:.4f} | "
            f"{v['target_mean_train_count']:.1f} / {t['target_mean_train_count']:.1f} | "
            f"{v['transition_seen_in_train']:.4f} / {t['transition_seen_in_train']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--datasets", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    root, results = Path(args.data_root), Path(args.results_dir)
    if not root.is_dir():
        print(f"[skip] split_gap: {root} not found (pass --data_root)")
        return 0
    report = {"command": "python benchmarks/split_gap.py", "datasets": {}}
    for name in args.datasets:
        folder = root / FOLDERS[name]
        catalogue = load_catalogue(_AMAZON.DATASETS[name]["loader"], folder)
        facts = split_facts(catalogue.histories)
        facts["popularity_ratio"] = (
            facts["validation"]["popularity_recall@10"] / facts["test"]["popularity_recall@10"]
        )
        row = results / main_row(name)
        if row.exists():
            result = json.loads(row.read_text())
            if result.get("validation"):
                v, t = result["validation"]["recall@10"], result["metrics"]["recall@10"]
                facts["generator"] = {
                    "json": row.name,
                    "validation_recall@10": v,
                    "test_recall@10": t,
                    "ratio": v / t,
                }
        report["datasets"][name] = facts
        print(name, json.dumps(facts), flush=True)
    results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report, results / "split_gap.json", indent=1)
    write_text_atomic(to_markdown(report), results / "split_gap.md")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
