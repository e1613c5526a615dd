"""`benchmarks/gpu_check.py`: the one-command GPU check runs, tiny, on CPU in the default suite (so it never rots),
and its device check fails a step that silently ran on the CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_gpu_check():
    spec = importlib.util.spec_from_file_location("bench_gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_check_quick_on_cpu_passes_every_step(tmp_path):
    """`python benchmarks/gpu_check.py --device cpu --quick` as a user types it (its JSON sent to a temp file)."""
    output = tmp_path / "gpu_check_cpu.json"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
    }
    command = ["python", "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--output", str(output)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    gpu_check = _load_gpu_check()
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    steps = [line.split()[1] for line in lines]
    assert sorted(steps[:-1]) == sorted(gpu_check.STEPS) and steps[-1] == "all", done.stdout
    assert all(line.startswith("PASS ") for line in lines), done.stdout
    result = json.loads(output.read_text())
    assert result["passed"] and result["quick"] and result["environment"]["device"] == "cpu"
    by_name = {r["step"]: r for r in result["steps"]}
    for name, record in by_name.items():
        assert record["seconds"] > 0 and record["command"], name
        if name != "cuda-tests":
            assert record["probe"]["cuda_available"] is False, name  # CPU forced for every step
    numbers = {name: r["numbers"] for name, r in by_name.items()}
    assert numbers["cuda-tests"]["failed"] == 0 and numbers["cuda-tests"]["skipped"] > 0  # skipped: no GPU
    assert numbers["demo"]["test_users"] == 4 and 0 <= numbers["demo"]["recall@10"] <= 1
    assert numbers["train_rqvae"]["num_items"] == 96 and numbers["train_rqvae"]["steps"] == 2
    assert numbers["cpt"]["global_step"] == 2 and numbers["lora"]["global_step"] == 2
    assert numbers["evaluate"]["num_users"] == 4
    assert numbers["amazon"]["steps"] == 4 and numbers["amazon"]["test_users"] == 10
    assert by_name["demo"]["command"].startswith("hf-semtok demo --quick")
    assert "benchmarks/configs/amazon_gpu.yaml" in by_name["amazon"]["command"]


def test_a_step_that_runs_on_the_cpu_fails_the_cuda_check(tmp_path):
    """On `--device cuda` a step passes only if its process allocated CUDA memory: a script that never touches
    the GPU (here: any script, on this machine) is a FAIL, and the same script passes the CPU check."""
    gpu_check = _load_gpu_check()
    script = tmp_path / "cpu_only.py"
    script.write_text("import torch\nprint(float(torch.ones(3).sum()))\n")
    step = gpu_check.Step("cpu-only", ["python", str(script)], numbers=lambda: {"ok": 1})
    on_cuda = gpu_check.run_step(step, "cuda", timeout=120)
    assert on_cuda["status"] == "FAIL"
    assert on_cuda["problems"] == ["no CUDA memory was allocated: the step ran on the CPU"]
    on_cpu = gpu_check.run_step(step, "cpu", timeout=120)
    assert on_cpu["status"] == "PASS" and on_cpu["probe"]["cuda_available"] is False
    failing = gpu_check.Step("broken", ["python", str(script), "--nope"], numbers=lambda: {})
    script.write_text("import sys\nsys.exit(3)\n")
    assert gpu_check.run_step(failing, "cpu", timeout=120)["problems"] == ["exit status 3"]
