"""The three AutoTokenizer paths: hf_semtok imported, trust_remote_code without hf_semtok, plain fast tokenizer."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers import AutoTokenizer, Qwen2Config

import hf_semtok.tokenizer
from hf_semtok.small_models import train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

TEXTS = ["matte rose lipstick 12ml", "blue running shoes size 9", "the user bought a lipstick"] * 10
TABLE = {"lip": (0, 1, 0), "shoe": (1, 0, 1), "tea": (2, 2, 0), "mug": (2, 2, 1)}
SIZES = [3, 3, 2]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tok = SemanticIDTokenizer.from_base(
        train_base_tokenizer(TEXTS, vocab_size=300), sid_table=TABLE, codebook_sizes=SIZES
    )
    path = tmp_path_factory.mktemp("auto") / "tok"
    tok.save_pretrained(path)
    text = "the user bought " + tok.items_to_text(["lip", "shoe", "tea"]) + " then"
    return tok, path, text


def test_auto_tokenizer_returns_class_when_imported(saved):
    tok, path, text = saved
    loaded = AutoTokenizer.from_pretrained(path)
    assert type(loaded) is SemanticIDTokenizer
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.sid_table_dict() == TABLE


def test_auto_tokenizer_in_model_directory(saved, tmp_path):
    """A model directory whose config.json belongs to the LM still gives the SemanticIDTokenizer."""
    tok, _, text = saved
    Qwen2Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2"
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is SemanticIDTokenizer
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]


_SCRIPT = """
import json, sys
sys.modules["hf_semtok"] = None  # make `import hf_semtok` fail, whatever is installed
try:
    import hf_semtok  # noqa: F401
    raise SystemExit("hf_semtok importable")
except ImportError:
    pass
from transformers import AutoTokenizer

tok_dir, model_dir, text = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
for name, path in (("tok", tok_dir), ("model", model_dir)):
    remote = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    ids = remote(text)["input_ids"]
    out[name + "_remote"] = {
        "class": type(remote).__name__, "module": type(remote).__module__, "ids": ids,
        "items": remote.parse_items(ids), "sid": list(remote.item_to_sid("shoe")),
    }
# A model directory (the LM's config.json beside the tokenizer), as inference servers load it: no flag needed.
for flag in (None, False):
    plain = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=flag)
    out["model_plain_" + str(flag)] = {
        "class": type(plain).__name__, "ids": plain(text)["input_ids"], "sid_start": plain.sid_start_token,
        "len": len(plain),
    }
# A tokenizer-only directory with custom code asks for trust_remote_code, as every custom-code repo does.
try:
    AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=False)
    out["tok_plain_error"] = ""
except ValueError as err:
    out["tok_plain_error"] = str(err)
# ... and loads plain through the fast tokenizer class itself.
from transformers import PreTrainedTokenizerFast
fast = PreTrainedTokenizerFast.from_pretrained(tok_dir)
out["tok_fast"] = {"ids": fast(text)["input_ids"], "len": len(fast)}
print(json.dumps(out))
"""


def test_remote_code_and_plain_paths_without_hf_semtok(saved, tmp_path):
    tok, path, text = saved
    model_dir = tmp_path / "model"
    Qwen2Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    ).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), str(path), str(model_dir), text],
        cwd=tmp_path,  # not the repository, so the checkout is not on sys.path either
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = tok(text)["input_ids"]
    # trust_remote_code=True: the copied module, a real SemanticIDTokenizer with its table
    for key in ("tok_remote", "model_remote"):
        assert out[key]["class"] == "SemanticIDTokenizer"
        assert out[key]["module"].startswith("transformers_modules")
        assert out[key]["ids"] == expected
        assert out[key]["items"] == ["lip", "shoe", "tea"] and out[key]["sid"] == [1, 0, 1]
    # plain AutoTokenizer (no hf_semtok, no remote code): a fast tokenizer with every SID token
    for key in ("model_plain_None", "model_plain_False"):
        assert out[key]["class"] in ("TokenizersBackend", "PreTrainedTokenizerFast")
        assert out[key]["ids"] == expected
        assert out[key]["sid_start"] == "<|sid_start|>" and out[key]["len"] == len(tok)
    assert "trust_remote_code=True" in out["tok_plain_error"]
    assert out["tok_fast"] == {"ids": expected, "len": len(tok)}


def test_saved_source_files_are_the_tokenizer_package(saved):
    """The remote-code copy is read from the folder: every module of hf_semtok/tokenizer/, and nothing else."""
    from hf_semtok.tokenizer import remote_code_files

    _, path, _ = saved
    package = sorted(
        p.name for p in Path(hf_semtok.tokenizer.__file__).parent.glob("*.py") if p.name != "__init__.py"
    )
    assert remote_code_files() == package
    assert sorted(p.name for p in path.glob("*.py")) == package


def test_tokenizer_package_imports_nothing_of_the_library():
    """The package is copied beside saved tokenizers, so it may import only its own modules (relatively)."""
    folder = Path(hf_semtok.tokenizer.__file__).parent
    offenders = []
    for source in folder.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{source.name}: {n}" for n in names if n.split(".")[0] == "hf_semtok"]
    assert offenders == []
