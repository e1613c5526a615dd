"""Item embeddings in: one matrix or named modalities, checked and concatenated in the config's order."""

from __future__ import annotations

import logging
import mmap
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


def num_embedding_rows(embeddings: EmbeddingsInput) -> int:
    """Number of items of a matrix (numpy, memmap, torch) or a dict of modality matrices, without reading them."""
    if isinstance(embeddings, Mapping):
        rows = {len(v) for v in embeddings.values()}
        if len(rows) > 1:
            raise ValueError(f"Modality matrices have different numbers of rows {sorted(rows)}; align them.")
        return rows.pop() if rows else 0
    return len(embeddings)


def embedding_rows(embeddings: EmbeddingsInput, index: slice | np.ndarray) -> EmbeddingsInput:
    """Rows `index` (a slice or an integer array) of a matrix or of every modality; a memmap reads only them.

    A read-only memmap (`np.load(..., mmap_mode="r")`) is read with plain file reads, so none of its pages is
    mapped into this process and resident memory stays at the rows returned, whatever the OS page cache holds.
    Other memmaps are indexed as arrays and their mapped pages released after the copy."""
    if isinstance(embeddings, Mapping):
        return {name: embedding_rows(value, index) for name, value in embeddings.items()}
    if isinstance(embeddings, torch.Tensor) and not isinstance(index, slice):
        return embeddings[torch.as_tensor(index)]
    if isinstance(embeddings, np.memmap):
        located = _file_location(embeddings)
        if located is not None:  # read-only memmap: read the rows from its file, map nothing
            return _read_file_rows(embeddings, *located, index)
    rows = embeddings[index]
    if isinstance(rows, np.ndarray) and not rows.flags.writeable:  # a read-only memmap: copy this batch only
        rows = np.array(rows)
    if isinstance(embeddings, np.ndarray):
        release_mapped_pages(embeddings)
    return rows


def _file_location(array: np.memmap) -> tuple[str, int] | None:
    """`(path, byte offset of array[0, 0] in the file)` of a read-only, C-contiguous 2-D memmap or view of one.

    None where rows cannot be read from the file as they are: other open modes (`"c"` keeps changes in its
    mapped pages only), non-contiguous views (column slices, transposes), or a memmap without a file name.
    """
    mapping = getattr(array, "_mmap", None)  # np.memmap's mapping, shared by its views
    filename = getattr(array, "filename", None)
    if (
        mapping is None
        or getattr(array, "mode", None) != "r"
        or filename is None
        or array.ndim != 2
        or not array.flags.c_contiguous
        or array.size == 0
    ):
        return None
    # np.memmap maps the file from `offset` rounded down to the allocation granularity; the array (or view)
    # starts `array.ctypes.data - mapping start` bytes into that mapping. Neither address touches a page.
    offset = int(getattr(array, "offset", 0))
    mapping_start = np.frombuffer(mapping, dtype=np.uint8, count=1).ctypes.data
    return str(filename), offset - offset % mmap.ALLOCATIONGRANULARITY + array.ctypes.data - mapping_start


def _read_file_rows(array: np.memmap, filename: str, start: int, index: slice | np.ndarray) -> np.ndarray:
    """Rows `index` of a C-contiguous memmap read with plain file reads into a new array.

    Reading through the mapping would map the rows' pages into this process, and the kernel maps neighbouring
    cached pages with each fault, so resident memory would depend on the page cache. File reads copy only the
    rows (the OS page cache is not this process's memory). Runs of consecutive rows are read at once.
    """
    n, dim = array.shape
    if isinstance(index, slice):
        first, stop, step = index.indices(n)
        if step == 1:
            out = np.empty((max(stop - first, 0), dim), dtype=array.dtype)
            with open(filename, "rb", buffering=0) as f:
                _read_into(f, start + first * dim * array.itemsize, out)
            return out
        index = np.arange(first, stop, step)
    rows = given = np.asarray(index)
    if rows.dtype == bool or not np.issubdtype(rows.dtype, np.integer) or rows.ndim != 1:
        picked = np.array(array[index])  # boolean masks, nested indices: numpy's own indexing
        release_mapped_pages(array)
        return picked
    rows = np.where(rows < 0, rows + n, rows)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = given[(rows < 0) | (rows >= n)][0]
        raise IndexError(f"index {bad} is out of bounds for axis 0 with size {n}")
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    buffer = np.empty((len(rows), dim), dtype=array.dtype)
    row_bytes = dim * array.itemsize
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1  # runs of consecutive rows
    bounds = np.concatenate([[0], breaks, [len(rows)]]).tolist()
    with open(filename, "rb", buffering=0) as f:
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b > a:
                _read_into(f, start + int(ordered[a]) * row_bytes, buffer[a:b])
    out = np.empty_like(buffer)
    out[order] = buffer
    return out


def _read_into(f: Any, position: int, out: np.ndarray) -> None:
    """Fill the contiguous array `out` with the file's bytes from `position` (reads until complete)."""
    if out.size == 0:
        return
    view = memoryview(out).cast("B")
    f.seek(position)
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            raise OSError(
                f"{f.name} ended after {position + done} bytes while reading {len(view)} bytes at {position}: "
                "the file is shorter than the memmap's shape says (truncated?)."
            )
        done += got


def embedding_source(embeddings: EmbeddingsInput, modality_dims: Mapping[str, int]) -> EmbeddingsInput:
    """Matrices (numpy, memmap, torch) and dicts of them are read in row batches as they are (no copy of the
    whole); anything else (nested lists) is checked and turned into one tensor here."""

    def matrix(value: Any) -> bool:
        return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 2

    if isinstance(embeddings, Mapping):
        streamable = all(matrix(v) for v in embeddings.values())
    else:
        streamable = matrix(embeddings)
    if not streamable:
        return concat_modalities(embeddings, modality_dims)
    num_embedding_rows(embeddings)  # equal row counts
    concat_modalities(
        embedding_rows(embeddings, slice(0, 1)), modality_dims
    )  # names, dims and dtype, on one row
    return embeddings


def release_mapped_pages(array: Any) -> None:
    """Drop the pages of a memory-mapped array from this process (they stay in the OS page cache).

    Reading rows of a `np.memmap` maps their pages, and the kernel maps neighbouring pages with them: a pass
    over a 7.7 GB float16 file would leave 7.7 GB in the process's resident memory. Called after each batch is
    copied out, `madvise(MADV_DONTNEED)` unmaps them, so resident memory stays at one batch. A no-op for arrays
    not backed by a `mmap`, for memmaps not opened read-only (mode `"c"` keeps changes in the mapped pages
    themselves), or where the platform has no `madvise`.
    """
    base, mode = array, None
    while base is not None and not isinstance(base, mmap.mmap):
        mode = getattr(base, "mode", mode)  # np.memmap's open mode, kept by its views
        base = getattr(base, "base", None)
    if base is not None and mode == "r" and hasattr(mmap, "MADV_DONTNEED") and not base.closed:
        base.madvise(mmap.MADV_DONTNEED)


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
