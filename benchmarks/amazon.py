"""Benchmark on real Amazon data beside TIGER's published table (issue 6).

Item features -> RQ-VAE Semantic IDs (or published SIDs) -> a small decoder-only LM trained from scratch ->
leave-one-out Recall@5/10 and NDCG@5/10 with 20-beam constrained decoding on the test and the validation split (all
users, each metric with its standard error), beside TIGER's published row and a popularity baseline. Writes
`benchmarks/results/amazon_<dataset>_<run_name>.json`, a curve plot `.png`, and regenerates
`benchmarks/results/amazon.md` from every `amazon_*.json` there.

A README row is bounded by steps (`generator.max_steps`) and runs alone with `num_threads: 2`: the same command
gives the same numbers on any load, only later. The JSON's `stages` record seconds, threads and work per stage.

Usage:
    python benchmarks/amazon.py --config benchmarks/configs/amazon_scientific.yaml
    python benchmarks/amazon.py --config benchmarks/configs/amazon_beauty.yaml --generator.max_steps 3000
    python benchmarks/amazon.py --config benchmarks/configs/amazon_beauty.yaml --sids published:letter/Beauty
    python benchmarks/amazon.py --config benchmarks/configs/amazon_gpu.yaml --dataset toys   # on a GPU
    # + the generator fused with the transition prior (settings from benchmarks/transition.py's validation grid)
    python benchmarks/amazon.py --config benchmarks/configs/amazon_scientific.yaml --run_name prior-fusion \
        --prior_weights "[0.3, 1.0, 3.0]" --prior_window 10 --prior_num_history 20 --prior_decay 0.5
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_semtok.cli import parse_args_with_config, section_from_mapping
from hf_semtok.extras import require_extra
from hf_semtok.io_utils import write_json_atomic, write_text_atomic
from hf_semtok.lm.generator import GeneratorConfig
from hf_semtok.rqvae.sid_stage import SIDStageConfig

REPO = Path(__file__).resolve().parent.parent

logger = logging.getLogger("benchmarks.amazon")
RESULTS = REPO / "benchmarks" / "results"

#: Runs whose name starts with this form the SID-ablation table (same generator config, different SIDs).
ABLATION_PREFIX = "abl-"
#: Dataset folder, loader, default features, and TIGER's Table 1 row (Rajput et al., NeurIPS 2023).
DATASETS: dict[str, dict[str, Any]] = {
    "scientific": {"folder": "amazon18-scientific", "loader": "lcrec", "features": "text", "tiger": None},
    "beauty": {
        "folder": "amazon-beauty",
        "loader": "amazon2014",
        "features": "text+collab",  # chosen on the full validation set (amazon_beauty.yaml)
        "tiger": {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384},
    },
    "sports": {
        "folder": "amazon-sports",
        "loader": "amazon2014",
        "features": "attributes+collab",
        "tiger": {"recall@5": 0.0264, "ndcg@5": 0.0181, "recall@10": 0.0400, "ndcg@10": 0.0225},
    },
    "toys": {
        "folder": "amazon-toys",
        "loader": "amazon2014",
        "features": "text+collab",  # chosen on the full validation set (amazon_toys.yaml)
        "tiger": {"recall@5": 0.0521, "ndcg@5": 0.0371, "recall@10": 0.0712, "ndcg@10": 0.0432},
    },
}
FEATURE_NAMES = {
    "text": "item text ({fields}) embedded with all-MiniLM-L6-v2",
    "attributes": "multi-hot attribute ids (item2attributes.json)",
    "collab": "co-occurrence SVD of training histories",
}


@dataclass
class AmazonBenchConfig:
    """Settings of one benchmark run.

    Args:
        dataset: One of scientific, beauty, sports, toys.
        data_root: Folder holding the dataset folders (relative paths are taken from the repository root).
        sids: `"rqvae"` (train an RQ-VAE on the features) or `"published:<set>"` (e.g. `published:letter/Beauty`).
        features: `"auto"` (the dataset's default) or `+`-joined names from text, attributes, collab.
        text_fields: Item fields joined into the text that is embedded.
        run_name: Name of the result files (default: made from the SID setting).
        cache_dir: Embedding cache (relative to the repository root).
        results_dir: Where the JSON, plot and Markdown table go (relative to the repository root).
        num_threads: Torch CPU threads (`torch.set_num_threads`; `None`: torch's default). README rows use 2 and run
            one benchmark at a time on the 2-core machine; the JSON records the threads of every stage.
        sid: RQ-VAE settings (`--sid.codebook_sizes "[1024,512,256]"`).
        generator: Generator settings (`--generator.max_train_minutes 20`).
        prior_weights: If set, also evaluate the trained generator fused with a `TransitionPrior`
            (`recommend(prior=..., prior_weight=w)`) for each weight `w > 0`, choose the weight (0 = the generator
            alone) by NDCG@10 on all validation users, and report test for the generator alone, the prior alone (the
            transition heuristic, `benchmarks/transition.py`) and fused, with per-user hit ranks and the paired
            per-user differences against the heuristic (`"prior_fusion"` in the JSON).
        prior_window: The prior's `window` (choose it with `benchmarks/transition.py`, on validation).
        prior_num_history: The prior's `num_history`.
        prior_decay: The prior's `decay`.
        refit: With `prior_weights`: once the weight (and the generator's step count, with `select_best`) is
            chosen on validation, train the generator again on every sequence without its test item (what the
            heuristic's test counts hold: `benchmarks/transition.py`), for the kept number of steps, and report test
            for it alone and fused at the chosen weight (`"prior_fusion"]["refit"]`). Nothing of it is chosen on
            test.
    """

    dataset: str = "scientific"
    data_root: str = "../shared/data"
    sids: str = "rqvae"
    features: str = "auto"
    text_fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories"])
    run_name: str | None = None
    cache_dir: str = "benchmarks/cache"
    results_dir: str = "benchmarks/results"
    num_threads: int | None = None
    sid: SIDStageConfig | str | dict | None = field(
        default=None, metadata={"help": "RQ-VAE settings (SIDStageConfig keys); --sid.KEY VALUE sets one."}
    )
    generator: GeneratorConfig | str | dict | None = field(
        default=None,
        metadata={"help": "Generator settings (GeneratorConfig keys); --generator.KEY VALUE sets one."},
    )
    prior_weights: list[float] | None = None
    prior_window: int = 3
    prior_num_history: int = 5
    prior_decay: float = 0.5
    refit: bool = False

    def __post_init__(self) -> None:
        self.sid = section_from_mapping(SIDStageConfig, self.sid, "sid")
        self.generator = section_from_mapping(GeneratorConfig, self.generator, "generator")
        if self.refit and not self.prior_weights:
            raise ValueError(
                "refit needs prior_weights: the refit model is tested at the weight they choose."
            )
        if self.prior_weights is not None and any(w <= 0 for w in self.prior_weights):
            raise ValueError(
                f"prior_weights must be > 0 (the generator alone, weight 0, is always evaluated); got "
                f"{self.prior_weights}."
            )


def parse_bench_args(cls: type, argv: list[str] | None, prog: str) -> tuple[Any, list[str]]:
    """Turn on INFO logging and read the benchmark config `cls` from `--config` and the command line.

    Args:
        cls: The benchmark's config dataclass.
        argv: The arguments (`None`: `sys.argv[1:]`).
        prog: The script's name, for `--help`.

    Returns:
        `(config, argv)`: the arguments are kept for the result's `command`.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    (cfg,) = parse_args_with_config(cls, argv, prog=prog)
    return cfg, argv


def write_table(results_dir: Path, prefix: str, render: Callable[[list[dict[str, Any]]], list[str]]) -> str:
    """Regenerate `<results_dir>/<prefix>.md` from every `<prefix>_*.json` result there and return its text.

    Args:
        results_dir: The results folder.
        prefix: The benchmark's file prefix (`sasrec`, `transition`, ...).
        render: The results, in `DATASETS` order (then file name order) -> the table's lines.
    """
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob(f"{prefix}_*.json"))]
    order = list(DATASETS)
    runs.sort(key=lambda r: order.index(r["dataset"]) if r["dataset"] in order else len(order))
    text = "\n".join(render(runs)) + "\n"
    write_text_atomic(text, results_dir / f"{prefix}.md")
    return text


def write_result(
    result: dict[str, Any],
    results_dir: Path,
    prefix: str,
    run_name: str | None,
    write_table: Callable[[Path], str],
) -> Path:
    """Write `result` as `<results_dir>/<prefix>_<dataset>[_<run_name>].json` (the dataset's main row has no run
    name), regenerate the benchmark's table with `write_table(results_dir)` and print it; returns the JSON's path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"_{run_name}" if run_name else ""
    path = results_dir / f"{prefix}_{result['dataset']}{suffix}.json"
    write_json_atomic(result, path, indent=2)
    print(write_table(results_dir))
    return path


def _load(cfg: AmazonBenchConfig) -> Any:
    from hf_semtok.data import load_catalogue

    if cfg.dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {cfg.dataset!r}; choose one of {sorted(DATASETS)}.")
    info = DATASETS[cfg.dataset]
    folder = (REPO / cfg.data_root / info["folder"]).resolve()
    if not folder.is_dir():
        raise ValueError(f"Dataset folder {folder} not found; pass --data_root pointing at shared/data.")
    return load_catalogue(info["loader"], folder, text_fields=cfg.text_fields)


def _features(
    cfg: AmazonBenchConfig, catalogue: Any, names: list[str], train: Mapping[str, Sequence[str]] | None = None
) -> dict[str, np.ndarray]:
    """The item features `names`, rows in `catalogue.item_ids` order; `collab` comes from the training histories
    `train` (default: the train part of `leave_one_out_split(catalogue.histories)`)."""
    from hf_semtok.data import leave_one_out_split
    from hf_semtok.data.embeddings import embed_texts
    from hf_semtok.data.features import cooccurrence_features, multi_hot_features

    out = {}
    for name in names:
        if name == "text":
            if not catalogue.texts:
                raise ValueError(f"{cfg.dataset} has no item text; use --features attributes+collab.")
            out["text"] = embed_texts(catalogue.item_texts(), cache_dir=REPO / cfg.cache_dir / "embeddings")
        elif name == "attributes":
            out["attributes"] = multi_hot_features(catalogue.item_ids, catalogue.categories)
        elif name == "collab":
            if train is None:
                train, _, _ = leave_one_out_split(catalogue.histories)
            out["collab"] = cooccurrence_features(catalogue.item_ids, train, seed=cfg.generator.seed)
        else:
            raise ValueError(f"Unknown feature {name!r}; use text, attributes or collab joined by '+'.")
    return out


def _paired(ranks_a: list[int | None], ranks_b: list[int | None], k: int) -> dict[str, float]:
    """Mean per-user difference `a - b` of Recall@k and NDCG@k, each with its standard error (paired over users)."""
    out = {}
    for name, value in (
        (f"recall@{k}", lambda r: float(r is not None and r <= k)),
        (f"ndcg@{k}", lambda r: 1.0 / np.log2(r + 1) if r is not None and r <= k else 0.0),
    ):
        diff = np.array([value(a) - value(b) for a, b in zip(ranks_a, ranks_b)])
        out[name] = float(diff.mean())
        out[f"{name}_se"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    return out


def evaluate_ranks(
    gen: GeneratorConfig, tokenizer: Any, model: Any, prior: Any, weight: float, examples: list[Any]
) -> tuple[dict[str, Any], list[int | None]]:
    """Test or validation metrics (with standard errors) and per-user hit ranks of `model` through `recommend()`,
    fused with `prior` at `weight` (0: the generator alone)."""
    from hf_semtok import recommend
    from hf_semtok.evaluation import hit_ranks, ranking_metrics

    ranked = recommend(
        model,
        tokenizer,
        [h for h, _ in examples],
        k=max(gen.ks),
        num_beams=gen.num_beams,
        batch_size=gen.eval_batch_size,
        max_history=gen.max_history,
        progress=False,
        prior=prior,
        prior_weight=weight,
    )
    rankings = [[item for item, _ in r] for r in ranked]
    targets = [t for _, t in examples]
    return ranking_metrics(rankings, targets, gen.ks, standard_errors=True), hit_ranks(
        rankings, targets, max(gen.ks)
    )


def _prior_fusion(
    cfg: AmazonBenchConfig,
    catalogue: Any,
    model_dir: Path,
    generator_validation: dict[str, Any],
    kept_step: int | None = None,
) -> dict[str, Any]:
    """The generator alone, the transition prior alone and the two fused (weight chosen on all validation users)."""
    from transformers import AutoModelForCausalLM

    from hf_semtok import SemanticIDTokenizer, TransitionPrior, leave_one_out_split
    from hf_semtok.evaluation import hit_ranks, ranking_metrics

    began = time.perf_counter()
    gen = cfg.generator
    ks, top = list(gen.ks), max(gen.ks)
    key = f"ndcg@{top}"
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=gen.max_history)
    users = sorted(test)
    valid_examples, test_examples = [valid[u] for u in users], [test[u] for u in users]
    tokenizer = SemanticIDTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    settings = {"window": cfg.prior_window, "num_history": cfg.prior_num_history, "decay": cfg.prior_decay}
    items = list(catalogue.item_ids)
    # Validation counts: the train part; test counts: every sequence without its test item (benchmarks/transition.py).
    valid_prior = TransitionPrior.fit(train, item_ids=items, **settings)
    test_sequences = {u: train[u] + ([valid[u][1]] if u in valid else []) for u in train}
    test_prior = TransitionPrior.fit(test_sequences, item_ids=items, **settings)

    def evaluate(
        prior: Any, weight: float, examples: list[Any], lm: Any = None
    ) -> tuple[dict[str, Any], list[int | None]]:
        return evaluate_ranks(gen, tokenizer, model if lm is None else lm, prior, weight, examples)

    grid = []
    if (
        gen.valid_users is None and generator_validation
    ):  # the pipeline's pass: all validation users, weight 0
        grid.append({"prior_weight": 0.0, **generator_validation})
    else:
        grid.append({"prior_weight": 0.0, **evaluate(None, 0.0, valid_examples)[0]})
    for weight in cfg.prior_weights:
        point = {"prior_weight": weight, **evaluate(valid_prior, weight, valid_examples)[0]}
        logger.info("prior_weight %s: validation %s %.4f", weight, key, point[key])
        grid.append(point)
    chosen = max(grid, key=lambda point: point[key])["prior_weight"]  # the first of equal points
    generator, generator_ranks = evaluate(None, 0.0, test_examples)
    fused, fused_ranks = (generator, generator_ranks)
    if chosen > 0:
        fused, fused_ranks = evaluate(test_prior, chosen, test_examples)
    heuristic_rankings = test_prior.recommend([h for h, _ in test_examples], k=top)
    targets = [t for _, t in test_examples]
    heuristic = ranking_metrics(heuristic_rankings, targets, ks, standard_errors=True)
    heuristic_ranks = hit_ranks(heuristic_rankings, targets, top)
    logger.info(
        "prior fusion (weight %s): test %s generator %.4f, prior %.4f, fused %.4f",
        chosen,
        key,
        generator[key],
        heuristic[key],
        fused[key],
    )
    refit = None
    if cfg.refit:
        refit = refit_generator(
            cfg, tokenizer, test_sequences, kept_step, chosen, test_prior, test_examples, evaluate
        )
        refit["paired_vs_prior"] = {
            "generator_minus_prior": _paired(refit["per_user"]["generator_rank"], heuristic_ranks, top),
            "fused_minus_prior": _paired(refit["per_user"]["fused_rank"], heuristic_ranks, top),
        }
        logger.info(
            "refit: test %s generator %.4f, fused %.4f (prior %.4f)",
            key,
            refit["test"]["generator"][key],
            refit["test"]["fused"][key],
            heuristic[key],
        )
    return {
        "refit": refit,
        "prior_settings": settings,
        "validation_grid": grid,
        "chosen_prior_weight": chosen,
        "selection": f"best validation {key} over prior_weight in [0] + prior_weights, all validation users",
        "test": {"generator": generator, "prior": heuristic, "fused": fused},
        "paired_vs_prior": {
            "generator_minus_prior": _paired(generator_ranks, heuristic_ranks, top),
            "fused_minus_prior": _paired(fused_ranks, heuristic_ranks, top),
            "fused_minus_generator": _paired(fused_ranks, generator_ranks, top),
        },
        "per_user": {
            "user_ids": users,
            "generator_rank": generator_ranks,
            "prior_rank": heuristic_ranks,
            "fused_rank": fused_ranks,
        },
        "seconds": round(time.perf_counter() - began, 1),
    }


def refit_generator(
    cfg: AmazonBenchConfig,
    tokenizer: Any,
    sequences: Mapping[str, list[str]],
    steps: int | None,
    weight: float,
    prior: Any,
    test_examples: list[Any],
    evaluate: Callable[..., tuple[dict[str, Any], list[int | None]]],
) -> dict[str, Any]:
    """The generator trained again on `sequences` (every sequence without its test item) for `steps` steps, with
    the settings chosen on validation, tested alone and fused with `prior` at `weight`."""
    from hf_semtok.lm.generator import train_generator

    began = time.perf_counter()
    steps = steps or cfg.generator.max_steps
    config = dataclasses.replace(cfg.generator, max_steps=steps, eval_every_steps=0, select_best=False)
    model, training, _ = train_generator(tokenizer, sequences, config, progress=True)
    generator, generator_ranks = evaluate(None, 0.0, test_examples, lm=model)
    fused, fused_ranks = (
        evaluate(prior, weight, test_examples, lm=model) if weight > 0 else (generator, generator_ranks)
    )
    return {
        "training": {"steps": steps, "epochs": training.get("epochs"), "sequences": len(sequences)},
        "selection": "steps and prior weight from the first run's validation; trained on train + validation items",
        "test": {"generator": generator, "fused": fused},
        "per_user": {"generator_rank": generator_ranks, "fused_rank": fused_ranks},
        "seconds": round(time.perf_counter() - began, 1),
    }


def _run_name(cfg: AmazonBenchConfig) -> str:
    if cfg.run_name:
        return cfg.run_name
    if cfg.sids.startswith("published:"):
        return "published-" + cfg.sids.split(":", 1)[1].replace("/", "-").replace(
            "sids_collisiongenrec-", "cgr-"
        )
    sizes = "-".join(str(s) for s in cfg.sid.codebook_sizes)
    return f"rqvae-{sizes}" + ("-contrastive" if cfg.sid.contrastive_weight > 0 else "")


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "hf_semtok"], cwd=REPO, capture_output=True, text=True
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _plot(result: dict[str, Any], path: Path) -> None:
    curve = result["curve"]
    if not curve:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["train_seconds"] / 60 for r in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("recall@10", "ndcg@10", "recall@5", "ndcg@5"):
        ax.plot(minutes, [r[key] for r in curve], marker="o", ms=3, label=f"valid {key}")
    for key, style in (("recall@10", "--"), ("ndcg@10", ":")):
        if result["tiger"]:
            ax.axhline(result["tiger"][key], color="grey", ls=style, lw=1, label=f"TIGER test {key}")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("metric")
    ax.set_title(f"{result['dataset']} / {result['run_name']} (validation subsample)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(m: dict[str, Any]) -> str:
    return " | ".join(f"{m[k]:.4f}" for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"))


def _with_se(m: dict[str, Any] | None, key: str) -> str:
    """`value ± se` (or the value alone for results written before standard errors; blank when absent)."""
    if not m or key not in m:
        return ""
    se = m.get(f"{key}_se")
    return f"{m[key]:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def _se(m: dict[str, Any]) -> str:
    """Standard errors of the test R@10 and N@10 (blank for results written before they were recorded)."""
    if "recall@10_se" not in m:
        return ""
    return f"{m['recall@10_se']:.4f} / {m['ndcg@10_se']:.4f}"


def _steps(training: dict[str, Any]) -> str:
    """Steps trained, and the step whose weights were kept when `select_best` chose an earlier one."""
    selected = training.get("selected_step", training["steps"])
    return (
        f"{training['steps']}" if selected == training["steps"] else f"{training['steps']} (kept {selected})"
    )


def _generator_key(run: dict[str, Any]) -> str:
    """The generator settings of a result JSON, with today's defaults for keys older runs did not record: runs
    with equal keys trained the same generator, so their rows differ only in SIDs (the ablation tables)."""
    recorded = run.get("bench_config", {}).get("generator") or {}
    settings = {**dataclasses.asdict(GeneratorConfig()), **recorded}
    return json.dumps(settings, sort_keys=True, default=str)


def _sasrec(results_dir: Path, dataset: str) -> dict[str, Any] | None:
    """The SASRec baseline of `dataset` (`sasrec_<dataset>.json`, written by benchmarks/sasrec.py), if present."""
    path = results_dir / f"sasrec_{dataset}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_markdown(results_dir: Path = RESULTS) -> str:
    """Regenerate `amazon.md` from every `amazon_*.json` in `results_dir` and return its text."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("amazon_*.json"))]
    lines = [
        "# Amazon benchmark: generative retrieval with Semantic IDs vs TIGER",
        "",
        "Leave-one-out (last item = test), history cut to the last 20 items, full-catalogue ranking by 20-beam "
        "constrained decoding; a decoder-only generator trained from scratch (device in each JSON). Popularity: the most "
        "frequent training items, on the same test users. Written by `benchmarks/amazon.py`; one JSON per row.",
    ]
    groups = []
    for dataset in [d for d in DATASETS if any(r["dataset"] == d for r in runs)]:
        ours = sorted((r for r in runs if r["dataset"] == dataset), key=lambda r: r["run_name"])
        main_rows = [r for r in ours if not r["run_name"].startswith(ABLATION_PREFIX)]
        ablation = [r for r in ours if r["run_name"].startswith(ABLATION_PREFIX)]
        if main_rows:
            groups.append((f"## {dataset}", main_rows, _sasrec(results_dir, dataset)))
        by_generator: dict[str, list[dict[str, Any]]] = {}
        for r in ablation:
            by_generator.setdefault(_generator_key(r), []).append(r)
        for key, rows in sorted(by_generator.items(), key=lambda kv: -kv[1][0]["training"]["steps"]):
            partners = [r for r in main_rows if _generator_key(r) == key]  # main rows on the same generator
            title = (
                f"## {dataset}: SID ablation ({rows[0]['training']['steps']} steps; one generator config, "
                "only the SIDs differ)"
            )
            groups.append((title, sorted(rows + partners, key=lambda r: r["run_name"]), None))
    for title, rows, sasrec in groups:
        lines += [
            "",
            title,
            "",
            "| run | SIDs | features | R@5 | N@5 | R@10 | N@10 | se R@10 / N@10 | R@10 valid ± se "
            "| N@10 valid ± se | params | steps | tokens seen | threads | train min | total min | test users |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        if rows[0]["tiger"]:
            lines.append(
                f"| TIGER (Table 1, published) | RQ-VAE 3x256 + dedup | Sentence-T5 text | {_fmt(rows[0]['tiger'])} "
                "| | | | ~13M | | | | | | all |"
            )
        # The baseline users would pick instead (benchmarks/sasrec.py): same splits, users and metrics.
        if sasrec:
            t = sasrec["training"]
            lines.append(
                f"| SASRec, full cross-entropy, history 50 (`sasrec_{sasrec['dataset']}.json`) | none (item ids) "
                "| item ids "
                f"| {_fmt(sasrec['metrics'])} | {_se(sasrec['metrics'])} "
                f"| {_with_se(sasrec['validation'], 'recall@10')} | {_with_se(sasrec['validation'], 'ndcg@10')} "
                f"| {t['num_parameters'] / 1e6:.1f}M | {_steps(t)} | | {t['threads']} | {t['train_seconds'] / 60:.1f} "
                f"| {sasrec['total_seconds'] / 60:.0f} | {sasrec['evaluation']['test_users']} |"
            )
        for r in rows:
            training = r["training"]
            threads = training.get("threads") or r.get("bench_config", {}).get("num_threads") or ""
            lines.append(
                f"| {r['run_name']} | {r['sids']} | {r['features']} | {_fmt(r['metrics'])} | "
                f"{_se(r['metrics'])} | {_with_se(r.get('validation'), 'recall@10')} | "
                f"{_with_se(r.get('validation'), 'ndcg@10')} | {r['model']['num_parameters'] / 1e6:.1f}M | "
                f"{_steps(training)} | {training['tokens_seen'] / 1e6:.1f}M | {threads} | "
                f"{training['train_seconds'] / 60:.1f} | {r.get('total_seconds', 0) / 60:.0f} | "
                f"{r['evaluation']['test_users']} |"
            )
        popularity = {(r["evaluation"]["test_users"], _fmt(r["popularity"])) for r in rows}
        for users, metrics in sorted(popularity):
            lines.append(
                f"| popularity (same {users} test users) | | | {metrics} | | | | | | | | | | {users} |"
            )
        lines += [
            "",
            "Test and validation metrics are means over users, ± one standard error (binomial for Recall, sample "
            "for NDCG). Rows before step-bounded runs were cut by wall-clock time.",
        ]
        lines += ["", "Commands:", ""] + [f"- {r['run_name']}: `{r['command']}`" for r in rows]
        if sasrec:
            lines.append(f"- SASRec: `{sasrec['command']}`")
    text = "\n".join(lines) + "\n"
    write_text_atomic(text, results_dir / "amazon.md")
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one benchmark and write its results; returns the result dict."""
    from hf_semtok.pipeline import run_pipeline

    cfg, argv = parse_bench_args(AmazonBenchConfig, argv, "amazon.py")
    require_extra("bench", "benchmarks/amazon.py (its training curve plot)", ["matplotlib"])
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    began = time.perf_counter()
    commit = _git_commit()  # the code this run imports: read now, not when it ends (the checkout may move on)
    catalogue = _load(cfg)
    info = DATASETS[cfg.dataset]
    names = (info["features"] if cfg.features == "auto" else cfg.features).split("+")
    sid_table, embeddings = None, None
    if cfg.sids.startswith("published:"):
        key = cfg.sids.split(":", 1)[1]
        if key not in catalogue.published_sids:
            raise ValueError(
                f"No published SID set {key!r} for {cfg.dataset}; have {sorted(catalogue.published_sids)}."
            )
        sid_table = catalogue.published_sids[key]
        features = f"published SIDs {key}"
    elif cfg.sids == "rqvae":
        embeddings = _features(cfg, catalogue, names)
        fields = ", ".join(catalogue.text_fields)  # the fields the source has (Toys: no brand)
        features = " + ".join(FEATURE_NAMES[n].format(fields=fields) for n in names)
    else:
        raise ValueError(f"--sids must be 'rqvae' or 'published:<set>', got {cfg.sids!r}.")
    data_seconds = time.perf_counter() - began  # loading + item features (embeddings), before the pipeline
    run_name = _run_name(cfg)
    out_dir = REPO / "benchmarks" / "runs" / f"amazon_{cfg.dataset}_{run_name}"  # gitignored
    result = run_pipeline(
        catalogue,
        sid_table=sid_table,
        embeddings=embeddings,
        sid_config=cfg.sid,
        config=cfg.generator,
        output_dir=out_dir,
    ).to_dict()
    result["stages"] = {
        "data": {"seconds": round(data_seconds, 1), "threads": torch.get_num_threads()},
        **result["stages"],
    }
    if cfg.prior_weights:
        result["prior_fusion"] = _prior_fusion(
            cfg,
            catalogue,
            out_dir / "model",
            result["validation"],
            kept_step=result["training"].get("selected_step"),
        )
    result = {
        "dataset": cfg.dataset,
        "run_name": run_name,
        "sids": cfg.sids
        if sid_table is not None
        else f"rqvae {cfg.sid.codebook_sizes}"
        + (f", contrastive {cfg.sid.contrastive_weight}" if cfg.sid.contrastive_weight > 0 else ""),
        "features": features,
        "tiger": info["tiger"],
        **result,
        "bench_config": dataclasses.asdict(cfg),
        "command": "python benchmarks/amazon.py " + " ".join(argv),
        "git_commit": commit,
        "device": _device(),
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    results_dir = REPO / cfg.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"amazon_{cfg.dataset}_{run_name}"
    write_json_atomic(result, results_dir / f"{stem}.json", indent=2)
    _plot(result, results_dir / f"{stem}.png")
    print(write_markdown(results_dir))
    return result


if __name__ == "__main__":
    main()
