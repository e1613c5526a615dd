"""RQ-VAE: item embeddings (one or several modalities) -> residual-quantized codes -> Semantic IDs.

Importing this module registers `RQVAEConfig` / `RQVAEModel` with `AutoConfig` / `AutoModel`
(model type `"semtok_rqvae"`).

Missing-modality rule: in a modality matrix, a row that is all NaN or all zeros means "this item has no such
modality". That block contributes a zero vector, the present modalities are rescaled so the concatenated input
keeps the norm it would have with every modality present, and the reconstruction loss ignores the missing block.
A row with only some NaN entries, any infinite value, or an item with no modality at all is a `ValueError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.io_utils import open_file_set, register_file_names, save_file_set
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.inputs import (
    EmbeddingsInput,
    concat_modalities,
    embedding_rows,
    embedding_source,
    num_embedding_rows,
)
from hf_semtok.rqvae.loading import (
    _check_weight_dtypes,
    _config_from_file,
    _damaged_file_hint,
    load_from_files,
    validate_loaded,
)
from hf_semtok.rqvae.quantization import ResidualQuantizer
from hf_semtok.tokenizer.safe_paths import check_regular_files

__all__ = [
    "RQVAEModel",
    "RQVAEOutput",
    "EmbeddingsInput",
    "concat_modalities",
    "embedding_rows",
    "embedding_source",
    "num_embedding_rows",
    "validate_loaded",
]

logger = logging.getLogger(__name__)

#: The kind of file set `RQVAEModel.save_pretrained` writes (`hf_semtok.io_utils.save_file_set`).
RQVAE_FILE_SET_KIND = "rqvae"
# What an RQ-VAE save writes (transformers' save_pretrained: the config and the weights, sharded or not): the only
# names it may delete as obsolete, whatever a manifest found in the folder lists.
register_file_names(
    RQVAE_FILE_SET_KIND,
    lambda prefix: (
        lambda name: (
            name in ("config.json", "model.safetensors", "model.safetensors.index.json")
            or (name.startswith("model-") and name.endswith(".safetensors") and "/" not in name)
        )
    ),
)


@dataclass
class RQVAEOutput(ModelOutput):
    """Output of [`RQVAEModel.forward`].

    Attributes:
        loss: reconstruction + codebook_loss_weight * codebook + commitment_weight * commitment
            + contrastive_weight * contrastive.
        reconstruction_loss: Squared error summed over present input dims, mean over items.
        quantization_loss: Weighted codebook + commitment loss.
        codebook_loss: Codebook loss summed over levels.
        commitment_loss: Commitment loss summed over levels.
        contrastive_loss: In-batch InfoNCE between co-occurring items (0 without pairs).
        codes: Codes `(batch, levels)`.
        latents: Encoder outputs `(batch, latent_dim)`.
        reconstruction: Decoder output `(batch, input_dim)`.
        utilization: Fraction of each level's codes used in the batch, `(levels,)`.
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    latents: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    utilization: torch.FloatTensor | None = None


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class RQVAEPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue for the RQ-VAE."""

    config_class = RQVAEConfig
    base_model_prefix = "rqvae"
    main_input_name = "embeddings"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _check_source(source: str) -> None:
    """FileNotFoundError for a path that is a file, or that is neither a folder nor a possible Hub repo id
    (`name` or `namespace/name`): transformers would answer "Repo id must be in the form ..." about a missing
    file; ValueError for a folder where one of the model's files belongs."""
    if os.path.isdir(source):
        for name in ("config.json", "model.safetensors"):
            if os.path.isdir(os.path.join(source, name)):
                raise ValueError(
                    f"{os.path.join(source, name)} is a folder where the model's file {name} belongs; move it "
                    "away and put the file back, or save the model again with save_pretrained()."
                )
        return
    if os.path.exists(source):
        raise FileNotFoundError(
            f"{source}: is a file, not a saved RQVAEModel; pass the folder that holds config.json and "
            "model.safetensors."
        )
    parts = source.split("/")
    if (
        not source.strip()
        or source.startswith((".", "/", "~"))
        or len(parts) > 2
        or any(not part or len(part) > 96 for part in parts)
    ):
        raise FileNotFoundError(
            f"{source!r}: no such folder, and not a Hub repo id ('name' or 'namespace/name'). Check the path, or "
            "save the model there with save_pretrained()."
        )


class RQVAEModel(RQVAEPreTrainedModel):
    """MLP encoder -> [`ResidualQuantizer`] -> MLP decoder over concatenated, normalised modalities.

    Inputs are the modalities of `config.modality_dims`, each L2-normalised (if `normalize_inputs`), scaled by
    `sqrt(weight / sum of present weights)` and concatenated, so every input row has unit norm. Missing modalities
    follow the rule in the module docstring: zero block, the others rescaled, the block left out of the
    reconstruction loss. `encode` maps embeddings to codes `(n, levels)`; `decode` maps codes (or a prefix of the
    levels) back to the concatenated input space.

    Args:
        config: An [`RQVAEConfig`].
    """

    def __init__(self, config: RQVAEConfig) -> None:
        super().__init__(config)
        self.encoder = _mlp([config.input_dim, *config.hidden_sizes, config.latent_dim], config.dropout)
        self.quantizer = ResidualQuantizer(
            config.latent_dim,
            config.codebook_sizes,
            kmeans_init=config.kmeans_init,
            kmeans_iters=config.kmeans_iters,
            dead_code_threshold=config.dead_code_threshold,
            reseed_interval=config.reseed_interval,
        )
        self.decoder = _mlp(
            [config.latent_dim, *reversed(config.hidden_sizes), config.input_dim], config.dropout
        )
        # Training forwards seen so far (saved, so a reloaded model does not warm up again).
        self.register_buffer("num_training_steps", torch.zeros((), dtype=torch.long))
        self.post_init()

    # ------------------------------------------------------------------------------------------
    # Loading: damaged files fail here, not later as random SIDs
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ):
        """`PreTrainedModel.from_pretrained`, plus checks that the loaded model is the saved one.

        transformers fills weights missing from `model.safetensors` with fresh random values and only logs it;
        here a missing or unexpected tensor, a shape that disagrees with `config.json`, or a non-finite weight is
        a `ValueError` naming the file (see [`validate_loaded`]). Unreadable files (truncated JSON or
        safetensors) are a `ValueError` naming the file too; a missing directory or file is a
        `FileNotFoundError`.

        Returns:
            The model, or `(model, loading_info)` with `output_loading_info=True`.
        """
        want_info = bool(kwargs.pop("output_loading_info", False))
        source = os.fspath(pretrained_model_name_or_path)
        _check_source(source)
        if os.path.isdir(source) and not kwargs.pop("_in_file_set", False):
            check_regular_files(
                source, "RQ-VAE", ("config.json", "model.safetensors", "model.safetensors.index.json")
            )
            # Let no save commit into the folder while loading (a load only reads: an interrupted save is an error).
            with open_file_set(source, RQVAE_FILE_SET_KIND):
                return cls.from_pretrained(
                    source, *model_args, output_loading_info=want_info, _in_file_set=True, **kwargs
                )
        if os.path.isdir(source):
            for name in ("config.json", "model.safetensors"):
                if name == "model.safetensors" and any(
                    n.endswith((".safetensors", ".bin", ".safetensors.index.json"))
                    for n in os.listdir(source)
                ):
                    continue
                if not os.path.isfile(os.path.join(source, name)):
                    raise FileNotFoundError(
                        f"{os.path.join(source, name)} is missing: {source} is not a complete saved RQVAEModel "
                        "(it needs config.json and model.safetensors, written by save_pretrained)."
                    )
        if os.path.isfile(os.path.join(source, "config.json")):
            _config_from_file(os.path.join(source, "config.json"))  # our errors, naming the file
        weights = os.path.join(source, "model.safetensors")
        if os.path.isfile(weights):
            _check_weight_dtypes(weights)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except (FileNotFoundError, TypeError):
            raise
        except ValueError as err:
            if "config.json" in str(err) or source in str(err):
                raise
            raise ValueError(f"Cannot load the RQ-VAE from {source}: {err}") from err
        except Exception as err:  # JSON, safetensors and state-dict errors of damaged files
            raise ValueError(
                f"Cannot load the RQ-VAE from {source}: {_damaged_file_hint(source, err)} ({type(err).__name__}: "
                f"{str(err)[:300]}). The files are damaged or incomplete; save the model again."
            ) from err
        with torch.no_grad():  # usage counters are not saved (persistent=False): the loader may leave garbage
            model.quantizer.reset_usage(include_recent=True)
        validate_loaded(model, os.path.join(source, "model.safetensors"), info)
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained`, as one atomic set of files (`hf_semtok.io_utils.save_file_set`, kind
        `"rqvae"`): a save killed at any instant leaves the complete old model or the complete new one, the files
        of the previous RQ-VAE save that this one does not write are deleted, and every other file in the folder
        (a tokenizer, a SID table, the user's own) stays. Files get `umask` modes (`0o666 & ~umask`). A file of the
        same name written by another kind of save, or by no save, is replaced only with `overwrite=True`."""
        overwrite = bool(kwargs.pop("overwrite", False))
        if kwargs.get("push_to_hub") or os.path.isfile(save_directory):
            return super().save_pretrained(save_directory, *args, **kwargs)
        with save_file_set(save_directory, RQVAE_FILE_SET_KIND, overwrite=overwrite) as staging:
            return super().save_pretrained(staging, *args, **kwargs)

    @classmethod
    def from_files(cls, config_file: str | os.PathLike, weights_file: str | os.PathLike) -> RQVAEModel:
        """Load an RQ-VAE from a config JSON and a safetensors file with any names (e.g. `rqvae_config.json` and
        `rqvae.safetensors` saved beside a `SemanticIDTokenizer`), checking both strictly.

        Args:
            config_file: The model's config, as `config.json` written by `save_pretrained`.
            weights_file: Its weights, as `model.safetensors`.

        Returns:
            The model, in eval mode.

        Raises:
            FileNotFoundError: A file is missing.
            ValueError: A file is unreadable, the config is invalid, or the weights disagree with the config
                (missing, unexpected, misshapen, non-float or non-finite tensors). The message names the file.
        """
        return load_from_files(cls, config_file, weights_file)

    @property
    def in_warmup(self) -> bool:
        """Whether the next training step is an autoencoder warm-up step (no quantization)."""
        return int(self.num_training_steps) < self.config.autoencoder_warmup_steps

    # ------------------------------------------------------------------------------------------
    # Input preparation
    def prepare_inputs(self, embeddings: EmbeddingsInput) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the normalisation and missing-modality rule.

        Args:
            embeddings: One `(n, input_dim)` matrix or a dict name -> `(n, dim)` matrix.

        Returns:
            `(inputs, mask)`: the model input `(n, input_dim)` and a 0/1 mask of the dimensions that belong to
            present modalities, `(n, input_dim)` (or `(n, 1)` of ones with a single modality).
        """
        raw = concat_modalities(embeddings, self.config.modality_dims).to(self.device)  # (n, D)
        cfg = self.config
        dims = list(cfg.modality_dims.values())
        blocks = list(torch.split(raw, dims, dim=1)) if len(dims) > 1 else [raw]
        presence = []
        for i, (name, block) in enumerate(zip(cfg.modality_dims, blocks)):
            inf_rows = torch.isinf(block).any(1)  # (n,)
            if inf_rows.any():
                bad = inf_rows.nonzero().flatten()[:10].tolist()
                raise ValueError(
                    f"Modality {name!r} has infinite values (rows {bad}); fix or drop these items."
                )
            nan = torch.isnan(block)  # (n, dim)
            if nan.any():
                partial = nan.any(1) & ~nan.all(1)
                if partial.any():
                    bad = partial.nonzero().flatten()[:10].tolist()
                    raise ValueError(
                        f"Modality {name!r} has rows with some (not all) NaN values (rows {bad}); a missing "
                        "modality must be a row of all NaN or all zeros. Fix or drop these rows."
                    )
                block = block.nan_to_num(0.0)
            # Divide by the largest |value| first: rows of tiny (1e-30) or huge (1e30) values keep an exact
            # direction instead of a float32 norm that underflows to 0 or overflows to inf.
            peak = block.abs().amax(dim=1, keepdim=True)  # (n, 1)
            presence.append(peak > 0)
            if cfg.normalize_inputs:
                scaled = block / peak.clamp_min(torch.finfo(block.dtype).tiny)  # (n, dim), max |value| 1
                blocks[i] = scaled / scaled.norm(dim=1, keepdim=True).clamp_min(1e-12)
            else:
                blocks[i] = block
        present = torch.cat(presence, dim=1)  # (n, modalities) bool
        if len(dims) == 1:
            if not bool(present.all()):
                bad = (~present[:, 0]).nonzero().flatten()[:10].tolist()
                raise ValueError(
                    f"Items {bad} have an all-zero or NaN embedding; drop them or give an embedding."
                )
            return blocks[0], raw.new_ones(raw.shape[0], 1)
        if not bool(present.any(1).all()):
            bad = (~present.any(1)).nonzero().flatten()[:10].tolist()
            raise ValueError(
                f"Items {bad} have no modality at all (every block NaN or zero); drop them or give an embedding."
            )
        weights = cfg.modality_weights or {}
        w = torch.tensor([float(weights.get(m, 1.0)) for m in cfg.modality_dims], device=raw.device)
        present_f = present.float()  # (n, modalities)
        total_w = (present_f * w).sum(1, keepdim=True)  # (n, 1)
        # Unit-norm inputs: sqrt(w_m / W_present); without normalisation the present blocks are scaled up by
        # sqrt(W_all / W_present) so the expected norm matches an item with every modality.
        if cfg.normalize_inputs:
            scale = (w / total_w).sqrt() * present_f  # (n, modalities)
        else:
            scale = (w / w.max()).sqrt() * (w.sum() / total_w).sqrt() * present_f
        dims_t = torch.tensor(dims, device=raw.device)
        x = torch.cat([b * scale[:, i : i + 1] for i, b in enumerate(blocks)], dim=1)  # (n, D)
        mask = present_f.repeat_interleave(dims_t, dim=1)  # (n, D)
        return x, mask

    def _straight_through(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Forward value `q`, gradient to the encoder through `z` (STE or the rotation trick)."""
        if self.config.gradient_estimator == "rotation":
            # Rotation trick (arXiv 2410.06424): q = sg(|q|/|z| R) z with R rotating z/|z| onto q/|q|.
            eps = 1e-8
            z_norm = z.norm(dim=-1, keepdim=True).clamp_min(eps)
            q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
            z_hat = (z / z_norm).detach()
            q_hat = (q / q_norm).detach()
            r = F.normalize(z_hat + q_hat, dim=-1, eps=eps).detach()
            rotated = (
                z - 2 * (z * r).sum(-1, keepdim=True) * r + 2 * (z * z_hat).sum(-1, keepdim=True) * q_hat
            )
            return rotated * (q_norm / z_norm).detach()
        return z + (q - z).detach()

    # ------------------------------------------------------------------------------------------
    def forward(
        self,
        embeddings: EmbeddingsInput,
        pair_embeddings: torch.Tensor | tuple[EmbeddingsInput, EmbeddingsInput] | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> RQVAEOutput | tuple:
        """Encode, quantize and reconstruct a batch; compute the loss and its breakdown.

        Args:
            embeddings: Batch of items, `(batch, input_dim)` (raw concatenation) or a dict of modalities.
            pair_embeddings: Co-occurring item pairs for the contrastive loss: a tensor `(pairs, 2, input_dim)`
                or a tuple `(anchors, positives)` in the format of `embeddings`. In-batch InfoNCE: the other
                positives of the batch are the negatives.
            return_dict: Return an [`RQVAEOutput`] (default) or a tuple.

        Returns:
            [`RQVAEOutput`].
        """
        cfg = self.config
        x, mask = self.prepare_inputs(embeddings)  # (B, D), (B, D)
        z = self.encoder(x)  # (B, latent)
        if self.training:
            warmup = self.in_warmup
            self.num_training_steps += 1
            if warmup:
                return self._warmup_forward(x, mask, z, pair_embeddings, return_dict)
        qo = self.quantizer(z)
        levels = qo.quantized_levels  # (B, L, latent)
        if self.training and cfg.progressive_masking_prob > 0:
            num_levels = levels.shape[1]
            prefix = torch.full((z.shape[0],), num_levels, device=z.device)  # (B,)
            masked = torch.rand(z.shape[0], device=z.device) < cfg.progressive_masking_prob
            prefix = torch.where(masked, torch.randint(1, num_levels, prefix.shape, device=z.device), prefix)
            keep = (torch.arange(num_levels, device=z.device) < prefix.unsqueeze(1)).unsqueeze(
                -1
            )  # (B, L, 1)
            q = (levels * keep).sum(1)  # (B, latent)
        else:
            q = levels.sum(1)  # (B, latent)
        z_q = self._straight_through(z, q)
        recon = self.decoder(z_q)  # (B, D)
        reconstruction_loss = ((recon - x).pow(2) * mask).sum(-1).mean()
        quantization_loss = (
            cfg.codebook_loss_weight * qo.codebook_loss + cfg.commitment_weight * qo.commitment_loss
        )
        contrastive_loss = z.new_zeros(())
        if pair_embeddings is not None:
            contrastive_loss = self.contrastive_loss(pair_embeddings)
        loss = reconstruction_loss + quantization_loss + cfg.contrastive_weight * contrastive_loss
        out = RQVAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss.detach(),
            quantization_loss=quantization_loss.detach(),
            codebook_loss=qo.codebook_loss.detach(),
            commitment_loss=qo.commitment_loss.detach(),
            contrastive_loss=contrastive_loss.detach(),
            codes=qo.codes,
            latents=z,
            reconstruction=recon,
            utilization=qo.utilization,
        )
        return out if return_dict is not False else out.to_tuple()

    def _warmup_forward(self, x, mask, z, pair_embeddings, return_dict) -> RQVAEOutput | tuple:
        """Autoencoder step without quantization (the `autoencoder_warmup_steps` before codebook init)."""
        recon = self.decoder(z)  # (B, D)
        reconstruction_loss = ((recon - x).pow(2) * mask).sum(-1).mean()
        zero = z.new_zeros(())
        contrastive_loss = zero if pair_embeddings is None else self.contrastive_loss(pair_embeddings)
        loss = reconstruction_loss + self.config.contrastive_weight * contrastive_loss
        out = RQVAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss.detach(),
            quantization_loss=zero,
            codebook_loss=zero,
            commitment_loss=zero,
            contrastive_loss=contrastive_loss.detach(),
            latents=z,
            reconstruction=recon,
        )
        return out if return_dict is not False else out.to_tuple()

    def contrastive_loss(
        self, pair_embeddings: torch.Tensor | tuple[EmbeddingsInput, EmbeddingsInput]
    ) -> torch.Tensor:
        """Symmetric in-batch InfoNCE between the representations of co-occurring items (PLUM, arXiv 2510.07784).

        The representation is the encoder latent (`config.contrastive_on="latent"`) or its straight-through
        quantization (`"quantized"`), L2-normalised; the temperature is `config.contrastive_temperature`.
        """
        if isinstance(pair_embeddings, torch.Tensor):
            if pair_embeddings.dim() != 3 or pair_embeddings.shape[1] != 2:
                raise ValueError(
                    f"`pair_embeddings` tensor must have shape (pairs, 2, dim), got {tuple(pair_embeddings.shape)}."
                )
            anchors, positives = pair_embeddings[:, 0], pair_embeddings[:, 1]
        else:
            anchors, positives = pair_embeddings
        za = self.encoder(self.prepare_inputs(anchors)[0])  # (P, latent)
        zb = self.encoder(self.prepare_inputs(positives)[0])  # (P, latent)
        if self.config.contrastive_on == "quantized":
            za = self._straight_through(za, self.quantizer.decode(self.quantizer.encode(za.detach())))
            zb = self._straight_through(zb, self.quantizer.decode(self.quantizer.encode(zb.detach())))
        za, zb = F.normalize(za, dim=-1), F.normalize(zb, dim=-1)
        logits = za @ zb.t() / self.config.contrastive_temperature  # (P, P)
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))

    # ------------------------------------------------------------------------------------------
    # Public inference API
    @torch.no_grad()
    def initialize_codebooks(
        self, embeddings: EmbeddingsInput, max_samples: int = 20_000, seed: int = DEFAULT_SEED
    ) -> None:
        """k-means initialisation of every level's codebook on the latents of (a sample of) `embeddings`.

        Only the sampled rows are read, so `embeddings` may be a memory-mapped matrix larger than memory. The rows
        go to the model's device and k-means runs there, beside the codebooks (a CUDA model clusters on its GPU).
        """
        source = embedding_source(embeddings, self.config.modality_dims)
        n = num_embedding_rows(source)
        generator = torch.Generator().manual_seed(seed)
        if n > max_samples:
            pick = torch.randperm(n, generator=generator)[:max_samples].numpy()
            source = embedding_rows(source, pick)
        x, _ = self.prepare_inputs(concat_modalities(source, self.config.modality_dims))
        was_training = self.training
        self.eval()
        z = self.encoder(x)
        self.train(was_training)
        self.quantizer.initialize(z, generator=generator)  # on the codebooks' device, not copied to the CPU

    def _encode_stream(
        self, embeddings: EmbeddingsInput, batch_size: int, return_distances: bool, progress: bool
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """`(start, codes, distances)` per batch of rows; only one batch of embeddings is in memory at a time."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
        source = embedding_source(embeddings, self.config.modality_dims)
        n = num_embedding_rows(source)
        was_training = self.training
        self.eval()
        try:
            with tqdm(total=n, unit="item", desc="RQ-VAE encode", disable=not progress) as bar:
                for start in range(0, n, batch_size):
                    raw = concat_modalities(
                        embedding_rows(source, slice(start, start + batch_size)), self.config.modality_dims
                    )
                    x, _ = self.prepare_inputs(raw)  # (b, D)
                    out = self.quantizer.encode(self.encoder(x), return_distances=return_distances)
                    codes, dists = out if return_distances else (out, None)
                    yield start, codes, dists
                    bar.update(raw.shape[0])
        finally:
            self.train(was_training)

    @torch.inference_mode()
    def encode(
        self, embeddings: EmbeddingsInput, batch_size: int = 16384, return_distances: bool = False
    ) -> torch.LongTensor | tuple[torch.LongTensor, torch.Tensor]:
        """Map item embeddings to codes.

        Args:
            embeddings: `(n, input_dim)` matrix or dict of modalities (see the missing-modality rule); numpy
                memmaps are read batch by batch.
            batch_size: Items per batch.
            return_distances: Also return the squared distances of every item to every code of the last level.

        Returns:
            Codes `(n, levels)` int64, and with `return_distances` the distances `(n, codebook_sizes[-1])`.
        """
        codes, dists = [], []
        for _, c, d in self._encode_stream(embeddings, batch_size, return_distances, progress=False):
            codes.append(c)
            if return_distances:
                dists.append(d)
        num_levels = self.config.num_levels
        codes_t = torch.cat(codes) if codes else torch.empty(0, num_levels, dtype=torch.long)
        if not return_distances:
            return codes_t.cpu()
        dists_t = torch.cat(dists) if dists else torch.empty(0, self.config.codebook_sizes[-1])
        return codes_t.cpu(), dists_t.cpu()

    @torch.inference_mode()
    def encode_batches(
        self,
        embeddings: EmbeddingsInput,
        batch_size: int = 16384,
        progress: bool = True,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Codes of a catalogue too large for memory, in streaming batches with a progress bar.

        Memory stays at one batch of embeddings plus the codes: `embeddings` may be a `np.memmap` (e.g. float16
        on disk, as written by `np.lib.format.open_memmap`), a safetensors-loaded array or a dict of them.

        Args:
            embeddings: `(n, input_dim)` matrix or dict of modalities, read `batch_size` rows at a time.
            batch_size: Items per batch.
            progress: Show a `tqdm` bar.
            out: Optional `(n, levels)` integer array (e.g. a memmap) to write the codes into.

        Returns:
            `(n, levels)` codes: `out` when given, else a new array of the smallest unsigned dtype that holds
            every codebook.
        """
        n = num_embedding_rows(embeddings)
        shape = (n, self.config.num_levels)
        if out is None:
            top = max(self.config.codebook_sizes) - 1
            dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64
            out = np.empty(shape, dtype=dtype)
        elif tuple(out.shape) != shape or not np.issubdtype(out.dtype, np.integer):
            raise ValueError(
                f"`out` must be an integer array of shape {shape}; got {out.dtype} {tuple(out.shape)}."
            )
        for start, codes, _ in self._encode_stream(embeddings, batch_size, False, progress):
            out[start : start + len(codes)] = codes.cpu().numpy()
        return out

    @torch.no_grad()
    def decode(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Reconstruct the (normalised, concatenated) input from codes.

        Args:
            codes: `(n, l)` with `1 <= l <= levels`: all levels, or a prefix (a coarser reconstruction).

        Returns:
            Reconstruction `(n, input_dim)`.
        """
        codes_t = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
        codes_t = codes_t.long().to(self.device)
        return self.decoder(self.quantizer.decode(codes_t))

    @torch.inference_mode()
    def reconstruction_error_by_prefix(
        self, embeddings: EmbeddingsInput, batch_size: int = 16384
    ) -> list[float]:
        """Mean squared reconstruction error (present dims, summed per item) decoding from each prefix length.

        Returns:
            A list of `levels` floats: entry `k - 1` is the error when decoding from the first `k` levels.
        """
        source = embedding_source(embeddings, self.config.modality_dims)
        n_rows = num_embedding_rows(source)
        was_training = self.training
        self.eval()
        num_levels = self.config.num_levels
        totals = torch.zeros(num_levels, dtype=torch.float64)
        for start in range(0, n_rows, batch_size):
            raw = concat_modalities(
                embedding_rows(source, slice(start, start + batch_size)), self.config.modality_dims
            )
            x, mask = self.prepare_inputs(raw)
            codes = self.quantizer.encode(self.encoder(x))  # (b, L)
            for k in range(1, num_levels + 1):
                recon = self.decoder(self.quantizer.decode(codes[:, :k]))
                totals[k - 1] += float(((recon - x).pow(2) * mask).sum())
        self.train(was_training)
        n = max(n_rows, 1)
        return [float(t) / n for t in totals]


AutoConfig.register(RQVAEConfig.model_type, RQVAEConfig, exist_ok=True)
AutoModel.register(RQVAEConfig, RQVAEModel, exist_ok=True)
