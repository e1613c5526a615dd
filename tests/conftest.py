"""Session-wide test settings (no network, deterministic, one torch thread per xdist worker) and shared fixtures.

The fixtures build tiny models in code, once per session: a byte-level BPE base tokenizer, a 16-item catalogue
with 2-level SIDs (`(n // 4, n % 4)` for item `i{n}`) and its `SemanticIDTokenizer`, and a factory for 1-layer
causal LMs. They are shared: a test that changes a tokenizer (chat template, added items) copies it first.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_semtok.small_models import build_causal_lm, train_base_tokenizer  # noqa: E402
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each avoids oversubscription.
    torch.set_num_threads(1)

#: Item ids of the shared tiny catalogue.
TINY_ITEMS = [f"i{n}" for n in range(16)]
#: Their SIDs: 2 levels of 4 codes, `i{n}` -> `(n // 4, n % 4)`.
TINY_SID_TABLE = {item: (n // 4, n % 4) for n, item in enumerate(TINY_ITEMS)}
TINY_CODEBOOK_SIZES = [4, 4]
BASE_TEXTS = [
    "a user bought these items next; the item has ID and category",
    "user history next item: matte rose lipstick, blue running shoes, shampoo",
    "thing 0 thing 1 thing 2 thing 3 thing 4 thing 5 thing 6 thing 7 thing 8 thing 9",
] * 5


@pytest.fixture(scope="session")
def base_tokenizer():
    """A tiny byte-level BPE base tokenizer (300 tokens; `<pad>`, `<s>`, `</s>`, `<unk>`)."""
    return train_base_tokenizer(BASE_TEXTS, vocab_size=300)


@pytest.fixture(scope="session")
def sid_table() -> dict[str, tuple[int, int]]:
    """The tiny catalogue's SIDs (a fresh copy per call is not needed: never mutate it)."""
    return dict(TINY_SID_TABLE)


@pytest.fixture(scope="session")
def sid_tokenizer(base_tokenizer, sid_table):
    """A `SemanticIDTokenizer` for the 16-item catalogue on `base_tokenizer` (no chat template)."""
    return SemanticIDTokenizer.from_base(
        base_tokenizer, sid_table=sid_table, codebook_sizes=TINY_CODEBOOK_SIZES
    )


@pytest.fixture(scope="session")
def make_tiny_lm():
    """Factory of seeded 1-layer causal LMs: `make_tiny_lm(vocab_size, tie=True, arch="qwen2", hidden_size=32)`."""

    def make(
        vocab_size: int, tie: bool = True, arch: str = "qwen2", hidden_size: int = 32, num_layers: int = 1
    ):
        return build_causal_lm(
            vocab_size,
            arch=arch,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=2,
            tie_word_embeddings=tie,
            seed=0,
        )

    return make


def rqvae_tokenizer_pair(base_tokenizer, n_items: int):
    """Embeddings and tokenizers A and B over the same `n_items` items, each with its own (untrained) RQ-VAE and
    table: a load that mixes two saves shows up as a table or RQ-VAE of the other one."""
    import numpy as np

    from hf_semtok import RQVAEConfig, RQVAEModel
    from hf_semtok.sids import assign_unique_sids

    emb = np.random.default_rng(0).normal(size=(n_items, 8)).astype("float32")
    made = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = RQVAEModel(
            RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[4, 4])
        )
        table = assign_unique_sids(
            model.encode(emb), [f"i{i}" for i in range(n_items)], [4, 4], extra_level_size=n_items
        )
        made.append(SemanticIDTokenizer.from_base(base_tokenizer, sid_table=table, rqvae=model))
    return emb, made[0], made[1]


def load_benchmark(name: str):
    """The module `benchmarks/<name>.py`, registered in `sys.modules` (its dataclasses look their module up there)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_benchmark_command(command: list[str], *overrides: str, timeout: int = 300) -> None:
    """Run `python <command> <overrides>` from the repository root as a user types it; fail with its stderr."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, *command, *overrides],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def write_cyclic_beauty_folder(
    root, n_users: int, n_items: int, length: int, stride: int, folder_name: str = "amazon-beauty"
):
    """A P5-layout Beauty folder (`root/data/amazon-beauty/sequential_data.txt`, or `folder_name`) whose user `u`
    (1-based ids) walks the items in a cycle from `u * stride`: the next item is always the last + 1, which a
    sequential model learns and a popularity ranking (every item about equally frequent) cannot. Returns
    `root/data`."""
    folder = root / "data" / folder_name
    folder.mkdir(parents=True)
    lines = []
    for user in range(n_users):
        items = [(user * stride + k) % n_items + 1 for k in range(length)]
        lines.append(" ".join(str(x) for x in [user + 1, *items]))
    (folder / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    return root / "data"


def tree_snapshot(root) -> dict:
    """Every entry under `root` (links not followed): a file's SHA-256, a link's target, a folder, a special
    file's mode. Two snapshots are equal only if nothing under `root` was written, deleted or created."""
    import hashlib
    import stat
    from pathlib import Path

    root = Path(root)
    found = {}
    for current, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(current) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", st.st_mode)
            else:
                found[rel] = ("special", st.st_mode)
    return found
