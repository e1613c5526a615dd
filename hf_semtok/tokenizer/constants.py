"""Names the tokenizer package defines once: SID token templates, the files saved beside a tokenizer, size bounds.

The rest of the library reads them through `hf_semtok.constants`, so a file name or token format is never
spelled twice.
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

#: How one item is written (`SemanticIDTokenizer.sid_layout`); the first is the default. `"marked"`:
#: `<|sid_start|>` + the L code tokens + `<|sid_end|>`; `"bare"`: the L code tokens only.
SID_LAYOUTS = ("marked", "bare")

# --- Files saved beside a SemanticIDTokenizer ---------------------------------------------------
SID_TABLE_FILE = "sid_table.json"
SID_CODES_FILE = "sid_codes.safetensors"  # the codes and item ids of a large table (SIDTable version 2)
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
RQVAE_CONFIG_FILE = "rqvae_config.json"
RQVAE_WEIGHTS_FILE = "rqvae.safetensors"

# --- Bounds -------------------------------------------------------------------------------------
#: Largest codebook (codes per SID level) the library accepts: one SID token per code, so a larger codebook
#: means a vocabulary of millions of tokens. Checked by `RQVAEConfig` and `SemanticIDTokenizer.from_base`.
MAX_CODEBOOK_SIZE = 2**20
#: Largest RQ-VAE file (config or weights) a tokenizer load reads: an RQ-VAE is a few MB, so a larger (or sparse)
#: file planted beside a tokenizer is refused before it is read into memory.
MAX_RQVAE_FILE_BYTES = 1 << 30
