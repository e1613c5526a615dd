"""The `hf-semtok` console script.

    hf-semtok demo [--output_dir DIR] [--seed N] [--quick] [--config demo.yaml] [key=value ...]

`demo` runs `hf_semtok.demo.run_demo`: synthetic catalogue -> RQ-VAE SIDs -> tokenizer -> small LM -> CPT -> LoRA
-> recommendations and Recall@10 / NDCG@10 beside a popularity baseline, offline, in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from hf_semtok.config_utils import load_config
from hf_semtok.demo import QUICK_OVERRIDES, DemoConfig, run_demo

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:

    overrides = list(args.overrides)
    if args.quick:
        overrides = [f"{k}={json.dumps(v)}" for k, v in QUICK_OVERRIDES.items()] + overrides
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.no_progress:
        overrides.append("progress=false")
    cfg = load_config(args.config, overrides, DemoConfig)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.stdout.write(f"hf-semtok demo ({'quick' if args.quick else 'full'}) -> {cfg.output_dir}\n")
    run_demo(cfg, out=sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-semtok`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="hf-semtok", description="Semantic IDs for generative recommendation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="End-to-end offline demo on a synthetic catalogue.")
    demo.add_argument("--output_dir", default=None, help="Where models and demo_results.json go.")
    demo.add_argument("--seed", type=int, default=None, help="Seed of data, SIDs and training.")
    demo.add_argument("--quick", action="store_true", help="A smaller run (about a minute), for tests.")
    demo.add_argument("--config", default=None, help="YAML file of DemoConfig keys.")
    demo.add_argument("--no_progress", action="store_true", help="Hide progress bars.")
    demo.add_argument("overrides", nargs="*", help="DemoConfig overrides as key=value.")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "demo":
        return _demo(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
