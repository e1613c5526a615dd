"""`load_catalogue`: one entry point that loads a catalogue by format name (what the recipes call)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hf_semtok.data.amazon2014 import load_amazon2014
from hf_semtok.data.catalogue import DEFAULT_TEXT_FIELDS, Catalogue
from hf_semtok.data.lcrec import load_lcrec_dataset
from hf_semtok.data.synthetic import make_synthetic_catalogue

logger = logging.getLogger(__name__)


def load_catalogue(
    dataset_format: str = "synthetic",
    data_dir: str | Path | None = None,
    name: str | None = None,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    seed: int = 42,
    synthetic_items: int = 1000,
    synthetic_users: int = 2000,
) -> Catalogue:
    """Load a catalogue by format name: the one entry point the recipes use.

    Args:
        dataset_format: `"synthetic"` (the embedded default, no files needed), `"lcrec"` (LC-Rec / LETTER JSON
            folder) or `"amazon2014"` (P5-layout Amazon 2014 folder).
        data_dir: The dataset folder (not used for `"synthetic"`).
        name: LC-Rec dataset name (`"Scientific"`); found automatically when the folder holds one dataset.
        text_fields: Item fields joined into `Catalogue.texts`.
        seed: Seed of the synthetic catalogue.
        synthetic_items: Items of the synthetic catalogue.
        synthetic_users: Users of the synthetic catalogue.

    Returns:
        A `Catalogue` (a `SyntheticCatalogue`, with embeddings, for `"synthetic"`).
    """
    if dataset_format == "synthetic":
        return make_synthetic_catalogue(n_items=synthetic_items, n_users=synthetic_users, seed=seed)
    if dataset_format not in ("lcrec", "amazon2014"):
        raise ValueError(f"Unknown dataset_format {dataset_format!r}; use synthetic, lcrec or amazon2014.")
    if data_dir is None:
        raise ValueError(
            f"dataset_format={dataset_format!r} needs data_dir, the folder holding the dataset files."
        )
    if dataset_format == "lcrec":
        return load_lcrec_dataset(data_dir, name=name, text_fields=text_fields)
    return load_amazon2014(data_dir, text_fields=text_fields)
