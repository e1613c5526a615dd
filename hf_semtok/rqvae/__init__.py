"""The RQ-VAE item tokenizer: config, residual quantizer, model, and training into Semantic IDs."""

from __future__ import annotations

from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel, RQVAEOutput
from hf_semtok.rqvae.quality import format_quality_table, sid_quality_report
from hf_semtok.rqvae.quantization import ResidualQuantizer
from hf_semtok.rqvae.sid_stage import SIDStageConfig, train_sid_stage
from hf_semtok.rqvae.training import RQVAETrainingResult, train_rqvae

__all__ = [
    "RQVAEConfig",
    "RQVAEModel",
    "RQVAEOutput",
    "RQVAETrainingResult",
    "ResidualQuantizer",
    "SIDStageConfig",
    "format_quality_table",
    "sid_quality_report",
    "train_rqvae",
    "train_sid_stage",
]
