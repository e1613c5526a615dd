"""Data for hf_semtok: the catalogue, one reader per file format (your own tables: `load_table_catalogue`), the
synthetic default catalogue, item features, and `DatasetArguments`, the dataset options of every recipe."""

from __future__ import annotations

from hf_semtok.data.amazon2014 import load_amazon2014, load_sequence_text
from hf_semtok.data.arguments import DatasetArguments
from hf_semtok.data.catalogue import Catalogue, compose_item_text, history_windows, leave_one_out_split
from hf_semtok.data.embeddings import catalogue_embeddings, embed_texts
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.data.lcrec import load_lcrec_dataset, load_lcrec_index, parse_sid_strings
from hf_semtok.data.loading import load_catalogue
from hf_semtok.data.synthetic import SyntheticCatalogue, make_synthetic_catalogue
from hf_semtok.data.table import EXAMPLE_TABLE_DIR, TableCatalogue, load_table_catalogue, write_example_table

__all__ = [
    "EXAMPLE_TABLE_DIR",
    "Catalogue",
    "DatasetArguments",
    "SyntheticCatalogue",
    "TableCatalogue",
    "build_cooccurrence_pairs",
    "catalogue_embeddings",
    "compose_item_text",
    "embed_texts",
    "history_windows",
    "leave_one_out_split",
    "load_amazon2014",
    "load_catalogue",
    "load_lcrec_dataset",
    "load_lcrec_index",
    "load_sequence_text",
    "load_table_catalogue",
    "make_synthetic_catalogue",
    "parse_sid_strings",
    "write_example_table",
]
