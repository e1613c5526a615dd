"""The benchmark scripts run and write what the README quotes (tiny sizes; no timing is asserted)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encode_speed_writes_results_and_matches_reference(tmp_path):
    bench = _load("encode_speed")
    assert (
        bench.main(["--num_items", "3000", "--rounds", "1", "--threads", "1", "--output_dir", str(tmp_path)])
        == 0
    )
    result = json.loads((tmp_path / "encode_speed.json").read_text())
    assert len(result["rows"]) == len(bench.SHAPES)
    for row in result["rows"]:
        # the fast path gives the naive path's codes, up to float near-ties
        assert row["code_agreement"] >= 0.999 and row["max_relative_gap"] < 1e-4
        assert row["encode_items_per_s"] > 0 and row["items"] == 3000
    table = (tmp_path / "encode_speed.md").read_text()
    assert (
        table.count("\n| text") == len(bench.SHAPES)
        and "Command: `python benchmarks/encode_speed.py`" in table
    )


def test_run_all_rejects_unknown_names(capsys):
    run_all = _load("run_all")
    assert run_all.main(["no_such_benchmark"]) == 2
    assert "no_such_benchmark" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["encode_speed", "tokenizer_speed", "generation_speed", "sid_quality", "amazon"]
)
def test_every_listed_benchmark_exists(name):
    assert name in _load("run_all").BENCHMARKS and (ROOT / "benchmarks" / f"{name}.py").exists()
