"""End to end generative retrieval on a catalogue: Semantic IDs -> a generator trained from scratch -> evaluation.

The benchmarks' orchestrator: `run_pipeline` makes (or takes) the SIDs (`hf_semtok.rqvae.train_sid_stage`, whose
co-occurrence pairs come from the **training** histories only), trains a TIGER-style generator
(`hf_semtok.lm.generator.train_generator`), then runs the leave-one-out test: the history is cut to the last
`max_history` items and constrained beam search over the catalogue's SIDs gives the ranking
(`hf_semtok.evaluation.evaluate_recommender`), beside a popularity baseline on the same users. The validation
split is evaluated the same way (all users by default), so configurations are chosen on validation, never on
test; every metric comes with its standard error. `stages` records, per stage (SIDs, training, evaluation),
seconds, torch threads and the work done, so a row's cost can be read off its JSON.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_semtok.data.catalogue import leave_one_out_split
from hf_semtok.evaluation import popularity_baseline, subsample_examples
from hf_semtok.generation import PrefillOnceLM
from hf_semtok.lm.generator import GeneratorConfig, evaluate_with_standard_errors, train_generator
from hf_semtok.lm.sid_sequences import build_sid_tokenizer, order_by_history_length
from hf_semtok.rqvae.sid_stage import SIDStageConfig, train_sid_stage
from hf_semtok.sids.assignment import sid_table_from_codes
from hf_semtok.tokenizer import SIDTable

__all__ = ["PipelineResult", "run_pipeline"]

logger = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What `run_pipeline` returns (JSON-able through `to_dict`).

    Attributes:
        metrics: Test Recall@K / NDCG@K of the generator (`evaluate_recommender`), each with its standard error
            (`recall@K_se`, `ndcg@K_se`).
        validation: The same metrics on the validation split (`config.valid_users` users, all by default; empty
            when `valid_users=0`), for choosing configurations without looking at test.
        popularity: The popularity baseline on the same test users.
        curve: Validation metrics during training: one record per evaluation (step, tokens, seconds, metrics).
        sid: SID facts: levels, codebook sizes, collision statistics, RQ-VAE training time.
        model: Generator facts: architecture, parameter count, vocabulary size.
        training: Steps, tokens seen (non-padding), training wall time, stop reason, SID layout, tokens per item,
            torch threads, tokens/s and target items/s.
        evaluation: Test and validation users, evaluation wall times, beam width, history length.
        stages: Per stage (`sids`, `training`, `evaluation`): seconds, torch threads and the work done.
        config: The `GeneratorConfig` used.
    """

    metrics: dict[str, Any]
    validation: dict[str, Any]
    popularity: dict[str, Any]
    curve: list[dict[str, Any]]
    sid: dict[str, Any]
    model: dict[str, Any]
    training: dict[str, Any]
    evaluation: dict[str, Any]
    stages: dict[str, Any]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-able dict."""
        return dataclasses.asdict(self)


# Long: the docstring; the body is ~64 lines, one stage after another (SIDs, training, validation, test).
def run_pipeline(
    catalogue: Any,
    sid_table: Any = None,
    embeddings: np.ndarray | Mapping[str, np.ndarray] | None = None,
    sid_config: SIDStageConfig | None = None,
    config: GeneratorConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PipelineResult:
    """Run Semantic IDs -> generator training -> leave-one-out test evaluation on a catalogue.

    Args:
        catalogue: A `hf_semtok.data.Catalogue` with chronological histories.
        sid_table: Ready-made SIDs (a `SIDTable` or `{item_id: codes}`, e.g. published ones); or
        embeddings: Item features, rows in `catalogue.item_ids` order, for an RQ-VAE trained here (`sid_config`).
        sid_config: RQ-VAE settings when `embeddings` are given.
        config: Generator settings.
        output_dir: If set: `sids/` (RQ-VAE output) and `model/` (generator + tokenizer) are written there.
        progress: Show progress bars.

    Returns:
        A `PipelineResult`.
    """
    config = config or GeneratorConfig()
    if (sid_table is None) == (embeddings is None):
        raise ValueError("Pass exactly one of sid_table (ready-made SIDs) and embeddings (train an RQ-VAE).")
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=config.max_history)
    if not test:
        raise ValueError("No user has 3 or more items, so there is nothing to test; check the histories.")
    sid_began = time.perf_counter()
    sid_table, sid_facts = _semantic_ids(
        catalogue, train, sid_table, embeddings, sid_config, config.seed, output_dir, progress
    )
    sid_seconds = time.perf_counter() - sid_began
    tokenizer = build_sid_tokenizer(sid_table, sid_layout=config.sid_layout)
    model, training, curve = train_generator(
        tokenizer,
        train,
        config,
        valid_examples=list(valid.values()),
        output_dir=output_dir,
        progress=progress,
    )
    generator = PrefillOnceLM(model)
    valid_examples = subsample_examples(
        [valid[u] for u in sorted(valid)], config.valid_users, config.seed + 2
    )
    valid_examples = order_by_history_length(valid_examples, config.max_history)
    began = time.perf_counter()
    validation: dict[str, Any] = {}
    if valid_examples:
        validation = evaluate_with_standard_errors(generator, tokenizer, valid_examples, config, progress)
    valid_seconds = time.perf_counter() - began
    test_examples = subsample_examples([test[u] for u in sorted(test)], config.test_users, config.seed + 1)
    test_examples = order_by_history_length(test_examples, config.max_history)
    began = time.perf_counter()
    metrics = evaluate_with_standard_errors(generator, tokenizer, test_examples, config, progress)
    eval_seconds = time.perf_counter() - began
    popularity = popularity_baseline(train, test_examples, ks=config.ks)
    popularity.pop("top_items", None)
    stages = _stage_facts(sid_seconds, embeddings is not None, training, valid_seconds + eval_seconds)
    stages["evaluation"].update(validation_users=len(valid_examples), test_users=len(test_examples))
    return PipelineResult(
        metrics=metrics,
        validation=validation,
        popularity=popularity,
        curve=curve,
        sid=sid_facts,
        model={
            "arch": config.arch,
            "num_parameters": training["num_parameters"],
            "vocab_size": len(tokenizer),
            "hidden_size": config.hidden_size,
            "num_layers": config.num_layers,
        },
        training=training,
        evaluation={
            "test_users": len(test_examples),
            "all_test_users": len(test),
            "eval_seconds": round(eval_seconds, 1),
            "validation_users": len(valid_examples),
            "all_validation_users": len(valid),
            "validation_seconds": round(valid_seconds, 1),
            "num_beams": config.num_beams,
            "max_history": config.max_history,
        },
        stages=stages,
        config=dataclasses.asdict(config),
    )


def _semantic_ids(
    catalogue: Any,
    train: Mapping[str, Sequence[str]],
    sid_table: Any,
    embeddings: np.ndarray | Mapping[str, np.ndarray] | None,
    sid_config: SIDStageConfig | None,
    seed: int,
    output_dir: str | os.PathLike | None,
    progress: bool,
) -> tuple[SIDTable, dict[str, Any]]:
    """The pipeline's SIDs (trained on `train` when `embeddings` are given, else `sid_table`) and their facts."""
    sid_facts: dict[str, Any] = {}
    if embeddings is not None:
        began = time.perf_counter()
        sid_dir = Path(output_dir) / "sids" if output_dir is not None else None
        sids = train_sid_stage(
            embeddings,
            catalogue.item_ids,
            train,
            sid_config,
            seed=seed,
            output_dir=sid_dir,
            progress=progress,
        )
        sid_table = sids.sid_table
        sid_facts["rqvae_seconds"] = round(time.perf_counter() - began, 1)
        sid_facts["quality"] = sids.report
    elif isinstance(sid_table, Mapping):
        sid_table = sid_table_from_codes(sid_table, catalogue.item_ids)
    sid_facts.update(
        num_levels=len(sid_table.codebook_sizes),
        codebook_sizes=list(sid_table.codebook_sizes),
        num_semantic_levels=sid_table.num_semantic_levels,
        collision_strategy=sid_table.collision_strategy,
        collision_stats={k: v for k, v in sid_table.stats.items() if isinstance(v, (int, float, str))},
    )
    return sid_table, sid_facts


def _stage_facts(
    sid_seconds: float, trained_rqvae: bool, training: Mapping[str, Any], eval_seconds: float
) -> dict[str, dict[str, Any]]:
    """Per stage (SIDs, training, evaluation): seconds, torch threads and the work done."""
    threads = torch.get_num_threads()
    keys = ("threads", "steps", "selected_step", "tokens_seen", "target_items_seen")
    return {
        "sids": {"seconds": round(sid_seconds, 1), "threads": threads, "trained_rqvae": trained_rqvae},
        "training": {"seconds": training["train_seconds"], **{key: training[key] for key in keys}},
        "evaluation": {"seconds": round(eval_seconds, 1), "threads": threads},
    }
