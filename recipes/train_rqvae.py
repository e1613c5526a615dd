"""Train an RQ-VAE item tokenizer and write unique Semantic IDs for a catalogue.

Examples:
    python recipes/train_rqvae.py --config recipes/configs/rqvae_synthetic.yaml
    python recipes/train_rqvae.py --config recipes/configs/rqvae_scientific.yaml --contrastive_weight 0
    python recipes/train_rqvae.py --dataset_format lcrec --data_dir DIR --embedding_files "{text: emb.npy}"

Writes to `output_dir`: the RQ-VAE (`config.json` + `model.safetensors`), `sid_table.json`, `sid_quality.json`,
`sid_quality.md`, `training_history.json` and the resolved `recipe_config.yaml`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hf_semtok.config_utils import config_to_dict, parse_recipe_args
from hf_semtok.constants import DEFAULT_SEED, EMBEDDINGS_CACHE_DIRNAME
from hf_semtok.data import leave_one_out_split, load_catalogue
from hf_semtok.data.embeddings import catalogue_embeddings
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.quality import format_quality_table
from hf_semtok.rqvae.training import train_rqvae

logger = logging.getLogger("train_rqvae")


@dataclass
class TrainRQVAEConfig:
    """Build Semantic IDs for a catalogue with a trained RQ-VAE."""

    # data
    dataset_format: Literal["synthetic", "lcrec", "amazon2014"] = "synthetic"
    data_dir: str | None = None
    dataset_name: str | None = None
    synthetic_items: int = 1000
    synthetic_users: int = 2000
    text_fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories"])
    # embeddings
    embedding_source: Literal["auto", "files", "catalogue", "text"] = "auto"
    embedding_files: dict[str, str] = field(default_factory=dict)
    text_model: str = "all-MiniLM-L6-v2"
    embedding_cache_dir: str | None = None  # default: <output_dir>/../cache/embeddings
    embedding_batch_size: int = 64
    # RQ-VAE
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 32
    codebook_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    modality_weights: dict[str, float] | None = None
    commitment_weight: float = 0.25
    gradient_estimator: Literal["ste", "rotation"] = "ste"
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    cooccurrence_window: int = 3
    progressive_masking_prob: float = 0.0
    dead_code_threshold: int = 1
    # training
    epochs: float = 100.0
    max_steps: int = -1
    batch_size: int = 1024
    learning_rate: float = 2e-3
    collision_strategy: Literal["extra_level", "reassign"] = "extra_level"
    # Room in the dedup level for items sharing codes; set it above the largest group to keep room for items
    # added later with `SemanticIDTokenizer.add_items` (cold start). Default: the largest group.
    extra_level_size: int | None = None
    seed: int = DEFAULT_SEED
    output_dir: str = "outputs/rqvae"
    progress: bool = True


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe. Returns the quality report (also written to `output_dir`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_recipe_args(TrainRQVAEConfig, argv)
    output_dir = Path(cfg.output_dir)
    catalogue = load_catalogue(
        cfg.dataset_format,
        cfg.data_dir,
        name=cfg.dataset_name,
        text_fields=cfg.text_fields,
        seed=cfg.seed,
        synthetic_items=cfg.synthetic_items,
        synthetic_users=cfg.synthetic_users,
    )
    cache_dir = cfg.embedding_cache_dir or output_dir.parent / "cache" / EMBEDDINGS_CACHE_DIRNAME
    embeddings = catalogue_embeddings(
        catalogue,
        source=cfg.embedding_source,
        embedding_files=cfg.embedding_files,
        text_model=cfg.text_model,
        cache_dir=cache_dir,
        batch_size=cfg.embedding_batch_size,
        progress=cfg.progress,
    )
    pairs = None
    if cfg.contrastive_weight > 0:
        if not catalogue.histories:
            raise ValueError("contrastive_weight > 0 needs user histories; this catalogue has none.")
        train_histories, _, _ = leave_one_out_split(catalogue.histories)  # training part only: no leakage
        pairs = build_cooccurrence_pairs(
            train_histories, window=cfg.cooccurrence_window, item_ids=catalogue.item_ids
        )
    rqvae_config = RQVAEConfig(
        modality_dims={name: int(matrix.shape[1]) for name, matrix in embeddings.items()},
        modality_weights=cfg.modality_weights,
        hidden_sizes=cfg.hidden_sizes,
        latent_dim=cfg.latent_dim,
        codebook_sizes=cfg.codebook_sizes,
        commitment_weight=cfg.commitment_weight,
        gradient_estimator=cfg.gradient_estimator,
        contrastive_weight=cfg.contrastive_weight,
        contrastive_temperature=cfg.contrastive_temperature,
        progressive_masking_prob=cfg.progressive_masking_prob,
        dead_code_threshold=cfg.dead_code_threshold,
    )
    result = train_rqvae(
        embeddings,
        config=rqvae_config,
        item_ids=catalogue.item_ids,
        cooccurrence_pairs=pairs,
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
        output_dir=output_dir,
        collision_strategy=cfg.collision_strategy,
        extra_level_size=cfg.extra_level_size,
        progress=cfg.progress,
    )
    (output_dir / "recipe_config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    print(f"Semantic IDs for {catalogue.name!r} ({catalogue.num_items} items) -> {output_dir}")
    print(format_quality_table(result.report))
    return result.report


if __name__ == "__main__":
    main(sys.argv[1:])
