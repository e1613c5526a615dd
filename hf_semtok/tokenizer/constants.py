"""Names defined once: SID token templates, file names, default values.

Every module reads these from here, so a file name or token format is never spelled twice.
"""

from __future__ import annotations

# --- SID tokens -------------------------------------------------------------------------------
#: One token per (level, code). Levels and codes are 0-based. Multi-resolution codebooks simply give
#: each level its own number of codes.
SID_TOKEN_TEMPLATE = "<|sid_{level}_{code}|>"
#: Regular expression matching one SID token; groups are (level, code).
SID_TOKEN_PATTERN = r"<\|sid_(\d+)_(\d+)\|>"
#: Boundary markers around one item's SID (named special tokens of the tokenizer).
SID_START_TOKEN = "<|sid_start|>"
SID_END_TOKEN = "<|sid_end|>"

# --- Files saved beside a SemanticIDTokenizer ---------------------------------------------------
SID_TABLE_FILE = "sid_table.json"
SID_CODES_FILE = "sid_codes.safetensors"  # the codes and item ids of a large table (SIDTable version 2)
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
RQVAE_CONFIG_FILE = "rqvae_config.json"
RQVAE_WEIGHTS_FILE = "rqvae.safetensors"

# --- Files written by the SID engine ------------------------------------------------------------
QUALITY_REPORT_FILE = "sid_quality.json"
EMBEDDINGS_CACHE_DIRNAME = "embeddings"

# --- Defaults -----------------------------------------------------------------------------------
DEFAULT_SEED = 42
#: TIGER's default codebooks (Rajput et al., 2023): three levels of 256 codes.
TIGER_CODEBOOK_SIZES = (256, 256, 256)
#: A PLUM-style multi-resolution layout (arXiv 2510.07784): coarse levels first, shrinking.
PLUM_CODEBOOK_SIZES = (1024, 512, 256)

# --- Bounds -------------------------------------------------------------------------------------
#: Largest codebook (codes per SID level) the library accepts: one SID token per code, so a larger codebook
#: means a vocabulary of millions of tokens. Checked by `RQVAEConfig` and `SemanticIDTokenizer.from_base`.
MAX_CODEBOOK_SIZE = 2**20
