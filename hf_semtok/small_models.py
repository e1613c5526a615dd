"""Small base tokenizers and causal LMs built locally, with no download.

The demo, the tests and the from-scratch benchmarks need a base tokenizer and a language model. On a machine
without Hub access we train a small tokenizer with `tokenizers` and create a model from a config. With network
access, use any Hub model instead (`AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B")`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

__all__ = ["train_base_tokenizer", "build_causal_lm"]

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
