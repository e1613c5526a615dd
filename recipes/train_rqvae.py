"""Train an RQ-VAE item tokenizer and write unique Semantic IDs for a catalogue.

Examples:
    python recipes/train_rqvae.py --config recipes/configs/rqvae_synthetic.yaml
    python recipes/train_rqvae.py --config recipes/configs/rqvae_scientific.yaml --contrastive_weight 0
    python recipes/train_rqvae.py --dataset_format lcrec --data_dir DIR --embedding_files "{text: emb.npy}"

Writes to `output_dir`: the RQ-VAE (`config.json` + `model.safetensors`), `sid_table.json`, `sid_quality.json`,
`sid_quality.md`, `training_history.json` and the resolved `recipe_config.yaml`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hf_semtok.cli import parse_args_with_config
from hf_semtok.constants import DEFAULT_SEED, EMBEDDINGS_CACHE_DIRNAME
from hf_semtok.data import DatasetArguments, leave_one_out_split
from hf_semtok.data.embeddings import catalogue_embeddings
from hf_semtok.rqvae.quality import format_quality_table
from hf_semtok.rqvae.sid_stage import SIDStageConfig, train_sid_stage
from hf_semtok.rqvae.training import save_training_result

logger = logging.getLogger("train_rqvae")


def _help(text: str, default: object = None) -> object:
    return field(default=default, metadata={"help": text})


def _help_list(text: str, default: list) -> object:
    return field(default_factory=lambda: list(default), metadata={"help": text})


@dataclass
class TrainRQVAEConfig:
    """Build Semantic IDs for a catalogue with a trained RQ-VAE."""

    # the catalogue: hf_semtok.data.DatasetArguments (parsed beside this class)
    # embeddings
    embedding_source: Literal["auto", "files", "catalogue", "text"] = _help(
        "Where item embeddings come from.", "auto"
    )
    embedding_files: dict | str | None = _help(
        "Modality -> .npy file, e.g. '{text: emb.npy}' (embedding_source: files)."
    )
    text_model: str = _help("sentence-transformers model of embedding_source: text.", "all-MiniLM-L6-v2")
    embedding_cache_dir: str | None = _help("Embedding cache (default: <output_dir>/../cache/embeddings).")
    embedding_batch_size: int = _help("Batch size of the text embedding model.", 64)
    # RQ-VAE
    hidden_sizes: list[int] = _help_list("Encoder hidden sizes.", [512, 256, 128])
    latent_dim: int = _help("Latent size quantised by the codebooks.", 32)
    codebook_sizes: list[int] = _help_list("Codes per SID level.", [256, 256, 256])
    modality_weights: dict | str | None = _help("Modality -> reconstruction weight (default: equal).")
    commitment_weight: float = _help("Commitment loss weight.", 0.25)
    gradient_estimator: Literal["ste", "rotation"] = _help("Gradient through the quantiser.", "ste")
    contrastive_weight: float = _help("Weight of the co-occurrence contrastive loss (0: off).", 0.0)
    contrastive_temperature: float = _help("Temperature of the contrastive loss.", 0.1)
    cooccurrence_window: int = _help("History window of co-occurring item pairs.", 3)
    progressive_masking_prob: float = _help("Probability of masking the deeper levels in training.", 0.0)
    dead_code_threshold: int = _help("Codes used fewer times per epoch are reset.", 1)
    # training
    epochs: float = _help("Training epochs.", 100.0)
    max_steps: int = _help("Stop after this many steps (-1: epochs decide).", -1)
    batch_size: int = _help("Items per batch.", 1024)
    learning_rate: float = _help("Learning rate.", 2e-3)
    collision_strategy: Literal["extra_level", "reassign"] = _help(
        "How items sharing codes get unique SIDs.", "extra_level"
    )
    extra_level_size: int | None = _help(
        "Room in the dedup level for items sharing codes; set it above the largest group to keep room for items "
        "added later with SemanticIDTokenizer.add_items (cold start). Default: the largest group."
    )
    seed: int = _help("Seed of data, model and training.", DEFAULT_SEED)
    output_dir: str = _help("Where the RQ-VAE, sid_table.json and the reports go.", "outputs/rqvae")
    progress: bool = _help("Show progress bars.", True)

    def __post_init__(self) -> None:
        for name in ("embedding_files", "modality_weights"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = yaml.safe_load(value) if value.strip() else None
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping such as {{text: 1.0}}, got {value!r}.")
            setattr(self, name, value)
        self.embedding_files = self.embedding_files or {}


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe. Returns the quality report (also written to `output_dir`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, dataset = parse_args_with_config(
        [TrainRQVAEConfig, DatasetArguments], argv, prog="train_rqvae.py", description=__doc__
    )
    output_dir = Path(cfg.output_dir)
    catalogue = dataset.load_catalogue(seed=cfg.seed)
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
    sid_config = SIDStageConfig(
        codebook_sizes=cfg.codebook_sizes,
        hidden_sizes=cfg.hidden_sizes,
        latent_dim=cfg.latent_dim,
        contrastive_weight=cfg.contrastive_weight,
        cooccurrence_window=cfg.cooccurrence_window,
        modality_weights=cfg.modality_weights,
        collision_strategy=cfg.collision_strategy,
        epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        extra_level_size=cfg.extra_level_size,
        extra={
            "commitment_weight": cfg.commitment_weight,
            "gradient_estimator": cfg.gradient_estimator,
            "contrastive_temperature": cfg.contrastive_temperature,
            "progressive_masking_prob": cfg.progressive_masking_prob,
            "dead_code_threshold": cfg.dead_code_threshold,
        },
    )
    # Co-occurrence pairs come from the training part of the histories only: no held-out target leaks into SIDs.
    train_histories = leave_one_out_split(catalogue.histories)[0] if catalogue.histories else None
    result = train_sid_stage(
        embeddings, catalogue.item_ids, train_histories, sid_config, seed=cfg.seed, progress=cfg.progress
    )
    recipe_config = yaml.safe_dump(
        {**dataclasses.asdict(dataset), **dataclasses.asdict(cfg)}, sort_keys=False
    )
    save_training_result(result, output_dir, extra_files={"recipe_config.yaml": recipe_config})
    print(f"Semantic IDs for {catalogue.name!r} ({catalogue.num_items} items) -> {output_dir}")
    print(format_quality_table(result.report))
    return result.report


if __name__ == "__main__":
    main(sys.argv[1:])
