"""`train_rqvae`: item embeddings (+ optional co-occurrence) -> trained RQ-VAE, unique SIDs and a quality report.

The steps: argument checks, the embeddings and item ids, the co-occurrence pairs, the training plan (steps and
autoencoder warm-up), the `transformers.Trainer` run (`hf_semtok.rqvae.trainer`), the SIDs of the trained model,
and the quality report; [`save_training_result`] writes them as one atomic set of files.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import set_seed

from hf_semtok.constants import DEFAULT_SEED, QUALITY_REPORT_FILE, SID_TABLE_FILE
from hf_semtok.data.features import build_cooccurrence_pairs
from hf_semtok.io_utils import check_save_target, save_file_set, write_json_atomic
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.inputs import (
    EmbeddingsInput,
    concat_modalities,
    embedding_rows,
    embedding_source,
    num_embedding_rows,
)
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.quality import format_quality_table, sid_quality_report
from hf_semtok.rqvae.trainer import check_finite_weights, run_training
from hf_semtok.sids.assignment import COLLISION_STRATEGIES, SIDTable, assign_unique_sids
from hf_semtok.tokenizer.item_ids import check_item_ids
from hf_semtok.tokenizer.sid_table import COMPACT_MIN_ITEMS, ItemIds

__all__ = [
    "RQVAETrainingResult",
    "save_training_result",
    "train_rqvae",
]

logger = logging.getLogger(__name__)

TRAINING_HISTORY_FILE = "training_history.json"
QUALITY_TABLE_FILE = "sid_quality.md"
_EMPTY_CATALOGUE = (
    "Empty catalogue: `embeddings` has no rows. Pass one embedding row per item, e.g. a (n_items, dim) array "
    "or {'text': (n_items, 384), 'image': (n_items, 512)}; "
    "`hf_semtok.data.embeddings.catalogue_embeddings` builds them from a catalogue."
)


@dataclass
class RQVAETrainingResult:
    """What [`train_rqvae`] returns.

    Attributes:
        model: The trained `RQVAEModel` (eval mode).
        sid_table: Unique SIDs of the training items.
        report: The [`sid_quality_report`] plus training facts (`training_time_s`, `steps`, `reseeded_codes`).
        history: Logged training records (loss, its breakdown, per-level utilisation, learning rate, step).
    """

    model: RQVAEModel
    sid_table: SIDTable
    report: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


#: Rows validated per block before training.
_CHECK_BLOCK = 262_144


#: Above this many items the quality report skips the measures that need every embedding in memory.
_REPORT_MAX_ROWS = 1_000_000


def _on_accelerator(raw: Any) -> bool:
    """Whether the embeddings (one tensor or a dict of them) are torch tensors on a device other than the CPU."""
    values = raw.values() if isinstance(raw, Mapping) else [raw]
    return any(isinstance(v, torch.Tensor) and v.device.type != "cpu" for v in values)


def _check_rows(model: RQVAEModel, source: EmbeddingsInput, modality_dims: Mapping[str, int]) -> None:
    """Validate every row (NaN / inf / all-missing) before training, a block of rows at a time."""
    n = num_embedding_rows(source)
    block = _CHECK_BLOCK
    for start in range(0, n, block):
        raw = concat_modalities(embedding_rows(source, slice(start, start + block)), modality_dims)
        try:
            model.prepare_inputs(raw)
        except ValueError as err:
            if n <= block:
                raise
            raise ValueError(
                f"In embedding rows {start}..{start + len(raw) - 1} (rows counted from {start}): {err}"
            ) from None


def _resolve_pairs(
    cooccurrence_pairs: Any,
    histories: Any,
    window: int,
    item_ids: list[str],
) -> np.ndarray | None:
    n = len(item_ids)
    if cooccurrence_pairs is None and histories is not None:
        return build_cooccurrence_pairs(histories, window=window, item_ids=item_ids)
    if cooccurrence_pairs is None:
        return None
    arr = np.asarray(cooccurrence_pairs, dtype=object if _has_strings(cooccurrence_pairs) else None)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"`cooccurrence_pairs` must be (n_pairs, 2), got shape {arr.shape}.")
    if arr.dtype == object:  # item ids
        index = {item: i for i, item in enumerate(item_ids)}
        unknown = sorted({str(v) for v in arr.ravel() if str(v) not in index})
        if unknown:
            raise ValueError(
                f"`cooccurrence_pairs` name {len(unknown)} unknown items, e.g. {unknown[:5]}; pairs must use the "
                "ids of `item_ids` (or row indices)."
            )
        return np.array([[index[str(a)], index[str(b)]] for a, b in arr], dtype=np.int64).reshape(-1, 2)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`cooccurrence_pairs` must hold item indices or item ids, got dtype {arr.dtype}.")
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        raise ValueError(
            f"`cooccurrence_pairs` name unknown items: index {int(arr[bad][0])} is outside [0, {n}); "
            "indices refer to rows of `embeddings`."
        )
    return arr.astype(np.int64)


def _has_strings(pairs: Any) -> bool:
    try:
        return len(pairs) > 0 and isinstance(pairs[0][0], str)
    except (TypeError, IndexError, KeyError):
        return False


# Long: 22 arguments, each documented (signature and docstring: 58 lines); the body is a list of named steps.
def train_rqvae(
    embeddings: EmbeddingsInput,
    config: RQVAEConfig | None = None,
    item_ids: Sequence[str] | None = None,
    cooccurrence_pairs: Any = None,
    histories: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None = None,
    window: int = 3,
    epochs: float = 100.0,
    max_steps: int = -1,
    batch_size: int = 1024,
    learning_rate: float = 2e-3,
    weight_decay: float = 0.0,
    lr_scheduler_type: str = "cosine",
    warmup_ratio: float = 0.1,
    seed: int = DEFAULT_SEED,
    output_dir: str | os.PathLike | None = None,
    collision_strategy: str = "extra_level",
    extra_level_size: int | None = None,
    kmeans_samples: int = 20_000,
    logging_steps: int = 50,
    progress: bool = True,
    use_cpu: bool | None = None,
    report: bool = True,
) -> RQVAETrainingResult:
    """Train an RQ-VAE on item embeddings and assign every item a unique Semantic ID.

    Args:
        embeddings: `(n_items, dim)` matrix or dict name -> `(n_items, dim_m)` (numpy or torch). Missing
            modalities follow the rule of `hf_semtok.rqvae.modeling_rqvae` (a row of NaN or zeros).
        config: An `RQVAEConfig`; default: the default config with `modality_dims` taken from `embeddings`.
        item_ids: One id per row, in row order: distinct non-empty strings (a list, tuple or array; a set, a
            string or non-string ids are a `TypeError`, see `check_item_ids`). Default: `"0"`, `"1"`, ...
        cooccurrence_pairs: Co-occurring items for the contrastive loss: `(n_pairs, 2)` row indices or item ids.
        histories: User histories (use training histories only); turned into pairs with
            `build_cooccurrence_pairs(histories, window)` when `cooccurrence_pairs` is not given.
        window: Co-occurrence window for `histories`.
        epochs: Training epochs (ignored when `max_steps > 0`).
        max_steps: Training steps; overrides `epochs` when > 0.
        batch_size: Items per step (and co-occurring pairs per step).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_scheduler_type: A `transformers` scheduler name.
        warmup_ratio: When `config.autoencoder_warmup_steps` is 0, this fraction of the training steps trains the
            encoder and decoder as a plain autoencoder before the k-means codebook initialisation (0 disables).
        seed: Seed of weights, batches, pair sampling and k-means: the same seed gives the same SIDs.
        output_dir: If set, write `config.json` + `model.safetensors`, the SID table, the quality report (JSON
            and Markdown) and the training history there, atomically (see [`save_training_result`]).
        collision_strategy: `"extra_level"` or `"reassign"` (see `hf_semtok.sids`).
        extra_level_size: Size of the dedup level (default: the largest group).
        kmeans_samples: Items sampled for the k-means codebook initialisation.
        logging_steps: Steps between two logged records.
        progress: Show a progress bar.
        use_cpu: Force CPU (default: CPU unless CUDA is available).
        report: Compute the quality report (coherence, reconstruction by prefix).

    Returns:
        An [`RQVAETrainingResult`].
    """
    # Cheap checks first: a bad argument must fail before minutes of training, not after.
    _check_arguments(
        output_dir,
        collision_strategy,
        extra_level_size,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        window=window,
        kmeans_samples=kmeans_samples,
        logging_steps=logging_steps,
        seed=seed,
    )
    raw, config, item_ids = _embeddings_and_ids(embeddings, config, item_ids)
    n = num_embedding_rows(raw)
    pairs = _training_pairs(cooccurrence_pairs, histories, window, item_ids, config)
    config = _plan_warmup(config, n, batch_size, epochs, max_steps, warmup_ratio)
    set_seed(seed)
    model = RQVAEModel(config)
    _check_rows(model, raw, config.modality_dims)  # NaN / inf / all-missing rows fail before any training
    steps, history, elapsed = run_training(
        model,
        raw,
        pairs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        lr_scheduler_type=lr_scheduler_type,
        epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        logging_steps=logging_steps,
        kmeans_samples=kmeans_samples,
        progress=progress,
        use_cpu=not torch.cuda.is_available() if use_cpu is None else use_cpu,
        # The collator gathers rows from `raw`; rows already on a GPU cannot be pinned.
        pin_memory=not _on_accelerator(raw),
    )
    _check_trained(model, steps, learning_rate)  # before any SID is assigned or any file is written
    table = _assign_sids(
        model, raw, item_ids, collision_strategy, extra_level_size, progress, steps, learning_rate
    )
    model = model.cpu()
    quality = _quality_report(model, raw, table, seed) if report else {}
    quality.update(
        {
            "training_time_s": round(elapsed, 2),
            "steps": steps,
            "reseeded_codes": model.quantizer.num_reseeded,
            "num_pairs": 0 if pairs is None else len(pairs),
        }
    )
    logger.info("RQ-VAE trained in %.1f s (%d steps)", elapsed, steps)
    result = RQVAETrainingResult(model=model, sid_table=table, report=quality, history=history)
    if output_dir is not None:
        save_training_result(result, output_dir)
    return result


def _check_arguments(
    output_dir: str | os.PathLike | None,
    collision_strategy: str,
    extra_level_size: int | None,
    **numbers: Any,
) -> None:
    """The checks of `train_rqvae`'s arguments that need no data: the output folder, the collision strategy, the
    dedup level size and the numeric arguments (see [`_check_training_arguments`])."""
    if output_dir is not None:  # the filesystem root or an existing file: refused now, not after training
        check_save_target(output_dir)
    if collision_strategy not in COLLISION_STRATEGIES:
        raise ValueError(
            f"`collision_strategy` is {collision_strategy!r}; use one of {COLLISION_STRATEGIES}."
        )
    if extra_level_size is not None and (
        isinstance(extra_level_size, bool)
        or not isinstance(extra_level_size, (int, np.integer))
        or extra_level_size < 1
    ):
        raise ValueError(
            f"`extra_level_size` is {extra_level_size!r}; give a positive int (room in the dedup level for items "
            "sharing codes, including ones added later with `add_items`) or None for the largest group."
        )
    _check_training_arguments(**numbers)


def _embeddings_and_ids(
    embeddings: EmbeddingsInput, config: RQVAEConfig | None, item_ids: Sequence[str] | None
) -> tuple[EmbeddingsInput, RQVAEConfig, Sequence[str]]:
    """The embeddings as a row source, the config (the default one fitted to them when `None`) and one item id
    per row (the row numbers when `None`), checked against each other."""
    if embeddings is None or isinstance(embeddings, (str, bytes)) or not hasattr(embeddings, "__len__"):
        raise TypeError(
            f"`embeddings` must be a (n_items, dim) matrix or a dict of them, got {type(embeddings).__name__}."
        )
    if len(embeddings) == 0:  # [] or an empty dict: nothing to infer dimensions from
        raise ValueError(_EMPTY_CATALOGUE)
    # A matrix (numpy, memmap, torch) or a dict of them stays where it is and is read in batches; only nested
    # lists are turned into one tensor here.
    raw = embedding_source(
        embeddings,
        config.modality_dims if config is not None else _infer_modality_dims(embeddings),
    )  # (n, D)
    n = num_embedding_rows(raw)
    if n == 0:
        raise ValueError(_EMPTY_CATALOGUE)
    if config is None:
        config = RQVAEConfig(modality_dims=_infer_modality_dims(embeddings))
    if n < max(config.codebook_sizes):
        raise ValueError(
            f"{n} items are fewer than the largest codebook ({max(config.codebook_sizes)} codes): a codebook "
            "cannot be learned from fewer items than codes. Use smaller `codebook_sizes` (e.g. "
            f"[{max(2, n // 8)}] * {config.num_levels}) or more items."
        )
    if item_ids is None:  # the row numbers
        item_ids = (
            ItemIds.from_list(map(str, range(n))) if n >= COMPACT_MIN_ITEMS else [str(i) for i in range(n)]
        )
    else:  # strings only, in row order, distinct: the library's one rule (check_item_ids)
        item_ids = check_item_ids(item_ids, "train_rqvae", compact_min_items=COMPACT_MIN_ITEMS)
    if len(item_ids) != n:
        raise ValueError(f"{len(item_ids)} item ids for {n} embedding rows; give one id per row.")
    return raw, config, item_ids


def _training_pairs(
    cooccurrence_pairs: Any, histories: Any, window: int, item_ids: Sequence[str], config: RQVAEConfig
) -> np.ndarray | None:
    """The co-occurring row pairs for the contrastive loss (`None` when there are none, with a warning where
    `config` asks for the loss)."""
    pairs = _resolve_pairs(cooccurrence_pairs, histories, window, item_ids)
    if pairs is not None and not len(pairs):
        logger.warning("No co-occurrence pairs: training without the contrastive loss.")
        pairs = None
    if pairs is None and config.contrastive_weight > 0:
        logger.warning(
            "contrastive_weight=%s but no co-occurrence pairs were given.", config.contrastive_weight
        )
    return pairs


def _plan_warmup(
    config: RQVAEConfig, n: int, batch_size: int, epochs: float, max_steps: int, warmup_ratio: float
) -> RQVAEConfig:
    """Check that the run leaves steps for the codebooks, and give `config` (a copy) the autoencoder warm-up
    `warmup_ratio` asks for when it sets none."""
    total_steps = max_steps if max_steps > 0 else int(math.ceil(n / batch_size) * epochs)
    if total_steps < 1:
        raise ValueError(
            f"train_rqvae would run 0 training steps ({n} items, batch_size={batch_size}, epochs={epochs}): the "
            "codebooks would never be initialised and the SIDs would be arbitrary. Raise `epochs` or set "
            "`max_steps` >= 1."
        )
    if config.kmeans_init and config.autoencoder_warmup_steps >= total_steps:
        raise ValueError(
            f"`autoencoder_warmup_steps` ({config.autoencoder_warmup_steps}) uses all {total_steps} training steps: "
            "the codebooks would never be initialised. Lower it, or train longer (`epochs` / `max_steps`)."
        )
    if config.autoencoder_warmup_steps == 0 and warmup_ratio > 0 and config.kmeans_init:
        config = copy.deepcopy(config)
        config.autoencoder_warmup_steps = int(warmup_ratio * total_steps)
    return config


def _check_trained(model: RQVAEModel, steps: int, learning_rate: float) -> None:
    """Refuse a trained model whose weights are not finite or whose codebooks were never initialised."""
    check_finite_weights(model, steps, learning_rate)
    if not bool(model.quantizer.initialized):
        raise ValueError(
            f"The RQ-VAE codebooks were never initialised in {steps} training step(s) (autoencoder warm-up "
            f"{model.config.autoencoder_warmup_steps} steps): its SIDs would be arbitrary. Train longer (`epochs` / "
            "`max_steps`) or lower `warmup_ratio`."
        )


def _assign_sids(
    model: RQVAEModel,
    raw: EmbeddingsInput,
    item_ids: Sequence[str],
    collision_strategy: str,
    extra_level_size: int | None,
    progress: bool,
    steps: int,
    learning_rate: float,
) -> SIDTable:
    """Encode the catalogue with the trained model (on the training device) and make the codes unique SIDs."""
    config = model.config
    n = num_embedding_rows(raw)
    model.eval()  # encode the catalogue on the training device; the result holds the model on the CPU
    if collision_strategy == "reassign":  # needs every item's distances to the last level's codes
        codes, distances = model.encode(raw, return_distances=True)
    else:  # streaming: memory holds one batch of embeddings plus the codes
        codes, distances = model.encode_batches(raw, progress=progress and n > _CHECK_BLOCK), None
    if n >= config.codebook_sizes[0] and int(codes[:, 0].min()) == int(codes[:, 0].max()):
        logger.warning(
            "Every item got the same level-0 code (%d steps, learning_rate=%g): the RQ-VAE collapsed and the SIDs "
            "tell items apart only by their deeper levels. Lower `learning_rate` or train longer.",
            steps,
            learning_rate,
        )
    return assign_unique_sids(
        codes,
        item_ids,
        config.codebook_sizes,
        strategy=collision_strategy,
        distances=distances,
        extra_level_size=extra_level_size,
    )


def _quality_report(model: RQVAEModel, raw: EmbeddingsInput, table: SIDTable, seed: int) -> dict[str, Any]:
    """The [`sid_quality_report`] of the trained model (the codes only above `_REPORT_MAX_ROWS` items)."""
    n = num_embedding_rows(raw)
    if n > _REPORT_MAX_ROWS:
        logger.info(
            "%d items: the quality report covers the codes only (coherence and reconstruction need every "
            "embedding in memory; run sid_quality_report on a sample).",
            n,
        )
        return sid_quality_report(None, None, table, seed=seed)
    return sid_quality_report(model, concat_modalities(raw, model.config.modality_dims), table, seed=seed)


def _check_training_arguments(**kwargs: Any) -> None:
    """Types and ranges of `train_rqvae`'s numeric arguments (before any work is done)."""
    ints = {"max_steps": -1, "batch_size": 1, "window": 1, "kmeans_samples": 1, "logging_steps": 1, "seed": 0}
    for name, minimum in ints.items():
        value = kwargs[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"train_rqvae: `{name}` must be an int, got {type(value).__name__} {value!r}.")
        if value < minimum:
            raise ValueError(f"train_rqvae: `{name}` is {value}; it must be >= {minimum}.")
    for name in ("epochs", "learning_rate", "weight_decay", "warmup_ratio"):
        value = kwargs[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"train_rqvae: `{name}` must be a number, got {type(value).__name__} {value!r}.")
        if not math.isfinite(float(value)) or value < 0:
            raise ValueError(f"train_rqvae: `{name}` is {value}; it must be a finite number >= 0.")
    if kwargs["max_steps"] == 0:
        raise ValueError(
            "train_rqvae: `max_steps=0` trains nothing, so the codebooks would never be initialised and the SIDs "
            "would be arbitrary. Give max_steps >= 1, or max_steps=-1 to train for `epochs`."
        )
    if kwargs["max_steps"] < 0 and kwargs["epochs"] <= 0:
        raise ValueError(
            f"train_rqvae: `epochs={kwargs['epochs']}` trains nothing, so the codebooks would never be initialised "
            "and the SIDs would be arbitrary. Give epochs > 0 (e.g. 100) or max_steps >= 1."
        )
    if not kwargs["learning_rate"] > 0:
        raise ValueError(
            f"train_rqvae: `learning_rate` is {kwargs['learning_rate']}; it must be > 0 (e.g. 2e-3)."
        )
    if not kwargs["warmup_ratio"] < 1:
        raise ValueError(
            f"train_rqvae: `warmup_ratio` is {kwargs['warmup_ratio']}; it must lie in [0, 1) (the codebooks are "
            "initialised after the warm-up)."
        )


def _shape_of(value: Any, name: str) -> tuple[int, ...]:
    try:
        return np.shape(value)
    except ValueError as err:  # numpy refuses ragged lists
        raise ValueError(
            f"`{name}` is a ragged list: its rows have different lengths. Give a (n_items, dim) matrix with one "
            "row of the same length per item."
        ) from err


def _infer_modality_dims(embeddings: EmbeddingsInput) -> dict[str, int]:
    if isinstance(embeddings, Mapping):
        dims = {}
        for name, value in embeddings.items():
            shape = _shape_of(value, f"embeddings[{name!r}]")
            if len(shape) != 2:
                raise ValueError(f"Modality {name!r} must be (n_items, dim), got shape {shape}.")
            dims[str(name)] = int(shape[1])
        return dims
    shape = _shape_of(embeddings, "embeddings")
    if len(shape) != 2:
        raise ValueError(f"`embeddings` must be (n_items, dim), got shape {shape}.")
    return {"text": int(shape[1])}


#: The kind of file set `save_training_result` writes (`hf_semtok.io_utils.save_file_set`).
TRAINING_FILE_SET_KIND = "rqvae_training"


def save_training_result(
    result: RQVAETrainingResult,
    output_dir: str | os.PathLike,
    extra_files: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write model, SID table, quality report and history into `output_dir` as one atomic set of files.

    The files are committed together (see [`~hf_semtok.io_utils.save_file_set`], kind `"rqvae_training"`): a
    failure or a kill at any moment leaves either the previous complete result or the new one, never a mix. Only
    this save's own files are written; the files of the previous training result in `output_dir` that this one
    does not write are deleted, and everything else in the folder stays (it may be `.`, a mount point, or hold
    other work).

    Args:
        result: What [`train_rqvae`] returned.
        output_dir: The folder to save into (created if needed; not the filesystem root).
        extra_files: More text files to write in the same step, `{file name: UTF-8 text}` (e.g. the recipe's
            resolved config), so they can never disagree with the model beside them.
        overwrite: Replace files of the same name written by another kind of save, or by no save (refused by
            default, so one save never silently replaces another's files).

    Returns:
        `Path`: `output_dir`.
    """
    output_dir = Path(output_dir)
    with save_file_set(output_dir, TRAINING_FILE_SET_KIND, overwrite=overwrite) as tmp:
        result.model.save_pretrained(tmp)
        result.sid_table.to_json(tmp / SID_TABLE_FILE)
        write_json_atomic(result.report, tmp / QUALITY_REPORT_FILE)
        write_json_atomic(result.history, tmp / TRAINING_HISTORY_FILE)
        if result.report.get("levels"):
            (tmp / QUALITY_TABLE_FILE).write_text(
                format_quality_table(result.report) + "\n", encoding="utf-8"
            )
        for name, text in (extra_files or {}).items():
            if Path(name).name != name or name.startswith("."):
                raise ValueError(f"`extra_files` keys must be plain file names, got {name!r}.")
            (tmp / name).write_text(text, encoding="utf-8")
    logger.info("Saved RQ-VAE, SID table and quality report to %s", output_dir)
    return output_dir
