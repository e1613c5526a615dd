"""From item features to Semantic IDs in one call: `SIDStageConfig` and `train_sid_stage`.

The one path the pipeline, the demo and `recipes/train_rqvae.py` share: an `RQVAEConfig` from the stage settings,
co-occurrence pairs from the **training** histories only, then `train_rqvae`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import yaml

from hf_semtok.arguments import arg
from hf_semtok.constants import DEFAULT_SEED, TIGER_CODEBOOK_SIZES
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.training import RQVAETrainingResult, train_rqvae
from hf_semtok.sids.assignment import COLLISION_STRATEGIES

__all__ = ["SIDStageConfig", "train_sid_stage"]

logger = logging.getLogger(__name__)


#: `SIDStageConfig` fields that are `RQVAEConfig` fields whose default (None) means "RQVAEConfig's default".
_RQVAE_OPTIONAL = (
    "commitment_weight",
    "gradient_estimator",
    "contrastive_temperature",
    "progressive_masking_prob",
    "dead_code_threshold",
)


@dataclass
class SIDStageConfig:
    """How the RQ-VAE Semantic IDs are made: the settings of `RQVAEConfig` and `train_rqvae`, declared once.

    `recipes/train_rqvae.py` parses it directly (`--codebook_sizes 256 256 256 --contrastive_weight 0.1 ...`), the
    benchmarks read it from their config's `sid:` section, and `train_sid_stage` turns it into an `RQVAEConfig`.
    Each field's help text is its documentation (`python recipes/train_rqvae.py --help` prints them).
    """

    codebook_sizes: list[int] = arg(
        "Codes per RQ-VAE level (TIGER [256, 256, 256]; multi-resolution, coarse first, e.g. [1024, 512, 256]).",
        list(TIGER_CODEBOOK_SIZES),
    )
    hidden_sizes: list[int] = arg("Encoder MLP sizes (the decoder mirrors them).", [512, 256, 128])
    latent_dim: int = arg("Size of the latent the codebooks quantise.", 32)
    contrastive_weight: float = arg("Weight of the co-occurrence InfoNCE loss (0: off).", 0.0)
    cooccurrence_window: int = arg("Positions within which two training items co-occur.", 3)
    modality_weights: dict[str, float] | str | None = arg(
        "Modality -> reconstruction weight, e.g. '{text: 1.0, image: 0.5}' (default: equal)."
    )
    collision_strategy: str = arg(
        "How items sharing codes get unique SIDs: extra_level (TIGER) or reassign.", "extra_level"
    )
    epochs: float = arg("RQ-VAE training epochs.", 100.0)
    max_steps: int = arg("Stop after this many steps (-1: epochs decide).", -1)
    batch_size: int = arg("Items per RQ-VAE step.", 1024)
    learning_rate: float = arg("RQ-VAE learning rate.", 2e-3)
    extra_level_size: int | None = arg(
        "Room in the dedup level for items sharing codes; set it above the largest group to keep room for items "
        "added later with SemanticIDTokenizer.add_items (cold start). Default: the largest group."
    )
    commitment_weight: float | None = arg("Commitment loss weight (default: RQVAEConfig's, 0.25).")
    gradient_estimator: str | None = arg("Gradient through the quantiser: ste or rotation (default: ste).")
    contrastive_temperature: float | None = arg("Temperature of the contrastive loss (default: 0.1).")
    progressive_masking_prob: float | None = arg(
        "Probability of masking the deeper levels in training, so SID prefixes decode on their own (default: 0)."
    )
    dead_code_threshold: int | None = arg("Codes used fewer times per epoch are re-seeded (default: 1).")
    extra: dict[str, Any] | str | None = arg(
        "Further RQVAEConfig fields, e.g. '{dropout: 0.1}' or --extra.dropout 0.1."
    )

    def __post_init__(self) -> None:
        for name in ("codebook_sizes", "hidden_sizes"):  # a scalar would fail after the data is loaded
            value = getattr(self, name)
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
                raise TypeError(
                    f"SIDStageConfig.{name} must be a list of ints, e.g. [{value!r}]; got {type(value).__name__}."
                )
        if self.collision_strategy not in COLLISION_STRATEGIES:
            raise ValueError(
                f"SIDStageConfig.collision_strategy is {self.collision_strategy!r}; use one of "
                f"{list(COLLISION_STRATEGIES)}."
            )
        for name in ("modality_weights", "extra"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = yaml.safe_load(value) if value.strip() else None
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(
                    f"SIDStageConfig.{name} must be a mapping such as {{text: 1.0}}, got {value!r}."
                )
            setattr(self, name, dict(value) if value is not None else None)
        self.extra = self.extra or {}
        clash = sorted(set(self.extra) & {f.name for f in fields(self)})
        if clash:
            raise ValueError(
                f"SIDStageConfig.extra repeats the field(s) {clash}; set them as fields instead."
            )

    def rqvae_config(self, modality_dims: dict[str, int] | int) -> RQVAEConfig:
        """The `RQVAEConfig` these settings describe, for embeddings of `modality_dims`."""
        optional = {name: getattr(self, name) for name in _RQVAE_OPTIONAL if getattr(self, name) is not None}
        return RQVAEConfig(
            modality_dims=modality_dims,
            modality_weights=self.modality_weights,
            hidden_sizes=list(self.hidden_sizes),
            latent_dim=self.latent_dim,
            codebook_sizes=list(self.codebook_sizes),
            contrastive_weight=self.contrastive_weight,
            **optional,
            **self.extra,
        )


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
    rq_config = config.rqvae_config(dims)
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
