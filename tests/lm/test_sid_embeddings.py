"""extend_model (resize, init rules, ties), sid_lora_config and sid_trainable_tokens_config (SID rows only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_semtok.lm.sid_embeddings import (
    extend_model,
    input_embedding_module_name,
    sid_lora_config,
    sid_trainable_tokens_config,
)
from hf_semtok.small_models import build_causal_lm
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer


@pytest.fixture(scope="module")
def setup(base_tokenizer):
    from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
    from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
    from hf_semtok.sids import assign_unique_sids

    torch.manual_seed(0)
    rqvae = RQVAEModel(
        RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[16, 8, 4])
    )
    emb = np.random.default_rng(0).normal(size=(50, 8)).astype("float32")
    table = assign_unique_sids(rqvae.encode(emb), [f"i{i}" for i in range(50)], [16, 8, 4])
    base = base_tokenizer
    return base, SemanticIDTokenizer.from_base(base, sid_table=table, rqvae=rqvae), rqvae


@pytest.fixture(scope="module")
def tiny_lm(make_tiny_lm):
    return lambda base, tie=True, arch="qwen2": make_tiny_lm(len(base), tie=tie, arch=arch)


def test_extend_model_mean_keeps_ties_and_base_rows(setup, tiny_lm):
    base, tok, _ = setup
    model = tiny_lm(base)
    before = model.get_input_embeddings().weight.detach().clone()
    ids = extend_model(model, tok, init="mean")
    weight = model.get_input_embeddings().weight
    assert ids == tok.all_sid_token_ids and len(ids) == sum(tok.codebook_sizes) + 2
    assert weight.shape[0] == len(tok) and model.config.vocab_size == len(tok)
    assert model.get_output_embeddings().weight is weight  # still tied
    assert torch.equal(weight[: len(base)], before)  # base rows untouched
    sid_rows = weight[ids].detach()
    base_rows = before.float()
    assert torch.allclose(sid_rows.mean(0), base_rows.mean(0), atol=0.05)
    assert len({tuple(r.tolist()) for r in sid_rows}) == len(ids)  # distinct rows
    ratio = (sid_rows.std(0) / base_rows.std(0)).mean().item()
    assert 0.05 < ratio < 0.2  # noise_scale=0.1 of the base spread
    # the extended model runs on SID tokens
    input_ids = torch.tensor([tok.encode("bought " + tok.items_to_text(["i1", "i2"]))])
    out = model(input_ids=input_ids, labels=input_ids)
    assert out.logits.shape[-1] == len(tok) and torch.isfinite(out.loss)


def test_extend_model_codebook_preserves_geometry(setup, tiny_lm):
    base, tok, rqvae = setup
    model = tiny_lm(base)
    ids = extend_model(model, tok, init="codebook", pad_to_multiple_of=64)
    weight = model.get_input_embeddings().weight.detach()
    assert weight.shape[0] % 64 == 0 and weight.shape[0] >= len(tok)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    codebook = rqvae.quantizer.codebooks[0].detach()  # (16, latent)
    rows = weight[tok.sid_token_ids[0]]  # (16, hidden)
    d_code = torch.pdist(codebook).numpy()
    d_row = torch.pdist(rows).numpy()
    assert np.corrcoef(d_code, d_row)[0, 1] > 0.8  # codes close in the RQ-VAE are close in the LM
    assert ids == tok.all_sid_token_ids
    with pytest.raises(ValueError, match="needs an RQ-VAE"):
        plain = SemanticIDTokenizer.from_base(
            base, sid_table=tok.sid_table_dict(), codebook_sizes=tok.codebook_sizes
        )
        extend_model(tiny_lm(base), plain, init="codebook")


def test_extend_model_untied_head(setup, tiny_lm):
    base, tok, _ = setup
    model = tiny_lm(base, tie=False, arch="llama")
    head_before = model.get_output_embeddings().weight.detach().clone()
    ids = extend_model(model, tok)
    head = model.get_output_embeddings().weight
    assert head is not model.get_input_embeddings().weight and head.shape[0] == len(tok)
    assert torch.equal(head[: len(base)], head_before)
    assert torch.allclose(head[ids].mean(0), head_before.mean(0), atol=0.05)


def test_extend_model_bad_input(setup, tiny_lm):
    base, tok, _ = setup
    with pytest.raises(ValueError, match="needs a SemanticIDTokenizer"):
        extend_model(tiny_lm(base), base)
    with pytest.raises(ValueError, match="init must be"):
        extend_model(tiny_lm(base), tok, init="zeros")
    small = build_causal_lm(100, hidden_size=32, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="base vocabulary has"):
        extend_model(small, tok)
    with pytest.raises(TypeError, match="model must be a transformers causal LM .* got str"):
        extend_model("model", tok)
    with pytest.raises(ValueError, match="call extend_model"):
        sid_lora_config(tiny_lm(base), tok)


def test_sid_lora_config_trains_only_sid_rows(setup, tiny_lm):
    from peft import get_peft_model

    base, tok, _ = setup
    model = tiny_lm(base)
    ids = extend_model(model, tok)
    assert input_embedding_module_name(model) == "embed_tokens"
    config = sid_lora_config(model, tok, r=4, target_modules=["q_proj", "v_proj"])
    assert config.trainable_token_indices == {"embed_tokens": ids}
    peft_model = get_peft_model(model, config)
    before = peft_model.get_input_embeddings()(torch.arange(len(tok))).detach().clone()  # (V, hidden)
    optim = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    input_ids = torch.tensor([tok.encode("bought " + tok.items_to_text(["i1", "i2", "i3"]))])
    peft_model(input_ids=input_ids, labels=input_ids).loss.backward()
    optim.step()
    after = peft_model.get_input_embeddings()(torch.arange(len(tok))).detach()
    changed = (after - before).abs().sum(1) > 0
    assert changed[ids].any() and not changed[: len(base)].any()
    used = [t for t in input_ids[0].tolist() if t in set(ids)]
    assert changed[used].all()


def test_sid_trainable_tokens_config_trains_only_sid_rows_and_keeps_ties(setup, tiny_lm):
    """The no-LoRA "SID rows only" stage: peft trains a delta on the SID rows; merging keeps the head tied."""
    from peft import get_peft_model

    base, tok, _ = setup
    model = tiny_lm(base)
    ids = extend_model(model, tok)
    config = sid_trainable_tokens_config(model, tok)
    assert config.token_indices == ids and list(config.target_modules) == ["embed_tokens"]
    before = model.get_input_embeddings().weight.detach().clone()  # (V, hidden)
    peft_model = get_peft_model(model, config)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("trainable_tokens" in n for n in trainable)
    optim = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    input_ids = torch.tensor([tok.encode("bought " + tok.items_to_text(["i1", "i2", "i3"]))])
    peft_model(input_ids=input_ids, labels=input_ids).loss.backward()
    optim.step()
    with torch.no_grad():
        logits = peft_model(input_ids=input_ids).logits
    merged = peft_model.merge_and_unload()
    weight = merged.get_input_embeddings().weight
    assert merged.get_output_embeddings().weight is weight  # still tied after the merge
    changed = (weight.detach() - before).abs().sum(1) > 0
    assert changed[ids].any() and not changed[: len(base)].any()
    with torch.no_grad():  # the LM head read the trained rows during training too
        assert torch.allclose(merged(input_ids=input_ids).logits, logits, atol=1e-5)
    with pytest.raises(ValueError, match="call extend_model"):
        sid_trainable_tokens_config(tiny_lm(base), tok)
