"""Data for hf_semtok: catalogue formats, the synthetic default catalogue, co-occurrence pairs, text embeddings."""

from __future__ import annotations

from hf_semtok.data.cooccurrence import build_cooccurrence_pairs
from hf_semtok.data.embeddings import embed_texts
from hf_semtok.data.formats import (
    Catalogue,
    compose_item_text,
    leave_one_out_split,
    load_amazon2014,
    load_lcrec_dataset,
    load_lcrec_index,
    load_sequence_text,
    parse_sid_strings,
)
from hf_semtok.data.synthetic import SyntheticCatalogue, make_synthetic_catalogue

__all__ = [
    "Catalogue",
    "SyntheticCatalogue",
    "build_cooccurrence_pairs",
    "embed_texts",
    "make_synthetic_catalogue",
    "compose_item_text",
    "leave_one_out_split",
    "load_amazon2014",
    "load_lcrec_dataset",
    "load_lcrec_index",
    "load_sequence_text",
    "parse_sid_strings",
]
