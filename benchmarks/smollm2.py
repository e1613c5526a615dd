"""A real pretrained LLM end to end: SmolLM2-135M-Instruct learns to recommend on Amazon 2018 Scientific (issue 27).

Runs the documented recipe chain, each stage as the user types it (`python recipes/<stage>.py --config ...`):

1. `recipes/train_rqvae.py`: the Semantic IDs;
2. `recipes/continued_pretraining.py`: the new SID rows of SmolLM2 on item text mixed with SIDs;
3. `recipes/finetune_lora.py`: LoRA + SID rows on history -> next item;
4. `recipes/evaluate.py` on every test user and every validation user (`--max_users null`), popularity beside it;

then asks the base model and the fine-tuned one the same plain questions (what the language side keeps) and lets
the fine-tuned one answer "recommend one more item and say why" under `SIDLogitsProcessor(mode="free")`, where text
is free and every SID it writes is a real item. Writes `benchmarks/results/smollm2_<dataset>.json` and `.md`, with
the from-scratch generator's row on the same split (the `amazon_<dataset>_*.json` named by `from_scratch_run`).

Every stage is bounded by steps (its config), so the same command gives the same metrics on any load, only later.
A stage whose output already exists is not run again when `reuse` is on (its entry says `"reused": true`).

Usage:
    python benchmarks/smollm2.py --config benchmarks/configs/smollm2_scientific.yaml
    python benchmarks/smollm2.py --config benchmarks/configs/smollm2_scientific.yaml --no_reuse
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hf_semtok.arguments import arg
from hf_semtok.cli import parse_args_with_config
from hf_semtok.io_utils import write_json_atomic, write_text_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
import amazon  # noqa: E402  (benchmarks/amazon.py: the commit and device strings of every result)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
KEYS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
logger = logging.getLogger("benchmarks.smollm2")


@dataclass
class SmolLM2BenchConfig:
    """Settings of the SmolLM2 chain benchmark (stage configs are the recipes' own YAML files)."""

    dataset: str = arg("Dataset name used in the result file names.", "scientific")
    rqvae_config: str = arg("Config of recipes/train_rqvae.py.", "recipes/configs/rqvae_scientific.yaml")
    cpt_config: str = arg(
        "Config of recipes/continued_pretraining.py.", "recipes/configs/cpt_smollm2_scientific.yaml"
    )
    lora_config: str = arg(
        "Config of recipes/finetune_lora.py.", "recipes/configs/lora_smollm2_scientific.yaml"
    )
    evaluate_config: str = arg(
        "Config of recipes/evaluate.py.", "recipes/configs/evaluate_smollm2_scientific.yaml"
    )
    data_dir: str | None = arg("Overrides every stage's data_dir (None: the stage configs' own).", None)
    splits: list[str] = arg("Splits evaluated on all their users.", ["test", "valid"])
    num_beams: int | None = arg("Overrides the evaluation config's num_beams (None: the config's).", None)
    max_users: int | None = arg("Users per split (None: all of them).", None)
    reuse: bool = arg("Skip a stage whose output already exists.", True)
    num_threads: int = arg("OMP_NUM_THREADS of every stage (the README's rows use 2).", 2)
    questions: list[str] = arg(
        "Plain questions asked before and after fine-tuning.",
        ["Name three planets.", "What is the capital of France?", "What is a microscope used for?"],
    )
    say_why_users: int = arg("Test users whose 'recommend and say why' answer is recorded.", 3)
    max_new_tokens: int = arg("Tokens per plain or free-mode answer.", 40)
    from_scratch_run: str | None = arg(
        "Result JSON of the from-scratch generator on the same split, shown beside (None: none).",
        "benchmarks/results/amazon_scientific_rqvae-256x3-contrastive-hidden-dropout-0.1.json",
    )
    output_dir: str = arg("Where the JSON and Markdown results go.", str(RESULTS))
    seed: int = arg("Seed of the user sample for the free-mode answers.", 42)


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def _command(script: str, config: str, extra: list[str], cfg: SmolLM2BenchConfig, threads: int) -> tuple:
    """The argv and environment of one recipe run as a user types it (plus `extra` overrides)."""
    command = [sys.executable, f"recipes/{script}", "--config", config, *extra]
    if cfg.data_dir is not None:
        command += ["--data_dir", cfg.data_dir]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}
    return command, env


def _run(script: str, config: str, extra: list[str], cfg: SmolLM2BenchConfig) -> float:
    """Run one recipe as a user types it; its seconds. Raises if it fails (its output is shown)."""
    command, env = _command(script, config, extra, cfg, cfg.num_threads)
    logger.info("running: %s", " ".join(command))
    began = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True)
    return round(time.perf_counter() - began, 1)


def _stage(name: str, script: str, config: str, done_file: str, cfg: SmolLM2BenchConfig) -> dict[str, Any]:
    """Run a training stage unless `reuse` is on and its output (`done_file` in its output_dir) exists."""
    output_dir = Path(_read_yaml(config)["output_dir"])
    entry: dict[str, Any] = {
        "command": f"python recipes/{script} --config {config}",
        "output_dir": str(output_dir),
    }
    if cfg.reuse and (REPO / output_dir / done_file).exists():
        logger.info("%s: %s exists, not run again (reuse)", name, output_dir / done_file)
        return {**entry, "reused": True}
    return {**entry, "reused": False, "seconds": _run(script, config, [], cfg)}


def _evaluate(cfg: SmolLM2BenchConfig) -> dict[str, Any]:
    """`recipes/evaluate.py` on every user of each split, the splits side by side (`num_threads` shared between
    them: two one-thread processes get more out of 2 cores than one after the other); per split its result
    JSON's metrics plus the command."""
    threads = max(1, cfg.num_threads // len(cfg.splits))
    runs = {}
    for split in cfg.splits:
        out_file = Path("outputs") / f"eval-smollm2-{cfg.dataset}" / f"{split}.json"
        extra = ["--split", split, "--max_users", "null" if cfg.max_users is None else str(cfg.max_users)]
        extra += ["--output_file", str(out_file), "--no_progress"]
        if cfg.num_beams is not None:
            extra += ["--num_beams", str(cfg.num_beams)]
        command, env = _command("evaluate.py", cfg.evaluate_config, extra, cfg, threads)
        logger.info("running: %s", " ".join(command))
        runs[split] = (out_file, extra, time.perf_counter(), subprocess.Popen(command, cwd=REPO, env=env))
    ended: dict[str, float] = {}
    while len(ended) < len(runs):  # each split's own wall time, whichever ends first
        for split, (_, _, began, proc) in runs.items():
            if split not in ended and proc.poll() is not None:
                ended[split] = time.perf_counter() - began
        time.sleep(1.0)
    evaluation = {}
    for split, (out_file, extra, _, proc) in runs.items():
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        result = json.loads((REPO / out_file).read_text())
        evaluation[split] = {
            "command": f"python recipes/evaluate.py --config {cfg.evaluate_config} {' '.join(extra)}",
            "seconds": round(ended[split], 1),
            "eval_seconds": round(result["eval_seconds"], 1),
            "threads": threads,
            "num_users": result["num_users"],
            "metrics": result["metrics"],
            "popularity": result.get("popularity"),
            "num_beams": result["config"]["num_beams"],
        }
    return evaluation


def _fine_tuned(cfg: SmolLM2BenchConfig) -> tuple[Any, Any]:
    """The evaluated model (CPT output + LoRA adapter, merged) and its tokenizer, as recipes/evaluate.py loads them."""
    import importlib.util

    # By path under a private name: `evaluate` is also the name of a Hugging Face package.
    spec = importlib.util.spec_from_file_location(
        "hf_semtok_recipe_evaluate", REPO / "recipes" / "evaluate.py"
    )
    recipe = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = recipe  # its dataclasses look their module up here
    spec.loader.exec_module(recipe)
    EvaluateConfig, load_model_and_tokenizer = recipe.EvaluateConfig, recipe.load_model_and_tokenizer

    settings = _read_yaml(cfg.evaluate_config)
    keys = ("model_name_or_path", "adapter_path", "tokenizer_name_or_path")
    return load_model_and_tokenizer(
        EvaluateConfig(**{k: settings[k] for k in keys if k in settings}, device="cpu")
    )


def _say_why(
    model: Any, tokenizer: Any, history: list[str], titles: dict[str, str], cfg: SmolLM2BenchConfig
) -> dict:
    """Free-mode generation: text is free, every SID the model writes is a catalogue item (SIDLogitsProcessor)."""
    from hf_semtok.logits_process import SIDLogitsProcessor

    question = f"I bought {tokenizer.items_to_text(history[-5:])}. Recommend one more item and say why."
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    processor = SIDLogitsProcessor.from_tokenizer(tokenizer, mode="free")
    with torch.no_grad():
        out = model.generate(
            **ids,
            logits_processor=[processor],
            max_new_tokens=cfg.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    text = tokenizer.decode(new, skip_special_tokens=False).split(tokenizer.eos_token)[0].strip()
    items = tokenizer.parse_items(new)
    return {
        "history_titles": [titles.get(i, i) for i in history[-5:]],
        "question": question,
        "answer": text,
        "recommended": [{"item": i, "title": titles.get(i, i)} for i in items],
    }


def _language(cfg: SmolLM2BenchConfig) -> dict[str, Any]:
    """Plain answers of the base and the fine-tuned model, and the fine-tuned model's free-mode answers."""
    import random

    from hf_semtok.data import leave_one_out_split, load_catalogue
    from hf_semtok.demo import plain_answers
    from hf_semtok.small_models import load_smollm2

    base, base_tokenizer = load_smollm2()
    before = plain_answers(base, base_tokenizer, cfg.questions, max_new_tokens=cfg.max_new_tokens)
    del base
    model, tokenizer = _fine_tuned(cfg)
    after = plain_answers(model, tokenizer, cfg.questions, max_new_tokens=cfg.max_new_tokens)
    settings = _read_yaml(cfg.evaluate_config)
    catalogue = load_catalogue(
        settings["dataset_format"], cfg.data_dir or settings["data_dir"], name=settings.get("dataset_name")
    )
    _, _, test = leave_one_out_split(catalogue.histories, max_history=settings.get("max_history"))
    users = sorted(random.Random(cfg.seed).sample(sorted(test), cfg.say_why_users))
    why = [_say_why(model, tokenizer, list(test[u][0]), catalogue.titles, cfg) for u in users]
    return {
        "plain_answers": [
            {"question": q, "before": b, "after": a} for q, b, a in zip(cfg.questions, before, after)
        ],
        "say_why": why,
    }


def _row(name: str, m: dict[str, Any] | None) -> str:
    if not m:
        return f"| {name} | " + " | ".join("" for _ in KEYS) + " |"
    cells = [f"{m[k]:.4f}" + (f" ± {m[k + '_se']:.4f}" if f"{k}_se" in m else "") for k in KEYS]
    return f"| {name} | " + " | ".join(cells) + " |"


def write_markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table per split, the plain answers and the free-mode answers."""
    lines = [f"# SmolLM2-135M-Instruct + our SIDs on {result['dataset']} (CPT + LoRA)", ""]
    for split, ev in result["evaluation"].items():
        lines += [
            f"## {split}: {ev['num_users']} users, {ev['num_beams']} beams", "",
            "| model | " + " | ".join(KEYS) + " |",
            "|---|" + "---|" * len(KEYS),
            _row("SmolLM2 + SIDs, CPT + LoRA", ev["metrics"]),
            _row("popularity", ev["popularity"]),
        ]  # fmt: skip
        scratch = (result.get("from_scratch") or {}).get(split)
        if scratch:
            lines.append(_row(f"from-scratch generator ({result['from_scratch']['run']})", scratch))
        took = ev.get("eval_seconds", ev["seconds"])  # the recipe's own clock of the ranking
        lines += ["", f"`{ev['command']}` (ranking {took:.0f} s, {ev.get('threads', '?')} thread(s))", ""]
    lines += ["## Plain questions, before -> after fine-tuning", ""]
    for qa in result["language"]["plain_answers"]:
        lines += [f"- {qa['question']}", f"  - before: {qa['before']!r}", f"  - after: {qa['after']!r}"]
    lines += ["", '## Recommend and say why (`SIDLogitsProcessor(mode="free")`)', ""]
    for why in result["language"]["say_why"]:
        lines += [f"- bought: {why['history_titles']}", f"  - answer: {why['answer']!r}"]
        lines += [f"  - recommended: {[r['title'] for r in why['recommended']]}"]
    lines += ["", "## Stages", ""]
    for name, stage in result["stages"].items():
        took = "reused" if stage.get("reused") else f"{stage['seconds']:.0f} s"
        lines.append(f"- {name}: `{stage['command']}` ({took})")
    lines += ["", f"Command: `{result['command']}`; commit {result['commit']}; {result['device']}.", ""]
    return "\n".join(lines)


def _from_scratch(cfg: SmolLM2BenchConfig) -> dict[str, Any] | None:
    if not cfg.from_scratch_run or not (REPO / cfg.from_scratch_run).exists():
        return None
    run = json.loads((REPO / cfg.from_scratch_run).read_text())
    out: dict[str, Any] = {"run": Path(cfg.from_scratch_run).stem}
    for split, key in (("test", "metrics"), ("valid", "validation")):  # amazon.py's result keys
        if run.get(key):
            out[split] = run[key]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the chain and write the results; returns the result dict."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    (cfg,) = parse_args_with_config(SmolLM2BenchConfig, argv, prog="smollm2.py")
    torch.set_num_threads(cfg.num_threads)
    commit = amazon._git_commit()
    stages = {
        "rqvae": _stage("rqvae", "train_rqvae.py", cfg.rqvae_config, "sid_table.json", cfg),
        "cpt": _stage("cpt", "continued_pretraining.py", cfg.cpt_config, "config.json", cfg),
        "lora": _stage("lora", "finetune_lora.py", cfg.lora_config, "adapter_config.json", cfg),
    }
    evaluation = _evaluate(cfg)
    result = {
        "dataset": cfg.dataset,
        "command": "python benchmarks/smollm2.py " + " ".join(argv),
        "commit": commit,
        "device": amazon._device(),
        "num_threads": cfg.num_threads,
        "stages": stages,
        "stage_configs": {
            name: _read_yaml(getattr(cfg, f"{name}_config")) for name in ("rqvae", "cpt", "lora")
        },
        "evaluation": evaluation,
        "from_scratch": _from_scratch(cfg),
        "language": _language(cfg),
        "config": asdict(cfg),
    }
    out = Path(cfg.output_dir)
    write_json_atomic(result, out / f"smollm2_{cfg.dataset}.json", indent=2)
    write_text_atomic(write_markdown(result), out / f"smollm2_{cfg.dataset}.md")
    print(write_markdown(result))
    return result


if __name__ == "__main__":
    main()
