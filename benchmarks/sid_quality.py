"""SID quality benchmark on Amazon 2018 Industrial_and_Scientific (issue 2).

Item text (title, brand, categories) is embedded with all-MiniLM-L6-v2 (offline copy, cached under
`benchmarks/cache/embeddings/`). For TIGER's `[256, 256, 256]` and the PLUM-style multi-resolution
`[1024, 512, 256]`, each without and with the co-occurrence contrastive loss (pairs from the training part of the
leave-one-out split only), it trains an RQ-VAE and reports training time, encode throughput, collision rates,
per-level utilisation / perplexity / coherence and reconstruction error. The four published SID sets in
`sids_collisiongenrec/` get the same code statistics (no model, so no reconstruction or timing).

One more number, `heldout_same_l0`: the fraction of held-out consecutive pairs (last history item, test target)
whose SIDs share the first code, next to the same fraction for random item pairs. It shows whether
collaborative signal reached the codes without using any test pair in training.

Usage (from the repository root):
    python benchmarks/sid_quality.py
    python benchmarks/sid_quality.py --data_dir ../shared/data/amazon18-scientific --epochs 200
Writes benchmarks/results/sid_quality.json and benchmarks/results/sid_quality.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hf_semtok.constants import PLUM_CODEBOOK_SIZES, TIGER_CODEBOOK_SIZES
from hf_semtok.data import leave_one_out_split, load_lcrec_dataset
from hf_semtok.data.embeddings import embed_texts
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.io_utils import write_json_atomic, write_text_atomic
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.quality import sid_quality_report
from hf_semtok.rqvae.training import train_rqvae
from hf_semtok.sids import assign_unique_sids, collision_stats

REPO = Path(__file__).resolve().parents[1]

logger = logging.getLogger("sid_quality")


def heldout_same_first_code(
    codes: np.ndarray, index: dict[str, int], test: dict, seed: int
) -> dict[str, float]:
    """Share of held-out (last history item, target) pairs with the same level-0 code, and of random pairs."""
    a = np.array([index[h[-1]] for h, _ in test.values()])
    b = np.array([index[t] for _, t in test.values()])
    rng = np.random.default_rng(seed)
    ra, rb = rng.integers(0, len(codes), 50_000), rng.integers(0, len(codes), 50_000)
    keep = ra != rb
    return {
        "heldout_same_l0": float((codes[a, 0] == codes[b, 0]).mean()),
        "random_same_l0": float((codes[ra[keep], 0] == codes[rb[keep], 0]).mean()),
    }


def encode_throughput(model, embeddings: np.ndarray, n: int = 100_000, repeats: int = 3) -> float:
    """Items per second of `model.encode` on `n` rows (the catalogue tiled), best of `repeats`."""
    tiled = np.tile(embeddings, (n // len(embeddings) + 1, 1))[:n]
    model.encode(tiled[:1000])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(tiled)
        best = min(best, time.perf_counter() - start)
    return n / best


def summarise(report: dict) -> dict:
    col = report["collisions"]
    return {
        "collision_rate_before": col.get("collision_rate_before"),
        "collision_rate_after": col.get("semantic_collision_rate"),
        "items_needing_extra_level": col.get("items_needing_extra_level"),
        "largest_group": col.get("largest_group"),
        "utilization": [lv["utilization"] for lv in report["levels"]],
        "perplexity": [lv["perplexity"] for lv in report["levels"]],
        "coherence": [lv.get("coherence") for lv in report["levels"]],
        "random_pair_similarity": report.get("random_pair_similarity"),
        "reconstruction_error": report.get("reconstruction_error"),
    }


def fmt_list(values, spec: str) -> str:
    return " / ".join("-" if v is None else format(v, spec) for v in values)


def to_markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# SID quality: Amazon 2018 Industrial_and_Scientific",
        "",
        f"{meta['num_items']} items, {meta['num_users']} users; item text (title, brand, categories) embedded with "
        f"all-MiniLM-L6-v2 ({meta['embedding_dim']}-d). RQ-VAE: hidden {meta['hidden_sizes']}, latent "
        f"{meta['latent_dim']}, {meta['epochs']} epochs, batch {meta['batch_size']}, seed {meta['seed']}; "
        f"contrastive pairs: {meta['num_pairs']} (window {meta['window']}, training histories only). "
        f"Machine: {meta['cpu_count']} CPU cores, torch {meta['torch']}, {meta['torch_threads']} threads, load "
        f"average at start {meta['load_average']}.",
        "",
        "Collision rate = share of items whose semantic codes (all levels, before the extra level) equal another "
        "item's; utilisation / perplexity / coherence per level (coherence = mean cosine of items sharing the SID "
        "prefix up to that level; random pairs: see 'rand cos'). 'held-out L0' = share of held-out (last history "
        "item, test target) pairs sharing the first code; random pairs in brackets.",
        "",
        "| SIDs | codebooks | contr. | train s | encode items/s | collision rate | extra-level items | largest group "
        "| utilisation | perplexity | coherence | rand cos | recon. err | held-out L0 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|",
    ]
    for run in result["runs"]:
        s = run["summary"]
        recon = s["reconstruction_error"]
        lines.append(
            f"| {run['name']} | {run['codebook_sizes']} | {run.get('contrastive_weight', '-')} "
            f"| {run.get('training_time_s', '-')} "
            f"| {format(run['encode_items_per_s'], ',.0f') if run.get('encode_items_per_s') else '-'} "
            f"| {s['collision_rate_before']:.4f} | {s['items_needing_extra_level']} | {s['largest_group']} "
            f"| {fmt_list(s['utilization'], '.3f')} | {fmt_list(s['perplexity'], '.0f')} "
            f"| {fmt_list(s['coherence'], '.3f')} | {s['random_pair_similarity']:.3f} "
            f"| {'-' if recon is None else format(recon, '.4f')} "
            f"| {run['heldout_same_l0']:.3f} ({run['random_same_l0']:.3f}) |"
        )
    lines += [
        "",
        "Published SIDs (CollisionGenRec, 4 levels x 256): the collision rate is over all 4 levels; over their "
        "first 3 levels it is "
        + ", ".join(
            f"{r['name']} {r['collision_rate_first3']:.4f}"
            for r in result["runs"]
            if "collision_rate_first3" in r
        )
        + ".",
        "",
        f"Command: `{meta['command']}` ({meta['total_time_s']:.0f} s in all).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data" / "amazon18-scientific"))
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache" / "embeddings"))
    parser.add_argument("--output_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--epochs", type=float, default=200)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--contrastive_weight", type=float, default=0.1)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f"[skip] sid_quality: {data_dir} not found (pass --data_dir)")
        return 0
    total_start = time.perf_counter()
    load_average = [round(x, 2) for x in os.getloadavg()]
    catalogue = load_lcrec_dataset(data_dir, name="Scientific")
    emb = embed_texts(catalogue.item_texts(), cache_dir=args.cache_dir, progress=False)  # (n_items, 384)
    index = catalogue.item_index()
    train, _, test = leave_one_out_split(catalogue.histories)
    pairs = build_cooccurrence_pairs(train, window=args.window, item_ids=catalogue.item_ids)
    hidden, latent = [512, 256, 128], 32
    runs = []
    for label, sizes in (("tiger", list(TIGER_CODEBOOK_SIZES)), ("multires", list(PLUM_CODEBOOK_SIZES))):
        for weight in (0.0, args.contrastive_weight):
            config = RQVAEConfig(
                modality_dims={"text": emb.shape[1]},
                hidden_sizes=hidden,
                latent_dim=latent,
                codebook_sizes=sizes,
                contrastive_weight=weight,
            )
            result = train_rqvae(
                emb,
                config=config,
                item_ids=catalogue.item_ids,
                cooccurrence_pairs=pairs if weight > 0 else None,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=False,
            )
            codes = result.sid_table.codes
            run = {
                "name": f"{label}{'+contrastive' if weight > 0 else ''}",
                "codebook_sizes": sizes,
                "contrastive_weight": weight,
                "training_time_s": result.report["training_time_s"],
                "steps": result.report["steps"],
                "encode_items_per_s": round(encode_throughput(result.model, emb)),
                "summary": summarise(result.report),
                "report": result.report,
                **heldout_same_first_code(codes, index, test, args.seed),
            }
            logger.info(
                "%s: %s", run["name"], {k: v for k, v in run.items() if k not in ("report", "summary")}
            )
            runs.append(run)
    for path in sorted((data_dir / "sids_collisiongenrec").glob("*.index.json*")):
        variant = path.name.split(".")[0]
        sids = catalogue.published_sids[f"sids_collisiongenrec/{variant}"]
        codes = np.array([sids[i] for i in catalogue.item_ids], dtype=np.int64)  # (n_items, 4)
        sizes = [max(256, int(codes[:, k].max()) + 1) for k in range(codes.shape[1])]
        table = assign_unique_sids(codes, catalogue.item_ids, sizes)
        report = sid_quality_report(None, emb, table, seed=args.seed)
        runs.append(
            {
                "name": f"published:{variant}",
                "codebook_sizes": sizes,
                "summary": summarise(report),
                "report": report,
                "collision_rate_first3": collision_stats(codes[:, :3])["collision_rate"],
                **heldout_same_first_code(codes, index, test, args.seed),
            }
        )
    meta = {
        "dataset": str(data_dir.name),
        "num_items": catalogue.num_items,
        "num_users": len(catalogue.histories),
        "embedding_model": "all-MiniLM-L6-v2",
        "embedding_dim": int(emb.shape[1]),
        "text_fields": ["title", "brand", "categories"],
        "hidden_sizes": hidden,
        "latent_dim": latent,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "window": args.window,
        "num_pairs": int(len(pairs)),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average": load_average,
        "command": "python benchmarks/sid_quality.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "total_time_s": round(time.perf_counter() - total_start, 1),
    }
    result = {"meta": meta, "runs": runs}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / "sid_quality.json")
    markdown = to_markdown(result)
    write_text_atomic(markdown, out / "sid_quality.md")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
