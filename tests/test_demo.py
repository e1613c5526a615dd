from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from hf_semtok.cli import main
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    overrides = ["n_items=64", "n_users=120", "cpt_epochs=3", "test_users=20", "show_users=2"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        status = main(
            ["demo", "--quick", "--output_dir", str(out_dir), "--seed", "7", "--no_progress", *overrides]
        )
    return status, buf.getvalue(), out_dir


def test_demo_cli_runs_all_stages_and_reports(demo_run):
    status, text, out_dir = demo_run
    assert status == 0
    for step in range(1, 7):
        assert f"[{step}/6]" in text
    assert "popularity baseline" in text and "Recall@10" in text and "Wall time:" in text
    result = json.loads((out_dir / "demo_results.json").read_text())
    assert result["test_users"] == 20
    for name in ("metrics", "popularity"):
        assert 0.0 <= result[name]["ndcg@10"] <= result[name]["recall@10"] <= 1.0
    # the table printed is the saved one
    assert (
        f"{result['metrics']['recall@10']:.4f}" in text and f"{result['popularity']['recall@10']:.4f}" in text
    )


def test_demo_recommendations_are_catalogue_items_with_titles(demo_run):
    _, text, out_dir = demo_run
    catalogue = make_synthetic_catalogue(n_items=64, n_users=120, seed=7)
    tok = SemanticIDTokenizer.from_pretrained(out_dir / "lora")
    result = json.loads((out_dir / "demo_results.json").read_text())
    assert len(result["examples"]) == 2
    for example in result["examples"]:
        assert example["ranked"] and set(example["ranked"]) <= set(catalogue.item_ids)
        for item in example["ranked"]:
            assert f"{tok.items_to_text([item])}  {catalogue.titles[item]}" in text
    assert (out_dir / "lora" / "adapter_model.safetensors").is_file()
    assert (out_dir / "cpt" / "model.safetensors").is_file()


def test_demo_rejects_unknown_key(tmp_path):
    with pytest.raises(ValueError, match="n_itemz"):
        main(["demo", "--quick", "--output_dir", str(tmp_path), "n_itemz=5"])
