"""hf_semtok: Semantic IDs for generative recommendation with Hugging Face models.

`import hf_semtok` registers the RQ-VAE and the SemanticIDTokenizer with the transformers Auto classes.
Everything else is imported lazily on first attribute access, so the import stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # SID engine
    "RQVAEConfig": "configuration_rqvae",
    "RQVAEModel": "modeling_rqvae",
    "RQVAEOutput": "modeling_rqvae",
    "ResidualQuantizer": "quantization",
    "SIDTable": "sids",
    "assign_unique_sids": "sids",
    "add_items_to_table": "sids",
    "collision_stats": "sids",
    "RQVAETrainingResult": "training",
    "sid_quality_report": "sids",
    "format_quality_table": "sids",
    "train_rqvae": "training",
    "build_cooccurrence_pairs": "data.cooccurrence",
    # data
    "Catalogue": "data.formats",
    "load_lcrec_dataset": "data.formats",
    "load_sequence_text": "data.formats",
    "leave_one_out_split": "data.formats",
    "load_catalogue": "data.formats",
    "load_amazon2014": "data.formats",
    "load_lcrec_index": "data.formats",
    "make_synthetic_catalogue": "data.synthetic",
    "SyntheticCatalogue": "data.synthetic",
    "embed_texts": "data.embeddings",
    "catalogue_embeddings": "data.embeddings",
    "load_config": "config_utils",
    "parse_recipe_args": "config_utils",
    # tokenizer
    "SemanticIDTokenizer": "tokenization_semtok",
    "SemanticIDTokenizerConfig": "tokenization_semtok",
    "sid_lora_config": "modeling_utils",
    "render_tokenizer_card": "hub",
    "push_tokenizer_to_hub": "hub",
    "extend_model": "modeling_utils",
    "train_base_tokenizer": "base_models",
    "build_causal_lm": "base_models",
    # generation and evaluation
    "SIDLogitsProcessor": "generation",
    "recommend": "generation",
    "recall_at_k": "metrics",
    "ndcg_at_k": "metrics",
    "evaluate_recommender": "metrics",
    "popularity_baseline": "metrics",
    "ranking_metrics": "metrics",
    # language-model side: prompts, corpora, training stages, demo
    "history_prompt": "prompts",
    "target_text": "prompts",
    "cpt_documents": "corpus",
    "sft_examples": "corpus",
    "tokenize_sft": "corpus",
    "tokenize_cpt": "corpus",
    "PaddingCollator": "corpus",
    "LMStageConfig": "lm_training",
    "run_lm_stage": "lm_training",
    "DemoConfig": "demo",
    "run_demo": "demo",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'hf_semtok' has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def _register_auto_classes() -> None:
    """Import the modules whose import registers classes with transformers' Auto classes."""
    for module_name in ("modeling_rqvae", "tokenization_semtok"):
        try:
            importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as err:  # module not written yet during development
            if err.name != f"{__name__}.{module_name}":
                raise


_register_auto_classes()
