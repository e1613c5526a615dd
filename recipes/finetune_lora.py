"""Fine-tune a causal LM on "history -> next item's SID" with LoRA (SID embedding rows trainable) or fully.

Examples:
    python recipes/finetune_lora.py --config recipes/configs/lora_synthetic.yaml
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/finetune_lora.py \
        --config recipes/configs/lora_qwen2.5-0.5b.yaml

`model_name_or_path` is usually the CPT stage's `output_dir` (SID rows already trained). With
`train_mode: lora` the output is a peft adapter (LoRA + `trainable_token_indices` for the SID rows); with
`train_mode: full` a full model. Every `transformers.TrainingArguments` option is accepted. Resumes from the last
checkpoint in `output_dir` (a finished run is not trained again).
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
class LoRAArguments(LMStageArguments):
    """Supervised fine-tuning: `LMStageArguments` with SFT + LoRA defaults."""

    data: Literal["cpt", "sft"] = _default("data", "sft")
    train_mode: Literal["sid_embeddings", "full", "lora"] = _default("train_mode", "lora")
    output_dir: str | None = _default("output_dir", "outputs/lora")


def main(argv: list[str] | None = None) -> LMStageResult:
    """Run the recipe; `argv` as on the command line (`--config x.yaml --key value ...`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg, dataset = parse_args_with_config(
        [LoRAArguments, DatasetArguments], argv, prog="finetune_lora.py", description=__doc__
    )
    if cfg.data != "sft":
        raise ValueError(
            "finetune_lora.py trains on SFT examples; use continued_pretraining.py for data: cpt."
        )
    return run_lm_stage(cfg, dataset=dataset)


if __name__ == "__main__":
    main(sys.argv[1:])
