"""TransitionPrior (counts, scores, the heuristic's ranking, save/load) and TransitionPriorLogitsProcessor fused into
constrained decoding through recommend() and generate()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_semtok import TransitionPrior, TransitionPriorLogitsProcessor, recommend
from hf_semtok.generation import SIDLogitsProcessor
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

SEQUENCES = [["a", "b", "c"], ["a", "c", "d"], ["b", "c"]]


def _dense(prior):
    out = np.zeros((prior.num_items, prior.num_items))
    for i in range(prior.num_items):
        span = slice(prior.indptr[i], prior.indptr[i + 1])
        out[i, prior.indices[span]] = prior.data[span]
    return out


def test_fit_counts_following_items_weighted_by_distance():
    prior = TransitionPrior.fit(SEQUENCES, window=2)
    assert prior.item_ids == ["a", "b", "c", "d"]  # first appearance
    # a->b 1, a->c 1/2 + 1, b->c 1 + 1, a->d 0 (distance 2 in seq 2: 1/2), c->d 1, b->d 0
    expected = np.array(
        [
            [0, 1, 1.5, 0.5],
            [0, 0, 2, 0],
            [0, 0, 0, 1],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(_dense(prior), expected)
    assert prior.popularity.tolist() == [2, 2, 3, 1]
    next_only = [[0, 1, 1, 0], [0, 0, 2, 0], [0, 0, 0, 1], [0, 0, 0, 0]]  # window 1: a->c only in seq 2
    np.testing.assert_allclose(_dense(TransitionPrior.fit(SEQUENCES, window=1)), next_only)


def test_scores_decay_over_the_newest_items_and_drop_the_history():
    prior = TransitionPrior.fit(
        SEQUENCES, item_ids=["a", "b", "c", "d", "e"], window=2, num_history=2, decay=0.5
    )
    # history [a, b]: b (weight 1): c 2; a (weight 1/2): b .5, c .75, d .25; a and b are history
    np.testing.assert_allclose(prior.scores(["a", "b"]), [0, 0, 2.75, 0.25, 0])
    kept = prior.with_settings(exclude_history=False)
    np.testing.assert_allclose(kept.scores(["a", "b"]), [0, 0.5, 2.75, 0.25, 0])
    np.testing.assert_allclose(prior.with_settings(num_history=1).scores(["a", "b"]), [0, 0, 2, 0, 0])
    # decay 0: only the newest item counts (0 ** 0 = 1)
    np.testing.assert_allclose(prior.with_settings(decay=0.0).scores(["a", "b"]), [0, 0, 2, 0, 0])
    batch = prior.batch_scores([["a", "b"], ["c"], []])
    np.testing.assert_allclose(batch, [[0, 0, 2.75, 0.25, 0], [0, 0, 0, 1, 0], [0] * 5])


def test_recommend_breaks_ties_by_popularity_and_pads_by_popularity():
    # x -> p and x -> q once each (a tie); q is more popular than p; r and s are only popular
    sequences = [["x", "p"], ["x", "q"], ["q", "r"], ["q", "r"], ["r", "s"], ["s", "r"]]
    prior = TransitionPrior.fit(sequences, item_ids=["p", "q", "r", "s", "x", "z"], window=1, num_history=1)
    assert prior.popularity.tolist() == [1, 3, 4, 2, 2, 0]
    # scores: p 1, q 1 (tie -> q, more popular), then popularity without x, p, q: r, s, z
    assert prior.recommend([["x"]], k=5) == [["q", "p", "r", "s", "z"]]
    # many users in one batch: each gets its own scored items, never the next user's
    # z scores nothing (popularity: r, q); q scores r, then popularity without q and r: s (s and x tie: catalogue)
    assert prior.recommend([["x"], ["z"], ["q"]], k=2) == [["q", "p"], ["r", "q"], ["r", "s"]]
    assert prior.recommend([["x"]], k=10) == [["q", "p", "r", "s", "z"]]  # the catalogue minus the history


def test_save_and_load_round_trip_without_pickle(tmp_path):
    prior = TransitionPrior.fit(SEQUENCES, window=3, num_history=4, decay=0.7)
    prior.save_pretrained(tmp_path / "prior")
    names = sorted(p.name for p in (tmp_path / "prior").iterdir() if not p.name.startswith("."))
    assert "transition_prior.json" in names and "transition_prior.safetensors" in names
    assert not any(name.endswith((".pkl", ".pt", ".bin")) for name in names)
    loaded = TransitionPrior.from_pretrained(tmp_path / "prior")
    assert loaded.settings() == prior.settings() and loaded.item_ids == prior.item_ids
    for name in ("indptr", "indices", "data", "popularity"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(prior, name))
    assert loaded.recommend([["a"], ["b", "c"]], k=3) == prior.recommend([["a"], ["b", "c"]], k=3)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        TransitionPrior.from_pretrained(tmp_path / "missing")


def test_a_damaged_saved_prior_is_a_clear_error(tmp_path):
    import os
    import shutil

    TransitionPrior.fit(SEQUENCES).save_pretrained(tmp_path / "good")
    for name, damage, match in [
        ("transition_prior.json", b'{"format_', r"transition_prior.json: not a prior's JSON file"),
        ("transition_prior.safetensors", b"\x00" * 9, r"not a readable safetensors file"),
        ("transition_prior.json", None, r"must be a regular file.*special file"),
        ("transition_prior.safetensors", None, r"is a special file \(a FIFO"),
        (
            "transition_prior.safetensors",
            8 << 30,
            r"not a readable safetensors file",
        ),  # sparse: never read whole
        ("transition_prior.json", 4 << 30, r"more than the .* bytes such a file can be"),
    ]:
        folder = tmp_path / f"bad-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tmp_path / "good", folder)
        (folder / name).unlink()
        if damage is None:
            os.mkfifo(folder / name)  # reading a FIFO would block forever
        elif isinstance(damage, int):
            (folder / name).touch()
            os.truncate(folder / name, damage)
        else:
            (folder / name).write_bytes(damage)
        with pytest.raises(ValueError, match=match):
            TransitionPrior.from_pretrained(folder)


def test_bad_input_raises_the_documented_errors():
    prior = TransitionPrior.fit(SEQUENCES)
    with pytest.raises(ValueError, match="unknown to the prior"):
        prior.scores(["a", "nope"])
    with pytest.raises(ValueError, match="not in item_ids"):
        TransitionPrior.fit(SEQUENCES, item_ids=["a", "b"])
    with pytest.raises(ValueError, match="decay must lie in"):
        TransitionPrior.fit(SEQUENCES, decay=1.5)
    with pytest.raises(ValueError, match="window must be >= 1"):
        TransitionPrior.fit(SEQUENCES, window=0)
    with pytest.raises(TypeError, match="list of item ids"):
        prior.scores("abc")
    # item ids are strings, never converted: 1 and "1" are not one item
    with pytest.raises(TypeError, match=r"sequence 0\[1\] is int 2; item ids are strings"):
        TransitionPrior.fit([["1", 2]])
    with pytest.raises(TypeError, match=r"item_ids\[0\] is int 1"):
        TransitionPrior.fit([["1"]], item_ids=[1])
    with pytest.raises(TypeError, match=r"histories\[0\]\[0\] is int 1"):
        prior.scores([1])
    with pytest.raises(TypeError, match="exclude_history must be True or False"):
        TransitionPrior.fit(SEQUENCES, exclude_history="no")
    with pytest.raises(TypeError, match="item_ids must be a list of item ids in order; got set"):
        TransitionPrior.fit(SEQUENCES, item_ids={"a", "b", "c", "d"})


def test_a_huge_window_costs_what_the_longest_sequence_does():
    """window=10**12 used to loop 10**12 times: no pair lies further apart than the longest sequence."""
    huge = TransitionPrior.fit(SEQUENCES, window=10**12)
    np.testing.assert_allclose(_dense(huge), _dense(TransitionPrior.fit(SEQUENCES, window=3)))


# ----------------------------------------------------------------------------------------------------------------
# Fused into constrained decoding
# ----------------------------------------------------------------------------------------------------------------
N_ITEMS = 24


@pytest.fixture(scope="module")
def fusion():
    """A 24-item catalogue with 3-level SIDs, an LM that knows nothing (all-zero output layer: every token equally
    likely), a trained-looking LM (random weights), and a prior whose users walk the items in order."""
    rng = np.random.default_rng(0)
    all_codes = np.array([(a, b, c) for a in range(3) for b in range(4) for c in range(5)])
    codes = all_codes[rng.permutation(len(all_codes))[:N_ITEMS]]
    table = {f"item{i:02d}": tuple(int(c) for c in row) for i, row in enumerate(codes)}
    base = train_base_tokenizer(["a small catalogue of things to buy", "books and games"] * 5, vocab_size=300)
    tok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=[3, 4, 5])
    kwargs = dict(hidden_size=32, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id)
    model = build_causal_lm(len(tok), seed=0, eos_token_id=tok.eos_token_id, **kwargs).eval()
    flat = build_causal_lm(
        len(tok), seed=1, eos_token_id=tok.eos_token_id, tie_word_embeddings=False, **kwargs
    )
    with torch.no_grad():
        flat.get_output_embeddings().weight.zero_()
    items = list(table)
    # item i is followed by i + 1 (often) and i + 2 (less often)
    sequences = [[items[(s + j) % N_ITEMS] for j in range(4)] for s in range(N_ITEMS)] * 3
    sequences += [[items[s], items[(s + 2) % N_ITEMS]] for s in range(N_ITEMS)]
    prior = TransitionPrior.fit(sequences, item_ids=items, window=2, num_history=2, decay=0.5)
    histories = [[items[3], items[4]], [items[10]], [items[0], items[7], items[20]]]
    return tok, model, flat.eval(), prior, histories


def _expected_fused(tok, prior, history, eps=1e-3):
    """Per item, `sum_l log(eps + m(prefix + code) / m(prefix))` from the prior's scores, by brute force."""
    mass = dict(zip(prior.item_ids, prior.scores(history)))
    sids = {item: tuple(tok.sid_codes[j].tolist()) for j, item in enumerate(tok.item_ids)}

    def m(prefix):
        return sum(mass[i] for i, sid in sids.items() if sid[: len(prefix)] == prefix)

    out = {}
    for item, sid in sids.items():
        total = 0.0
        for level in range(len(sid)):
            parent = m(sid[:level])
            total += math.log(eps + (m(sid[: level + 1]) / parent if parent > 0 else 0.0))
        out[item] = total
    return out


def test_with_an_uninformative_lm_the_fused_ranking_follows_the_prior(fusion):
    tok, _, flat, prior, histories = fusion
    ranked = recommend(
        flat, tok, histories, k=N_ITEMS, num_beams=N_ITEMS, prior=prior, prior_weight=1.0, progress=False
    )
    for history, result in zip(histories, ranked):
        expected = _expected_fused(tok, prior, history)
        items = [item for item, _ in result]
        assert sorted(items) == sorted(tok.item_ids)  # exhaustive beam search: every item, each once
        # the fused score = the LM's (the same for every item) + the prior's term
        offset = result[0][1] - expected[items[0]]
        for item, score in result:
            assert score == pytest.approx(expected[item] + offset, abs=1e-4)
        # ... so the ranking is the prior's: the prior's best item first, every scored item before any unscored one
        scores = dict(zip(prior.item_ids, prior.scores(history)))
        assert items[0] == max(scores, key=scores.get)
        scored = [scores[i] > 0 for i in items]
        assert scored == sorted(scored, reverse=True) and any(scored)
    # without the prior the uninformative LM ties everything: its top item need not be the prior's
    plain = recommend(flat, tok, histories, k=N_ITEMS, num_beams=N_ITEMS, progress=False)
    assert len({round(s, 5) for r in plain for _, s in r}) == 1


def test_weight_zero_is_the_same_as_no_prior(fusion):
    tok, model, _, prior, histories = fusion
    plain = recommend(model, tok, histories, k=5, num_beams=8, progress=False)
    assert (
        recommend(model, tok, histories, k=5, num_beams=8, prior=prior, prior_weight=0.0, progress=False)
        == plain
    )
    fused = recommend(model, tok, histories, k=5, num_beams=8, prior=prior, prior_weight=2.0, progress=False)
    assert fused != plain
    with pytest.raises(ValueError, match="prior_weight"):
        recommend(model, tok, histories, prior=prior, prior_weight=-1.0, progress=False)
    with pytest.raises(TypeError, match="TransitionPrior"):
        recommend(model, tok, histories, prior={"a": 1}, prior_weight=1.0, progress=False)
    with pytest.raises(ValueError, match=r"prior_weight=2.0` has no prior to weigh"):
        recommend(model, tok, histories, prior_weight=2.0, progress=False)
    elsewhere = TransitionPrior.fit([["x", "y"], ["y", "z"]])  # another catalogue's prior
    with pytest.raises(ValueError, match="the prior knows none of the tokenizer's 24 items"):
        recommend(model, tok, histories, prior=elsewhere, prior_weight=1.0, progress=False)


def test_generate_with_the_processor_yields_only_catalogue_items_under_left_padding(fusion):
    tok, model, _, prior, histories = fusion
    prompts = ["books", "a small catalogue of things to buy and games", "a small"]  # left padding differs
    tok.padding_side = "left"
    batch = tok(prompts, return_tensors="pt", padding=True)
    length = batch["input_ids"].shape[1]
    processors = [
        SIDLogitsProcessor.from_tokenizer(tok, mode="sid", prompt_length=length),
        TransitionPriorLogitsProcessor.from_tokenizer(tok, prior, histories, length, weight=20.0),
    ]
    assert tok.sid_layout == "marked" and processors[1].layout == "marked"
    out = model.generate(
        **batch,
        logits_processor=processors,
        num_beams=6,
        num_return_sequences=6,
        max_new_tokens=tok.num_levels + 2,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    sids = {tuple(row.tolist()) for row in tok.sid_codes}
    generated = out[:, length:].reshape(len(prompts), 6, -1)
    for user, rows in enumerate(generated):
        for row in rows.tolist():
            assert row[0] == tok.sid_start_token_id and row[tok.num_levels + 1] == tok.sid_end_token_id
            codes = tuple(tok.sid_token_ids[lv].index(t) for lv, t in enumerate(row[1 : tok.num_levels + 1]))
            assert codes in sids
        # with a heavy prior, the best beam is the prior's best item for this user
        scores = prior.scores(histories[user])
        best = tok.item_ids[int(np.argmax(scores))]
        top = tuple(
            tok.sid_token_ids[lv].index(t) for lv, t in enumerate(rows[0, 1 : tok.num_levels + 1].tolist())
        )
        assert tok.sid_codes[tok.item_ids.index(best)].tolist() == list(top)


def test_processor_is_stateless_and_maps_rows_to_inputs(fusion):
    tok, _, _, prior, histories = fusion
    proc = TransitionPriorLogitsProcessor.from_tokenizer(
        tok, prior, histories, prompt_length=3, layout="bare"
    )
    rng = torch.Generator().manual_seed(0)
    level0 = [[5, 6, 7]] * 3
    ids = torch.tensor(level0).repeat_interleave(2, dim=0)  # 2 beams per input, at level 0
    scores = torch.randn(6, len(tok), generator=rng)
    before = scores.clone()
    out = proc(ids, scores)
    assert torch.equal(scores, before)  # never edited in place
    assert torch.equal(proc(ids, scores), out)  # no state between calls
    # the two beams of an input get the same term; each input its own, equal to a batch of that input alone
    for user in range(3):
        alone = TransitionPriorLogitsProcessor.from_tokenizer(tok, prior, [histories[user]], 3, layout="bare")
        torch.testing.assert_close(out[2 * user], alone(ids[:1], scores[2 * user : 2 * user + 1])[0])
        torch.testing.assert_close(out[2 * user + 1] - scores[2 * user + 1], out[2 * user] - scores[2 * user])
    # only the level-0 code columns move; level-1 steps move level-1 columns of rows with a valid prefix
    moved = (out != scores).any(dim=0).nonzero().flatten().tolist()
    assert set(moved) <= set(tok.sid_token_ids[0])
    step = torch.cat([ids, torch.tensor([[tok.sid_token_ids[0][0]]] * 6)], dim=1)
    moved = (proc(step, scores) != scores).any(dim=0).nonzero().flatten().tolist()
    assert moved and set(moved) <= set(tok.sid_token_ids[1])
    # weight 0 and steps past the SID leave the scores as they are
    zero = TransitionPriorLogitsProcessor.from_tokenizer(tok, prior, histories, 3, weight=0.0, layout="bare")
    assert torch.equal(zero(ids, scores), scores)
    done = torch.cat([ids, torch.zeros(6, tok.num_levels, dtype=torch.long)], dim=1)
    assert torch.equal(proc(done, scores), scores)
    with pytest.raises(ValueError, match="prior_mass must be"):
        TransitionPriorLogitsProcessor(np.ones((1, 3)), tok.sid_codes, tok.sid_token_ids, prompt_length=0)
