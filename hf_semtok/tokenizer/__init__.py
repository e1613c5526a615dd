"""The item tokenizer that ships with every saved tokenizer: `SemanticIDTokenizer` and its item table.

Every module of this folder is copied beside a saved tokenizer, so that
`AutoTokenizer.from_pretrained(path, trust_remote_code=True)` works where hf_semtok is not installed. The folder
is therefore self-contained: its modules import only each other (relatively), the standard library, numpy,
safetensors, tokenizers and transformers, never the rest of hf_semtok. The few features that need the full
library (the RQ-VAE model, collision policies for new items, model cards) are looked up in `library_hooks`,
which `import hf_semtok` fills.

- `tokenization_semtok.py`: `SemanticIDTokenizer` (a `PreTrainedTokenizerFast`), saving and loading.
- `sid_catalogue.py`: its item API (`item_to_sid`, `items_to_text`, `parse_items`, `add_items`, ...).
- `sid_table.py`: `SIDTable`, the one item id <-> SID table; `item_ids.py`: ids of large tables.
- `sid_tokens.py`: SID tokens <-> codes; `sid_checks.py`: strict integer and id checks.
- `tokenizer_files.py`: checks of the saved files; `constants.py`: token templates, file names, bounds.
- `file_sets.py`: saves that own only their files (staged, committed with a manifest, crash-safe) and atomic file
  writes, for the whole library (`hf_semtok.io_utils` re-exports them); built on `manifests.py` (the manifest
  format, atomic single-file writes, hashes) and `file_locks.py` (folder locks, staging folders).
"""

from __future__ import annotations

from .sid_table import SIDTable
from .tokenization_semtok import SOURCE_FILES, SemanticIDTokenizer, SemanticIDTokenizerConfig

__all__ = ["SIDTable", "SemanticIDTokenizer", "SemanticIDTokenizerConfig", "remote_code_files"]


def remote_code_files() -> list[str]:
    """Names of the source files saved beside a tokenizer for `trust_remote_code`: every module of this folder."""
    return sorted(SOURCE_FILES)
