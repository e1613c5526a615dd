from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_semtok import SIDTable
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "train_rqvae.py"


def _load_recipe():
    spec = importlib.util.spec_from_file_location("recipe_train_rqvae", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


recipe = _load_recipe()

TINY = [
    "--synthetic_items",
    "200",
    "--synthetic_users",
    "300",
    "--hidden_sizes",
    "[32]",
    "--latent_dim",
    "8",
    "--codebook_sizes",
    "[8, 8]",
    "--max_steps",
    "10",
    "--batch_size",
    "64",
    "--progress",
    "false",
]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rq") / "run"
    config = tmp_path_factory.mktemp("cfg") / "c.yaml"
    config.write_text("dataset_format: synthetic\ncontrastive_weight: 0.1\nseed: 3\n")
    report = recipe.main(["--config", str(config), *TINY, "--output_dir", str(out)])
    return out, report


def test_synthetic_run_writes_model_table_and_report(synthetic_run, capsys):
    out, report = synthetic_run
    for name in (
        "config.json",
        "model.safetensors",
        "sid_table.json",
        "sid_quality.json",
        "recipe_config.yaml",
    ):
        assert (out / name).is_file(), name
    table = SIDTable.from_json(out / "sid_table.json")
    catalogue = make_synthetic_catalogue(n_items=200, n_users=300, seed=3)
    assert table.item_ids == catalogue.item_ids
    assert len({tuple(r) for r in table.codes.tolist()}) == 200  # unique SIDs
    assert json.loads((out / "sid_quality.json").read_text())["num_items"] == 200
    assert report["num_pairs"] > 0 and report["steps"] == 10  # contrastive pairs were built and used
    # the saved model re-encodes the catalogue's own views to the table's semantic codes
    model = RQVAEModel.from_pretrained(out)
    assert set(model.config.modality_dims) == {"text", "image", "audio"}
    codes = model.encode(catalogue.embeddings).numpy()
    np.testing.assert_array_equal(codes, table.codes[:, : table.num_semantic_levels])
    saved = yaml.safe_load((out / "recipe_config.yaml").read_text())
    assert saved["seed"] == 3 and saved["codebook_sizes"] == [8, 8] and saved["contrastive_weight"] == 0.1


def test_lcrec_with_embedding_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cat = make_synthetic_catalogue(n_items=120, n_users=80, seed=1)
    index = {item: i for i, item in enumerate(cat.item_ids)}
    (data / "Tiny.inter.json").write_text(
        json.dumps({u: [index[i] for i in h] for u, h in cat.histories.items()})
    )
    (data / "Tiny.item.json").write_text(
        json.dumps(
            {
                str(index[i]): {"title": cat.titles[i], "categories": ",".join(cat.categories[i])}
                for i in cat.item_ids
            }
        )
    )
    np.save(tmp_path / "text.npy", cat.embeddings["text"])
    np.save(tmp_path / "audio.npy", cat.embeddings["audio"])
    out = tmp_path / "out"
    recipe.main(
        [
            *TINY,
            "--dataset_format=lcrec",
            f"--data_dir={data}",
            f"--embedding_files={{text: {tmp_path / 'text.npy'}, audio: {tmp_path / 'audio.npy'}}}",
            "--collision_strategy",
            "reassign",
            f"output_dir={out}",
        ]
    )
    table = SIDTable.from_json(out / "sid_table.json")
    assert table.item_ids == [str(i) for i in range(120)]
    assert table.collision_strategy == "reassign"
    assert RQVAEModel.from_pretrained(out).config.modality_dims == {"text": 64, "audio": 16}


def test_bad_config_fails_cleanly(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'codebook_sizes'"):
        recipe.main(["--codebook_size", "[8]"])
    out = tmp_path / "never"
    # more codes than items: train_rqvae refuses, and no half-written output directory is left behind
    with pytest.raises(ValueError, match="fewer than the largest codebook"):
        recipe.main([*TINY, "--codebook_sizes", "[512]", "--output_dir", str(out)])
    assert not out.exists()
    with pytest.raises(ValueError, match="needs data_dir"):
        recipe.main([*TINY, "--dataset_format", "lcrec", "--output_dir", str(out)])
