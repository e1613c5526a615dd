"""Every shell command shown in README.md, docs/*.md and recipes/README.md, run as a user types it.

The commands are read from the markdown (fenced `bash` blocks and backticked `python ...`, `hf-semtok ...`,
`accelerate launch ...`, `torchrun ...`, `make ...` spans), so a newly documented command is covered or this file
fails. Each one runs in a subprocess from the repository root, exactly as written, with overrides appended only
to make it small (`--max_steps 2`, tiny sizes) and to send every `outputs/...` path of its config to a temporary
directory. Commands that need `../shared` data, the Hub or a GPU are skipped, each listed below with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from hf_semtok.tokenizer.sid_table import SIDTable

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "recipes" / "README.md"]
PROGRAMS = ("python ", "hf-semtok ", "accelerate launch ", "torchrun ", "make ")

GPU = "needs a GPU and the Qwen2.5-0.5B weights from the Hub (not on the test machines)"
SHARED = "needs the Amazon 2018 Scientific files under ../shared/data"
SMOLLM2 = (
    SHARED
    + "; run as typed, shortened to 2 steps, by tests/test_smollm2.py::test_scientific_smollm2_configs_run_as_typed"
)
BENCH = (
    "a benchmark (long, writes benchmarks/results; run by `make bench`, checked by tests/test_benchmarks.py)"
)

#: Documented commands that are not run, with the reason. A command is named by its first line's prefix.
SKIPPED: dict[str, str] = {
    "make demo": "runs pip install, then `hf-semtok demo`, which is run below",
    "make test": "the test suite itself",
    "make lint": "ruff over the checkout (`.ci` runs it)",
    "make format": "rewrites files in the checkout",
    "make bench": BENCH,
    "python benchmarks/plot_quality.py": "rewrites benchmarks/results/quality.*; run with --output_dir in a temporary"
    " folder by tests/test_benchmark_plot_quality.py",
    "python benchmarks/": BENCH + "; the amazon ones also " + SHARED,
    "python recipes/train_rqvae.py --config recipes/configs/rqvae_scientific.yaml": SHARED,
    "python recipes/evaluate.py --config recipes/configs/evaluate_scientific.yaml": SHARED + "; " + GPU,
    "python recipes/continued_pretraining.py --config recipes/configs/cpt_qwen2.5-0.5b.yaml": GPU
    + "; "
    + SHARED,
    "python recipes/finetune_lora.py --config recipes/configs/lora_qwen2.5-0.5b.yaml": GPU + "; " + SHARED,
    "python recipes/continued_pretraining.py --config recipes/configs/cpt_smollm2_scientific.yaml": SMOLLM2,
    "python recipes/finetune_lora.py --config recipes/configs/lora_smollm2_scientific.yaml": SMOLLM2,
    "python recipes/evaluate.py --config recipes/configs/evaluate_smollm2_scientific.yaml": SMOLLM2,
    "accelerate launch --config_file recipes/accelerate_configs/ddp.yaml": GPU,
    "accelerate launch --config_file recipes/accelerate_configs/fsdp.yaml": GPU,
    "accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml": GPU
    + " (and deepspeed)",
}
#: Backticked spans that name a program in prose but are not complete commands.
FRAGMENTS = {"accelerate launch", "accelerate launch --cpu --num_processes 2", "hf-semtok repair"}

SYNTHETIC = ["--synthetic_items", "96", "--synthetic_users", "120"]
#: Appended per script: the smallest settings that still exercise every stage.
SHRINK = {
    "recipes/train_rqvae.py": [*SYNTHETIC, "--max_steps", "2", "--no_progress"],
    "recipes/continued_pretraining.py": [
        *SYNTHETIC, "--max_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "4",
        "--max_length", "64", "--model_config", "{arch: qwen2, hidden_size: 32, num_layers: 1, num_heads: 2}",
        "--disable_tqdm", "true",
    ],
    "recipes/finetune_lora.py": [
        *SYNTHETIC, "--max_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "4", "--lora_r", "2",
        "--max_examples_per_user", "1", "--disable_tqdm", "true",
    ],
    "recipes/evaluate.py": [*SYNTHETIC, "--max_users", "4", "--num_beams", "10", "--no_progress"],
    "recipes/sids_on_ray.py": ["--synthetic_items", "300", "--synthetic_users", "120", "--batch_size", "64"],
    "demo": [
        "n_items=64", "n_users=100", "codebook_sizes=[4, 4]", "rqvae_epochs=2", "base_vocab_size=300",
        "model_config={hidden_size: 32, num_layers: 1, num_heads: 2}", "cpt_epochs=0.2", "sft_epochs=0.2",
        "test_users=4", "num_beams=10", "show_users=1", "--no_progress",
    ],
}  # fmt: skip


def _commands(text: str) -> list[str]:
    """Shell commands of one markdown file, in order: fenced bash blocks, then backticked spans."""
    found = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = " ".join(shlex.split(line, comments=True))
            if command:
                found.append(command)
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if span.startswith(PROGRAMS) or span in FRAGMENTS:
            found.append(" ".join(shlex.split(span)))
    return found


def documented_commands() -> list[str]:
    commands: list[str] = []
    for doc in DOCS:
        for command in _commands(doc.read_text(encoding="utf-8")):
            if command not in commands:
                commands.append(command)
    return commands


def skip_reason(command: str) -> str | None:
    if command in FRAGMENTS:
        return "a program named in prose, not a command"
    for prefix, reason in SKIPPED.items():
        if command.startswith(prefix):
            return reason
    return None


def _script(argv: list[str]) -> str:
    if argv[0] == "hf-semtok":
        return "demo"
    return next(a for a in argv if a.startswith("recipes/") and a.endswith(".py"))


def _config(argv: list[str]) -> dict:
    if "--config" not in argv:
        return {}
    return yaml.safe_load((ROOT / argv[argv.index("--config") + 1]).read_text())


def _redirect(config: dict, out: Path) -> list[str]:
    """`--key TMP/...` for every `outputs/...` path of the config: nothing is written in the checkout."""
    return [
        arg
        for key, value in config.items()
        if isinstance(value, str) and value.startswith("outputs/")
        for arg in (f"--{key}", str(out / value.removeprefix("outputs/")))
    ]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("outputs")


@cache
def _producer_of(path: str) -> str | None:
    """The runnable documented command whose config writes `outputs/...` `path` (its `output_dir`)."""
    for command in documented_commands():
        argv = shlex.split(command)
        if skip_reason(command) is None and argv[0] == "python" and _config(argv).get("output_dir") == path:
            return command
    return None


def run_documented(command: str, outputs: Path, done: dict[str, subprocess.CompletedProcess]) -> tuple:
    """Run `command` (after the documented commands producing its inputs), shortened and redirected."""
    if command in done:
        return done[command]
    argv = shlex.split(command)
    config = _config(argv)
    for key, value in config.items():
        if key != "output_dir" and isinstance(value, str) and value.startswith("outputs/"):
            producer = _producer_of(str(Path(*Path(value).parts[:2])))
            if producer is not None and producer != command:
                run_documented(producer, outputs, done)
    extra = [] if "--help" in argv else list(SHRINK[_script(argv)])
    out = outputs
    if argv[0] in ("accelerate", "torchrun"):
        out = outputs / f"launch-{len(done)}"  # its own LoRA output, inputs from the shared ones
        extra += [*_redirect({k: v for k, v in config.items() if k != "output_dir"}, outputs)]
        extra += ["--output_dir", str(out / "lora")]
    elif argv[0] == "hf-semtok":
        extra += [] if "--help" in argv else ["--output_dir", str(outputs / f"demo-{len(done)}")]
    else:
        extra += _redirect(config, outputs)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [*argv, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, (
        f"{command} {shlex.join(extra)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    done[command] = (proc, out, extra)
    return done[command]


@pytest.fixture(scope="module")
def done():
    return {}


def _last_value(args: list[str], flag: str) -> Path | None:
    """The path given to the last `flag` in `args` (argparse's rule: the last one wins)."""
    positions = [i for i, arg in enumerate(args) if arg == flag]
    return Path(args[positions[-1] + 1]) if positions else None


RUNNABLE = [c for c in documented_commands() if skip_reason(c) is None]


def test_markdown_commands_are_found_and_each_is_run_or_skipped_for_a_reason():
    commands = documented_commands()
    # the commands this file exists for are extracted, so a markdown change cannot silently drop them
    assert set((ROOT / "docs").glob("*.md")) <= set(DOCS)  # every page under docs/ is read
    for expected in (
        "python benchmarks/transition.py --config benchmarks/configs/transition_beauty.yaml",  # docs/benchmarks.md
        "python benchmarks/robustness.py",  # docs/robustness.md
        "python benchmarks/scale.py --only_table --cache_dir /tmp/hf_semtok_scale",  # docs/scale.md, docs/data.md
        "python benchmarks/gpu_check.py --device cpu --quick",  # docs/gpu.md
        "hf-semtok repair",  # docs/robustness.md (a fragment)
        "python recipes/finetune_lora.py --config recipes/configs/lora_synthetic.yaml",
        "python recipes/evaluate.py --config recipes/configs/evaluate_synthetic.yaml",
        "hf-semtok demo --output_dir /tmp/demo_run --no_progress",
        "torchrun --nproc_per_node 2 recipes/finetune_lora.py --config recipes/configs/lora_synthetic.yaml",
    ):
        assert expected in commands
    for command in RUNNABLE:  # a new command must be runnable here or be listed in SKIPPED with its reason
        argv = shlex.split(command)
        assert argv[0] in ("python", "hf-semtok", "accelerate", "torchrun"), command
        assert _script(argv) in SHRINK, f"no small overrides known for: {command}"
    assert len(RUNNABLE) >= 10


@pytest.mark.parametrize("command", RUNNABLE)
def test_documented_command_runs(command, outputs, done):
    proc, out, extra = run_documented(command, outputs, done)
    argv = shlex.split(command)
    if "--help" in argv:
        assert "--quick" in proc.stdout and "--n_items" in proc.stdout and "--config" in proc.stdout
        return
    script = _script(argv)
    if script == "demo":
        result = json.loads((_last_value(extra, "--output_dir") / "demo_results.json").read_text())
        assert result["test_users"] == 4 and "[6/6]" in proc.stdout
        assert ("(quick)" in proc.stdout) == ("--quick" in argv)
        return
    config = _config(argv)
    target = _last_value(extra, "--output_dir")
    if script == "recipes/train_rqvae.py":
        table = json.loads((target / "sid_table.json").read_text())
        assert table and (target / "sid_quality.json").is_file()
    elif script == "recipes/sids_on_ray.py":
        table = SIDTable.from_json(target / "sid_table.json")
        assert len(table.item_ids) == 300 and any((target / "sids").glob("*.parquet"))
        assert "equal_to_single_process: true" in proc.stdout
    elif script == "recipes/evaluate.py":
        metrics = json.loads(_last_value(extra, "--output_file").read_text())
        assert metrics["num_users"] == 4 and "recall@10" in metrics["metrics"]
    else:
        state = json.loads((target / "checkpoint-2" / "trainer_state.json").read_text())
        assert state["global_step"] == 2 and (target / "README.md").is_file()
        if config.get("train_mode") == "lora":
            adapter = json.loads((target / "adapter_config.json").read_text())
            assert adapter["target_modules"] and adapter["target_modules"] != ["all-linear"]
        if argv[0] in ("accelerate", "torchrun"):
            assert "'world_size': 2" in (target / "README.md").read_text()
