from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_semtok import SIDTable
from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import DatasetArguments
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.lm.sid_embeddings import extend_model
from hf_semtok.lm.stages import EXTENDED_FLAG, load_sid_tokenizer
from hf_semtok.small_models import build_causal_lm

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cpt_dir(tmp_path_factory):
    """A saved 'CPT stage' output: an extended tiny Qwen2 model and its SemanticIDTokenizer."""
    catalogue = make_synthetic_catalogue(n_items=64, n_users=40, seed=42)
    codes = np.asarray([[n // 16, (n // 4) % 4, n % 4] for n in range(catalogue.num_items)])
    table_path = tmp_path_factory.mktemp("sids") / "sid_table.json"
    SIDTable(catalogue.item_ids, codes, [4, 4, 4], 3, "none").to_json(table_path)
    tok = load_sid_tokenizer(None, "train", str(table_path), catalogue, base_vocab_size=400)
    model = build_causal_lm(
        len(tok), hidden_size=32, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id, seed=0
    )
    extend_model(model, tok, seed=0)
    setattr(model.config, EXTENDED_FLAG, True)
    out = tmp_path_factory.mktemp("cpt")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _argv(cpt_dir, out, steps):
    return [
        "--model_name_or_path", str(cpt_dir), "--tokenizer_name_or_path", str(cpt_dir),
        "--synthetic_items", "64", "--synthetic_users", "40", "--lora_r", "4",
        "--max_steps", str(steps), "--save_steps", "2", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-2", "--output_dir", str(out), "--disable_tqdm", "true", "--logging_steps", "1",
    ]  # fmt: skip


def test_lora_recipe_saves_adapter_that_reloads_exactly(cpt_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lora = _load("finetune_lora")
    res = lora.main(_argv(cpt_dir, tmp_path, 3))
    assert res.global_step == 3
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "README.md").is_file()
    assert "library_name: peft" in (tmp_path / "README.md").read_text()
    base = AutoModelForCausalLM.from_pretrained(cpt_dir)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    ids = torch.tensor([res.tokenizer.encode_items(res.tokenizer.item_ids[:4])])
    with torch.no_grad():
        expected = res.model.eval()(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, tmp_path).eval()
        assert torch.allclose(reloaded(input_ids=ids).logits, expected, atol=1e-6)
        plain = AutoModelForCausalLM.from_pretrained(cpt_dir)(input_ids=ids).logits
    assert not torch.allclose(plain, expected)  # the adapter changed the model
    merged = reloaded.merge_and_unload()
    for (
        name,
        tensor,
    ) in merged.state_dict().items():  # frozen weights are untouched apart from merged LoRA deltas
        if "norm" in name:
            assert torch.equal(tensor, base_state[name]), name


def test_killed_run_resumes_from_last_checkpoint(cpt_dir, tmp_path):
    """`kill -9` during training, then run again: training resumes from the last checkpoint, steps are kept."""
    script = ROOT / "recipes" / "finetune_lora.py"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), *_argv(cpt_dir, tmp_path, 10_000)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("checkpoint-*/trainer_state.json")):
            time.sleep(0.2)
        time.sleep(1.0)  # let it run on past the first checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = sorted(int(p.parent.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*/trainer_state.json"))
    assert done, "no checkpoint was written before the kill"
    lora = _load("finetune_lora")
    res = lora.main(_argv(cpt_dir, tmp_path, done[-1] + 2))
    assert res.resumed_from is not None and res.resumed_from.endswith(f"checkpoint-{done[-1]}")
    assert res.global_step == done[-1] + 2


def test_lora_recipe_config_parses_and_bad_keys_fail():
    lora = _load("finetune_lora")
    formats = {
        "lora_synthetic.yaml": "synthetic",
        "lora_qwen2.5-0.5b.yaml": "lcrec",
        "lora_table.yaml": "table",
    }
    for name, dataset_format in formats.items():
        cfg, data = parse_args_with_config(
            [lora.LoRAArguments, DatasetArguments], ["--config", str(ROOT / "recipes" / "configs" / name)]
        )
        assert cfg.data == "sft" and cfg.train_mode == "lora" and data.dataset_format == dataset_format
        assert cfg.lora_target_modules == "all-linear"  # the string peft knows, not ["all-linear"]
    with pytest.raises(ValueError, match="lora_rank"):
        lora.main(["--lora_rank", "8"])
