"""Semantic IDs for catalogues beyond one machine, on Ray Data (`pip install "hf-semtok[ray]"`).

Two distributed steps, then one small gather:

1. **Encode.** A Parquet catalogue (`item_id`, `row`, `embedding` columns) is read by Ray Data and encoded by a
   pool of actors that each load the saved `RQVAEModel` once (`map_batches` with a model actor class).
2. **Unique SIDs.** Items are grouped by their semantic codes (a shuffle) and numbered within each group in
   catalogue order (`row`): TIGER's extra level (Rajput et al., 2023, arXiv 2305.05065), exactly what
   `hf_semtok.sids.assign_unique_sids(..., strategy="extra_level")` gives on one machine.
3. **Write.** The SIDs go to Parquet (one row per item), and the driver streams them, in catalogue order, into the
   compact `SIDTable` (`sid_table.json` + `sid_codes.safetensors`), ~14 bytes per item for ids of 10 characters.

Ray rather than Spark: the encoder is a PyTorch model, and Ray Data's actor pools keep one loaded model per worker
(and per GPU when there are some) with no JVM <-> Python serialisation of every batch; the same code runs on a
laptop (`ray.init()`) and on a cluster (`ray.init(address="auto")`). A Spark shop can run step 1 with
`mapInPandas` and step 2 with `groupBy(...).applyInPandas`: the numbering rule is the one of this module.

The `"reassign"` collision strategy is not distributed: it needs every item's distances to every last-level code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.tokenizer.sid_table import ItemIds, SIDTable

logger = logging.getLogger(__name__)

__all__ = [
    "RQVAEEncodeActor",
    "assign_unique_sids_ray",
    "check_cpu_reservation",
    "check_gpu_reservation",
    "encode_catalogue_ray",
    "sids_on_ray",
    "start_ray",
    "write_catalogue_parquet",
]

#: Column names of the catalogue and of the SID Parquet files.
ITEM_ID_COLUMN = "item_id"
ROW_COLUMN = "row"
EMBEDDING_COLUMN = "embedding"
CODE_PREFIX = "sid_"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(
            'The distributed SID path needs Ray Data: pip install "hf-semtok[ray]" (ray[data] and pyarrow).'
        ) from err
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Any:
    """Connect to a Ray cluster (`address="auto"`) or start a local one, once.

    Args:
        address: A cluster address (`"auto"` on a cluster node); `None` starts a local Ray.
        num_cpus: CPUs of the local Ray (default: all of this machine's).
        num_gpus: GPUs of the local Ray (default: the GPUs this machine's CUDA shows).

    Returns:
        The `ray` module. A clear ImportError names the extra to install when Ray is missing.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
    return ray


def write_catalogue_parquet(
    item_ids: Sequence[str], embeddings: np.ndarray, path: str | os.PathLike, rows_per_file: int = 1_000_000
) -> list[str]:
    """Write a catalogue as Parquet files (`item_id`, `row`, `embedding` as a fixed-size float list), in order.

    `row` is the item's position in the catalogue: the distributed assignment numbers items sharing their
    semantic codes in that order, as the single-process one does.

    Args:
        item_ids: One id per row.
        embeddings: `(n, dim)` float matrix (a `np.memmap` is read `rows_per_file` rows at a time).
        path: Output folder.
        rows_per_file: Rows per Parquet file.

    Returns:
        The files written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(item_ids) != len(embeddings):
        raise ValueError(
            f"{len(item_ids)} item ids for {len(embeddings)} embedding rows; give one id per row."
        )
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for part, start in enumerate(range(0, len(item_ids), rows_per_file)):
        stop = min(start + rows_per_file, len(item_ids))
        block = np.ascontiguousarray(embeddings[start:stop])
        dim = block.shape[1]
        values = pa.array(block.reshape(-1))
        table = pa.table(
            {
                ITEM_ID_COLUMN: pa.array([str(i) for i in item_ids[start:stop]], type=pa.string()),
                ROW_COLUMN: pa.array(np.arange(start, stop, dtype=np.int64)),
                EMBEDDING_COLUMN: pa.FixedSizeListArray.from_arrays(values, dim),
            }
        )
        name = str(out / f"part-{part:05d}.parquet")
        pq.write_table(table, name)
        files.append(name)
    return files


class RQVAEEncodeActor:
    """Ray Data actor: loads a saved `RQVAEModel` once, then maps batches of embeddings to semantic codes.

    Args:
        model_path: Folder of `RQVAEModel.save_pretrained`.
        batch_size: Rows per forward pass inside a Ray batch.
        device: Where the model encodes: `"cpu"`, or `"cuda"` in an actor Ray gave a GPU (`num_gpus` of
            [`encode_catalogue_ray`]; Ray sets `CUDA_VISIBLE_DEVICES`, so the actor's GPU is `cuda:0`).

    Raises:
        RuntimeError: `device` is a CUDA device but this process sees no GPU.
    """

    def __init__(self, model_path: str, batch_size: int = 16384, device: str = "cpu") -> None:
        torch.set_num_threads(1)
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"RQVAEEncodeActor was asked to encode on {device!r} but this process sees no CUDA GPU; give the "
                "actors GPUs with num_gpus > 0 on a Ray cluster that has them, or encode on the CPU (num_gpus=0)."
            )
        self.model = RQVAEModel.from_pretrained(model_path).to(device).eval()
        self.batch_size = batch_size
        self.num_levels = self.model.config.num_levels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb = batch[EMBEDDING_COLUMN]
        if emb.dtype == object:  # variable-size list column: one array per row
            emb = np.stack(emb)
        codes = self.model.encode(np.asarray(emb), batch_size=self.batch_size).numpy()  # (b, L)
        out = {ITEM_ID_COLUMN: batch[ITEM_ID_COLUMN], ROW_COLUMN: batch[ROW_COLUMN]}
        for level in range(self.num_levels):
            out[f"{CODE_PREFIX}{level}"] = codes[:, level].astype(np.int32)
        return out


def check_cpu_reservation(num_workers: int, cpus_per_worker: float, cluster_cpus: float) -> None:
    """Refuse an actor pool that reserves every CPU of the cluster: Ray Data's read and group-by tasks would then
    wait forever for a CPU (a hang, not an error)."""
    if num_workers * cpus_per_worker >= cluster_cpus:
        raise ValueError(
            f"num_workers x cpus_per_worker = {num_workers} x {cpus_per_worker} reserves all {cluster_cpus:g} CPUs "
            "of the Ray cluster for the encoding actors, leaving none for reading and grouping; lower "
            "cpus_per_worker (e.g. 0.5) or num_workers."
        )


def check_gpu_reservation(num_workers: int, num_gpus: float, cluster_gpus: float) -> None:
    """Refuse GPU actors the cluster cannot hold: Ray would wait for the missing GPUs forever (a hang, not an
    error). `num_gpus` is per actor; a fraction lets actors share a GPU (2 actors x 0.5 fit 1 GPU).

    Raises:
        ValueError: `num_gpus` is negative, or `num_workers * num_gpus` exceeds the cluster's GPUs.
    """
    if num_gpus < 0:
        raise ValueError(f"num_gpus is {num_gpus}; give GPUs per encoding actor >= 0 (0: encode on CPU).")
    if num_gpus > 0 and num_workers * num_gpus > cluster_gpus:
        raise ValueError(
            f"num_workers x num_gpus = {num_workers} x {num_gpus} GPUs, but the Ray cluster has {cluster_gpus:g}; "
            "Ray would wait for them forever. Lower num_gpus (e.g. 0.5 to share a GPU between two actors) or "
            "num_workers, or start Ray on machines with GPUs."
        )


def encode_catalogue_ray(
    catalogue_path: str | os.PathLike,
    model_path: str | os.PathLike,
    num_workers: int = 2,
    batch_size: int = 16384,
    cpus_per_worker: float = 1.0,
    num_gpus: float = 0.0,
) -> Any:
    """Encode a Parquet catalogue with a saved RQ-VAE on Ray Data.

    Args:
        catalogue_path: Parquet file(s) with `item_id`, `row` and `embedding` columns ([`write_catalogue_parquet`]).
        model_path: Folder of a saved `RQVAEModel`.
        num_workers: Encoding actors (one model each).
        batch_size: Rows per Ray batch.
        cpus_per_worker: CPUs Ray reserves per actor. The actors must leave CPUs to the Parquet read tasks:
            on a machine with as many CPUs as workers, use a fraction (e.g. 0.5), or the read waits forever.
        num_gpus: GPUs Ray reserves per actor; with `num_gpus > 0` each actor encodes on its GPU (`0.5`: two
            actors share one). 0 (default): the actors encode on CPU.

    Returns:
        A lazy `ray.data.Dataset` with `item_id`, `row`, `sid_0` ... `sid_{L-1}` (semantic codes).

    Raises:
        ValueError: The actors would hold every CPU, or ask for more GPUs than the cluster has.
    """
    ray = _import_ray()
    if ray.is_initialized():
        resources = ray.cluster_resources()
        check_cpu_reservation(num_workers, cpus_per_worker, float(resources.get("CPU", 0)))
        check_gpu_reservation(num_workers, num_gpus, float(resources.get("GPU", 0)))
    elif num_gpus < 0:
        check_gpu_reservation(num_workers, num_gpus, 0.0)
    ds = ray.data.read_parquet(str(catalogue_path), columns=[ITEM_ID_COLUMN, ROW_COLUMN, EMBEDDING_COLUMN])
    gpu_kwargs = {"num_gpus": num_gpus} if num_gpus > 0 else {}
    return ds.map_batches(
        RQVAEEncodeActor,
        fn_constructor_kwargs={
            "model_path": str(model_path),
            "batch_size": batch_size,
            "device": "cuda" if num_gpus > 0 else "cpu",
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
        **gpu_kwargs,
    )


def _number_within_group(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One group of items sharing their semantic codes: extra code = rank by catalogue row."""
    order = np.argsort(batch[ROW_COLUMN], kind="stable")
    extra = np.empty(len(order), dtype=np.int32)
    extra[order] = np.arange(len(order), dtype=np.int32)
    return {**batch, "extra": extra, "group_size": np.full(len(order), len(order), dtype=np.int32)}


def assign_unique_sids_ray(encoded: Any, num_semantic_levels: int) -> Any:
    """Distributed TIGER extra level: group by the semantic codes, number each group in catalogue order.

    Args:
        encoded: Dataset with `row` and `sid_0` ... `sid_{L-1}` columns ([`encode_catalogue_ray`]).
        num_semantic_levels: `L`.

    Returns:
        The dataset with the columns `extra` (the dedup code) and `group_size` added (materialised).
    """
    keys = [f"{CODE_PREFIX}{level}" for level in range(num_semantic_levels)]
    return encoded.groupby(keys).map_groups(_number_within_group, batch_format="numpy").materialize()


def sids_on_ray(
    catalogue_path: str | os.PathLike,
    model_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    num_workers: int = 2,
    batch_size: int = 16384,
    extra_level_size: int | None = None,
    cpus_per_worker: float = 1.0,
    num_gpus: float = 0.0,
) -> SIDTable:
    """Encode a Parquet catalogue, assign unique SIDs on Ray, write Parquet and the compact `SIDTable`.

    Gives exactly `assign_unique_sids(model.encode(embeddings), item_ids, sizes, strategy="extra_level")`.

    Args:
        catalogue_path: Parquet catalogue ([`write_catalogue_parquet`]).
        model_path: Folder of a saved `RQVAEModel`.
        output_dir: Receives `sids/` (Parquet: `item_id`, `row`, `sid_0` ... `sid_L`) and `sid_table.json` +
            `sid_codes.safetensors`.
        num_workers: Encoding actors.
        batch_size: Rows per Ray batch.
        extra_level_size: Size of the dedup level (default: the largest group).
        cpus_per_worker: CPUs reserved per encoding actor (see [`encode_catalogue_ray`]).
        num_gpus: GPUs reserved per encoding actor; > 0 encodes on the actors' GPUs (see [`encode_catalogue_ray`]).

    Returns:
        The `SIDTable`, rows in catalogue order.
    """
    config = RQVAEConfig.from_pretrained(str(model_path))
    sizes = list(config.codebook_sizes)
    levels = len(sizes)
    ds = assign_unique_sids_ray(
        encode_catalogue_ray(catalogue_path, model_path, num_workers, batch_size, cpus_per_worker, num_gpus),
        levels,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds.rename_columns({"extra": f"{CODE_PREFIX}{levels}"}).drop_columns(["group_size"]).write_parquet(
        str(out / "sids")
    )

    n = ds.count()
    codes, group_size, item_ids = _gather_in_catalogue_order(ds, n, levels, catalogue_path)
    size, stats = _extra_level_stats(group_size, extra_level_size)
    table = SIDTable(
        item_ids,
        codes,
        [*sizes, size],
        levels,
        "extra_level",
        stats,
        source=str(catalogue_path),
    )
    table.to_json(out / "sid_table.json", compact=True)
    logger.info("Ray SIDs: %d items, largest group %d, written to %s", n, stats["largest_group"], out)
    return table


def _gather_in_catalogue_order(
    ds: Any, n: int, levels: int, catalogue_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray, ItemIds]:
    """The codes (with the extra level), group sizes and item ids of the Ray dataset `ds`, in catalogue order.

    Gathered into flat arrays (ids as one UTF-8 buffer): no Python object per item is kept.

    Raises:
        ValueError: the catalogue's row column does not number the items 0 .. n-1, each once.
    """
    codes = np.empty((n, levels + 1), dtype=np.int64)
    group_size = np.empty(n, dtype=np.int64)
    lengths = np.full(n, -1, dtype=np.int64)
    parts: list[tuple[np.ndarray, ItemIds]] = []  # per Ray batch: catalogue rows and their ids, packed
    for batch in ds.iter_batches(batch_size=1 << 18, batch_format="numpy"):
        rows = batch[ROW_COLUMN].astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(
                f"{catalogue_path}: column {ROW_COLUMN!r} must number the items 0 .. n-1, each once."
            )
        for level in range(levels):
            codes[rows, level] = batch[f"{CODE_PREFIX}{level}"]
        codes[rows, levels] = batch["extra"]
        group_size[rows] = batch["group_size"]
        ids = ItemIds.from_list(map(str, batch[ITEM_ID_COLUMN]))
        lengths[rows] = np.diff(ids.offsets)
        parts.append((rows, ids))
    if (lengths < 0).any() or sum(len(rows) for rows, _ in parts) != n:
        raise ValueError(
            f"{catalogue_path}: column {ROW_COLUMN!r} must number the items 0 .. n-1, each once."
        )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buffer = np.empty(int(offsets[-1]), dtype=np.uint8)
    for rows, ids in parts:  # scatter each batch's id bytes to their catalogue positions, vectorised
        seg = np.diff(ids.offsets)
        buffer[np.repeat(offsets[rows] - ids.offsets[:-1], seg) + np.arange(len(ids.buffer))] = ids.buffer
    return codes, group_size, ItemIds(buffer, offsets)


def _extra_level_stats(group_size: np.ndarray, extra_level_size: int | None) -> tuple[int, dict[str, Any]]:
    """The dedup level's size and the table's `stats` (as `assign_unique_sids` gives them) from the group sizes.

    Raises:
        ValueError: `extra_level_size` is smaller than the largest group.
    """
    n = len(group_size)
    largest = int(group_size.max()) if n else 0
    size = largest if extra_level_size is None else int(extra_level_size)
    if size < largest:
        raise ValueError(
            f"`extra_level_size` {size} is smaller than the largest group of items sharing codes ({largest})."
        )
    colliding = int((group_size > 1).sum())
    stats = {
        "num_items": n,
        "collision_rate_before": colliding / n if n else 0.0,
        "collision_rate_after": colliding / n if n else 0.0,
        "colliding_items_before": colliding,
        "largest_group_before": largest,
        "largest_group": largest,
        "reassigned_items": 0,
        "items_needing_extra_level": colliding,
        "final_collision_rate": 0.0,
        "extra_level_size": size,
    }
    return size, stats
