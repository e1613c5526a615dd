"""Configuration of the RQ-VAE that turns item embeddings into Semantic IDs."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from transformers import PreTrainedConfig

__all__ = ["RQVAEConfig"]

_GRADIENT_ESTIMATORS = ("ste", "rotation")
_CONTRASTIVE_ON = ("latent", "quantized")
# Keys transformers itself writes into / passes through a config (beside the dataclass fields of the base).
_GENERIC_CONFIG_KEYS = {
    "model_type",
    "name_or_path",
    "torch_dtype",
    "num_labels",
    "output_attentions",
    "use_return_dict",
    "tie_word_embeddings",
    "attn_implementation",
    # set by `Trainer` / generation utilities on any model config
    "use_cache",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
}


class RQVAEConfig(PreTrainedConfig):
    r"""Configuration of [`RQVAEModel`]: MLP encoder -> residual quantization -> MLP decoder.

    Args:
        modality_dims (`dict[str, int]` or `int`, *optional*, defaults to `{"text": 384}`):
            Input dimension of each named modality, in the order in which the modalities are concatenated.
            An `int` means a single modality called `"text"`.
        modality_weights (`dict[str, float]`, *optional*):
            Relative weight of each modality in the concatenated input (default: all 1). A modality of
            weight `w` contributes `sqrt(w / sum of present weights)` times its unit-norm vector.
        hidden_sizes (`list[int]`, *optional*, defaults to `[512, 256, 128]`):
            Hidden layer sizes of the encoder MLP; the decoder mirrors them.
        latent_dim (`int`, *optional*, defaults to 32):
            Size of the latent vector that is quantized.
        codebook_sizes (`list[int]`, *optional*, defaults to `[256, 256, 256]`):
            Number of codes of each residual level (TIGER: `[256, 256, 256]`; PLUM-style multi-resolution:
            `[1024, 512, 256]`).
        commitment_weight (`float`, *optional*, defaults to 0.25):
            Weight of the commitment loss (VQ-VAE, arXiv 1711.00937).
        codebook_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the codebook loss.
        gradient_estimator (`str`, *optional*, defaults to `"ste"`):
            `"ste"` (straight-through) or `"rotation"` (rotation trick, arXiv 2410.06424).
        contrastive_weight (`float`, *optional*, defaults to 0.0):
            Weight of the in-batch InfoNCE loss between co-occurring items (PLUM, arXiv 2510.07784).
        contrastive_temperature (`float`, *optional*, defaults to 0.1):
            Temperature of that InfoNCE loss.
        contrastive_on (`str`, *optional*, defaults to `"latent"`):
            `"latent"`: the loss compares the encoder outputs before quantization; `"quantized"`: the
            straight-through quantized latents.
        progressive_masking_prob (`float`, *optional*, defaults to 0.0):
            Probability, per item and training step, that the decoder reconstructs from a random-length prefix
            `1..L-1` of the quantized levels instead of all `L` (PLUM's progressive masking).
        kmeans_init (`bool`, *optional*, defaults to `True`):
            Initialise each level's codebook by k-means on the residuals of the first training batch (or on the
            sample given to `RQVAEModel.initialize_codebooks`).
        kmeans_iters (`int`, *optional*, defaults to 20):
            Lloyd iterations of that k-means.
        autoencoder_warmup_steps (`int`, *optional*, defaults to 0):
            Train the encoder and decoder as a plain autoencoder (no quantization) for this many steps before the
            codebooks are initialised. k-means on the latents of a trained encoder beats k-means on those of a
            random one (measured in `tests/test_modeling_rqvae.py`); `train_rqvae` sets it from
            `warmup_ratio` when it is 0.
        dead_code_threshold (`int`, *optional*, defaults to 1):
            A code chosen fewer than this many times during the last `reseed_interval` training steps is
            re-seeded from a residual of the current batch. 0 disables re-seeding.
        reseed_interval (`int`, *optional*, defaults to 50):
            Number of training steps between two dead-code checks.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability in the encoder and decoder MLPs.
        normalize_inputs (`bool`, *optional*, defaults to `True`):
            L2-normalise each modality before weighting and concatenation.
        modality_order (`list[str]`, *optional*):
            Concatenation order of the modalities; filled in automatically from `modality_dims` and saved, since
            `config.json` stores dict keys sorted.

    Example:

    ```python
    >>> from hf_semtok import RQVAEConfig, RQVAEModel
    >>> config = RQVAEConfig(modality_dims={"text": 384, "image": 512}, codebook_sizes=[1024, 512, 256])
    >>> model = RQVAEModel(config)
    ```
    """

    model_type = "semtok_rqvae"

    def __init__(
        self,
        modality_dims: dict[str, int] | int | None = None,
        modality_weights: dict[str, float] | None = None,
        hidden_sizes: list[int] | tuple[int, ...] = (512, 256, 128),
        latent_dim: int = 32,
        codebook_sizes: list[int] | tuple[int, ...] = (256, 256, 256),
        commitment_weight: float = 0.25,
        codebook_loss_weight: float = 1.0,
        gradient_estimator: str = "ste",
        contrastive_weight: float = 0.0,
        contrastive_temperature: float = 0.1,
        contrastive_on: str = "latent",
        progressive_masking_prob: float = 0.0,
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        autoencoder_warmup_steps: int = 0,
        dead_code_threshold: int = 1,
        reseed_interval: int = 50,
        dropout: float = 0.0,
        normalize_inputs: bool = True,
        modality_order: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        _reject_unknown_keys(kwargs)
        if modality_dims is None:
            modality_dims = {"text": 384}
        if isinstance(modality_dims, bool) or not isinstance(modality_dims, (int, dict)):
            raise ValueError(
                f"`modality_dims` must be a dict name -> dimension or an int, got {modality_dims!r}; "
                'pass e.g. `modality_dims={"text": 384}` or `modality_dims=384`.'
            )
        if isinstance(modality_dims, int):
            modality_dims = {"text": modality_dims}
        modality_dims = {str(k): int(v) for k, v in modality_dims.items()}
        if modality_order is not None:
            # config.json is written with sorted keys: `modality_order` restores the concatenation order.
            if sorted(modality_order) != sorted(modality_dims):
                raise ValueError(
                    f"`modality_order` {modality_order} must list exactly the modalities of `modality_dims` "
                    f"{sorted(modality_dims)}; leave it out to use the order of `modality_dims`."
                )
            modality_dims = {name: modality_dims[name] for name in modality_order}
        self.modality_dims = modality_dims
        self.modality_order = list(modality_dims)
        self.modality_weights = (
            None if modality_weights is None else {str(k): float(v) for k, v in modality_weights.items()}
        )
        self.hidden_sizes = [int(h) for h in hidden_sizes]
        self.latent_dim = int(latent_dim)
        self.codebook_sizes = [int(k) for k in codebook_sizes]
        self.commitment_weight = float(commitment_weight)
        self.codebook_loss_weight = float(codebook_loss_weight)
        self.gradient_estimator = gradient_estimator
        self.contrastive_weight = float(contrastive_weight)
        self.contrastive_temperature = float(contrastive_temperature)
        self.contrastive_on = contrastive_on
        self.progressive_masking_prob = float(progressive_masking_prob)
        self.kmeans_init = bool(kmeans_init)
        self.kmeans_iters = int(kmeans_iters)
        self.autoencoder_warmup_steps = int(autoencoder_warmup_steps)
        self.dead_code_threshold = int(dead_code_threshold)
        self.reseed_interval = int(reseed_interval)
        self.dropout = float(dropout)
        self.normalize_inputs = bool(normalize_inputs)
        self._validate()
        super().__init__(**kwargs)

    # ------------------------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """Total dimension of the concatenated modalities."""
        return sum(self.modality_dims.values())

    @property
    def num_levels(self) -> int:
        """Number of residual quantization levels."""
        return len(self.codebook_sizes)

    def _validate(self) -> None:
        if not self.modality_dims:
            raise ValueError('`modality_dims` is empty; give at least one modality, e.g. {"text": 384}.')
        for name, dim in self.modality_dims.items():
            if dim <= 0:
                raise ValueError(f"`modality_dims[{name!r}]` is {dim}; every modality dimension must be > 0.")
        if self.modality_weights is not None:
            unknown = set(self.modality_weights) - set(self.modality_dims)
            if unknown:
                raise ValueError(
                    f"`modality_weights` names modalities {sorted(unknown)} that are not in `modality_dims` "
                    f"{sorted(self.modality_dims)}; use the same names."
                )
            for name, w in self.modality_weights.items():
                if not w > 0:
                    raise ValueError(f"`modality_weights[{name!r}]` is {w}; weights must be > 0.")
        if any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(f"`hidden_sizes` {self.hidden_sizes} must contain only positive sizes.")
        if self.latent_dim <= 0:
            raise ValueError(f"`latent_dim` is {self.latent_dim}; it must be > 0 (e.g. 32).")
        if not self.codebook_sizes:
            raise ValueError("`codebook_sizes` is empty; give one size per level, e.g. [256, 256, 256].")
        if any(k < 2 for k in self.codebook_sizes):
            raise ValueError(f"`codebook_sizes` {self.codebook_sizes}: every level needs at least 2 codes.")
        if self.commitment_weight < 0 or self.codebook_loss_weight < 0:
            raise ValueError("`commitment_weight` and `codebook_loss_weight` must be >= 0.")
        if self.gradient_estimator not in _GRADIENT_ESTIMATORS:
            raise ValueError(
                f"`gradient_estimator` is {self.gradient_estimator!r}; use one of {_GRADIENT_ESTIMATORS}."
            )
        if self.contrastive_weight < 0:
            raise ValueError(f"`contrastive_weight` is {self.contrastive_weight}; it must be >= 0.")
        if not self.contrastive_temperature > 0:
            raise ValueError(
                f"`contrastive_temperature` is {self.contrastive_temperature}; it must be > 0 (e.g. 0.1)."
            )
        if self.contrastive_on not in _CONTRASTIVE_ON:
            raise ValueError(f"`contrastive_on` is {self.contrastive_on!r}; use one of {_CONTRASTIVE_ON}.")
        if not 0.0 <= self.progressive_masking_prob <= 1.0:
            raise ValueError(
                f"`progressive_masking_prob` is {self.progressive_masking_prob}; it must lie in [0, 1]."
            )
        if self.progressive_masking_prob > 0 and self.num_levels < 2:
            raise ValueError(
                "`progressive_masking_prob` > 0 needs at least 2 levels in `codebook_sizes`; "
                "add a level or set it to 0."
            )
        if self.kmeans_iters < 1:
            raise ValueError(f"`kmeans_iters` is {self.kmeans_iters}; it must be >= 1.")
        if self.autoencoder_warmup_steps < 0:
            raise ValueError(
                f"`autoencoder_warmup_steps` is {self.autoencoder_warmup_steps}; it must be >= 0."
            )
        if self.dead_code_threshold < 0:
            raise ValueError(f"`dead_code_threshold` is {self.dead_code_threshold}; use 0 to disable.")
        if self.reseed_interval < 1:
            raise ValueError(f"`reseed_interval` is {self.reseed_interval}; it must be >= 1.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` is {self.dropout}; it must lie in [0, 1).")


def _reject_unknown_keys(kwargs: dict[str, Any]) -> None:
    """Raise on keys that are neither RQ-VAE fields nor generic transformers config keys."""
    known_generic = {f.name for f in dataclasses.fields(PreTrainedConfig)} | _GENERIC_CONFIG_KEYS
    unknown = [k for k in kwargs if k not in known_generic and not k.startswith("_")]
    if not unknown:
        return
    import inspect

    fields = [p for p in inspect.signature(RQVAEConfig.__init__).parameters if p not in ("self", "kwargs")]
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, fields, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(
        f"Unknown RQVAEConfig key(s): {', '.join(hints)}. Valid fields are: {', '.join(fields)}."
    )
