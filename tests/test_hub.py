"""Hub: push with a fake HfApi, the model card, and loading by repo id from an offline Hub cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoTokenizer

from hf_semtok.constants import RQVAE_CONFIG_FILE, RQVAE_WEIGHTS_FILE, SID_TABLE_FILE
from hf_semtok.hub import render_tokenizer_card, tokenizer_card_template_path
from hf_semtok.small_models import train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

TEXTS = ["matte rose lipstick 12ml", "blue running shoes size 9", "the user bought a lipstick"] * 10
REPO = "semtok-org/tiny-semtok"


class FakeApi:
    """Records what `push_to_hub` would send to the Hub."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[tuple[str, bool | None]] = []
        self.commits: list[dict] = []

    def create_repo(self, repo_id, private=None, token=None, exist_ok=False, **kwargs):
        self.created.append((repo_id, private))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, commit_message=None, **kwargs):
        dest = self.root / repo_id.replace("/", "--") / str(len(self.commits))
        shutil.copytree(folder_path, dest)
        self.commits.append({"repo_id": repo_id, "folder": dest, "message": commit_message, **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{len(self.commits)}")


@pytest.fixture(scope="module")
def tok():
    from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
    from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
    from hf_semtok.sids import assign_unique_sids

    torch.manual_seed(0)
    model = RQVAEModel(
        RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[4, 4, 3])
    )
    emb = np.random.default_rng(0).normal(size=(30, 8)).astype("float32")
    table = assign_unique_sids(model.encode(emb), [f"item{i}" for i in range(30)], [4, 4, 3])
    base = train_base_tokenizer(TEXTS, vocab_size=300)
    base.name_or_path = "org/base-lm"
    tokenizer = SemanticIDTokenizer.from_base(base, sid_table=table, rqvae=model)
    tokenizer.test_embeddings = emb
    return tokenizer


def test_template_is_shipped_and_matches_model_cards():
    path = tokenizer_card_template_path()
    assert path.is_file() and "hf_semtok" in path.parts
    checkout = Path(__file__).resolve().parent.parent / "model_cards" / "tokenizer_card.md"
    assert checkout.read_text() == path.read_text()


def test_model_card_metadata(tok):
    card = render_tokenizer_card(tok, repo_id=REPO, tags=["beauty"], license="apache-2.0")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["license"] == "apache-2.0"
    assert data["base_model"] == "org/base-lm"
    assert {"hf_semtok", "semantic-ids", "generative-recommendation", "beauty"} <= set(data["tags"])
    assert data["sid_codebook_sizes"] == tok.codebook_sizes and data["sid_num_levels"] == 4
    assert data["sid_num_semantic_levels"] == 3 and data["sid_num_items"] == 30
    assert data["sid_collision_strategy"] == "extra_level"
    text = card.text
    assert f'AutoTokenizer.from_pretrained("{REPO}")' in text and "trust_remote_code=True" in text
    assert "2305.05065" in text and "2510.07784" in text  # TIGER and PLUM citations
    assert "collision_rate_before" in text and "org/base-lm" in text
    assert tok.items_to_text(["item0"]) in text


def test_push_to_hub_with_fake_api(tok, tmp_path, monkeypatch):
    api = FakeApi(tmp_path / "hub")
    result = tok.push_to_hub(REPO, api=api, private=True, commit_message="first")
    assert api.created == [(REPO, True)] and result.commit_url.endswith("/1")
    folder = api.commits[0]["folder"]
    files = set(os.listdir(folder))
    assert {
        "tokenizer.json",
        "tokenizer_config.json",
        SID_TABLE_FILE,
        RQVAE_CONFIG_FILE,
        RQVAE_WEIGHTS_FILE,
        "tokenization_semtok.py",
        "sid_table.py",
        "sid_tokens.py",
        "sid_catalogue.py",
        "sid_checks.py",
        "item_ids.py",
        "tokenizer_files.py",
        "constants.py",
        "README.md",
    } <= files
    assert api.commits[0]["message"] == "first"
    card = ModelCard.load(folder / "README.md")
    assert card.data.sid_codebook_sizes == tok.codebook_sizes and card.data.sid_num_items == 30
    # default api: the one transformers uses (patched, no network)
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(transformers_hub, "hf_api", lambda: api)
    tok.push_to_hub(REPO)
    assert len(api.commits) == 2 and api.commits[1]["message"] == "Upload SemanticIDTokenizer"


def test_from_pretrained_by_repo_id_from_hub_cache(tok, tmp_path, monkeypatch):
    """Push, lay the pushed files out as a Hub cache, load by repo id offline."""
    api = FakeApi(tmp_path / "hub")
    tok.push_to_hub(REPO, api=api)
    cache = tmp_path / "cache"
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    shutil.copytree(api.commits[0]["folder"], repo_dir / "snapshots" / revision)
    # An online download records files the repo does not have under .no_exist; a tokenizer repo has no config.json.
    (repo_dir / ".no_exist" / revision).mkdir(parents=True)
    (repo_dir / ".no_exist" / revision / "config.json").touch()
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = "the user bought " + tok.items_to_text(["item3", "item7"])
    for loaded in (SemanticIDTokenizer.from_pretrained(REPO), AutoTokenizer.from_pretrained(REPO)):
        assert type(loaded) is SemanticIDTokenizer
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert loaded.sid_table_dict() == tok.sid_table_dict()
        assert Path(loaded._rqvae_files[1]).is_relative_to(cache)
        np.testing.assert_array_equal(
            loaded.sids_for_embeddings(tok.test_embeddings), tok.sids_for_embeddings(tok.test_embeddings)
        )
