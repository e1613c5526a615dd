"""Run every benchmark in this folder, one after another (`make bench`).

Each benchmark writes `benchmarks/results/<name>.json` and `<name>.md`. Benchmarks that read real data take
`--data_root` (default `../shared/data` beside the repository); they are skipped with a message if it is missing.

Usage:
    python benchmarks/run_all.py                 # all benchmarks
    python benchmarks/run_all.py sid_quality     # only the named ones
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Order: cheap, synthetic-data benchmarks first; the long real-data pipeline last.
BENCHMARKS = [
    "robustness",
    "encode_speed",
    "tokenizer_speed",
    "generation_speed",
    "sid_quality",
    "serving",
    "split_gap",
    "rqvae_convergence",
    "amazon",
    "sasrec",
    "transition",
    "cold_start",
    "smollm2",
    "plot_quality",  # last: draws the README's results table from the JSONs written above
]


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"Unknown benchmark(s) {unknown}; choose from {BENCHMARKS}.", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"[skip] {name}: {script} not found")
            continue
        print(f"[run] {name}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)])
        print(f"[done] {name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"Failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
