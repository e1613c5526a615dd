"""How good are a catalogue's Semantic IDs: codebook use, collisions, and whether items sharing a code are alike."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.rqvae.inputs import concat_modalities
from hf_semtok.sids.assignment import _group, collision_stats
from hf_semtok.tokenizer.sid_checks import _jsonable
from hf_semtok.tokenizer.sid_table import SIDTable

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Quality report
def _unit_rows(embeddings: Any, model: Any = None) -> np.ndarray:
    """Normalised item vectors for coherence: the model's input rule if a model is given."""
    if model is not None:
        chunks = []

        raw = concat_modalities(embeddings, model.config.modality_dims)
        with torch.no_grad():
            for start in range(0, raw.shape[0], 16384):
                chunks.append(model.prepare_inputs(raw[start : start + 16384])[0].cpu().numpy())
        x = np.concatenate(chunks) if chunks else np.zeros((0, model.config.input_dim), np.float32)
    elif isinstance(embeddings, dict):
        parts = []
        for value in embeddings.values():
            block = np.nan_to_num(np.asarray(value, dtype=np.float32))
            parts.append(block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12))
        x = np.concatenate(parts, axis=1)
    else:
        x = np.asarray(embeddings.cpu() if hasattr(embeddings, "cpu") else embeddings, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"`embeddings` must be (n_items, dim), got shape {x.shape}.")
        if not np.isfinite(x).all():
            raise ValueError("`embeddings` contain NaN or inf; fix them before the quality report.")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _coherence(x: np.ndarray, groups: np.ndarray, num_pairs: int, rng: np.random.Generator) -> float | None:
    """Mean cosine similarity of random pairs of distinct items in the same group (None if no group has 2)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    sizes = np.diff(np.r_[starts, len(order)])
    run_start = np.repeat(starts, sizes)
    run_size = np.repeat(sizes, sizes)
    eligible = np.flatnonzero(run_size > 1)  # positions in `order`
    if not len(eligible):
        return None
    pos = eligible[rng.integers(0, len(eligible), num_pairs)]
    offset = rng.integers(1, run_size[pos])  # 1..size-1: a different member
    partner = run_start[pos] + (pos - run_start[pos] + offset) % run_size[pos]
    a, b = order[pos], order[partner]
    return float((x[a] * x[b]).sum(1).mean())


def sid_quality_report(
    model: Any,
    embeddings: Any,
    sid_table: SIDTable,
    num_pairs: int = 20_000,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Quality numbers of a set of Semantic IDs (JSON-able).

    Works without a model (e.g. for published SIDs): then reconstruction error is left out.

    Args:
        model: A trained `RQVAEModel`, or `None`.
        embeddings: Item embeddings aligned with `sid_table.item_ids` (matrix or dict of modalities), or `None`
            to skip coherence and reconstruction.
        sid_table: The SIDs to judge.
        num_pairs: Random pairs sampled for each coherence number.
        seed: Seed of that sampling.

    Returns:
        A dict with `num_items`, `levels` (per semantic level: `codebook_size`, `used_codes`, `utilization`,
        `perplexity`, `normalized_perplexity`, `coherence` of items sharing the SID prefix up to that level),
        `random_pair_similarity`, `coherence_first_level`, `collisions` (the table's stats plus the semantic
        collision rate), and with a model `reconstruction_error` and `reconstruction_error_by_prefix`.
    """
    n = len(sid_table)
    if n == 0:
        raise ValueError("The SID table is empty; there is nothing to report on.")
    rng = np.random.default_rng(seed)
    s = sid_table.num_semantic_levels
    semantic = sid_table.codes[:, :s]
    x = None
    if embeddings is not None:
        x = _unit_rows(embeddings, model)
        if len(x) != n:
            raise ValueError(
                f"`embeddings` have {len(x)} rows but the SID table has {n} items; pass embeddings in "
                "`sid_table.item_ids` order."
            )
    levels = []
    for level in range(s):
        size = sid_table.codebook_sizes[level]
        counts = np.bincount(semantic[:, level], minlength=size)
        p = counts[counts > 0] / n
        perplexity = float(math.exp(-(p * np.log(p)).sum()))
        entry: dict[str, Any] = {
            "level": level,
            "codebook_size": size,
            "used_codes": int((counts > 0).sum()),
            "utilization": float((counts > 0).mean()),
            "perplexity": perplexity,
            "normalized_perplexity": perplexity / size,
        }
        if x is not None:
            groups, _ = _group(semantic[:, : level + 1])
            entry["coherence"] = _coherence(x, groups, num_pairs, rng)
        levels.append(entry)
    report: dict[str, Any] = {"num_items": n, "levels": levels}
    if x is not None:
        a, b = rng.integers(0, n, num_pairs), rng.integers(0, n, num_pairs)
        keep = a != b
        report["random_pair_similarity"] = (
            float((x[a[keep]] * x[b[keep]]).sum(1).mean()) if keep.any() else None
        )
        report["coherence_first_level"] = levels[0].get("coherence")
    collisions = dict(_jsonable(sid_table.stats))
    collisions["semantic_collision_rate"] = collision_stats(semantic)["collision_rate"]
    collisions["final_sids_unique"] = True  # guaranteed by SIDTable
    report["collisions"] = collisions
    if model is not None and embeddings is not None:
        by_prefix = model.reconstruction_error_by_prefix(embeddings)
        report["reconstruction_error"] = by_prefix[-1]
        report["reconstruction_error_by_prefix"] = by_prefix
    return report


def format_quality_table(report: dict[str, Any]) -> str:
    """Render a [`sid_quality_report`] as Markdown (a per-level table and a summary table)."""
    lines = [
        "| level | codes | used | utilization | perplexity | coherence (shared prefix) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in report["levels"]:
        coherence = lv.get("coherence")
        lines.append(
            f"| {lv['level']} | {lv['codebook_size']} | {lv['used_codes']} | {lv['utilization']:.3f} "
            f"| {lv['perplexity']:.1f} | {'-' if coherence is None else f'{coherence:.3f}'} |"
        )
    col = report.get("collisions", {})
    summary = [("items", report["num_items"])]
    if report.get("random_pair_similarity") is not None:
        summary.append(("random-pair cosine", f"{report['random_pair_similarity']:.3f}"))
    if "collision_rate_before" in col:
        summary.append(("collision rate before", f"{col['collision_rate_before']:.4f}"))
    summary.append(("semantic collision rate after", f"{col.get('semantic_collision_rate', 0.0):.4f}"))
    for key, label in (
        ("items_needing_extra_level", "items needing the extra level"),
        ("largest_group", "largest group"),
        ("reassigned_items", "reassigned items"),
    ):
        if key in col:
            summary.append((label, col[key]))
    if "reconstruction_error" in report:
        summary.append(("reconstruction error", f"{report['reconstruction_error']:.4f}"))
        by_prefix = ", ".join(f"{e:.4f}" for e in report["reconstruction_error_by_prefix"])
        summary.append(("reconstruction error by prefix length", by_prefix))
    lines += ["", "| statistic | value |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in summary]
    return "\n".join(lines)
