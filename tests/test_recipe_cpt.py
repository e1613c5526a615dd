from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_semtok import SIDTable
from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import DatasetArguments
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sid_table_path(tmp_path_factory):
    catalogue = make_synthetic_catalogue(n_items=64, n_users=40, seed=42)
    codes = [[n // 16, (n // 4) % 4, n % 4] for n in range(catalogue.num_items)]
    table = SIDTable(catalogue.item_ids, __import__("numpy").asarray(codes), [4, 4, 4], 3, "none")
    path = tmp_path_factory.mktemp("sids") / "sid_table.json"
    table.to_json(path)
    return path


def test_cpt_recipe_trains_only_sid_rows_and_saves(sid_table_path, tmp_path):
    cpt = _load("continued_pretraining")
    out = tmp_path / "cpt"
    argv = [
        "--sid_table", str(sid_table_path), "--base_tokenizer", "train", "--base_vocab_size", "400",
        "--model_config", "{hidden_size: 32, num_layers: 1, num_heads: 2}",
        "--synthetic_items", "64", "--synthetic_users", "40", "--max_length", "64",
        "--max_steps", "3", "--save_steps", "3", "--per_device_train_batch_size", "4",
        "--output_dir", str(out), "--disable_tqdm", "true",
    ]  # fmt: skip
    res = cpt.main(argv)
    assert res.global_step == 3 and res.resumed_from is None
    tok = SemanticIDTokenizer.from_pretrained(out)
    assert tok.num_items == 64 and tok.item_to_sid(tok.item_ids[5]) == (0, 1, 1)
    sid_ids = [t for level in tok.sid_token_ids for t in level] + [
        tok.sid_start_token_id,
        tok.sid_end_token_id,
    ]
    base_rows = min(sid_ids)
    trained = load_file(out / "model.safetensors")
    # checkpoints hold peft's trainable-token delta of the SID rows only, merged into the saved model
    checkpoint = load_file(out / "checkpoint-3" / "adapter_model.safetensors")
    delta = checkpoint["base_model.model.model.embed_tokens.trainable_tokens_delta"]
    assert delta.shape == (len(sid_ids), 32)
    assert torch.equal(trained["model.embed_tokens.weight"][sorted(sid_ids)], delta)
    # the frozen base rows equal a fresh model's rows built from the same seed
    from hf_semtok.small_models import build_causal_lm

    ids = {
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    fresh = build_causal_lm(len(tok), hidden_size=32, num_layers=1, num_heads=2, seed=42, **ids)
    assert torch.equal(
        trained["model.embed_tokens.weight"][:base_rows], fresh.model.embed_tokens.weight[:base_rows]
    )
    assert torch.equal(trained["model.layers.0.mlp.up_proj.weight"], fresh.model.layers[0].mlp.up_proj.weight)
    from hf_semtok.lm.sid_embeddings import extend_model

    extend_model(fresh, tok, init="mean", seed=42)  # the SID rows the recipe started from
    emb = trained["model.embed_tokens.weight"]
    assert not torch.equal(emb[sid_ids], fresh.model.embed_tokens.weight[sid_ids].detach())
    assert "sid_embeddings" in (out / "README.md").read_text()


def test_cpt_configs_parse():
    cpt = _load("continued_pretraining")
    formats = {"cpt_synthetic.yaml": "synthetic", "cpt_qwen2.5-0.5b.yaml": "lcrec", "cpt_table.yaml": "table"}
    for name, dataset_format in formats.items():
        cfg, data = parse_args_with_config(
            [cpt.CPTArguments, DatasetArguments], ["--config", str(ROOT / "recipes" / "configs" / name)]
        )
        assert cfg.data == "cpt" and cfg.lora_target_modules == "all-linear"
        assert data.dataset_format == dataset_format


def test_cpt_recipe_rejects_unknown_key_and_missing_tokenizer(tmp_path):
    cpt = _load("continued_pretraining")
    with pytest.raises(ValueError, match="learning_rat"):
        cpt.main(["--learning_rat", "1e-3"])
    with pytest.raises(ValueError, match="No tokenizer"):
        cpt.main(["--synthetic_items", "64", "--synthetic_users", "40", "--output_dir", str(tmp_path)])
