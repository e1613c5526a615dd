"""Semantic IDs for a catalogue on Ray Data: a pool of actors encodes it with a saved RQ-VAE, items sharing their
codes are numbered in a distributed group-by, and the SIDs are written as Parquet plus the compact `SIDTable`.

Examples:
    python recipes/train_rqvae.py --config recipes/configs/rqvae_synthetic.yaml
    python recipes/sids_on_ray.py --config recipes/configs/sids_ray_synthetic.yaml
    python recipes/sids_on_ray.py --model_path outputs/rqvae --catalogue /data/catalogue --ray_address auto \
        --num_workers 64
    python recipes/sids_on_ray.py --config recipes/configs/sids_ray_synthetic.yaml --num_gpus 0.5  # GPU actors

Input: `catalogue`, a folder of Parquet files with columns `item_id`, `row` (0 .. n-1, the catalogue order) and
`embedding` (a fixed-size float list: the RQ-VAE's input, modalities concatenated in its config's order), as
`hf_semtok.distributed.write_catalogue_parquet` writes them. Without `catalogue`, the recipe writes the embedded
synthetic catalogue (`synthetic_items`, `seed`) under `output_dir/catalogue` first.

Writes to `output_dir`: `sids/` (Parquet: `item_id`, `row`, `sid_0` ... `sid_L`), `sid_table.json` +
`sid_codes.safetensors` (load them with `SIDTable.from_json`, or pass the table to `SemanticIDTokenizer.from_base`),
and the resolved `recipe_config.yaml`. With `check_single_process: true` the SIDs are compared with
`assign_unique_sids(model.encode(...))` on this machine and the run fails if they differ.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hf_semtok.arguments import arg
from hf_semtok.cli import parse_args_with_config
from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data import load_catalogue
from hf_semtok.data.embeddings import catalogue_embeddings
from hf_semtok.distributed import sids_on_ray, start_ray, write_catalogue_parquet
from hf_semtok.extras import require_extra
from hf_semtok.io_utils import write_text_atomic
from hf_semtok.rqvae.inputs import concat_modalities
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.run_lock import hold_output_dir
from hf_semtok.sids import assign_unique_sids

logger = logging.getLogger("sids_on_ray")


@dataclass
class SIDsOnRayConfig:
    """Encode a Parquet catalogue with a saved RQ-VAE and assign unique SIDs on Ray Data."""

    model_path: str | None = arg("Folder of a saved RQVAEModel (e.g. the output_dir of train_rqvae.py).")
    catalogue: str | None = arg(
        "Folder of Parquet files (item_id, row, embedding). Default: write the synthetic catalogue first."
    )
    synthetic_items: int = arg("Items of the synthetic catalogue (without `catalogue`).", 1000)
    synthetic_users: int = arg("Users of the synthetic catalogue (without `catalogue`).", 2000)
    output_dir: str = arg("Where sids/, sid_table.json and sid_codes.safetensors go.", "outputs/sids-ray")
    num_workers: int = arg("Encoding actors.", 2)
    cpus_per_worker: float = arg("CPUs reserved per encoding actor.", 1.0)
    num_gpus: float = arg(
        "GPUs reserved per encoding actor: > 0 encodes on the actors' GPUs (0.5: two actors share one); 0: CPU.",
        0.0,
    )
    batch_size: int = arg("Rows per Ray batch.", 16384)
    extra_level_size: int | None = arg("Size of the dedup level (default: the largest group).")
    ray_address: str | None = arg("Ray cluster address ('auto' on a cluster); default: a local Ray.")
    num_cpus: int | None = arg("CPUs of the local Ray (default: all of this machine's).")
    check_single_process: bool = arg("Also compute the SIDs in this process and fail if they differ.", False)
    seed: int = arg("Seed of the synthetic catalogue.", DEFAULT_SEED)

    def __post_init__(self) -> None:
        if not self.model_path:
            raise ValueError(
                "model_path is required: the folder of a saved RQVAEModel, e.g. `python recipes/train_rqvae.py "
                "--config recipes/configs/rqvae_synthetic.yaml` writes outputs/rqvae-synthetic."
            )
        if not (Path(self.model_path) / "config.json").is_file():
            raise ValueError(
                f"model_path {self.model_path!r} holds no saved RQVAEModel (no config.json there); train one "
                "with recipes/train_rqvae.py, or pass the folder RQVAEModel.save_pretrained wrote."
            )


def _synthetic_catalogue(cfg: SIDsOnRayConfig, model: RQVAEModel) -> tuple[list[str], np.ndarray]:
    catalogue = load_catalogue(
        "synthetic", seed=cfg.seed, synthetic_items=cfg.synthetic_items, synthetic_users=cfg.synthetic_users
    )
    views = catalogue_embeddings(catalogue, source="catalogue", progress=False)
    matrix = concat_modalities(views, model.config.modality_dims).numpy()  # (n, input_dim), NaN = missing
    return [str(i) for i in catalogue.item_ids], matrix


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe. Returns the table's statistics (plus seconds and items/s)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (cfg,) = parse_args_with_config(SIDsOnRayConfig, argv, prog="sids_on_ray.py", description=__doc__)
    require_extra("ray", "sids_on_ray.py")
    output_dir = Path(cfg.output_dir)
    with hold_output_dir(output_dir, what="sids_on_ray.py"):  # one run per output_dir
        model = RQVAEModel.from_pretrained(cfg.model_path)
        catalogue, local = cfg.catalogue, None
        if catalogue is None:
            local = _synthetic_catalogue(cfg, model)
            catalogue = str(output_dir / "catalogue")
            write_catalogue_parquet(*local, catalogue)
            logger.info("Synthetic catalogue of %d items written to %s", len(local[0]), catalogue)
        # sids_on_ray refuses actors that would hold every CPU
        start_ray(cfg.ray_address, cfg.num_cpus)
        start = time.perf_counter()
        table = sids_on_ray(
            catalogue,
            cfg.model_path,
            output_dir,
            num_workers=cfg.num_workers,
            batch_size=cfg.batch_size,
            extra_level_size=cfg.extra_level_size,
            cpus_per_worker=cfg.cpus_per_worker,
            num_gpus=cfg.num_gpus,
        )
        seconds = time.perf_counter() - start
        report = {
            **table.stats,
            "seconds": round(seconds, 2),
            "items_per_s": round(len(table.item_ids) / seconds),
        }
        if cfg.check_single_process:
            if local is None:
                raise ValueError(
                    "check_single_process needs the catalogue in this process: leave `catalogue` unset (synthetic)."
                )
            single = assign_unique_sids(
                model.encode_batches(local[1], progress=False),
                local[0],
                model.config.codebook_sizes,
                extra_level_size=cfg.extra_level_size,
            )
            same = single.item_ids == table.item_ids and np.array_equal(single.codes, table.codes)
            if not same:
                raise RuntimeError(
                    "The Ray SIDs differ from the single-process SIDs; please report this as a bug."
                )
            report["equal_to_single_process"] = True
        write_text_atomic(
            yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False), output_dir / "recipe_config.yaml"
        )
        print(
            f"SIDs for {len(table.item_ids)} items on Ray ({cfg.num_workers} workers, {seconds:.1f} s) -> {output_dir}"
        )
        print(yaml.safe_dump(report, sort_keys=False).rstrip())
        return report


if __name__ == "__main__":
    main(sys.argv[1:])
