"""Continued pretraining (CPT): teach a causal LM the Semantic-ID tokens on documents mixing SIDs and text.

Examples:
    python recipes/continued_pretraining.py --config recipes/configs/cpt_synthetic.yaml
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/continued_pretraining.py \
        --config recipes/configs/cpt_qwen2.5-0.5b.yaml

The default stage trains only the new SID embedding rows with the base frozen (`train_mode: sid_embeddings`);
`train_mode: full` trains the whole model (for a small model built from scratch). Resumes from the last
checkpoint in `output_dir`; writes the model, the tokenizer and a model card there.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Literal

from hf_semtok.config_utils import parse_recipe_args
from hf_semtok.lm.stages import LMStageConfig, LMStageResult, run_lm_stage


@dataclass
class CPTConfig(LMStageConfig):
    """Continued pretraining: `LMStageConfig` with CPT defaults."""

    data: Literal["cpt", "sft"] = "cpt"
    train_mode: Literal["sid_embeddings", "full", "lora"] = "sid_embeddings"
    learning_rate: float = 1e-3
    output_dir: str = "outputs/cpt"


def main(argv: list[str] | None = None) -> LMStageResult:
    """Run the recipe; `argv` as on the command line (`--config x.yaml --key value ...`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = parse_recipe_args(CPTConfig, argv)
    if cfg.data != "cpt":
        raise ValueError(
            "continued_pretraining.py trains on CPT documents; use finetune_lora.py for data: sft."
        )
    return run_lm_stage(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
