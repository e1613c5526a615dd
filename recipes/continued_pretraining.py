"""Continued pretraining (CPT): teach a causal LM the Semantic-ID tokens on documents mixing SIDs and text.

Examples:
    python recipes/continued_pretraining.py --config recipes/configs/cpt_synthetic.yaml
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/continued_pretraining.py \
        --config recipes/configs/cpt_qwen2.5-0.5b.yaml

The default stage trains only the new SID embedding rows with the base frozen (`train_mode: sid_embeddings`);
`train_mode: full` trains the whole model (for a small model built from scratch). Every
`transformers.TrainingArguments` option is accepted. Resumes from the last checkpoint in `output_dir` (a finished
run is not trained again); writes the model, the tokenizer and a model card there.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Literal

from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import DatasetArguments
from hf_semtok.lm.stages import LMStageArguments, LMStageResult, run_lm_stage


def _default(name: str, value: object) -> object:
    return field(default=value, metadata=LMStageArguments.__dataclass_fields__[name].metadata)


@dataclass
class CPTArguments(LMStageArguments):
    """Continued pretraining: `LMStageArguments` with CPT defaults."""

    data: Literal["cpt", "sft"] = _default("data", "cpt")
    train_mode: Literal["sid_embeddings", "full", "lora"] = _default("train_mode", "sid_embeddings")
    learning_rate: float = _default("learning_rate", 1e-3)
    output_dir: str | None = _default("output_dir", "outputs/cpt")


def main(argv: list[str] | None = None) -> LMStageResult:
    """Run the recipe; `argv` as on the command line (`--config x.yaml --key value ...`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg, dataset = parse_args_with_config(
        [CPTArguments, DatasetArguments], argv, prog="continued_pretraining.py", description=__doc__
    )
    if cfg.data != "cpt":
        raise ValueError(
            "continued_pretraining.py trains on CPT documents; use finetune_lora.py for data: sft."
        )
    return run_lm_stage(cfg, dataset=dataset)


if __name__ == "__main__":
    main(sys.argv[1:])
