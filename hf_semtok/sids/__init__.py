"""Unique Semantic IDs: the collision policies. The table itself, `SIDTable`, lives in `hf_semtok.tokenizer.sid_table`."""

from __future__ import annotations

from hf_semtok.sids.assignment import (
    COLLISION_STRATEGIES,
    SIDTable,
    add_items_to_table,
    assign_unique_sids,
    collision_stats,
    sid_table_from_codes,
)

__all__ = [
    "COLLISION_STRATEGIES",
    "SIDTable",
    "add_items_to_table",
    "assign_unique_sids",
    "collision_stats",
    "sid_table_from_codes",
]
