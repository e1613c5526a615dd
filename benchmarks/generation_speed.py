"""Cost of constrained SID decoding: SIDLogitsProcessor vs unconstrained vs `prefix_allowed_tokens_fn`.

For random catalogues of 10k and 100k items (3 levels x 256 codes, unique SIDs) and a small random Qwen2-style LM,
measures
  - the per-step cost of the constraint alone (processor call, or the equivalent `prefix_allowed_tokens_fn` work
    done by transformers' `PrefixConstrainedLogitsProcessor`), averaged over the SID's steps;
  - end-to-end `generate()` time with beam search (20 beams, 20 returned sequences, 5 new tokens:
    `<|sid_start|>`, 3 codes, `<|sid_end|>`), for batch 1 and 16, left-padded prompts of mixed lengths;
and reports every time as a ratio against unconstrained generation measured in the same run.

Usage:
    python benchmarks/generation_speed.py            # writes benchmarks/results/generation_speed.{json,md}
    python benchmarks/generation_speed.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessorList, PrefixConstrainedLogitsProcessor

from hf_semtok.generation import SIDLogitsProcessor
from hf_semtok.io_utils import write_text_atomic
from hf_semtok.small_models import build_causal_lm

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results"
SIZES = (256, 256, 256)
TEXT_VOCAB = 2000  # ids [0, TEXT_VOCAB) are text; 0 = pad, 1 = eos
PAD, EOS = 0, 1
NUM_BEAMS = 20


def make_catalogue(n_items: int, seed: int) -> np.ndarray:
    """`(n_items, 3)` unique random codes."""
    rng = np.random.default_rng(seed)
    codes = np.unique(np.stack([rng.integers(0, s, int(n_items * 1.2)) for s in SIZES], axis=1), axis=0)
    return codes[rng.permutation(len(codes))[:n_items]]


def token_layout():
    sid_token_ids, nxt = [], TEXT_VOCAB
    for s in SIZES:
        sid_token_ids.append(list(range(nxt, nxt + s)))
        nxt += s
    return sid_token_ids, nxt, nxt + 1, nxt + 2  # ids, start, end, vocab


def make_prefix_fn(codes: np.ndarray, sid_token_ids, start: int, end: int, prompt_length: int):
    """The usual `prefix_allowed_tokens_fn`: a dict from SID prefix to allowed next tokens (Python per beam)."""
    allowed: dict[tuple[int, ...], list[int]] = {}
    for level in range(len(SIZES)):
        nxt: dict[tuple[int, ...], set[int]] = {}
        for row in codes.tolist():
            nxt.setdefault(tuple(row[:level]), set()).add(sid_token_ids[level][row[level]])
        allowed.update({k: sorted(v) for k, v in nxt.items()})
    token_code = {t: c for level in sid_token_ids for c, t in enumerate(level)}

    def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        generated = input_ids[prompt_length:].tolist()
        if not generated:
            return [start]
        if len(generated) > len(SIZES):
            return [end] if len(generated) == len(SIZES) + 1 else [EOS]
        return allowed.get(tuple(token_code[t] for t in generated[1:]), [EOS])

    return fn


def make_prompts(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(24, 49, batch)
    width = int(lengths.max())
    ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.as_tensor(rng.integers(2, TEXT_VOCAB, n))
        mask[i, width - n :] = 1
    return ids, mask


def interleaved_times(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, measured in round-robin so that machine load hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """Median over rounds of time(name) / time(reference) in the same round."""
    return statistics.median(a / b for a, b in zip(times[name], times[reference]))


def step_inputs(codes: np.ndarray, sid_token_ids, start: int, prompt: torch.Tensor, rows: int, seed: int):
    """Per SID step (start marker + 3 levels): `(rows, prompt + step)` inputs that follow real catalogue prefixes."""
    rng = np.random.default_rng(seed)
    picked = codes[rng.integers(0, len(codes), rows)]  # (rows, 3)
    sid_tokens = np.stack([np.asarray(sid_token_ids[lv])[picked[:, lv]] for lv in range(len(SIZES))], axis=1)
    gen = torch.cat([torch.full((rows, 1), start), torch.as_tensor(sid_tokens)], dim=1)  # (rows, 4)
    base = prompt.repeat_interleave(rows // prompt.shape[0], dim=0)
    return [torch.cat([base, gen[:, :step]], dim=1) for step in range(len(SIZES) + 1)]


def bench_config(model, n_items: int, batch: int, repeats: int, seed: int) -> dict:
    codes = make_catalogue(n_items, seed)
    sid_token_ids, start, end, vocab = token_layout()
    ids, mask = make_prompts(batch, seed)
    prompt_length = ids.shape[1]
    proc = SIDLogitsProcessor(codes, sid_token_ids, start, end, EOS, mode="sid", prompt_length=prompt_length)
    prefix_proc = PrefixConstrainedLogitsProcessor(
        make_prefix_fn(codes, sid_token_ids, start, end, prompt_length), num_beams=NUM_BEAMS
    )
    n_vocab = model.get_input_embeddings().num_embeddings

    # 1. the constraint alone, per generation step (averaged over the SID's first 4 steps)
    rows = batch * NUM_BEAMS
    inputs = step_inputs(codes, sid_token_ids, start, ids, rows, seed)
    scores = torch.randn(rows, n_vocab)

    def run_steps(p):
        for x in inputs:
            p(x, scores)

    step = interleaved_times(
        {"proc": lambda: run_steps(proc), "prefix": lambda: run_steps(prefix_proc)}, repeats
    )
    step_proc = statistics.median(step["proc"]) / len(inputs)
    step_prefix = statistics.median(step["prefix"]) / len(inputs)

    # 2. end to end: 20-beam search, 5 new tokens
    def generate(processors):
        kwargs = dict(
            input_ids=ids,
            attention_mask=mask,
            num_beams=NUM_BEAMS,
            num_return_sequences=NUM_BEAMS,
            max_new_tokens=len(SIZES) + 2,
            min_new_tokens=len(SIZES) + 2,
            do_sample=False,
            length_penalty=0.0,
            pad_token_id=PAD,
            eos_token_id=EOS,
        )
        return lambda: model.generate(**kwargs, logits_processor=LogitsProcessorList(processors))

    with torch.no_grad():
        out = generate([proc])()
        sids = out[:, prompt_length:].tolist()
        items = {tuple(r) for r in codes.tolist()}
        valid = sum(
            tuple(s[1 + lv] - sid_token_ids[lv][0] for lv in range(len(SIZES))) in items for s in sids
        ) / len(sids)
        times = interleaved_times(
            {"plain": generate([]), "proc": generate([proc]), "prefix": generate([prefix_proc])}, repeats
        )
    t_plain, t_proc, t_prefix = (statistics.median(times[k]) for k in ("plain", "proc", "prefix"))
    return {
        "n_items": n_items,
        "batch": batch,
        "num_beams": NUM_BEAMS,
        "index_prefixes": proc.num_prefixes,
        "step_ms_sid_processor": step_proc * 1e3,
        "step_ms_prefix_allowed_tokens_fn": step_prefix * 1e3,
        "generate_ms_unconstrained": t_plain * 1e3,
        "generate_ms_sid_processor": t_proc * 1e3,
        "generate_ms_prefix_allowed_tokens_fn": t_prefix * 1e3,
        "ratio_sid_processor": paired_ratio(times, "proc", "plain"),
        "ratio_prefix_allowed_tokens_fn": paired_ratio(times, "prefix", "plain"),
        "fraction_valid_sids": valid,
    }


def to_markdown(result: dict) -> str:
    lines = [
        "# Constrained generation speed",
        "",
        f"Model: {result['model']}; {result['num_threads']} torch threads on {result['machine']}. "
        f"Beam search, {NUM_BEAMS} beams, {NUM_BEAMS} returned sequences, {len(SIZES) + 2} new tokens; "
        "SIDs of 3 levels x 256 codes. Times are medians over rounds; a ratio is the median over rounds of "
        "time / unconstrained time in the same round (variants run round-robin, so machine load hits all alike).",
        "",
        "| items | batch | processor step (ms) | prefix_fn step (ms) | unconstrained (ms) | SIDLogitsProcessor (ms) "
        "| ratio | prefix_allowed_tokens_fn (ms) | ratio | valid SIDs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['n_items']:,} | {r['batch']} | {r['step_ms_sid_processor']:.3f} | "
            f"{r['step_ms_prefix_allowed_tokens_fn']:.2f} | {r['generate_ms_unconstrained']:.1f} | "
            f"{r['generate_ms_sid_processor']:.1f} | {r['ratio_sid_processor']:.3f}x | "
            f"{r['generate_ms_prefix_allowed_tokens_fn']:.1f} | {r['ratio_prefix_allowed_tokens_fn']:.2f}x | "
            f"{r['fraction_valid_sids']:.0%} |"
        )
    lines += ["", f"Command: `{result['command']}` ({result['wall_s']:.0f} s).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--output_dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--num_threads", type=int, default=1, help="torch threads (1: stable timings on a shared machine)"
    )
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 11
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(0)
    _, _, _, vocab = token_layout()
    model = build_causal_lm(
        vocab, hidden_size=128, num_layers=2, num_heads=4, seed=0, eos_token_id=EOS
    ).eval()
    n_params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    runs = []
    for n_items in args.items:
        for batch in args.batches:
            run = bench_config(model, n_items, batch, repeats, seed=n_items + batch)
            runs.append(run)
            print(json.dumps(run), flush=True)
    result = {
        "model": f"random Qwen2 (hidden 128, 2 layers, vocab {vocab}, {n_params / 1e6:.1f}M params)",
        "num_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}",
        "command": "python benchmarks/generation_speed.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
        "wall_s": time.perf_counter() - start,
        "runs": runs,
    }
    write_text_atomic(json.dumps(result, indent=2) + "\n", args.output_dir / "generation_speed.json")
    write_text_atomic(to_markdown(result), args.output_dir / "generation_speed.md")
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
