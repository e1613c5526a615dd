"""Unique Semantic IDs: the collision policies. The table itself is `hf_semtok.SIDTable` (`hf_semtok/tokenizer/`)."""

from __future__ import annotations

from hf_semtok.sids.assignment import (
    COLLISION_STRATEGIES,
    add_items_to_table,
    assign_unique_sids,
    collision_stats,
    sid_table_from_codes,
)

__all__ = [
    "COLLISION_STRATEGIES",
    "add_items_to_table",
    "assign_unique_sids",
    "collision_stats",
    "sid_table_from_codes",
]
