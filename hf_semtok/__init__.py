"""hf_semtok: Semantic IDs for generative recommendation with Hugging Face models.

`import hf_semtok` registers `RQVAEModel` and `SemanticIDTokenizer` with the transformers Auto classes.

Layout (imports run one way, down):

- `rqvae/`: the item tokenizer model (config, quantizer, model) `train_sid_stage` (features + histories -> SIDs) and the low-level `train_rqvae`.
- `sids/`: unique-SID assignment (collision policies) and the SID quality report.
- `tokenizer/`: `SemanticIDTokenizer` and the item <-> SID table (`SIDTable`), self-contained because it is
  saved beside every tokenizer as remote code.
- `lm/`: prompts, CPT/SFT corpora, extending an LM for SID tokens, Trainer stages, the from-scratch generator.
- `generation.py`, `evaluation.py`: constrained decoding and `recommend()`; Recall/NDCG.
- `transition_prior.py`: item-to-item transition counts, the training-free baseline and the prior `recommend()`
  can fuse into beam search (`TransitionPriorLogitsProcessor` in `logits_process.py`).
- `data/`: the catalogue, one reader per file format, the synthetic catalogue, item features.
"""

from __future__ import annotations

__version__ = "0.1.0"

from hf_semtok.data import (
    Catalogue,
    SyntheticCatalogue,
    build_cooccurrence_pairs,
    leave_one_out_split,
    load_amazon2014,
    load_catalogue,
    load_lcrec_dataset,
    load_table_catalogue,
    make_synthetic_catalogue,
)
from hf_semtok.demo import DemoConfig, run_demo
from hf_semtok.evaluation import (
    evaluate_recommender,
    ndcg_at_k,
    popularity_baseline,
    recall_at_k,
)
from hf_semtok.generation import SIDLogitsProcessor, recommend
from hf_semtok.hub import push_tokenizer_to_hub, render_tokenizer_card
from hf_semtok.lm import (
    GeneratorConfig,
    LMStageArguments,
    cpt_documents,
    extend_model,
    run_lm_stage,
    sft_examples,
    sid_lora_config,
    train_generator,
)
from hf_semtok.logits_process import TransitionPriorLogitsProcessor
from hf_semtok.pipeline import run_pipeline
from hf_semtok.prompts import history_prompt, target_text
from hf_semtok.rqvae import (
    RQVAEConfig,
    RQVAEModel,
    RQVAETrainingResult,
    SIDStageConfig,
    sid_quality_report,
    train_rqvae,
    train_sid_stage,
)
from hf_semtok.sids import (
    add_items_to_table,
    assign_unique_sids,
)
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer import SemanticIDTokenizer, SIDTable
from hf_semtok.tokenizer.library_hooks import register_hooks
from hf_semtok.transition_prior import TransitionPrior

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
    "RQVAETrainingResult",
    "SIDStageConfig",
    "train_rqvae",
    "train_sid_stage",
    "SIDTable",
    "assign_unique_sids",
    "add_items_to_table",
    "sid_quality_report",
    # data
    "Catalogue",
    "SyntheticCatalogue",
    "make_synthetic_catalogue",
    "load_catalogue",
    "load_lcrec_dataset",
    "load_table_catalogue",
    "load_amazon2014",
    "leave_one_out_split",
    "build_cooccurrence_pairs",
    # tokenizer and language models
    "SemanticIDTokenizer",
    "train_base_tokenizer",
    "build_causal_lm",
    "extend_model",
    "sid_lora_config",
    "history_prompt",
    "target_text",
    "cpt_documents",
    "sft_examples",
    "LMStageArguments",
    "run_lm_stage",
    "GeneratorConfig",
    "train_generator",
    # generation and evaluation
    "SIDLogitsProcessor",
    "TransitionPrior",
    "TransitionPriorLogitsProcessor",
    "recommend",
    "recall_at_k",
    "ndcg_at_k",
    "evaluate_recommender",
    "popularity_baseline",
    "run_pipeline",
    "DemoConfig",
    "run_demo",
]
