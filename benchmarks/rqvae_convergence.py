"""RQ-VAE training time to convergence on ~12k items (issue 2: <= 5 minutes on 2 cores).

Amazon 2014 Beauty (12,101 items): title, brand and categories embedded with all-MiniLM-L6-v2 (offline copy,
cached under `benchmarks/cache/embeddings/`), co-occurrence pairs from the training part of the leave-one-out
split, the RQ-VAE of `benchmarks/configs/amazon_beauty.yaml` (MLP [512, 256, 128], latent 32, `[256, 256, 256]`,
contrastive 0.1, batch 1024, lr 2e-3). The same model is trained for several epoch budgets in one run; the longest
is the reference, and a shorter budget counts as converged when more training no longer changes its SIDs much:
reconstruction error within 2% and collision rate within 0.01 of the reference's. If no shorter budget qualifies,
convergence is not shown (the report says so). The loss curve of the reference run is not used for the verdict:
the cosine learning-rate schedule flattens every run's curve at its end, whatever its length.

Usage (from the repository root):
    python benchmarks/rqvae_convergence.py                    # epochs 50, 100, 200, 400
    python benchmarks/rqvae_convergence.py --epochs 10 20 --dataset_dir ../shared/data/amazon-beauty
Writes benchmarks/results/rqvae_convergence.json and .md.
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

from hf_semtok.data import leave_one_out_split, load_amazon2014
from hf_semtok.data.embeddings import embed_texts
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.io_utils import write_json_atomic, write_text_atomic
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.training import train_rqvae

REPO = Path(__file__).resolve().parents[1]

logger = logging.getLogger("rqvae_convergence")

TARGET_SECONDS = 300.0
RECON_TOLERANCE = 0.02  # relative, against the longest run
COLLISION_TOLERANCE = 0.01  # absolute


def plateau_step(history: list[dict], key: str = "reconstruction_loss", tolerance: float = RECON_TOLERANCE):
    """First logged step after which `key` stays within `tolerance` (relative) of its final value.

    The final value is the mean of the last three records, so one noisy batch does not decide it.
    """
    records = [(int(r["step"]), float(r[key])) for r in history if key in r and "step" in r]
    if len(records) < 3:
        return None
    final = float(np.mean([v for _, v in records[-3:]]))
    step = records[-1][0]
    for s, v in reversed(records):
        if abs(v - final) > tolerance * abs(final):
            break
        step = s
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset_dir", default=str(REPO.parent / "shared" / "data" / "amazon-beauty"))
    parser.add_argument("--cache_dir", default=str(REPO / "benchmarks" / "cache" / "embeddings"))
    parser.add_argument("--output_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--epochs", type=float, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data_dir = Path(args.dataset_dir)
    if not data_dir.is_dir():
        print(f"[skip] rqvae_convergence: {data_dir} not found (pass --dataset_dir)")
        return 0
    torch.set_num_threads(args.threads)
    total_start = time.perf_counter()
    load_average = [round(x, 2) for x in os.getloadavg()]
    catalogue = load_amazon2014(data_dir, text_fields=["title", "brand", "categories"])
    emb = embed_texts(catalogue.item_texts(), cache_dir=args.cache_dir, progress=False)  # (n_items, 384)
    train, _, _ = leave_one_out_split(catalogue.histories)
    pairs = build_cooccurrence_pairs(train, window=3, item_ids=catalogue.item_ids)
    runs = []
    for epochs in sorted(args.epochs):
        config = RQVAEConfig(
            modality_dims={"text": emb.shape[1]},
            hidden_sizes=[512, 256, 128],
            latent_dim=32,
            codebook_sizes=[256, 256, 256],
            contrastive_weight=0.1,
        )
        result = train_rqvae(
            emb,
            config=config,
            item_ids=catalogue.item_ids,
            cooccurrence_pairs=pairs,
            epochs=epochs,
            batch_size=1024,
            learning_rate=2e-3,
            seed=args.seed,
            progress=False,
        )
        report = result.report
        run = {
            "epochs": epochs,
            "steps": report["steps"],
            "training_time_s": report["training_time_s"],
            "reconstruction_error": report["reconstruction_error"],
            "collision_rate": report["collisions"]["collision_rate_before"],
            "utilization": [lv["utilization"] for lv in report["levels"]],
            "coherence_first_level": report["coherence_first_level"],
            "plateau_step": plateau_step(result.history),
        }
        logger.info("%s", run)
        runs.append(run)
    base = runs[-1]
    for run in runs[:-1]:
        run["converged"] = bool(
            run["reconstruction_error"] <= (1 + RECON_TOLERANCE) * base["reconstruction_error"]
            and abs(run["collision_rate"] - base["collision_rate"]) <= COLLISION_TOLERANCE
        )
    base["converged"] = None  # the reference
    converged = [r for r in runs[:-1] if r["converged"]]
    first = converged[0] if converged else None
    meta = {
        "dataset": data_dir.name,
        "num_items": catalogue.num_items,
        "num_pairs": int(len(pairs)),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": load_average,
        "target_seconds": TARGET_SECONDS,
        "reference_epochs": base["epochs"],
        "reference_seconds": base["training_time_s"],
        "fewest_epochs_converged": None if first is None else first["epochs"],
        "seconds_to_converge": None if first is None else first["training_time_s"],
        "meets_target": None if first is None else first["training_time_s"] <= TARGET_SECONDS,
        "command": "python benchmarks/rqvae_convergence.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "total_time_s": round(time.perf_counter() - total_start, 1),
    }
    result = {"meta": meta, "runs": runs}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, out / "rqvae_convergence.json")
    markdown = to_markdown(result)
    write_text_atomic(markdown, out / "rqvae_convergence.md")
    print(markdown)
    return 0


def to_markdown(result: dict) -> str:
    meta, runs = result["meta"], result["runs"]
    lines = [
        "# RQ-VAE training time to convergence",
        "",
        f"{meta['dataset']} ({meta['num_items']:,} items, {meta['num_pairs']:,} co-occurrence pairs); RQ-VAE "
        "[256, 256, 256] + contrastive 0.1 on MiniLM text embeddings; "
        f"{meta['threads']} torch threads, {meta['cpu_count']} CPUs, torch {meta['torch']}, load average at start "
        f"{meta['load_average'][0]}. Converged = reconstruction error within {RECON_TOLERANCE:.0%} and collision "
        f"rate within {COLLISION_TOLERANCE} of the longest run's.",
        "",
        "| epochs | steps | train s | recon. error | collision rate | utilisation | L0 coherence | converged |",
        "|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['epochs']:g} | {r['steps']} | {r['training_time_s']:.1f} | {r['reconstruction_error']:.4f} | "
            f"{r['collision_rate']:.4f} | {' / '.join(f'{u:.2f}' for u in r['utilization'])} | "
            f"{r['coherence_first_level']:.3f} | "
            f"{'reference' if r['converged'] is None else 'yes' if r['converged'] else 'no'} |"
        )
    lines.append("")
    if meta["fewest_epochs_converged"] is None:
        lines.append(
            f"Convergence not shown: every shorter budget is off the {meta['reference_epochs']:g}-epoch reference "
            f"({meta['reference_seconds']:.0f} s); add a longer `--epochs` budget."
        )
    else:
        verdict = "meets" if meta["meets_target"] else "misses"
        lines.append(
            f"Fewest epochs converged: {meta['fewest_epochs_converged']:g} in {meta['seconds_to_converge']:.0f} s "
            f"(reference: {meta['reference_epochs']:g} epochs, {meta['reference_seconds']:.0f} s), which {verdict} "
            f"the {meta['target_seconds']:.0f} s target."
        )
    lines += [
        "",
        f"Command: `{meta['command']}` ({meta['total_time_s']:.0f} s in all).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
