"""benchmarks/plot_quality.py draws the README's results table from the result JSONs, and the tables say the same."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Row label of the README's and docs/benchmarks.md's table -> row of quality.json.
ROWS = {
    "popularity": "popularity",
    "transition heuristic (training-free)": "transition heuristic",
    "SASRec, capped": "SASRec (capped)",
    "SASRec, converged": "SASRec (converged)",
    "TIGER (published, Table 1)": "TIGER (published)",
    "ours, the generator alone": "ours",
    "ours, fused with the prior": "ours, fused with the prior",
    "ours, final": "ours, final",
}
DATASETS = ["beauty", "sports", "toys", "scientific"]


def table_cells(page: Path, header: str) -> dict[tuple[str, str], list[str]]:
    """`{(row, dataset): [".0952", ...]}`: the numbers of each cell of the table whose header line is `header`."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = lines.index(header) + 2
    cells = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        label, *values = [c.strip() for c in line.strip("|").split("|")]
        row = next(v for k, v in ROWS.items() if label.startswith(k))
        for dataset, cell in zip(DATASETS, values):
            cells[(row, dataset)] = re.findall(r"\.\d{4}", cell)
    return cells


def test_plot_quality_draws_the_results_table_from_the_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/plot_quality.py", "--output_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"plot_quality"' in (ROOT / "benchmarks" / "run_all.py").read_text()  # `make bench` redraws it
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plotted = json.loads((tmp_path / "quality.json").read_text())
    assert plotted == json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text())  # committed

    header = "| row | Beauty | Sports | Toys | Scientific | command |"
    readme = table_cells(ROOT / "README.md", header)
    full = table_cells(ROOT / "docs" / "benchmarks.md", header)
    assert len(readme) == len(full) == len(ROWS) * len(DATASETS)
    for (row, dataset), numbers in full.items():
        values = plotted[dataset].get(row, {})
        expected = [
            f"{values[key]:.4f}".lstrip("0")
            for metric in ("recall@10", "ndcg@10")
            for key in (metric, f"{metric}_se")
            if key in values and (key == metric or len(numbers) == 4)
        ]
        assert numbers == expected, (row, dataset)  # the full table, standard errors included
        assert readme[(row, dataset)] == expected[:: 2 if len(expected) == 4 else 1], (row, dataset)
