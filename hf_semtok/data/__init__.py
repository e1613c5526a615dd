"""Data for hf_semtok: catalogue formats, the synthetic default catalogue, co-occurrence pairs, text embeddings."""

from __future__ import annotations

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

__all__ = [
    "Catalogue",
    "compose_item_text",
    "leave_one_out_split",
    "load_amazon2014",
    "load_lcrec_dataset",
    "load_lcrec_index",
    "load_sequence_text",
    "parse_sid_strings",
]
