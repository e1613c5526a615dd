"""Files beside a saved `SemanticIDTokenizer`: finding them and naming the broken one in errors.

Copied beside a saved tokenizer for `trust_remote_code=True`, so it imports only the standard library and
`.sid_table` (relatively).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .sid_table import SIDTable

__all__ = ["check_rqvae_sizes", "json_problem", "local_file", "read_json_object"]


def json_problem(path: str | os.PathLike | None) -> str:
    """Why `path` is not readable JSON ("" when it is, or when there is no such file)."""
    if not path or not os.path.isfile(path):
        return ""
    try:
        with open(path, "rb") as f:
            json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err})"
    except RecursionError:
        return "JSON nested too deeply"
    return ""


def local_file(name_or_path: str | os.PathLike, filename: str, kwargs: Mapping[str, Any]) -> str | None:
    """Path of `filename` of a local directory, or of a Hub repository already in the cache; None if absent."""
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, kwargs.get("subfolder") or "", filename)
        return path if os.path.isfile(path) else None
    try:
        from transformers.utils import cached_file

        return cached_file(
            str(name_or_path),
            filename,
            cache_dir=kwargs.get("cache_dir"),
            revision=kwargs.get("revision"),
            subfolder=kwargs.get("subfolder") or "",
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except Exception:  # only used to name a broken file in an error message
        return None


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A JSON object file as a dict; ValueError naming the file if it is unreadable or not an object."""
    problem = json_problem(path)
    if problem:
        raise ValueError(f"{path}: {problem}; the {what} is truncated or corrupt. Re-save the tokenizer.")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a JSON {type(data).__name__}, not a {what} object.")
    return data


def check_rqvae_sizes(sizes: Any, table: SIDTable, source: str | os.PathLike) -> None:
    """The RQ-VAE's `codebook_sizes` must be the table's semantic levels, or new items get wrong SIDs."""
    semantic = table.codebook_sizes[: table.num_semantic_levels]
    if not isinstance(sizes, (list, tuple)) or list(sizes) != semantic:
        raise ValueError(
            f"{source}: field 'codebook_sizes' = {sizes!r} disagrees with the item table's semantic levels "
            f"{semantic} (codebook_sizes {table.codebook_sizes}, num_semantic_levels {table.num_semantic_levels}). "
            "The RQ-VAE and the table come from different trainings; save them together with save_pretrained()."
        )
