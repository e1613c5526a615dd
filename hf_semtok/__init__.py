"""hf_semtok: Semantic IDs for generative recommendation with Hugging Face models.

`import hf_semtok` registers `RQVAEModel` and `SemanticIDTokenizer` with the transformers Auto classes.

Layout (imports run one way, down):

- `rqvae/`: the item tokenizer model (config, quantizer, model) and `train_rqvae` / `build_sids`.
- `sids/`: unique-SID assignment (collision policies) and the SID quality report.
- `tokenizer/`: `SemanticIDTokenizer` and the item <-> SID table (`SIDTable`), self-contained because it is
  saved beside every tokenizer as remote code.
- `lm/`: prompts, CPT/SFT corpora, extending an LM for SID tokens, Trainer stages, the from-scratch generator.
- `generation.py`, `evaluation.py`: constrained decoding and `recommend()`; Recall/NDCG.
- `data/`: the catalogue, one reader per file format, the synthetic catalogue, item features.
"""

from __future__ import annotations

__version__ = "0.1.0"

from hf_semtok.data import (
    Catalogue,
    SyntheticCatalogue,
    build_cooccurrence_pairs,
    catalogue_embeddings,
    embed_texts,
    leave_one_out_split,
    load_amazon2014,
    load_catalogue,
    load_lcrec_dataset,
    load_lcrec_index,
    load_sequence_text,
    make_synthetic_catalogue,
)
from hf_semtok.demo import DemoConfig, run_demo
from hf_semtok.evaluation import (
    evaluate_recommender,
    ndcg_at_k,
    popularity_baseline,
    ranking_metrics,
    recall_at_k,
)
from hf_semtok.generation import PrefillOnceLM, SIDLogitsProcessor, recommend
from hf_semtok.hub import push_tokenizer_to_hub, render_tokenizer_card
from hf_semtok.lm import (
    GeneratorConfig,
    LMStageArguments,
    LMStageConfig,
    cpt_documents,
    extend_model,
    run_lm_stage,
    sft_examples,
    sid_lora_config,
    sid_trainable_tokens_config,
    train_generator,
)
from hf_semtok.pipeline import PipelineResult, run_pipeline
from hf_semtok.prompts import history_prompt, target_text
from hf_semtok.rqvae import (
    ResidualQuantizer,
    RQVAEConfig,
    RQVAEModel,
    RQVAEOutput,
    RQVAETrainingResult,
    SIDStageConfig,
    build_sids,
    format_quality_table,
    sid_quality_report,
    train_rqvae,
    train_sid_stage,
)
from hf_semtok.sids import (
    add_items_to_table,
    assign_unique_sids,
    collision_stats,
    sid_table_from_codes,
)
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer import SemanticIDTokenizer, SemanticIDTokenizerConfig, SIDTable
from hf_semtok.tokenizer.library_hooks import register_hooks

# The self-contained tokenizer package calls back into the library only through these hooks.
register_hooks(
    load_rqvae=RQVAEModel.from_files,
    add_items_to_table=add_items_to_table,
    render_tokenizer_card=render_tokenizer_card,
    push_tokenizer_to_hub=push_tokenizer_to_hub,
)

__all__ = [
    "__version__",
    # Semantic IDs
    "RQVAEConfig",
    "RQVAEModel",
    "RQVAEOutput",
    "ResidualQuantizer",
    "RQVAETrainingResult",
    "SIDStageConfig",
    "train_rqvae",
    "build_sids",
    "train_sid_stage",
    "SIDTable",
    "assign_unique_sids",
    "add_items_to_table",
    "collision_stats",
    "sid_table_from_codes",
    "sid_quality_report",
    "format_quality_table",
    # data
    "Catalogue",
    "SyntheticCatalogue",
    "make_synthetic_catalogue",
    "load_catalogue",
    "load_lcrec_dataset",
    "load_lcrec_index",
    "load_sequence_text",
    "load_amazon2014",
    "leave_one_out_split",
    "build_cooccurrence_pairs",
    "embed_texts",
    "catalogue_embeddings",
    # tokenizer and language models
    "SemanticIDTokenizer",
    "SemanticIDTokenizerConfig",
    "train_base_tokenizer",
    "build_causal_lm",
    "extend_model",
    "sid_lora_config",
    "sid_trainable_tokens_config",
    "history_prompt",
    "target_text",
    "cpt_documents",
    "sft_examples",
    "LMStageArguments",
    "LMStageConfig",
    "run_lm_stage",
    "GeneratorConfig",
    "train_generator",
    # generation and evaluation
    "SIDLogitsProcessor",
    "PrefillOnceLM",
    "recommend",
    "recall_at_k",
    "ndcg_at_k",
    "ranking_metrics",
    "evaluate_recommender",
    "popularity_baseline",
    "PipelineResult",
    "run_pipeline",
    "DemoConfig",
    "run_demo",
]
