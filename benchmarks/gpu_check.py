"""Every path on a GPU, proven by one command (issue 25).

Runs, each as a subprocess on the chosen device, and prints one PASS/FAIL line per step with its numbers and
seconds:

1. `cuda-tests`: `pytest -m cuda` over the test files that hold `cuda`-marked tests (they exercise every path
   on the device they are given);
2. `demo`: `hf-semtok demo --quick`;
3. the recipe chain of `recipes/README.md`, shortened with overrides such as `--max_steps`: `train_rqvae`,
   `cpt` (continued pretraining), `lora` (fine-tuning) and `evaluate`. On CUDA the two LM stages run in bf16;
4. `amazon`: one run of `benchmarks/configs/amazon_gpu.yaml` with `benchmarks/amazon.py` (results go to the work
   folder, not to `benchmarks/results/amazon.md`).

Every step but the tests runs under a probe that records what the process used: on `--device cuda` a step
passes only if it allocated CUDA memory (so a silent fall-back to the CPU fails); on `--device cpu` the steps run
with `CUDA_VISIBLE_DEVICES=""` and must not see a GPU. The JSON (`benchmarks/results/gpu_check_<device>.json`,
or `--output`) holds every step's command, numbers, seconds and output tail, plus the device and library versions.

`--quick` shrinks every step to seconds (tiny synthetic catalogue, a few steps; the Amazon step runs the GPU config on a small synthetic stand-in in the Amazon 2014
layout with co-occurrence features, instead of the dataset). `python benchmarks/gpu_check.py --device cpu
--quick` is run by the test suite, so the command never rots.

Usage:
    python benchmarks/gpu_check.py                          # on the GPU (the Amazon run at its real size)
    python benchmarks/gpu_check.py --device cpu --quick     # the same steps, tiny, on CPU (about a minute)
    python benchmarks/gpu_check.py --dataset toys --data_root /data/amazon
    python benchmarks/gpu_check.py --amazon_args "--features attributes+collab"   # no text-embedding model there

The Amazon step reads `--data_root/<dataset folder>` (default `../shared/data`, relative to the repository root)
and, with text features (the config's `features: auto` for Beauty and Toys), the cached all-MiniLM-L6-v2
embeddings under `benchmarks/cache/embeddings`: a machine without the embedding model needs that cache, or, on
Beauty and Sports, `--amazon_args "--features attributes+collab"` (co-occurrence alone leaves some Beauty items
without a vector).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROBE_FLAG = "--probe"
PROBE_MARK = "GPU_CHECK_PROBE "
STEPS = ("cuda-tests", "demo", "train_rqvae", "cpt", "lora", "evaluate", "amazon")
#: Steps that depend on each other run in one lane, in order; with `--jobs 2` the lanes run side by side.
LANES = (("train_rqvae", "cpt", "lora", "evaluate"), ("cuda-tests", "demo", "amazon"))

#: Tiny synthetic catalogue of the quick recipe chain (as `tests/test_documented_commands.py` shrinks it).
TINY = ["--synthetic_items", "96", "--synthetic_users", "120"]
#: The demo's `--quick` sizes, shrunk further for `gpu_check --quick`.
TINY_DEMO = [
    "n_items=64", "n_users=100", "codebook_sizes=[4, 4]", "rqvae_epochs=2", "base_vocab_size=300",
    "model_config={hidden_size: 32, num_layers: 1, num_heads: 2}", "cpt_epochs=0.2", "sft_epochs=0.2",
    "test_users=4", "num_beams=10", "show_users=1",
]  # fmt: skip
#: The Amazon GPU config on a stand-in catalogue: a few seconds of each stage.
TINY_AMAZON = [
    "--features", "collab", "--sid.codebook_sizes", "[8, 8]", "--sid.epochs", "2", "--sid.batch_size", "64",
    "--generator.hidden_size", "32", "--generator.num_layers", "1", "--generator.num_heads", "2",
    "--generator.num_kv_heads", "1", "--generator.batch_size", "16", "--generator.max_steps", "4",
    "--generator.warmup_steps", "1", "--generator.eval_every_steps", "2", "--generator.eval_users", "8",
    "--generator.valid_users", "10", "--generator.test_users", "10", "--generator.num_beams", "10",
    "--num_threads", "1",
]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# The probe: runs a script or module as `__main__` in this process, then reports what it used
# ----------------------------------------------------------------------------------------------------------------
def _probe(argv: list[str]) -> int:
    """`gpu_check.py --probe TARGET ARGS...`: run TARGET (a `.py` file or a module such as `hf_semtok.cli`) as
    `__main__` with ARGS, then print one line with the CUDA memory it allocated. Returns its exit status."""
    import torch

    target, args = argv[0], argv[1:]
    code = 0
    try:
        if target.endswith(".py"):
            sys.argv = [target, *args]
            runpy.run_path(target, run_name="__main__")
        else:
            sys.argv = [target, *args]
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - the step fails; the traceback is its output
        traceback.print_exc()
        code = 1
    facts = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_max_memory_allocated": 0,
        "device_name": "cpu",
    }
    if torch.cuda.is_available():
        facts["cuda_max_memory_allocated"] = int(torch.cuda.max_memory_allocated())
        facts["device_name"] = torch.cuda.get_device_name(0)
    sys.stdout.flush()
    print(PROBE_MARK + json.dumps(facts), flush=True)
    return code


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One step: the command (as a user would type it) and how to read its numbers from the work folder."""

    name: str
    argv: list[str]  # the user's command, e.g. ["python", "recipes/train_rqvae.py", "--config", ...]
    numbers: Callable[[], dict[str, Any]]
    probe: bool = True
    summary: Callable[[dict[str, Any]], str] = field(default=lambda n: json.dumps(n))


def _last_checkpoint_state(folder: Path) -> dict[str, Any]:
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((checkpoints[-1] / "trainer_state.json").read_text()) if checkpoints else {}


def _stage_numbers(folder: Path) -> dict[str, Any]:
    state = _last_checkpoint_state(folder)
    losses = [r["loss"] for r in state.get("log_history", []) if "loss" in r]
    return {
        "global_step": state.get("global_step"),
        "last_loss": round(losses[-1], 4) if losses else None,
        "saved": (folder / "README.md").is_file(),
    }


def _tests_numbers(report: Path) -> dict[str, Any]:
    suites = ET.parse(report).getroot()
    suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    total = int(suite.get("tests", 0))
    failed, errors, skipped = (int(suite.get(k, 0)) for k in ("failures", "errors", "skipped"))
    return {
        "passed": total - failed - errors - skipped,
        "failed": failed,
        "errors": errors,
        "skipped": skipped,
    }


def _write_stand_in_amazon(root: Path, seed: int = 42) -> Path:
    """A small synthetic catalogue in the Amazon 2014 (P5) layout: `<root>/amazon-beauty/sequential_data.txt`,
    1-based item ids, one line per user. Every item appears in some user's training part, so each has a
    co-occurrence vector."""
    from hf_semtok.data.catalogue import leave_one_out_split
    from hf_semtok.data.synthetic import make_synthetic_catalogue

    catalogue = make_synthetic_catalogue(n_items=120, n_users=300, seed=seed)
    train, _, _ = leave_one_out_split(catalogue.histories)
    in_train = {item for history in train.values() for item in history}
    number = {item: str(n) for n, item in enumerate(sorted(in_train, key=catalogue.item_ids.index), 1)}
    lines = []
    for user, history in enumerate(catalogue.histories.values(), 1):
        kept = [number[i] for i in history if i in number]
        if len(kept) >= 3:
            lines.append(" ".join([str(user), *kept]))
    folder = root / "amazon-beauty"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    return root


def cuda_test_files() -> list[str]:
    """The test files that hold `cuda`-marked tests: `pytest -m cuda` over them runs every cuda test without
    importing the rest of the suite (whose optional dependencies, e.g. pyarrow, a GPU machine may lack)."""
    return sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if "pytest.mark.cuda" in path.read_text(encoding="utf-8")
    )


def build_steps(args: argparse.Namespace, work: Path) -> list[Step]:
    """The steps of one check, with their commands (relative to the repository root) and number readers."""
    cuda = args.device == "cuda"
    quick = args.quick
    py = "python"
    steps: list[Step] = []

    report = work / "cuda_tests.xml"
    tests = cuda_test_files()
    steps.append(
        Step(
            "cuda-tests",
            [
                py,
                "-m",
                "pytest",
                "-m",
                "cuda",
                *tests,
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
            ],
            lambda: _tests_numbers(report),
            probe=False,
            summary=lambda n: (
                f"{n['passed']} passed, {n['skipped']} skipped, {n['failed'] + n['errors']} failed"
            ),
        )
    )

    demo_dir = work / "demo"
    steps.append(
        Step(
            "demo",
            ["hf-semtok", "demo", "--quick", "--output_dir", str(demo_dir), "--no_progress"]
            + (TINY_DEMO if quick else []),
            lambda: _demo_numbers(demo_dir),
            summary=lambda n: f"R@10 {n['recall@10']:.4f} N@10 {n['ndcg@10']:.4f} on {n['test_users']} users",
        )
    )

    shrink_rqvae = [*TINY, "--max_steps", "2"] if quick else ["--max_steps", "200"]
    steps.append(
        Step(
            "train_rqvae",
            [py, "recipes/train_rqvae.py", "--config", "recipes/configs/rqvae_synthetic.yaml", *shrink_rqvae,
             "--output_dir", str(work / "rqvae"), "--no_progress"],
            lambda: _rqvae_numbers(work / "rqvae"),
            summary=lambda n: (
                f"{n['num_items']} items, {n['steps']} steps, level-0 codes used {n['used_codes_0']}, "
                f"collision rate {n['collision_rate']:.3f}"
            ),
        )
    )  # fmt: skip
    lm_steps = "2" if quick else "50"
    lm_device = ["--bf16", "true"] if cuda else ["--use_cpu", "true"]
    tiny_lm = (
        [*TINY, "--per_device_train_batch_size", "4", "--max_length", "64",
         "--model_config", "{arch: qwen2, hidden_size: 32, num_layers: 1, num_heads: 2}"]
        if quick else []
    )  # fmt: skip
    steps.append(
        Step(
            "cpt",
            [py, "recipes/continued_pretraining.py", "--config", "recipes/configs/cpt_synthetic.yaml", *tiny_lm,
             "--max_steps", lm_steps, "--save_steps", lm_steps, "--logging_steps", "1", *lm_device,
             "--disable_tqdm", "true",
             "--sid_table", str(work / "rqvae" / "sid_table.json"), "--output_dir", str(work / "cpt")],
            lambda: _stage_numbers(work / "cpt"),
            summary=lambda n: f"{n['global_step']} steps, loss {n['last_loss']}",
        )
    )  # fmt: skip
    tiny_lora = (
        [*TINY, "--per_device_train_batch_size", "4", "--lora_r", "2", "--max_examples_per_user", "1"]
        if quick
        else []
    )
    steps.append(
        Step(
            "lora",
            [py, "recipes/finetune_lora.py", "--config", "recipes/configs/lora_synthetic.yaml", *tiny_lora,
             "--max_steps", lm_steps, "--save_steps", lm_steps, "--logging_steps", "1", *lm_device,
             "--disable_tqdm", "true",
             "--model_name_or_path", str(work / "cpt"), "--tokenizer_name_or_path", str(work / "cpt"),
             "--output_dir", str(work / "lora")],
            lambda: _stage_numbers(work / "lora"),
            summary=lambda n: f"{n['global_step']} steps, loss {n['last_loss']}",
        )
    )  # fmt: skip
    metrics_file = work / "eval" / "metrics.json"
    steps.append(
        Step(
            "evaluate",
            [py, "recipes/evaluate.py", "--config", "recipes/configs/evaluate_synthetic.yaml",
             *([*TINY, "--max_users", "4", "--num_beams", "10"] if quick else ["--max_users", "200"]),
             "--device", args.device, "--model_name_or_path", str(work / "cpt"), "--adapter_path", str(work / "lora"),
             "--output_file", str(metrics_file), "--no_progress"],
            lambda: _evaluate_numbers(metrics_file),
            summary=lambda n: f"R@10 {n['recall@10']:.4f} N@10 {n['ndcg@10']:.4f} on {n['num_users']} users",
        )
    )  # fmt: skip

    amazon_results = work / "amazon"
    data_root = str(work / "data") if quick else args.data_root
    dataset = "beauty" if quick else args.dataset
    steps.append(
        Step(
            "amazon",
            [py, "benchmarks/amazon.py", "--config", "benchmarks/configs/amazon_gpu.yaml", "--dataset", dataset,
             "--data_root", data_root, "--run_name", f"gpu-check-{args.device}",
             "--results_dir", str(amazon_results), *(TINY_AMAZON if quick else []),
             *shlex.split(args.amazon_args)],
            lambda: _amazon_numbers(amazon_results, dataset, f"gpu-check-{args.device}"),
            summary=lambda n: (
                f"{n['dataset']}: test R@10 {n['recall@10']:.4f} N@10 {n['ndcg@10']:.4f} ({n['test_users']} users), "
                f"{n['steps']} steps, {n['num_parameters'] / 1e6:.2f}M parameters"
            ),
        )
    )  # fmt: skip
    return [s for s in steps if s.name in args.steps]


def _demo_numbers(folder: Path) -> dict[str, Any]:
    result = json.loads((folder / "demo_results.json").read_text())
    return {**result["metrics"], "test_users": result["test_users"], "stage_seconds": result["seconds"]}


def _rqvae_numbers(folder: Path) -> dict[str, Any]:
    report = json.loads((folder / "sid_quality.json").read_text())
    return {
        "num_items": report["num_items"],
        "steps": report["steps"],
        "used_codes_0": report["levels"][0]["used_codes"],
        "collision_rate": report["collisions"].get("semantic_collision_rate", 0.0),
        "training_time_s": report["training_time_s"],
    }


def _evaluate_numbers(path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    return {**{k: v for k, v in result["metrics"].items() if "@" in k}, "num_users": result["num_users"]}


def _amazon_numbers(folder: Path, dataset: str, run_name: str) -> dict[str, Any]:
    result = json.loads((folder / f"amazon_{dataset}_{run_name}.json").read_text())
    return {
        "dataset": dataset,
        "recall@10": result["metrics"]["recall@10"],
        "ndcg@10": result["metrics"]["ndcg@10"],
        "validation": {k: result.get("validation", {}).get(k) for k in ("recall@10", "ndcg@10")},
        "test_users": result["evaluation"]["test_users"],
        "steps": result["training"]["steps"],
        "selected_step": result["training"].get("selected_step"),
        "num_parameters": result["model"]["num_parameters"],
        "device": result["device"],
        "stage_seconds": {k: v.get("seconds") for k, v in result.get("stages", {}).items()},
    }


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------
def _child_env(device: str, jobs: int = 1) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # every library sees no GPU: the Trainer, the demo, the recipes
        if jobs > 1:
            env["OMP_NUM_THREADS"] = "1"  # the two lanes share the cores
    return env


def _real_argv(step: Step) -> list[str]:
    """The process to start: the user's command, run under the probe (same interpreter, same arguments)."""
    argv = list(step.argv)
    if argv[0] == "python":
        argv[0] = sys.executable
    if not step.probe:
        return argv
    if argv[0] == "hf-semtok":
        return [sys.executable, str(Path(__file__).resolve()), PROBE_FLAG, "hf_semtok.cli", *argv[1:]]
    return [sys.executable, str(Path(__file__).resolve()), PROBE_FLAG, *argv[1:]]


def run_step(step: Step, device: str, timeout: float, jobs: int = 1) -> dict[str, Any]:
    """Run one step; PASS needs exit status 0, readable numbers, and the device check of the module docstring."""
    began = time.perf_counter()
    try:
        done = subprocess.run(
            _real_argv(step),
            cwd=REPO,
            env=_child_env(device, jobs),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output, returncode = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        output = f"{err.stdout or ''}{err.stderr or ''}\n[gpu_check: timed out after {timeout:.0f} s]"
        output, returncode = output if isinstance(output, str) else str(output), 124
    seconds = time.perf_counter() - began
    record: dict[str, Any] = {
        "step": step.name,
        "command": shlex.join(step.argv),
        "seconds": round(seconds, 1),
    }
    problems = [] if returncode == 0 else [f"exit status {returncode}"]
    probe = next(
        (
            json.loads(line[len(PROBE_MARK) :])
            for line in reversed(output.splitlines())
            if line.startswith(PROBE_MARK)
        ),
        None,
    )
    if step.probe:
        record["probe"] = probe
        if probe is None:
            problems.append("the probe did not report")
        elif device == "cuda" and probe["cuda_max_memory_allocated"] <= 0:
            problems.append("no CUDA memory was allocated: the step ran on the CPU")
        elif device == "cpu" and probe["cuda_available"]:
            problems.append("the step saw a GPU on --device cpu")
    numbers: dict[str, Any] = {}
    if returncode == 0:
        try:
            numbers = step.numbers()
        except Exception as err:  # noqa: BLE001 - a missing or malformed output file fails the step
            problems.append(f"cannot read its results ({type(err).__name__}: {err})")
    if step.name == "cuda-tests" and numbers:
        if numbers["failed"] or numbers["errors"]:
            problems.append("tests failed")
        if device == "cuda" and numbers["passed"] == 0:
            problems.append("no cuda test ran")
    record.update(
        {
            "status": "FAIL" if problems else "PASS",
            "numbers": numbers,
            "problems": problems,
            "output_tail": output[-4000:],
        }
    )
    try:
        record["summary"] = step.summary(numbers) if numbers else "; ".join(problems)
    except (KeyError, TypeError, ValueError):
        record["summary"] = json.dumps(numbers)
    return record


def _environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        info["git_commit"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = "unknown"
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="Where every step runs.")
    parser.add_argument("--quick", action="store_true", help="Every step tiny (seconds); see the module doc.")
    parser.add_argument(
        "--output",
        default=None,
        help="The JSON (default: benchmarks/results/gpu_check_<device>[_quick].json).",
    )
    parser.add_argument(
        "--data_root",
        default="../shared/data",
        help="Folder of the Amazon dataset folders, relative to the repository root (default ../shared/data).",
    )
    parser.add_argument(
        "--dataset",
        default="beauty",
        choices=["beauty", "sports", "toys", "scientific"],
        help="Amazon dataset.",
    )
    parser.add_argument(
        "--amazon_args",
        default="",
        help='More overrides of the Amazon run, e.g. "--features attributes+collab".',
    )
    parser.add_argument(
        "--steps", nargs="+", default=list(STEPS), choices=STEPS, help="Run only these steps."
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds allowed per step.")
    parser.add_argument(
        "--jobs",
        type=int,
        choices=[1, 2],
        default=None,
        help="2: the recipe chain runs beside the other steps (default with --quick); 1: one step at a time, so "
        "each step's seconds are its own (default otherwise).",
    )
    parser.add_argument(
        "--work_dir", default=None, help="Keep every step's outputs here (default: a temp folder)."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns 0 when every step passed."""
    args = parse_args(argv)
    import torch

    from hf_semtok.extras import require_extra

    try:  # at the start, not after every other step has run
        if "amazon" in args.steps:
            require_extra("bench", "The amazon step (benchmarks/amazon.py plots its curve)", ["matplotlib"])
    except ImportError as err:
        sys.stderr.write(f"gpu_check: {err}\n")
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write(
            "gpu_check: --device cuda but torch sees no CUDA GPU; run it on a GPU machine, or use --device cpu.\n"
        )
        return 2
    output = Path(args.output) if args.output else (
        REPO / "benchmarks" / "results" / f"gpu_check_{args.device}{'_quick' if args.quick else ''}.json"
    )  # fmt: skip
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    env = _environment(args.device)
    print(
        f"gpu_check on {env.get('gpu', args.device)}{' (quick)' if args.quick else ''}; work folder {work}",
        flush=True,
    )
    began = time.perf_counter()
    jobs = args.jobs or (2 if args.quick else 1)
    done: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def run_lane(lane: list[Step]) -> None:
        for step in lane:
            record = run_step(step, args.device, args.timeout, jobs)
            with lock:
                done[step.name] = record
                print(
                    f"{record['status']} {step.name:<12} {record['seconds']:7.1f} s  {record['summary']}",
                    flush=True,
                )
                if record["status"] == "FAIL":
                    print("    " + record["output_tail"][-1500:].replace("\n", "\n    "), flush=True)

    try:
        if args.quick and "amazon" in args.steps:
            _write_stand_in_amazon(work / "data")
        steps = {step.name: step for step in build_steps(args, work)}
        if jobs == 1:
            run_lane(list(steps.values()))
        else:
            lanes = [[steps[name] for name in lane if name in steps] for lane in LANES]
            with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
                list(pool.map(run_lane, lanes))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    records = [done[name] for name in STEPS if name in done]
    passed = all(r["status"] == "PASS" for r in records)
    result = {
        "passed": passed,
        "quick": args.quick,
        "jobs": jobs,
        "command": "python benchmarks/gpu_check.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "environment": env,
        "total_seconds": round(time.perf_counter() - began, 1),
        "steps": records,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, output)
    print(
        f"{'PASS' if passed else 'FAIL'} all {len(records)} steps in {result['total_seconds']:.0f} s -> {output}",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == PROBE_FLAG:
        sys.exit(_probe(sys.argv[2:]))
    sys.exit(main())
