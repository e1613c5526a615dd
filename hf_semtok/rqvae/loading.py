"""Strict loading of saved RQ-VAE files: damaged, truncated or mismatched files fail at load, naming the file."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.tokenizer.safe_paths import read_regular

logger = logging.getLogger(__name__)


def _damaged_file_hint(source: str, err: BaseException) -> str:
    """Which file of a saved model directory an exception from `from_pretrained` most likely concerns."""
    text = f"{type(err).__name__} {err}".lower()
    if "json" in text or "config" in text:
        return f"{os.path.join(source, 'config.json')} is unreadable"
    if "mismatch" in text or "shape" in text:
        return (
            f"{os.path.join(source, 'model.safetensors')} has tensors whose shapes disagree with config.json"
        )
    return f"{os.path.join(source, 'model.safetensors')} is unreadable"


#: Keys of a saved config.json that only describe how it was written.
_CONFIG_METADATA_KEYS = ("architectures", "transformers_version", "dtype", "torch_dtype")


#: The largest RQ-VAE `config.json` a load reads.
MAX_CONFIG_BYTES = 16 << 20


def _config_from_file(config_file: str) -> RQVAEConfig:
    """Read and validate a saved `RQVAEConfig`; every error is a `ValueError` naming `config_file`."""
    try:  # a config is a few hundred bytes: a planted huge file or FIFO is refused, never read whole
        data = json.loads(read_regular(config_file, MAX_CONFIG_BYTES, "RQ-VAE config").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{config_file} is not valid JSON ({err}); the file is damaged, save it again."
        ) from err
    except RecursionError:
        raise ValueError(
            f"{config_file} is JSON nested too deeply to be an RQVAEConfig; the file is damaged, save it again."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{config_file} must hold a JSON object (an RQVAEConfig), got {type(data).__name__}."
        )
    model_type = data.get("model_type", RQVAEConfig.model_type)
    if model_type != RQVAEConfig.model_type:
        raise ValueError(
            f"{config_file}: field 'model_type' is {model_type!r}, expected {RQVAEConfig.model_type!r}; this is not "
            "an RQ-VAE config."
        )
    dtype = data.get("dtype", data.get("torch_dtype"))
    if dtype is not None and not (
        isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype)
    ):
        raise ValueError(
            f"{config_file}: field 'dtype' is {dtype!r}; expected a torch dtype name such as 'float32'."
        )
    for key in ("modality_dims", "hidden_sizes", "codebook_sizes", "latent_dim"):
        if key in data and data[key] is None:
            raise ValueError(
                f"{config_file}: field {key!r} is null; the file is damaged, save the model again."
            )
    order = data.get("modality_order")
    if order is not None and (not isinstance(order, list) or not all(isinstance(m, str) for m in order)):
        raise ValueError(
            f"{config_file}: field 'modality_order' must be a list of modality names, got {order!r}."
        )
    fields = {k: v for k, v in data.items() if k not in _CONFIG_METADATA_KEYS}
    try:
        return RQVAEConfig(**fields)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{config_file}: {err}") from err


def _check_weight_dtypes(weights_file: str) -> None:
    """Read the safetensors header (not the data) and reject unreadable files and non-float weight tensors."""
    try:
        with safe_open(weights_file, framework="pt") as f:
            dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}
    except Exception as err:  # safetensors raises its own error type for damaged headers
        raise ValueError(
            f"{weights_file} is not a readable safetensors file ({type(err).__name__}: {str(err)[:200]}); the file "
            "is damaged, save the model again."
        ) from err
    for key, dtype in dtypes.items():
        if key in ("num_training_steps", "quantizer.initialized"):
            continue
        if not dtype.startswith(("F", "BF")):
            raise ValueError(
                f"{weights_file}: tensor {key!r} has dtype {dtype}, expected a float type; the file is damaged or "
                "from another model. Save the model again."
            )


def _check_loading_info(info: Mapping[str, Any], weights_file: str, config_file: str | None = None) -> None:
    missing = list(info.get("missing_keys") or [])
    unexpected = list(info.get("unexpected_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing:
        raise ValueError(
            f"{weights_file} lacks {len(missing)} tensor(s) the model needs, e.g. {missing[:3]}; transformers "
            "would fill them with random values. The file is damaged or from another model; save it again."
        )
    if unexpected:
        raise ValueError(
            f"{weights_file} holds {len(unexpected)} tensor(s) the model does not have, e.g. {unexpected[:3]}; "
            "the file is from another model or version. Save the model again."
        )
    if mismatched:
        key, got, want = mismatched[0][:3] if len(mismatched[0]) >= 3 else (mismatched[0], "?", "?")
        raise ValueError(
            f"{weights_file}: tensor {key!r} has shape {got} but {config_file or 'config.json'} implies {want}; "
            "the weights and the config do not belong together."
        )


def validate_loaded(
    model: nn.Module, source: str | os.PathLike, loading_info: Mapping[str, Any] | None = None
) -> nn.Module:
    """Reject a loaded RQ-VAE whose weights are not the saved ones.

    Checks: no missing, unexpected or misshapen tensors in `loading_info` (as returned by
    `from_pretrained(..., output_loading_info=True)`), every parameter and buffer finite, and encoder, decoder and
    codebook shapes that agree with `model.config`.

    Args:
        model: The loaded model.
        source: The file (or directory) it came from, named in the errors.
        loading_info: Optional `output_loading_info` of `from_pretrained`.

    Returns:
        `model`, unchanged.

    Raises:
        ValueError: Naming `source` and what is wrong.
    """
    source = os.fspath(source)
    if loading_info is not None:
        _check_loading_info(loading_info, source)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{source}: tensor {name!r} holds NaN or infinite values; the file is damaged. Save the model again "
                "(or retrain it if training diverged)."
            )
    cfg = model.config
    first = model.encoder[0]
    last = [m for m in model.decoder if isinstance(m, nn.Linear)][-1]
    if first.in_features != cfg.input_dim or last.out_features != cfg.input_dim:
        raise ValueError(
            f"{source}: the encoder/decoder take {first.in_features}/{last.out_features} inputs but the config's "
            f"modality_dims sum to {cfg.input_dim}; the weights and config do not belong together."
        )
    sizes = [tuple(cb.shape) for cb in model.quantizer.codebooks]
    want = [(k, cfg.latent_dim) for k in cfg.codebook_sizes]
    if sizes != want:
        raise ValueError(
            f"{source}: codebooks have shapes {sizes} but the config (codebook_sizes {cfg.codebook_sizes}, "
            f"latent_dim {cfg.latent_dim}) implies {want}; the weights and config do not belong together."
        )
    if cfg.kmeans_init and not bool(model.quantizer.initialized):
        logger.warning(
            "%s: the RQ-VAE's codebooks were never initialised (the model was saved before training); its SIDs "
            "are meaningless until it is trained.",
            source,
        )
    return model


def load_from_files(
    model_class: type[nn.Module], config_file: str | os.PathLike, weights_file: str | os.PathLike
) -> nn.Module:
    """`RQVAEModel.from_files`: build `model_class` from a config JSON and a safetensors file, checked strictly.

    Returns:
        The model, in eval mode.
    """
    config_file, weights_file = os.fspath(config_file), os.fspath(weights_file)
    for path in (config_file, weights_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"RQ-VAE file {path} is missing; save the model (or tokenizer) again.")
    config = _config_from_file(config_file)
    try:
        state = load_file(weights_file)
    except Exception as err:  # safetensors raises its own error type for truncated or corrupted files
        raise ValueError(
            f"{weights_file} is not a readable safetensors file ({type(err).__name__}: {str(err)[:200]}); "
            "the file is damaged, save the model again."
        ) from err
    model = model_class(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    info = {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": []}
    for key in sorted(set(state) & set(expected)):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            info["mismatched_keys"].append((key, tuple(state[key].shape), tuple(expected[key].shape)))
        elif state[key].dtype != expected[key].dtype and (
            expected[key].is_floating_point() != state[key].is_floating_point()
        ):
            raise ValueError(
                f"{weights_file}: tensor {key!r} has dtype {state[key].dtype}, expected {expected[key].dtype}; "
                "the file is damaged or from another model."
            )
    _check_loading_info(info, weights_file, config_file)
    model.load_state_dict(state, strict=True)
    validate_loaded(model, weights_file)
    return model.eval()
