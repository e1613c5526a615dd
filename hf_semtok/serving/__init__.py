"""Serving SID recommenders: constrained decoding outside transformers' `generate()`.

- `export_grammar(tokenizer, dialect=...)`: the catalogue as a grammar (llguidance Lark or xgrammar EBNF) for a
  server's structured outputs (vLLM, SGLang, TensorRT-LLM); no hf_semtok code runs in the server.
- `export_prefix_allowed_tokens_fn(tokenizer, ...)`: a `prefix_allowed_tokens_fn(batch_id, input_ids)` callable
  for stacks that take one (transformers' `generate`, and others with the same signature); `SIDConstraint` gives
  the same as token-id lists or batch masks.
- `hf_semtok.serving.vllm`: a vLLM v1 `LogitsProcessor` over the packed prefix index (needs `vllm` and hf_semtok in
  the server's environment).
"""

from __future__ import annotations

from hf_semtok.serving.grammar import GRAMMAR_DIALECTS, GRAMMAR_MODES, export_grammar, sid_grammar
from hf_semtok.serving.prefix_fn import SIDConstraint, export_prefix_allowed_tokens_fn

__all__ = [
    "GRAMMAR_DIALECTS",
    "GRAMMAR_MODES",
    "export_grammar",
    "sid_grammar",
    "export_prefix_allowed_tokens_fn",
    "SIDConstraint",
]
