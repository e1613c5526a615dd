"""Configuration of the RQ-VAE that turns item embeddings into Semantic IDs."""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from typing import Any

from transformers import PreTrainedConfig

from hf_semtok.constants import MAX_CODEBOOK_SIZE

__all__ = ["RQVAEConfig"]

_GRADIENT_ESTIMATORS = ("ste", "rotation")
#: Largest input, hidden or latent dimension accepted (a layer of 2**20 x 2**20 floats would need 4 TB).
MAX_LAYER_SIZE = 2**20
#: Most residual levels (and encoder hidden layers) accepted.
MAX_LEVELS = 64
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
            random one (measured in `tests/rqvae/test_modeling_rqvae.py`); `train_rqvae` sets it from
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
        self.modality_dims = _as_modality_dims(modality_dims, modality_order)
        self.modality_order = list(self.modality_dims)
        self.modality_weights = _as_modality_weights(modality_weights)
        self.hidden_sizes = _as_int_list("hidden_sizes", hidden_sizes, 1, MAX_LAYER_SIZE, allow_empty=True)
        self.latent_dim = _as_int("latent_dim", latent_dim, None, MAX_LAYER_SIZE)
        self.codebook_sizes = _as_int_list(
            "codebook_sizes", codebook_sizes, None, MAX_CODEBOOK_SIZE, allow_empty=True
        )
        self.commitment_weight = _as_float("commitment_weight", commitment_weight)
        self.codebook_loss_weight = _as_float("codebook_loss_weight", codebook_loss_weight)
        self.gradient_estimator = gradient_estimator
        self.contrastive_weight = _as_float("contrastive_weight", contrastive_weight)
        self.contrastive_temperature = _as_float("contrastive_temperature", contrastive_temperature)
        self.contrastive_on = contrastive_on
        self.progressive_masking_prob = _as_float("progressive_masking_prob", progressive_masking_prob)
        self.kmeans_init = _as_bool("kmeans_init", kmeans_init)
        self.kmeans_iters = _as_int("kmeans_iters", kmeans_iters, 1, 10_000)
        self.autoencoder_warmup_steps = _as_int("autoencoder_warmup_steps", autoencoder_warmup_steps, 0)
        self.dead_code_threshold = _as_int("dead_code_threshold", dead_code_threshold, 0)
        self.reseed_interval = _as_int("reseed_interval", reseed_interval, 1)
        self.dropout = _as_float("dropout", dropout)
        self.normalize_inputs = _as_bool("normalize_inputs", normalize_inputs)
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


def _as_modality_dims(modality_dims: Any, modality_order: Any) -> dict[str, int]:
    """`modality_dims` as an ordered dict name -> dimension (an int is one `"text"` modality), in
    `modality_order` when it is given (config.json is written with sorted keys)."""
    if modality_dims is None:
        modality_dims = {"text": 384}
    if isinstance(modality_dims, numbers.Integral) and not isinstance(modality_dims, bool):
        modality_dims = {"text": modality_dims}
    if not isinstance(modality_dims, Mapping):
        raise ValueError(
            f"`modality_dims` must be a dict name -> dimension or an int, got {modality_dims!r}; "
            'pass e.g. `modality_dims={"text": 384}` or `modality_dims=384`.'
        )
    modality_dims = {
        str(k): _as_int(f"modality_dims[{k!r}]", v, None, MAX_LAYER_SIZE) for k, v in modality_dims.items()
    }
    if modality_order is not None:
        # config.json is written with sorted keys: `modality_order` restores the concatenation order.
        if (
            not isinstance(modality_order, (list, tuple))
            or not all(isinstance(m, str) for m in modality_order)
            or sorted(modality_order) != sorted(modality_dims)
        ):
            raise ValueError(
                f"`modality_order` {modality_order} must list exactly the modalities of `modality_dims` "
                f"{sorted(modality_dims)}; leave it out to use the order of `modality_dims`."
            )
        modality_dims = {name: modality_dims[name] for name in modality_order}
    return modality_dims


def _as_modality_weights(modality_weights: Any) -> dict[str, float] | None:
    """`modality_weights` as a dict name -> float, or `None` (also for `{}`) when every modality weighs 1."""
    if modality_weights is not None and not isinstance(modality_weights, Mapping):
        raise ValueError(
            f"`modality_weights` must be a dict name -> weight, got {modality_weights!r}; e.g. "
            '{"text": 1.0, "image": 0.5}.'
        )
    if not modality_weights:
        return None
    return {str(k): _as_float(f"modality_weights[{k!r}]", v) for k, v in modality_weights.items()}


def _as_int(name: str, value: Any, minimum: int | None, maximum: int | None = None) -> int:
    """`value` as an int in `[minimum, maximum]`; floats, strings and bools are rejected, not truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` is {value}; it must be at most {maximum}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` is {value}; it must be >= {minimum}.")
    return int(value)


def _as_int_list(
    name: str, value: Any, minimum: int | None, maximum: int, allow_empty: bool = False
) -> list[int]:
    """A list of ints in `[minimum, maximum]`, at most `MAX_LEVELS` long."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise ValueError(f"`{name}` must be a list of ints, got {type(value).__name__} {value!r}.")
    items = list(value)
    if not items and not allow_empty:
        raise ValueError(f"`{name}` is empty; give one size per level, e.g. [256, 256, 256].")
    if len(items) > MAX_LEVELS:
        raise ValueError(f"`{name}` has {len(items)} entries; at most {MAX_LEVELS} are supported.")
    return [_as_int(f"{name}[{i}]", v, minimum, maximum) for i, v in enumerate(items)]


def _as_float(name: str, value: Any) -> float:
    """`value` as a finite float; strings, bools, NaN and infinities are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a number, got {type(value).__name__} {value!r}.")
    if not math.isfinite(float(value)):
        raise ValueError(f"`{name}` is {value}; it must be a finite number.")
    return float(value)


def _as_bool(name: str, value: Any) -> bool:
    """`value` as a bool; strings such as "false" are rejected instead of being read as True."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise ValueError(f"`{name}` must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


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
