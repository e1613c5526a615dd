from __future__ import annotations

import pytest

from hf_semtok.prompts import history_prompt, target_text
from hf_semtok.small_models import train_base_tokenizer
from hf_semtok.tokenization_semtok import SemanticIDTokenizer

TABLE = {"a": (0, 1, 0), "b": (1, 0, 0), "c": (1, 0, 1)}


@pytest.fixture(scope="module")
def tok():
    base = train_base_tokenizer(["user history next item lipstick shampoo"] * 10, vocab_size=120)
    return SemanticIDTokenizer.from_base(base, sid_table=TABLE, codebook_sizes=[2, 2, 2])


def test_prompt_ends_before_sid_start_and_tokenises_like_training(tok):
    prompt = history_prompt(tok, ["a", "b"])
    assert prompt == "User history: " + tok.items_to_text(["a", "b"]) + "\nNext item:"
    full = prompt + target_text(tok, "c")
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    # The prompt's ids are a prefix of the training example's ids, so completion-only labels line up.
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert full_ids[len(prompt_ids)] == tok.sid_start_token_id
    assert tok.parse_items(full_ids[len(prompt_ids) :]) == ["c"]


def test_history_is_truncated_and_titles_follow_sids(tok):
    prompt = history_prompt(tok, ["a", "b", "c"], titles={"c": "Shampoo"}, max_history=2)
    assert tok.parse_items(prompt) == ["b", "c"]
    assert "Shampoo" in prompt and not prompt.endswith(" ")


def test_chat_template_is_used_when_present(tok):
    tok2 = SemanticIDTokenizer.from_base(
        train_base_tokenizer(["user next item"] * 5, vocab_size=100),
        sid_table=TABLE,
        codebook_sizes=[2, 2, 2],
    )
    tok2.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    prompt = history_prompt(tok2, ["a"])
    assert prompt.startswith("<user>User history:") and prompt.endswith("<assistant>")
    assert history_prompt(tok2, ["a"], use_chat_template=False).startswith("User history:")


def test_prefix_targets_and_bad_input(tok):
    assert target_text(tok, "c", prefix_levels=1) == "<|sid_start|><|sid_0_1|><|sid_end|>" + tok.eos_token
    with pytest.raises(ValueError, match="prefix_levels"):
        target_text(tok, "c", prefix_levels=4)
    with pytest.raises(ValueError, match="not one string"):
        history_prompt(tok, "a")
    with pytest.raises(ValueError, match="no chat template"):
        history_prompt(tok, ["a"], use_chat_template=True)
