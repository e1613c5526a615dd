"""`load_catalogue`: one entry point that loads a catalogue by format name (what the recipes call)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.amazon2014 import load_amazon2014
from hf_semtok.data.catalogue import DEFAULT_TEXT_FIELDS, Catalogue
from hf_semtok.data.lcrec import load_lcrec_dataset
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.data.table import load_table_catalogue
from hf_semtok.data.table_sources import file_kind

logger = logging.getLogger(__name__)

#: The formats `load_catalogue` reads.
DATASET_FORMATS = ("synthetic", "lcrec", "amazon2014", "table")


def _find_table(data_dir: Path, stem: str) -> Path | None:
    """The one `<stem>.csv|.parquet|.jsonl[.gz]` file in `data_dir`, None when there is none."""
    found = sorted(p for p in data_dir.glob(f"{stem}.*") if file_kind(p) is not None)
    if len(found) > 1:
        raise ValueError(
            f"{str(data_dir)!r} holds several {stem} tables ({[p.name for p in found]}); name one "
            f"({stem}: <file>)."
        )
    return found[0] if found else None


def _load_table(data_dir: str | Path | None, name: str | None, options: dict[str, Any]) -> Catalogue:
    """The `table` format: `interactions` / `items` from the options, or `interactions.*` / `items.*` in data_dir."""
    options = dict(options)
    interactions, items = options.pop("interactions", None), options.pop("items", None)
    if interactions is None:
        if data_dir is None or not os.path.isdir(data_dir):
            raise ValueError(
                "dataset_format='table' needs interactions (a .csv / .parquet / .jsonl file or a Hugging Face "
                "dataset id), or data_dir: a folder holding interactions.csv (and items.csv)."
            )
        interactions = _find_table(Path(data_dir), "interactions")
        if interactions is None:
            raise ValueError(
                f"No interactions.csv / .parquet / .jsonl in {str(data_dir)!r}; add one or set interactions: <file>."
            )
        if items is None:
            items = _find_table(Path(data_dir), "items")
    return load_table_catalogue(interactions, items, data_dir=data_dir, name=name, **options)


def load_catalogue(
    dataset_format: str = "synthetic",
    data_dir: str | Path | None = None,
    name: str | None = None,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    seed: int = DEFAULT_SEED,
    synthetic_items: int = 1000,
    synthetic_users: int = 2000,
    **table_options: Any,
) -> Catalogue:
    """Load a catalogue by format name: the one entry point the recipes use (through `DatasetArguments`).

    Args:
        dataset_format: `"synthetic"` (the embedded default, no files needed), `"lcrec"` (LC-Rec / LETTER JSON
            folder), `"amazon2014"` (P5-layout Amazon 2014 folder) or `"table"` (your own interactions and items
            tables, see `hf_semtok.data.table`).
        data_dir: The dataset folder (not used for `"synthetic"`); for `"table"` the folder that relative file
            names are read from, and where `interactions.*` / `items.*` are found when not named.
        name: LC-Rec dataset name (`"Scientific"`), found automatically when the folder holds one dataset; the
            catalogue's name for `"table"`.
        text_fields: Item fields joined into `Catalogue.texts` (lcrec, amazon2014).
        seed: Seed of the synthetic catalogue.
        synthetic_items: Items of the synthetic catalogue.
        synthetic_users: Users of the synthetic catalogue.
        **table_options: Arguments of `load_table_catalogue` (`interactions`, `items`, `user_column`, ...), for
            `"table"` only.

    Returns:
        A `Catalogue` (a `SyntheticCatalogue`, with embeddings, for `"synthetic"`; a `TableCatalogue` for
        `"table"`).

    Raises:
        ValueError: An unknown format, a format without its `data_dir`, or table options for another format.
    """
    if dataset_format not in DATASET_FORMATS:
        raise ValueError(f"Unknown dataset_format {dataset_format!r}; use {', '.join(DATASET_FORMATS)}.")
    if table_options and dataset_format != "table":
        raise ValueError(
            f"{sorted(table_options)} are options of dataset_format='table', not of {dataset_format!r}."
        )
    if dataset_format == "synthetic":
        return make_synthetic_catalogue(n_items=synthetic_items, n_users=synthetic_users, seed=seed)
    if dataset_format == "table":
        return _load_table(data_dir, name, table_options)
    if data_dir is None:
        raise ValueError(
            f"dataset_format={dataset_format!r} needs data_dir, the folder holding the dataset files."
        )
    if dataset_format == "lcrec":
        return load_lcrec_dataset(data_dir, name=name, text_fields=text_fields)
    return load_amazon2014(data_dir, text_fields=text_fields)
