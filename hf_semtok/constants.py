"""Names defined once for the whole library: SID tokens and tokenizer files (from `hf_semtok.tokenizer.constants`,
which ships beside every saved tokenizer), the SID engine's files and the library's defaults.
"""

from __future__ import annotations

from hf_semtok.tokenizer.constants import (
    MAX_CODEBOOK_SIZE,
    RQVAE_CONFIG_FILE,
    RQVAE_WEIGHTS_FILE,
    SID_CODES_FILE,
    SID_END_TOKEN,
    SID_LAYOUTS,
    SID_START_TOKEN,
    SID_TABLE_FILE,
    SID_TOKEN_PATTERN,
    SID_TOKEN_TEMPLATE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)

__all__ = [
    "SID_LAYOUTS",
    "SID_TOKEN_TEMPLATE",
    "SID_TOKEN_PATTERN",
    "SID_START_TOKEN",
    "SID_END_TOKEN",
    "SID_TABLE_FILE",
    "SID_CODES_FILE",
    "TOKENIZER_FILE",
    "TOKENIZER_CONFIG_FILE",
    "RQVAE_CONFIG_FILE",
    "RQVAE_WEIGHTS_FILE",
    "MAX_CODEBOOK_SIZE",
    "QUALITY_REPORT_FILE",
    "EMBEDDINGS_CACHE_DIRNAME",
    "DEFAULT_SEED",
    "TIGER_CODEBOOK_SIZES",
    "PLUM_CODEBOOK_SIZES",
]

# --- Files written by the SID engine ------------------------------------------------------------
QUALITY_REPORT_FILE = "sid_quality.json"
EMBEDDINGS_CACHE_DIRNAME = "embeddings"

# --- Defaults -----------------------------------------------------------------------------------
DEFAULT_SEED = 42
#: TIGER's default codebooks (Rajput et al., 2023): three levels of 256 codes.
TIGER_CODEBOOK_SIZES = (256, 256, 256)
#: A PLUM-style multi-resolution layout (arXiv 2510.07784): coarse levels first, shrinking.
PLUM_CODEBOOK_SIZES = (1024, 512, 256)
