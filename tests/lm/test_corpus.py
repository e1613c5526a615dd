"""CPT/SFT corpora, the one windowing rule, completion-only labels and the stock collator."""

from __future__ import annotations

import random

import pytest
from conftest import TINY_ITEMS as ITEMS
from conftest import TINY_SID_TABLE as TABLE

from hf_semtok.data import history_windows, leave_one_out_split
from hf_semtok.lm.corpus import (
    check_histories,
    cpt_documents,
    lm_collator,
    sft_examples,
    tokenize_cpt,
    tokenize_sft,
)
from hf_semtok.lm.sid_sequences import history_sequences
from hf_semtok.prompts import history_prompt
from hf_semtok.small_models import train_base_tokenizer

TITLES = {item: f"thing {n}" for n, item in enumerate(ITEMS)}
CATS = {item: ["top", f"sub{n // 4}"] for n, item in enumerate(ITEMS)}
# Items i12..i15 only ever appear as the last two items of a history: the validation and test targets.
HISTORIES = {
    "u0": ["i0", "i1", "i2", "i3", "i12", "i13"],
    "u1": ["i4", "i5", "i6", "i7", "i8", "i14", "i15"],
    "u2": ["i9", "i10", "i11", "i0", "i1", "i2", "i3", "i4", "i5", "i15", "i12"],
}
SENTINELS = {"i12", "i13", "i14", "i15"}


@pytest.fixture(scope="module")
def tok(sid_tokenizer):
    return sid_tokenizer


def _label_items(tok, rows):
    found = set()
    for row in rows:
        labelled = [t for t in row["labels"] if t != -100]
        found.update(tok.parse_items(labelled))
    return found


def test_sft_examples_windows_and_completion_only_labels(tok):
    train, _, _ = leave_one_out_split(HISTORIES)
    examples = sft_examples(tok, train, max_history=3)
    u2 = [ex for ex in examples if ex["user"] == "u2"]
    assert [ex["target"] for ex in u2] == train["u2"][1:]
    last = u2[-1]
    assert last["prompt"] == history_prompt(tok, train["u2"][-4:-1], max_history=None)
    assert last["completion"] == tok.items_to_text([train["u2"][-1]]) + tok.eos_token
    rows = tokenize_sft(tok, examples)
    for ex, row in zip(examples, rows, strict=True):
        prompt_len = len(tok(ex["prompt"])["input_ids"])
        assert row["labels"][:prompt_len] == [-100] * prompt_len
        assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
        assert tok.parse_items(row["labels"][prompt_len:]) == [ex["target"]]
        assert row["labels"][-1] == tok.eos_token_id


def test_no_validation_or_test_target_is_ever_a_label(tok):
    """Leak test: the held-out targets (only ever at the end of histories) never reach a training label."""
    train, valid, test = leave_one_out_split(HISTORIES)
    assert {t for _, t in valid.values()} | {t for _, t in test.values()} == SENTINELS
    sft = tokenize_sft(tok, sft_examples(tok, train, titles=TITLES, prefix_prob=0.0))
    cpt = tokenize_cpt(
        tok, cpt_documents(tok, train, TITLES, kinds=("histories", "sequences"), max_history=3)
    )
    assert _label_items(tok, sft) and _label_items(tok, cpt)
    assert not _label_items(tok, sft) & SENTINELS
    assert not _label_items(tok, cpt) & SENTINELS


def test_prefix_targets_are_sid_prefixes_and_deterministic(tok):
    train, _, _ = leave_one_out_split(HISTORIES)
    a = sft_examples(tok, train, prefix_prob=0.5, seed=3)
    b = sft_examples(tok, train, prefix_prob=0.5, seed=3)
    assert a == b
    coarse = [ex for ex in a if ex["completion"] != tok.items_to_text([ex["target"]]) + tok.eos_token]
    assert coarse, "some targets should be cut to a prefix"
    for ex in coarse:
        code = TABLE[ex["target"]][0]
        assert ex["completion"] == f"<|sid_start|><|sid_0_{code}|><|sid_end|>" + tok.eos_token


def test_cpt_documents_and_packing(tok):
    train, _, _ = leave_one_out_split(HISTORIES)
    docs = cpt_documents(tok, train, TITLES, CATS, max_history=4, seed=0)
    assert docs == cpt_documents(tok, train, TITLES, CATS, max_history=4, seed=0)
    assert f"thing 5 (category: top > sub1) has ID {tok.items_to_text(['i5'])}." in docs
    assert f"{tok.items_to_text(['i5'])} is thing 5, category top > sub1." in docs
    assert tok.items_to_text(train["u2"][:4]) in docs
    rows = tokenize_cpt(tok, docs, max_length=32)
    assert all(len(r["input_ids"]) == 32 for r in rows[:-1])
    stream = [t for r in rows for t in r["input_ids"]]
    assert stream.count(tok.eos_token_id) == len(docs)
    assert all(r["labels"] == r["input_ids"] for r in rows)


def test_collator_pads_right_with_ignored_labels(tok):
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    pad = tok.pad_token_id
    batch = lm_collator(tok)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert lm_collator(tok, pad_to_multiple_of=4)(rows)["labels"].shape == (2, 4)


# The three windowings the library had before `history_windows`, kept verbatim as references.
def _old_sft_contexts(history, max_history, min_history):
    return [(history[max(0, t - max_history) : t], t) for t in range(min_history, len(history))]


def _old_generator_windows(n, max_history, window_stride):
    width, out, covered, start = max_history + 1, [], 0, 0
    while n:
        stop = min(start + width, n)
        out.append((start, stop, max(1, covered - start)))  # window, items masked as context (>= 1 token)
        covered = stop
        if stop >= n:
            break
        start += window_stride
    return out


def _old_cpt_windows(n, max_history, stride):
    return [
        (s, min(s + max_history, n))
        for s in range(0, max(1, n - max_history + stride), stride)
        if len(range(n)[s : s + max_history]) >= 2
    ]


@pytest.mark.parametrize("seed", range(5))
def test_history_windows_keeps_the_three_old_windowings(seed):
    rng = random.Random(seed)
    for _ in range(200):
        n, max_history = rng.randint(0, 40), rng.randint(1, 12)
        stride = rng.randint(1, max_history)
        history = list(range(n))
        new_sft = [
            (history[start:t], t)
            for start, first_new, stop in history_windows(n, max_history + 1, 1)
            for t in range(max(first_new, 1), stop)
        ]
        assert new_sft == _old_sft_contexts(history, max_history, 1)
        new_gen = [(s, e, max(1, f - s)) for s, f, e in history_windows(n, max_history + 1, stride)]
        assert new_gen == _old_generator_windows(n, max_history, stride)
        new_cpt = [(s, e) for s, _, e in history_windows(n, max_history, stride) if e - s >= 2]
        assert new_cpt == _old_cpt_windows(n, max_history, stride)
    assert history_windows(25, 21, 10) == [(0, 0, 21), (10, 21, 25)]
    with pytest.raises(ValueError, match="stride >= 1"):
        history_windows(5, 3, 0)


def test_library_windows_predict_every_training_item_once(tok):
    """SFT (stride 1) and the generator's windows both make every item after the first a target exactly once."""
    train, _, _ = leave_one_out_split(HISTORIES)
    targets = [ex["target"] for ex in sft_examples(tok, {"u2": train["u2"]}, max_history=3)]
    assert targets == train["u2"][1:]
    rows = history_sequences(tok, {"u2": train["u2"]}, max_history=4, window_stride=3)
    assert len(rows) == 3  # 9 items: windows [0, 5), [3, 8), [6, 9)
    labelled = [t for row in rows for t in row["labels"] if t != -100]
    assert tok.parse_items(labelled[tok.num_levels + 1 :]) == train["u2"][1:]


def test_bad_inputs(tok):
    with pytest.raises(ValueError, match="histories are empty"):
        check_histories(tok, {"u": []})
    with pytest.raises(ValueError, match="no SID in the tokenizer"):
        sft_examples(tok, {"u": ["i0", "nope"]})
    with pytest.raises(ValueError, match="no Semantic IDs"):
        check_histories(train_base_tokenizer(["x y"], vocab_size=270), {"u": ["i0"]})
    with pytest.raises(ValueError, match="Unknown CPT document kinds"):
        cpt_documents(tok, {"u": ["i0", "i1"]}, kinds=("poems",))
