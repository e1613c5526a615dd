"""Serving benchmark: exported SID grammars in the real matchers beside SIDLogitsProcessor, at 10k to 1M items.

Catalogue: random codes over [256, 256, 256] made unique with a dedup level (`assign_unique_sids`), seed 0. The
vocabulary is a small byte-level BPE base (300 tokens) plus the SID tokens: the SID constraint only involves SID
tokens, so the base vocabulary's size changes little here (xgrammar and llguidance precompute or skip text tokens).

Per size, for each dialect (`llguidance`, `xgrammar`):
- `export_s`: `hf_semtok.serving.sid_grammar` (the trie with shared subtrees, in Python / numpy);
- `grammar_mb`, `rules`: size of the grammar text, and its rules (against `distinct_prefixes` and `items x levels`);
- `compile_s`: grammar text to a ready matcher (llguidance: `LLMatcher(...)` and its first mask; xgrammar:
  `GrammarCompiler.compile_grammar` and its first mask), on `--threads` threads;
- `mask_us`: median time of one next-token mask (a `(1, vocab)` bitmask), over every step of `--walks` random items'
  SIDs (marked layout: `<|sid_start|>`, the codes, `<|sid_end|>`, EOS);
and for `SIDLogitsProcessor`: `build_s` (the prefix index) and `mask_us`, the median time of one call on `(1, vocab)`
scores at the same steps (it returns masked scores rather than a bitmask, so it does a little more).

Usage:
    python benchmarks/serving.py                                    # 10k, 100k and 1M items
    python benchmarks/serving.py --sizes 10000 --walks 5           # what the test runs
Writes `serving.json` and `serving.md` to `--output_dir` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = [256, 256, 256]
SEED = 0

logger = logging.getLogger("benchmarks.serving")


def _catalogue(n: int):
    """Unique SIDs of `n` random items (4 levels: three of 256 codes and the dedup level)."""
    from hf_semtok.sids import assign_unique_sids

    rng = np.random.default_rng(SEED)
    codes = rng.integers(0, 256, size=(n, 3), dtype=np.int64)
    table = assign_unique_sids(codes, [f"item-{i}" for i in range(n)], SIZES)
    return np.asarray(table.codes, dtype=np.int64), list(table.codebook_sizes)


def _tokenizer(codebook_sizes: list[int]):
    """A tokenizer with the catalogue's SID tokens (its item table is one item: the grammar takes codes directly)."""
    from hf_semtok import SemanticIDTokenizer, train_base_tokenizer

    base = train_base_tokenizer(["a user bought these items next", "item title text"] * 5, vocab_size=300)
    return SemanticIDTokenizer.from_base(
        base, sid_table={"x": tuple(0 for _ in codebook_sizes)}, codebook_sizes=codebook_sizes
    )


def _walk_rows(tok, codes: np.ndarray, walks: int) -> list[list[int]]:
    """Token rows of `walks` random items in the marked layout, EOS after: each prefix is one mask step."""
    rng = np.random.default_rng(SEED + 1)
    rows = []
    for i in rng.choice(len(codes), size=walks, replace=False):
        ids = [tok.sid_token_ids[lv][int(c)] for lv, c in enumerate(codes[i])]
        rows.append([tok.sid_start_token_id, *ids, tok.sid_end_token_id])
    return rows


def _median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 1)


def bench_llguidance(tok, grammar: str, rows: list[list[int]]) -> dict:
    import llguidance
    import llguidance.hf
    import llguidance.numpy

    lltok = llguidance.hf.from_tokenizer(tok)
    vocab = lltok.vocab_size
    bitmask = llguidance.numpy.allocate_token_bitmask(1, vocab)
    start = time.perf_counter()
    matcher = llguidance.LLMatcher(lltok, llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0)
    if matcher.is_error():
        return {"error": matcher.get_error().splitlines()[0][:300]}
    llguidance.numpy.fill_next_token_bitmask(matcher, bitmask)
    compile_s = time.perf_counter() - start
    times = []
    for row in rows:
        matcher.reset()
        for token in row:
            t0 = time.perf_counter()
            llguidance.numpy.fill_next_token_bitmask(matcher, bitmask)
            times.append(time.perf_counter() - t0)
            if not bitmask[0, token // 32] >> (token % 32) & 1 or not matcher.consume_token(token):
                return {"error": f"token {token} refused: {matcher.get_error()[:200]}"}
    return {"compile_s": round(compile_s, 3), "mask_us": _median_us(times)}


def bench_xgrammar(tok, grammar: str, rows: list[list[int]], threads: int) -> dict:
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok))
    compiler = xgr.GrammarCompiler(info, max_threads=threads, cache_enabled=False)
    bitmask = xgr.allocate_token_bitmask(1, len(tok))
    start = time.perf_counter()
    compiled = compiler.compile_grammar(grammar)
    matcher = xgr.GrammarMatcher(compiled)
    matcher.fill_next_token_bitmask(bitmask)
    compile_s = time.perf_counter() - start
    times = []
    for row in rows:
        matcher.reset()
        for token in row:
            t0 = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            times.append(time.perf_counter() - t0)
            if not matcher.accept_token(token):
                return {"error": f"token {token} refused"}
    return {
        "compile_s": round(compile_s, 3),
        "mask_us": _median_us(times),
        "compiled_mb": round(compiled.memory_size_bytes / 2**20, 1),
    }


def bench_processor(tok, codes: np.ndarray, rows: list[list[int]]) -> dict:
    from hf_semtok import SIDLogitsProcessor

    start = time.perf_counter()
    processor = SIDLogitsProcessor(
        codes,
        tok.sid_token_ids,
        tok.sid_start_token_id,
        tok.sid_end_token_id,
        tok.eos_token_id,
        prompt_length=1,
    )
    build_s = time.perf_counter() - start
    scores = torch.zeros(1, len(tok))
    times = []
    for row in rows:
        for step in range(len(row) + 1):
            input_ids = torch.tensor([[tok.bos_token_id, *row[:step]]])
            t0 = time.perf_counter()
            out = processor(input_ids, scores)
            times.append(time.perf_counter() - t0)
            expected = row[step] if step < len(row) else tok.eos_token_id
            if not torch.isfinite(out[0, expected]):
                return {"error": f"token {expected} refused"}
    return {
        "build_s": round(build_s, 3),
        "mask_us": _median_us(times),
        "index_mb": round(processor.nbytes / 2**20, 1),
    }


def run_size(n: int, walks: int, threads: int) -> dict:
    from hf_semtok.serving import sid_grammar

    codes, codebook_sizes = _catalogue(n)
    tok = _tokenizer(codebook_sizes)
    rows = _walk_rows(tok, codes, walks)
    distinct = sum(len(np.unique(codes[:, :depth], axis=0)) for depth in range(codes.shape[1]))
    report: dict = {
        "items": n,
        "levels": codes.shape[1],
        "codebook_sizes": codebook_sizes,
        "vocab_size": len(tok),
        "distinct_prefixes": int(distinct),
        "items_x_levels": int(codes.size),
    }
    for dialect in ("llguidance", "xgrammar"):
        start = time.perf_counter()
        grammar = sid_grammar(
            codes, tok.sid_token_ids, dialect=dialect, sid_start_token_id=tok.sid_start_token_id,
            sid_end_token_id=tok.sid_end_token_id,
        )  # fmt: skip
        entry = {
            "export_s": round(time.perf_counter() - start, 3),
            "grammar_mb": round(len(grammar.encode()) / 2**20, 2),
            "rules": grammar.count("\n") - 1,
        }
        logger.info(
            "%d items, %s: grammar %.2f MB, %d rules", n, dialect, entry["grammar_mb"], entry["rules"]
        )
        if dialect == "llguidance":
            entry.update(bench_llguidance(tok, grammar, rows))
        else:
            entry.update(bench_xgrammar(tok, grammar, rows, threads))
        report[dialect] = entry
        logger.info("%d items, %s: %s", n, dialect, entry)
    report["SIDLogitsProcessor"] = bench_processor(tok, codes, rows)
    logger.info("%d items, SIDLogitsProcessor: %s", n, report["SIDLogitsProcessor"])
    return report


def to_markdown(report: dict) -> str:
    lines = [
        "# Serving benchmark: SID grammars in llguidance and xgrammar beside SIDLogitsProcessor",
        "",
        f"Command: `{report['command']}`. Seed {report['seed']}, {report['threads']} thread(s). "
        f"Machine: {report['machine']}. Packages: {report['packages']}.",
        "",
        "| items | distinct prefixes | items x levels | method | grammar (MB) | rules | export (s) | "
        "compile / build (s) | mask per token (µs) |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["sizes"]:
        head = f"| {r['items']:,} | {r['distinct_prefixes']:,} | {r['items_x_levels']:,} |"
        for name in ("llguidance", "xgrammar"):
            e = r[name]
            if "error" in e:
                error = e["error"].splitlines()[0].replace("|", "\\|")
                lines.append(f"{head} {name} | {e['grammar_mb']} | {e['rules']:,} | {e['export_s']} | "
                             f"error: {error} | |")  # fmt: skip
                continue
            lines.append(
                f"{head} {name} | {e['grammar_mb']} | {e['rules']:,} | {e['export_s']} | {e['compile_s']} | "
                f"{e['mask_us']} |"
            )
        p = r["SIDLogitsProcessor"]
        lines.append(
            f"{head} SIDLogitsProcessor | | | | {p.get('build_s', '')} | {p.get('mask_us', p.get('error'))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--walks", type=int, default=50, help="random items whose SIDs are walked token by token"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and xgrammar compiler threads")
    parser.add_argument("--output_dir", type=Path, default=RESULTS)
    parser.add_argument("--markdown_only", action="store_true", help="rewrite serving.md from serving.json")
    args = parser.parse_args(argv)
    if args.markdown_only:
        report = json.loads((args.output_dir / "serving.json").read_text())
        (args.output_dir / "serving.md").write_text(to_markdown(report))
        return 0
    from hf_semtok.extras import require_extra

    require_extra("serving", "benchmarks/serving.py")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    from importlib.metadata import version

    report = {
        "command": "python benchmarks/serving.py" + ("" if argv is None else " " + " ".join(argv)),
        "seed": SEED,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "packages": ", ".join(f"{name} {version(name)}" for name in ("llguidance", "xgrammar", "torch")),
        "sizes": [run_size(n, args.walks, args.threads) for n in args.sizes],
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output_dir / "serving.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] if len(sys.argv) > 1 else None))
