"""benchmarks/smollm2.py: its config parses, stages are reused only when their output exists, and its Markdown
shows every split's rows with standard errors, the from-scratch row, the plain and the free-mode answers.

The chain it runs is the three documented SmolLM2 recipe commands, each run as typed by tests/test_smollm2.py."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_smollm2", ROOT / "benchmarks" / "smollm2.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_help_lists_the_settings():
    proc = subprocess.run(
        [sys.executable, "benchmarks/smollm2.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--max_users" in proc.stdout and "--no_reuse" in proc.stdout


def test_documented_config_names_the_documented_stage_configs():
    import yaml

    bench = _load()
    settings = yaml.safe_load((ROOT / "benchmarks" / "configs" / "smollm2_scientific.yaml").read_text())
    cfg = bench.SmolLM2BenchConfig(**settings)
    for name in ("rqvae", "cpt", "lora", "evaluate"):
        assert (ROOT / getattr(cfg, f"{name}_config")).is_file()
    assert cfg.max_users is None and cfg.splits == ["test", "valid"]
    assert (ROOT / cfg.from_scratch_run).is_file()


def test_a_stage_is_reused_only_when_its_output_exists(tmp_path, monkeypatch):
    bench = _load()
    config = tmp_path / "stage.yaml"
    out = tmp_path / "out"
    config.write_text(f"output_dir: {out}\n")
    ran = []
    monkeypatch.setattr(bench, "_run", lambda script, cfg_path, extra, cfg: ran.append(script) or 12.5)
    cfg = bench.SmolLM2BenchConfig()
    entry = bench._stage("lora", "finetune_lora.py", str(config), "adapter_config.json", cfg)
    assert ran == ["finetune_lora.py"] and entry["reused"] is False and entry["seconds"] == 12.5
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    entry = bench._stage("lora", "finetune_lora.py", str(config), "adapter_config.json", cfg)
    assert ran == ["finetune_lora.py"] and entry["reused"] is True
    cfg.reuse = False
    bench._stage("lora", "finetune_lora.py", str(config), "adapter_config.json", cfg)
    assert ran == ["finetune_lora.py"] * 2


def test_markdown_shows_rows_answers_and_commands():
    bench = _load()
    metrics = {"recall@5": 0.01, "ndcg@5": 0.005, "recall@10": 0.02, "ndcg@10": 0.008}
    with_se = {**metrics, **{f"{k}_se": 0.001 for k in metrics}}
    cfg = bench.SmolLM2BenchConfig()
    scratch = bench._from_scratch(cfg)
    run = json.loads((ROOT / cfg.from_scratch_run).read_text())
    assert scratch["test"] == run["metrics"] and scratch["valid"] == run["validation"]
    result = {
        "dataset": "scientific",
        "command": "python benchmarks/smollm2.py --config x.yaml",
        "commit": "abc",
        "device": "cpu",
        "stages": {"cpt": {"command": "python recipes/continued_pretraining.py", "reused": True}},
        "evaluation": {
            split: {
                "num_users": 7,
                "num_beams": 20,
                "metrics": with_se,
                "popularity": metrics,
                "command": "c",
                "seconds": 3.0,
            }
            for split in ("test", "valid")
        },  # fmt: skip
        "from_scratch": scratch,
        "language": {
            "plain_answers": [
                {"question": "Name three planets.", "before": "Mars", "after": "<|sid_start|>"}
            ],
            "say_why": [
                {"history_titles": ["A"], "answer": "<|sid_start|>x", "recommended": [{"title": "B"}]}
            ],
        },
    }
    text = bench.write_markdown(result)
    assert text.count("| SmolLM2 + SIDs, CPT + LoRA | 0.0100 ± 0.0010 | 0.0050 ± 0.0010 |") == 2
    assert text.count("| popularity | 0.0100 | 0.0050 |") == 2
    assert text.count("from-scratch generator") == 2
    assert "'Mars'" in text and "'<|sid_start|>x'" in text and "['B']" in text and "(reused)" in text


def test_fine_tuned_loads_the_evaluated_model_without_shadowing_evaluate(tmp_path):
    """The model is loaded as recipes/evaluate.py loads it, imported by path under a private name: `recipes/`
    never goes onto sys.path, so the Hugging Face `evaluate` package name stays free."""
    from hf_semtok.lm.sid_sequences import build_sid_tokenizer
    from hf_semtok.small_models import build_causal_lm

    bench = _load()
    tokenizer = build_sid_tokenizer({"a": (0, 1), "b": (1, 0)})
    model = build_causal_lm(len(tokenizer), hidden_size=16, num_layers=1, num_heads=2, seed=0)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "evaluate.yaml").write_text(f"model_name_or_path: {tmp_path / 'model'}\nsplit: test\n")
    path_before = list(sys.path)
    loaded, loaded_tokenizer = bench._fine_tuned(
        bench.SmolLM2BenchConfig(evaluate_config=str(tmp_path / "evaluate.yaml"))
    )
    assert sys.path == path_before and "evaluate" not in sys.modules
    assert loaded_tokenizer.item_ids == ["a", "b"] and not loaded.training
    import torch

    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)
