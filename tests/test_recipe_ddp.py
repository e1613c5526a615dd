"""The LoRA recipe as a two-process gloo DDP run on CPU (`accelerate launch --multi_gpu --num_processes 2`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from hf_semtok import SIDTable
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.lm.sid_embeddings import extend_model
from hf_semtok.lm.stages import EXTENDED_FLAG, load_sid_tokenizer
from hf_semtok.small_models import build_causal_lm

ROOT = Path(__file__).resolve().parent.parent


def test_lora_recipe_two_process_gloo(tmp_path):
    catalogue = make_synthetic_catalogue(n_items=64, n_users=40, seed=42)
    codes = np.asarray([[n // 16, (n // 4) % 4, n % 4] for n in range(catalogue.num_items)])
    SIDTable(catalogue.item_ids, codes, [4, 4, 4], 3, "none").to_json(tmp_path / "sid_table.json")
    tok = load_sid_tokenizer(None, "train", str(tmp_path / "sid_table.json"), catalogue, base_vocab_size=400)
    model = build_causal_lm(
        len(tok), hidden_size=32, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id
    )
    extend_model(model, tok, seed=0)
    setattr(model.config, EXTENDED_FLAG, True)
    model.save_pretrained(tmp_path / "cpt")
    tok.save_pretrained(tmp_path / "cpt")
    out = tmp_path / "lora"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "recipes" / "accelerate_configs" / "cpu_2proc.yaml"),
        str(ROOT / "recipes" / "finetune_lora.py"),
        "--model_name_or_path", str(tmp_path / "cpt"), "--tokenizer_name_or_path", str(tmp_path / "cpt"),
        "--synthetic_items", "64", "--synthetic_users", "40", "--lora_r", "4",
        "--max_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "4",
        "--output_dir", str(out), "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0" in proc.stderr and "rank 1" in proc.stderr
    card = (out / "README.md").read_text()
    assert "'world_size': 2" in card and "'global_step': 2" in card
    assert (out / "adapter_model.safetensors").is_file() and (out / "checkpoint-2").is_dir()
