"""The language-model side: CPT/SFT corpora, SID rows in an LM, Trainer stages, the from-scratch generator."""

from __future__ import annotations

from hf_semtok.lm.corpus import cpt_documents, sft_examples
from hf_semtok.lm.generator import GeneratorConfig, train_generator
from hf_semtok.lm.sid_embeddings import extend_model, sid_lora_config, sid_trainable_tokens_config
from hf_semtok.lm.sid_sequences import build_sid_tokenizer
from hf_semtok.lm.stages import LMStageArguments, run_lm_stage

__all__ = [
    "GeneratorConfig",
    "LMStageArguments",
    "build_sid_tokenizer",
    "cpt_documents",
    "extend_model",
    "run_lm_stage",
    "sft_examples",
    "sid_lora_config",
    "sid_trainable_tokens_config",
    "train_generator",
]
