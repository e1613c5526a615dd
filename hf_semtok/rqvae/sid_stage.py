"""From item features to Semantic IDs in one call: `SIDStageConfig` and `train_sid_stage`.

The one path the pipeline, the demo and `recipes/train_rqvae.py` share: an `RQVAEConfig` from the stage settings,
co-occurrence pairs from the **training** histories only, then `train_rqvae`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.training import RQVAETrainingResult, train_rqvae

__all__ = ["SIDStageConfig", "train_sid_stage"]

logger = logging.getLogger(__name__)


@dataclass
class SIDStageConfig:
    """How the RQ-VAE Semantic IDs are made (arguments of `RQVAEConfig` and `train_rqvae`).

    Args:
        codebook_sizes: Codes per RQ-VAE level (TIGER `[256, 256, 256]`; multi-resolution e.g. `[1024, 512, 256]`).
        hidden_sizes: Encoder MLP sizes.
        latent_dim: Size of the quantized latent.
        contrastive_weight: Weight of the co-occurrence InfoNCE loss (0 disables it).
        cooccurrence_window: Positions within which two training items co-occur.
        modality_weights: Optional weight per embedding modality.
        collision_strategy: `"extra_level"` (TIGER) or `"reassign"`.
        epochs: RQ-VAE training epochs.
        batch_size: Items per RQ-VAE step.
        learning_rate: RQ-VAE learning rate.
        max_steps: Stop after this many steps (-1: `epochs` decide).
        extra_level_size: Size of the dedup level (default: the largest group), room for items added later.
        extra: Further `RQVAEConfig` fields (e.g. `{"progressive_masking_prob": 0.2}`).
    """

    codebook_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    hidden_sizes: list[int] = field(default_factory=lambda: [512, 256, 128])
    latent_dim: int = 32
    contrastive_weight: float = 0.0
    cooccurrence_window: int = 3
    modality_weights: dict[str, float] | None = None
    collision_strategy: str = "extra_level"
    epochs: float = 100.0
    max_steps: int = -1
    batch_size: int = 1024
    learning_rate: float = 2e-3
    extra_level_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def train_sid_stage(
    embeddings: np.ndarray | Mapping[str, np.ndarray],
    item_ids: Sequence[str],
    train_histories: Mapping[str, Sequence[str]] | None,
    config: SIDStageConfig | None = None,
    seed: int = DEFAULT_SEED,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> RQVAETrainingResult:
    """The one path from item features to Semantic IDs: `RQVAEConfig` from `config`, co-occurrence pairs from the
    **training** histories (when `contrastive_weight > 0`), then `train_rqvae`. `run_pipeline`, the demo and
    `recipes/train_rqvae.py` all go through it.

    Use it when you start from item features and user histories; call `train_rqvae` directly only when you build
    the `RQVAEConfig` and the co-occurrence pairs yourself.

    Args:
        embeddings: `(n_items, dim)` or modality name -> `(n_items, dim_m)`, rows in `item_ids` order.
        item_ids: The catalogue's items.
        train_histories: Training histories (validation/test targets removed); the source of co-occurrence
            pairs. May be `None` when `contrastive_weight` is 0.
        config: RQ-VAE settings.
        seed: Seed (same seed, same SIDs).
        output_dir: Where `train_rqvae` saves the model, table and report.
        progress: Show progress bars.

    Returns:
        The `RQVAETrainingResult` (`.model`, `.sid_table`, `.report`).
    """
    config = config or SIDStageConfig()
    if isinstance(embeddings, Mapping):
        dims: dict[str, int] | int = {name: int(np.asarray(m).shape[1]) for name, m in embeddings.items()}
    else:
        dims = int(np.asarray(embeddings).shape[1])
    rq_config = RQVAEConfig(
        modality_dims=dims,
        modality_weights=config.modality_weights,
        hidden_sizes=list(config.hidden_sizes),
        latent_dim=config.latent_dim,
        codebook_sizes=list(config.codebook_sizes),
        contrastive_weight=config.contrastive_weight,
        **config.extra,
    )
    pairs = None
    if config.contrastive_weight > 0:
        if not train_histories:
            raise ValueError(
                "contrastive_weight > 0 needs user histories (the co-occurrence pairs come from them); pass the "
                "training split of leave_one_out_split, or set contrastive_weight to 0."
            )
        pairs = build_cooccurrence_pairs(
            train_histories, window=config.cooccurrence_window, item_ids=item_ids
        )
    return train_rqvae(
        embeddings,
        config=rq_config,
        item_ids=list(item_ids),
        cooccurrence_pairs=pairs,
        epochs=config.epochs,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=seed,
        output_dir=output_dir,
        collision_strategy=config.collision_strategy,
        extra_level_size=config.extra_level_size,
        progress=progress,
    )
