"""Item embeddings in: one matrix or named modalities, checked and concatenated in the config's order."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)


#: One `(n_items, dim)` matrix, or a dict of named modality matrices (numpy or torch).
EmbeddingsInput = Union[np.ndarray, torch.Tensor, Mapping[str, Union[np.ndarray, torch.Tensor]]]


def concat_modalities(embeddings: EmbeddingsInput, modality_dims: Mapping[str, int]) -> torch.Tensor:
    """Check shapes and concatenate the modalities in `modality_dims` order, keeping NaN rows as they are.

    Args:
        embeddings: One `(n, sum(dims))` matrix or a dict name -> `(n, dim)` matrix.
        modality_dims: Expected dimension of each modality (config order).

    Returns:
        A float32 tensor `(n, sum(dims))`.
    """
    if isinstance(embeddings, Mapping):
        missing = [m for m in modality_dims if m not in embeddings]
        extra = [m for m in embeddings if m not in modality_dims]
        if missing or extra:
            raise ValueError(
                f"Embeddings have modalities {sorted(embeddings)} but the config expects "
                f"{list(modality_dims)} (missing {missing}, unexpected {extra}); pass exactly the configured "
                "modalities (a modality absent for some items is a row of NaN, not an absent key)."
            )
        parts = [_as_float_tensor(embeddings[m], m) for m in modality_dims]
        rows = {p.shape[0] for p in parts}
        if len(rows) != 1:
            raise ValueError(f"Modality matrices have different numbers of rows {sorted(rows)}; align them.")
        for (name, dim), part in zip(modality_dims.items(), parts):
            if part.shape[1] != dim:
                raise ValueError(
                    f"Modality {name!r} has dimension {part.shape[1]} but the config says {dim}; "
                    "fix `modality_dims` or the embeddings."
                )
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    x = _as_float_tensor(embeddings, "embeddings")
    total = sum(modality_dims.values())
    if x.shape[1] != total:
        raise ValueError(
            f"Embeddings have dimension {x.shape[1]} but the config expects {total} "
            f"({dict(modality_dims)}); fix `modality_dims` or pass a dict of modalities."
        )
    return x


def _as_float_tensor(value: Any, name: str) -> torch.Tensor:
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a (n_items, dim) float matrix, got {type(value).__name__}.")
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            array = np.asarray(value)
        except ValueError as err:  # numpy refuses lists of rows of different lengths
            raise ValueError(
                f"`{name}` is a ragged list: its rows have different lengths. Give a (n_items, dim) matrix with "
                "one row of the same length per item."
            ) from err
        if array.dtype == object:
            raise ValueError(
                f"`{name}` is a ragged or mixed list (numpy made an object array of shape {array.shape}); give "
                "a (n_items, dim) matrix of floats with rows of the same length."
            )
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"`{name}` must hold floats, got dtype {array.dtype}.")
        t = torch.as_tensor(array)
    if t.dim() != 2:
        raise ValueError(f"`{name}` must be a 2-D matrix (n_items, dim), got shape {tuple(t.shape)}.")
    if not t.is_floating_point():
        raise ValueError(f"`{name}` must hold floats, got dtype {t.dtype}.")
    return t.float()
