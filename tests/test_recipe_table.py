"""The `*_table.yaml` recipe configs on the shipped example tables, beyond running as typed
(tests/test_documented_commands.py): every item of the items table gets a SID, the user's own embeddings go in
through the recipe, and the resolved config records the dataset keys."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import yaml

from hf_semtok import SIDTable
from hf_semtok.data import EXAMPLE_TABLE_DIR, load_table_catalogue, make_synthetic_catalogue

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}_table", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the config
    spec.loader.exec_module(module)
    return module


def test_rqvae_table_config_gives_every_item_a_sid_from_the_users_embeddings(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the config's paths are relative to the repository root, as typed
    catalogue = load_table_catalogue(EXAMPLE_TABLE_DIR / "interactions.csv", EXAMPLE_TABLE_DIR / "items.csv")
    never_taken = {i for i in catalogue.item_ids} - {i for h in catalogue.histories.values() for i in h}
    assert len(never_taken) == 3
    # the user's own vectors, rows in items.csv order (here the synthetic catalogue's text view)
    np.save(
        tmp_path / "emb.npy", make_synthetic_catalogue(n_items=256, n_users=300, seed=42).embeddings["text"]
    )
    out = tmp_path / "rqvae"
    _load("train_rqvae").main(
        [
            "--config", "recipes/configs/rqvae_table.yaml", "--embedding_source", "files",
            "--embedding_files", f"{{text: {tmp_path / 'emb.npy'}}}", "--max_steps", "3", "--progress", "false",
            "--output_dir", str(out),
        ]
    )  # fmt: skip
    table = SIDTable.from_json(out / "sid_table.json")
    assert table.item_ids == catalogue.item_ids and never_taken <= set(table.item_ids)
    assert len({tuple(table.codes[i]) for i in range(len(table.item_ids))}) == 256  # unique SIDs
    resolved = yaml.safe_load((out / "recipe_config.yaml").read_text())
    assert resolved["dataset_format"] == "table" and resolved["text_columns"] == [
        "title",
        "brand",
        "categories",
    ]
