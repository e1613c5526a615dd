from __future__ import annotations

import pytest
import torch

from hf_semtok.small_models import build_causal_lm, train_base_tokenizer

CORPUS = ["matte rose lipstick 12ml", "argan oil shampoo for dry hair", "pink glitter nail polish"] * 20


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece", "unigram"])
def test_train_base_tokenizer_round_trips_text(kind):
    tok = train_base_tokenizer(CORPUS, vocab_size=200, kind=kind)
    text = "rose lipstick for dry hair"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|eos|>"


def test_train_base_tokenizer_rejects_bad_input():
    with pytest.raises(ValueError, match="empty corpus"):
        train_base_tokenizer([])
    with pytest.raises(ValueError, match="Unknown tokenizer kind"):
        train_base_tokenizer(CORPUS, kind="bytes")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_build_causal_lm_is_seeded_and_tied(arch):
    a = build_causal_lm(100, arch=arch, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    b = build_causal_lm(100, arch=arch, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert a.get_input_embeddings().weight.data_ptr() == a.get_output_embeddings().weight.data_ptr()
    out = a(torch.tensor([[1, 2, 3]]))
    assert out.logits.shape == (1, 3, 100)
