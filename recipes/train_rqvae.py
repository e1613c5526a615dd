"""Train an RQ-VAE item tokenizer and write unique Semantic IDs for a catalogue.

Examples:
    python recipes/train_rqvae.py --config recipes/configs/rqvae_synthetic.yaml
    python recipes/train_rqvae.py --config recipes/configs/rqvae_scientific.yaml --contrastive_weight 0
    python recipes/train_rqvae.py --dataset_format lcrec --data_dir DIR --embedding_files "{text: emb.npy}"

Writes to `output_dir`: the RQ-VAE (`config.json` + `model.safetensors`), `sid_table.json`, `sid_quality.json`,
`sid_quality.md`, `training_history.json` and the resolved `recipe_config.yaml`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from hf_semtok.arguments import arg
from hf_semtok.cli import parse_args_with_config
from hf_semtok.constants import DEFAULT_SEED, EMBEDDINGS_CACHE_DIRNAME
from hf_semtok.data import DatasetArguments, leave_one_out_split
from hf_semtok.data.embeddings import catalogue_embeddings
from hf_semtok.extras import require_extra
from hf_semtok.rqvae.quality import format_quality_table
from hf_semtok.rqvae.sid_stage import SIDStageConfig, train_sid_stage
from hf_semtok.rqvae.training import save_training_result
from hf_semtok.run_lock import hold_output_dir

logger = logging.getLogger("train_rqvae")


@dataclass
class TrainRQVAEConfig:
    """Build Semantic IDs for a catalogue with a trained RQ-VAE: where the embeddings come from, and the run.

    The RQ-VAE settings are `hf_semtok.rqvae.SIDStageConfig` and the catalogue `hf_semtok.data.DatasetArguments`,
    parsed beside this class from the same YAML file and command line.
    """

    embedding_source: Literal["auto", "files", "catalogue", "text"] = arg(
        "Where item embeddings come from.", "auto"
    )
    embedding_files: dict | str | None = arg(
        "Modality -> .npy file, e.g. '{text: emb.npy}' (embedding_source: files)."
    )
    text_model: str = arg("sentence-transformers model of embedding_source: text.", "all-MiniLM-L6-v2")
    embedding_cache_dir: str | None = arg("Embedding cache (default: <output_dir>/../cache/embeddings).")
    embedding_batch_size: int = arg("Batch size of the text embedding model.", 64)
    seed: int = arg("Seed of data, model and training.", DEFAULT_SEED)
    output_dir: str = arg("Where the RQ-VAE, sid_table.json and the reports go.", "outputs/rqvae")
    progress: bool = arg("Show progress bars.", True)
    overwrite: bool = arg("Replace files in output_dir written by another kind of save or by no save.", False)

    def __post_init__(self) -> None:
        value = self.embedding_files
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else None
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"embedding_files must be a mapping such as {{text: emb.npy}}, got {value!r}.")
        self.embedding_files = value or {}


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe. Returns the quality report (also written to `output_dir`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, sid_config, dataset = parse_args_with_config(
        [TrainRQVAEConfig, SIDStageConfig, DatasetArguments], argv, prog="train_rqvae.py", description=__doc__
    )
    if cfg.embedding_source == "text":
        require_extra("text", "embedding_source: text", ["sentence_transformers"])
    output_dir = Path(cfg.output_dir)
    with hold_output_dir(output_dir, what="train_rqvae.py"):  # one run per output_dir
        catalogue = dataset.load_catalogue(seed=cfg.seed)
        cache_dir = cfg.embedding_cache_dir or output_dir.parent / "cache" / EMBEDDINGS_CACHE_DIRNAME
        embeddings = catalogue_embeddings(
            catalogue,
            source=cfg.embedding_source,
            embedding_files=cfg.embedding_files,
            text_model=cfg.text_model,
            cache_dir=cache_dir,
            batch_size=cfg.embedding_batch_size,
            progress=cfg.progress,
        )
        # Co-occurrence pairs come from the training part of the histories only: no held-out target leaks into SIDs.
        train_histories = leave_one_out_split(catalogue.histories)[0] if catalogue.histories else None
        result = train_sid_stage(
            embeddings, catalogue.item_ids, train_histories, sid_config, seed=cfg.seed, progress=cfg.progress
        )
        recipe_config = yaml.safe_dump(
            {**dataclasses.asdict(dataset), **dataclasses.asdict(sid_config), **dataclasses.asdict(cfg)},
            sort_keys=False,
        )
        save_training_result(
            result, output_dir, extra_files={"recipe_config.yaml": recipe_config}, overwrite=cfg.overwrite
        )
        print(f"Semantic IDs for {catalogue.name!r} ({catalogue.num_items} items) -> {output_dir}")
        print(format_quality_table(result.report))
        return result.report


if __name__ == "__main__":
    main(sys.argv[1:])
