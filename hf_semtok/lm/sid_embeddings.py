"""Fitting a causal LM to a SemanticIDTokenizer: embedding rows for the SID tokens and LoRA settings.

`extend_model` grows the LM's embeddings to `len(tokenizer)`, initialises the rows of the SID tokens and
markers by a documented rule, keeps tied weights tied, and returns the ids to train through
`peft.LoraConfig(trainable_token_indices=...)` (see `sid_lora_config`), or alone, with no LoRA, through
`peft.TrainableTokensConfig` (see `sid_trainable_tokens_config`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import torch

logger = logging.getLogger(__name__)

__all__ = ["extend_model", "sid_lora_config", "sid_trainable_tokens_config", "input_embedding_module_name"]


def _sid_ids(tokenizer: Any) -> list[int]:
    ids = getattr(tokenizer, "all_sid_token_ids", None)
    if ids is None:
        raise ValueError(
            f"extend_model needs a SemanticIDTokenizer (got {type(tokenizer).__name__}); build one with "
            "SemanticIDTokenizer.from_base(base_tokenizer, sid_table=...)."
        )
    return list(ids)


def _gaussian_rows(
    mean: torch.Tensor, std: torch.Tensor, n: int, noise_scale: float, generator: torch.Generator
) -> torch.Tensor:
    """`n` rows: `mean` plus Gaussian noise of `noise_scale * std` per dimension. Returns `(n, hidden)`."""
    noise = torch.randn(n, mean.shape[0], generator=generator, dtype=mean.dtype)  # (n, hidden)
    return mean + noise_scale * std * noise


def _codebook_rows(
    codebooks: list[torch.Tensor],
    mean: torch.Tensor,
    std: torch.Tensor,
    scale: float,
    generator: torch.Generator,
) -> list[torch.Tensor]:
    """Project every level's codebook into the embedding space, matched to the base rows' statistics.

    A random Gaussian projection `(latent_dim, hidden)` keeps the codebook geometry (Johnson-Lindenstrauss:
    codes close in the RQ-VAE latent space get close embeddings); the affine part is fitted so the projected
    rows of all levels together have the per-dimension mean of the base rows and `scale` times their std.
    """
    latent_dim, hidden = codebooks[0].shape[1], mean.shape[0]
    projection = torch.randn(latent_dim, hidden, generator=generator, dtype=mean.dtype)  # (latent, hidden)
    projected = [cb.to(mean.dtype) @ projection for cb in codebooks]  # each (k_l, hidden)
    stacked = torch.cat(projected)  # (sum k_l, hidden)
    mu, sd = stacked.mean(0), stacked.std(0).clamp_min(1e-8)
    return [(p - mu) / sd * (scale * std) + mean for p in projected]


def _init_rows(
    weight: torch.Tensor,
    tokenizer: Any,
    num_base_rows: int,
    init: str,
    codebooks: list[torch.Tensor] | None,
    noise_scale: float,
    codebook_scale: float,
    generator: torch.Generator,
) -> None:
    """Write the SID and marker rows of one embedding matrix (in place, no grad)."""
    base_rows = weight[:num_base_rows].detach()  # (n_base, hidden), on the model's device
    mean = base_rows.mean(0, dtype=torch.float32).cpu()  # (hidden,)
    std = base_rows.float().std(0).cpu()  # (hidden,)
    per_level = tokenizer.sid_token_ids
    markers = [tokenizer.sid_start_token_id, tokenizer.sid_end_token_id]
    fill: dict[int, torch.Tensor] = {}
    levels_from_codebook = 0
    if init == "codebook":
        rows = _codebook_rows(codebooks, mean, std, codebook_scale, generator)
        for level, level_rows in enumerate(rows):
            for code, token_id in enumerate(per_level[level]):
                fill[token_id] = level_rows[code]
        levels_from_codebook = len(rows)
    rest = markers + [t for ids in per_level[levels_from_codebook:] for t in ids]
    for token_id, row in zip(rest, _gaussian_rows(mean, std, len(rest), noise_scale, generator)):
        fill[token_id] = row
    ids = torch.tensor(sorted(fill), dtype=torch.long)
    values = torch.stack([fill[i] for i in ids.tolist()])  # (n_sid, hidden)
    weight.data[ids.to(weight.device)] = values.to(device=weight.device, dtype=weight.dtype)


def extend_model(
    model: Any,
    tokenizer: Any,
    init: Literal["mean", "codebook"] = "mean",
    rqvae: Any = None,
    noise_scale: float = 0.1,
    codebook_scale: float = 1.0,
    pad_to_multiple_of: int | None = None,
    seed: int = 0,
) -> list[int]:
    """Resize a causal LM's embeddings for a SemanticIDTokenizer and initialise the SID rows.

    Rule (one row per SID token and marker, all ids past the base vocabulary):
    - `init="mean"`: each row is the mean of the base token rows plus Gaussian noise whose per-dimension std is
      `noise_scale` times the base rows' std (distinct rows, on the scale of the existing ones).
    - `init="codebook"`: the row of `<|sid_{l}_{c}|>` is the RQ-VAE codebook vector `e_{l,c}` through a seeded
      random projection to the hidden size, standardised over all levels and mapped to the base rows'
      per-dimension mean and `codebook_scale` times their std, so codes that are close in the RQ-VAE are close in
      the LM. Levels without a codebook (the dedup level) and the markers use the `"mean"` rule.
    Base rows are never changed. With tied embeddings the LM head shares the new rows (ties are kept and checked);
    an untied LM head gets its own rows by the same rule on its own statistics. Calling again re-initialises the
    SID rows.

    Args:
        model: A `PreTrainedModel` with input embeddings (e.g. `Qwen2ForCausalLM`).
        tokenizer: The `SemanticIDTokenizer`.
        init: `"mean"` or `"codebook"`.
        rqvae: RQ-VAE for `"codebook"` (default: the one the tokenizer carries).
        noise_scale: Noise of the `"mean"` rule, relative to the base rows' std.
        codebook_scale: Spread of the `"codebook"` rows, relative to the base rows' std.
        pad_to_multiple_of: Passed to `resize_token_embeddings`.
        seed: Seed of the noise and of the projection.

    Returns:
        The sorted SID token ids, markers included: pass them to
        `peft.LoraConfig(trainable_token_indices={"embed_tokens": ids})`.
    """
    _check_extend_arguments(init, noise_scale, codebook_scale, pad_to_multiple_of)
    if not all(
        callable(getattr(model, name, None))
        for name in ("get_input_embeddings", "get_output_embeddings", "resize_token_embeddings")
    ):
        raise TypeError(
            f"extend_model: model must be a transformers causal LM (e.g. AutoModelForCausalLM.from_pretrained(...)); "
            f"got {type(model).__name__}."
        )
    sid_ids = _sid_ids(tokenizer)
    codebooks = _rqvae_codebooks(tokenizer, rqvae) if init == "codebook" else None
    embeddings = model.get_input_embeddings()
    output = model.get_output_embeddings()
    was_tied = output is not None and output.weight is embeddings.weight
    num_base_rows = min(sid_ids)
    if embeddings.weight.shape[0] < num_base_rows:
        raise ValueError(
            f"The model has {embeddings.weight.shape[0]} embedding rows but the tokenizer's base vocabulary has "
            f"{num_base_rows} tokens; pass the LM that goes with the tokenizer's base."
        )
    if embeddings.weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(
            len(tokenizer), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False
        )
    embeddings, output = model.get_input_embeddings(), model.get_output_embeddings()
    if was_tied and output.weight is not embeddings.weight:
        model.tie_weights()
        if model.get_output_embeddings().weight is not embeddings.weight:
            raise RuntimeError(
                "Resizing untied the LM head from the input embeddings; tie them before training."
            )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        untied_head = output is not None and output.weight is not embeddings.weight
        for weight in [embeddings.weight, output.weight] if untied_head else [embeddings.weight]:
            _init_rows(
                weight, tokenizer, num_base_rows, init, codebooks, noise_scale, codebook_scale, generator
            )
        if untied_head and getattr(output, "bias", None) is not None:
            output.bias.data[torch.tensor(sid_ids, device=output.bias.device)] = output.bias.data[
                :num_base_rows
            ].mean()
    logger.info(
        "extend_model: %d embedding rows, %d SID rows initialised with %r (tied: %s).",
        model.get_input_embeddings().weight.shape[0],
        len(sid_ids),
        init,
        was_tied,
    )
    return sid_ids


def input_embedding_module_name(model: Any) -> str:
    """Short name of the model's input-embedding module (`"embed_tokens"` for Llama/Qwen, `"wte"` for GPT-2)."""
    target = model.get_input_embeddings()
    for name, module in model.named_modules():
        if module is target:
            return name.rsplit(".", 1)[-1]
    raise ValueError("The model's input embeddings are not among its modules.")


def _checked_sid_ids(model: Any, tokenizer: Any) -> list[int]:
    sid_ids = _sid_ids(tokenizer)
    rows = model.get_input_embeddings().weight.shape[0]
    if max(sid_ids) >= rows:
        raise ValueError(
            f"SID token id {max(sid_ids)} has no embedding row ({rows} rows); call extend_model(model, tokenizer)."
        )
    return sid_ids


def sid_trainable_tokens_config(model: Any, tokenizer: Any):
    """A `peft.TrainableTokensConfig` that trains only the SID rows of the embeddings (no LoRA).

    `get_peft_model(model, sid_trainable_tokens_config(model, tokenizer))` freezes everything else and trains a
    delta for the SID rows only. With tied embeddings the LM head reads the same rows (it is wrapped too), and
    `merge_and_unload()` writes the rows back into the one shared matrix, so the weights stay tied; an untied LM
    head stays frozen. The saved adapter holds only those rows.

    Args:
        model: The extended LM (after `extend_model`).
        tokenizer: The `SemanticIDTokenizer`.

    Returns:
        `peft.TrainableTokensConfig(target_modules=[<embedding name>], token_indices=sid ids)`.
    """
    from peft import TrainableTokensConfig

    sid_ids = _checked_sid_ids(model, tokenizer)
    return TrainableTokensConfig(target_modules=[input_embedding_module_name(model)], token_indices=sid_ids)


def sid_lora_config(
    model: Any,
    tokenizer: Any,
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    **kwargs: Any,
):
    """A `peft.LoraConfig` that trains LoRA adapters plus only the SID rows of the embeddings.

    With tied embeddings peft's trainable tokens also train (and stay tied to) the LM head rows; the saved adapter
    holds only those rows (`modules_to_save` would copy whole matrices and untie them on merge).

    Args:
        model: The extended LM (after `extend_model`).
        tokenizer: The `SemanticIDTokenizer`.
        r, lora_alpha, lora_dropout, target_modules: LoRA settings.
        **kwargs: Any other `LoraConfig` field.

    Returns:
        `peft.LoraConfig(task_type="CAUSAL_LM", trainable_token_indices={<embedding name>: sid ids}, ...)`.
    """
    from peft import LoraConfig

    sid_ids = _checked_sid_ids(model, tokenizer)
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        trainable_token_indices={input_embedding_module_name(model): sid_ids},
        **kwargs,
    )


def _check_extend_arguments(
    init: str, noise_scale: float, codebook_scale: float, pad_to_multiple_of: int | None
) -> None:
    """`extend_model`'s arguments, checked before the model is touched."""
    if init not in ("mean", "codebook"):
        raise ValueError(f"init must be 'mean' or 'codebook'; got {init!r}.")
    for name, value in (("noise_scale", noise_scale), ("codebook_scale", codebook_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"extend_model: `{name}` must be a number >= 0; got {type(value).__name__} {value!r}."
            )
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"extend_model: `{name}` must be a finite number >= 0 (it scales the std of the new rows); got "
                f"{value!r}."
            )
    if pad_to_multiple_of is not None and (
        isinstance(pad_to_multiple_of, bool)
        or not isinstance(pad_to_multiple_of, int)
        or pad_to_multiple_of < 1
    ):
        raise ValueError(
            f"extend_model: `pad_to_multiple_of` must be an int >= 1 or None; got {pad_to_multiple_of!r}."
        )


def _rqvae_codebooks(tokenizer: Any, rqvae: Any) -> list[torch.Tensor]:
    """The RQ-VAE's codebooks on the CPU (`rqvae`, or the one the tokenizer carries), checked against the tokenizer."""
    rqvae = rqvae if rqvae is not None else getattr(tokenizer, "rqvae", None)
    quantizer = getattr(rqvae, "quantizer", None)
    if quantizer is None:
        raise ValueError(
            "init='codebook' needs an RQ-VAE: pass rqvae=... or build the tokenizer with from_base(..., rqvae=)."
        )
    codebooks = [cb.detach().float().cpu() for cb in quantizer.codebooks]
    sizes = [cb.shape[0] for cb in codebooks]
    if sizes != tokenizer.codebook_sizes[: len(sizes)]:
        raise ValueError(
            f"The RQ-VAE's codebook sizes {sizes} do not match the tokenizer's {tokenizer.codebook_sizes}; "
            "use the RQ-VAE that made the tokenizer's SIDs."
        )
    return codebooks
