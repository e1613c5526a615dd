"""Encoding throughput of `RQVAEModel.encode` (embeddings -> codes), against a naive reference in the same run.

The issue's target is >= 100,000 items/s on 2 cores, batched. Throughput does not depend on how well the model
is trained, only on its shape, so the models here are randomly initialised with the shapes used on Amazon data
(`benchmarks/sid_quality.py`): text 384-d -> MLP [512, 256, 128] -> latent 32, codebooks `[256, 256, 256]` and
`[1024, 512, 256]`, and a multimodal input (text 384 + image 512 + audio 128). The reference is what one writes
first: the same encoder, then `torch.cdist` + `argmin` per level, on the same batches. Both give the same codes
up to float near-ties (checked: `compare_codes`). Variants run round-robin so machine load hits all alike; the best of the rounds is reported.

Usage:
    python benchmarks/encode_speed.py            # writes benchmarks/results/encode_speed.{json,md}
    python benchmarks/encode_speed.py --quick    # fewer items and rounds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from hf_semtok import RQVAEConfig, RQVAEModel
from hf_semtok.io_utils import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results"
BATCH = 16384
SHAPES = {
    "text, [256, 256, 256]": ({"text": 384}, [256, 256, 256]),
    "text, [1024, 512, 256]": ({"text": 384}, [1024, 512, 256]),
    "text+image+audio, [1024, 512, 256]": ({"text": 384, "image": 512, "audio": 128}, [1024, 512, 256]),
}


@torch.inference_mode()
def reference_encode(model: RQVAEModel, embeddings, batch_size: int = BATCH) -> torch.Tensor:
    """The straightforward version: encoder, then `cdist` + `argmin` against each level's codebook."""
    model.eval()
    n = next(iter(embeddings.values())).shape[0] if isinstance(embeddings, dict) else embeddings.shape[0]
    out = []
    for start in range(0, n, batch_size):
        chunk = (
            {k: v[start : start + batch_size] for k, v in embeddings.items()}
            if isinstance(embeddings, dict)
            else embeddings[start : start + batch_size]
        )
        x, _ = model.prepare_inputs(chunk)
        residual = model.encoder(x)
        codes = []
        for codebook in model.quantizer.codebooks:
            idx = torch.cdist(residual, codebook).argmin(dim=1)
            codes.append(idx)
            residual = residual - codebook[idx]
        out.append(torch.stack(codes, dim=1))
    return torch.cat(out)


@torch.inference_mode()
def compare_codes(model: RQVAEModel, embeddings, codes: torch.Tensor, reference: torch.Tensor) -> dict:
    """Share of items whose codes equal the reference's, and how close the disagreements are to ties.

    The fast path computes distances as `|x|^2 - 2 x.c + |c|^2`, `cdist` directly; the two round differently, so
    when two codes are (nearly) equally close they can pick different ones. For every item that differs, at its
    first differing level, this measures `(d(fast code) - d(reference code)) / d(reference code)` on the reference
    residual: float rounding gives ~1e-6, a real error would give far more.
    """
    differs = (codes != reference).any(dim=1)
    gap = 0.0
    if differs.any():
        rows = torch.nonzero(differs).squeeze(1)
        chunk = (
            {k: v[rows] for k, v in embeddings.items()} if isinstance(embeddings, dict) else embeddings[rows]
        )
        x, _ = model.prepare_inputs(chunk)
        residual = model.encoder(x)
        pending = torch.ones(len(rows), dtype=torch.bool)
        for level, codebook in enumerate(model.quantizer.codebooks):
            fast, ref = codes[rows, level], reference[rows, level]
            first = pending & (fast != ref)
            if first.any():
                d_fast = (residual[first] - codebook[fast[first]]).norm(dim=1)
                d_ref = (residual[first] - codebook[ref[first]]).norm(dim=1)
                gap = max(gap, float(((d_fast - d_ref) / d_ref.clamp_min(1e-12)).max()))
            pending &= ~first
            residual = residual - codebook[ref]
    return {"code_agreement": round(1.0 - float(differs.float().mean()), 6), "max_relative_gap": gap}


def run(num_items: int, rounds: int, threads: list[int]) -> dict:
    rows = []
    for name, (dims, sizes) in SHAPES.items():
        torch.manual_seed(0)
        model = RQVAEModel(RQVAEConfig(modality_dims=dims, codebook_sizes=sizes)).eval()
        gen = torch.Generator().manual_seed(1)
        emb = {k: torch.randn(num_items, d, generator=gen) for k, d in dims.items()}
        emb = emb["text"] if len(emb) == 1 else emb
        agreement = compare_codes(model, emb, model.encode(emb), reference_encode(model, emb))
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            model.encode(emb)  # warm-up
            best = {"encode": float("inf"), "reference": float("inf")}
            for _ in range(rounds):
                for variant, fn in (
                    ("encode", model.encode),
                    ("reference", lambda e, m=model: reference_encode(m, e)),
                ):
                    start = time.perf_counter()
                    fn(emb)
                    best[variant] = min(best[variant], time.perf_counter() - start)
            row = {
                "model": name,
                "threads": n_threads,
                "items": num_items,
                "encode_items_per_s": round(num_items / best["encode"]),
                "reference_items_per_s": round(num_items / best["reference"]),
                "speedup_vs_reference": round(best["reference"] / best["encode"], 2),
                **agreement,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "rows": rows,
        "batch_size": BATCH,
        "rounds": rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "target_items_per_s": 100_000,
    }


def to_markdown(result: dict) -> str:
    lines = [
        "# RQ-VAE encoding throughput (embeddings -> codes)",
        "",
        f"Random-init RQ-VAE (MLP [512, 256, 128], latent 32), {result['rows'][0]['items']:,} random items, batch "
        f"{result['batch_size']:,}, best of {result['rounds']} rounds; {result['machine']}, torch {result['torch']}, "
        f"load average at start {result['load_average_at_start'][0]}. Reference: the same encoder with "
        "`torch.cdist` + `argmin` per level. Target: >= 100,000 items/s on 2 cores.",
        "",
        "| model | threads | encode items/s | reference items/s | speed-up | codes equal to reference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['threads']} | {r['encode_items_per_s']:,} | {r['reference_items_per_s']:,} | "
            f"{r['speedup_vs_reference']:.2f}x | {100 * r['code_agreement']:.3f}% |"
        )
    gap = max(r["max_relative_gap"] for r in result["rows"])
    lines += [
        "",
        "Every code equals the reference's."
        if all(r["code_agreement"] == 1.0 for r in result["rows"])
        else (
            "Codes that differ from the reference are float near-ties"
            if gap < 1e-4
            else "WARNING: some codes differ from the reference by more than float rounding"
        )
        + f" (largest relative distance gap between the two codes: {gap:.1e}; see `compare_codes`).",
        "",
        f"Command: `python benchmarks/encode_speed.py` ({result['seconds']:.0f} s).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k items, 2 rounds")
    parser.add_argument("--num_items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output_dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    num_items, rounds = (20_000, 2) if args.quick else (args.num_items, args.rounds)
    start = time.perf_counter()
    result = run(num_items, rounds, args.threads)
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_text_atomic(json.dumps(result, indent=2) + "\n", args.output_dir / "encode_speed.json")
    write_text_atomic(to_markdown(result), args.output_dir / "encode_speed.md")
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
