"""SIDLogitsProcessor and recommend(): every generated SID is a catalogue item, under every decoding mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from hf_semtok.generation import DEAD_END_SCORE, SIDLogitsProcessor
from hf_semtok.small_models import build_causal_lm

PAD, EOS, FIRST_SID = 0, 2, 20  # token ids below FIRST_SID are "text"


class Catalogue:
    """A random catalogue laid out in a toy vocabulary: text ids [3, 20), then SID tokens, start, end."""

    def __init__(
        self,
        sizes: tuple[int, ...],
        n_items: int,
        seed: int,
        shared_prefix: bool = False,
        collisions: bool = False,
    ):
        rng = np.random.default_rng(seed)
        if collisions:  # items share semantic codes; TIGER's extra level (hf_semtok.sids) tells them apart
            from hf_semtok.sids import assign_unique_sids

            semantic = np.stack([rng.integers(0, s, n_items) for s in sizes], axis=1)
            table = assign_unique_sids(semantic, [str(i) for i in range(n_items)], list(sizes))
            assert table.stats["colliding_items_before"] > 0  # the catalogue really has collisions
            sizes = tuple(table.codebook_sizes)
        self.sizes = list(sizes)
        self.num_levels = len(sizes)
        if collisions:
            codes = table.codes
        elif shared_prefix:  # heavy prefix sharing: few coarse codes, the last level tells items apart
            first = [min(2, s) for s in sizes[:-1]] + [sizes[-1]]
            codes = np.stack([rng.integers(0, s, 4 * n_items) for s in first], axis=1)
        else:
            codes = np.stack([rng.integers(0, s, 4 * n_items) for s in sizes], axis=1)
        if not collisions:
            codes = np.unique(codes, axis=0)
        self.codes = codes[rng.permutation(len(codes))[:n_items]]
        self.sid_token_ids, nxt = [], FIRST_SID
        for s in sizes:
            self.sid_token_ids.append(list(range(nxt, nxt + s)))
            nxt += s
        self.start, self.end = nxt, nxt + 1
        self.vocab = nxt + 2
        self.items = {tuple(row) for row in self.codes.tolist()}
        self.prefixes = {tuple(row[:lv]) for row in self.codes.tolist() for lv in range(self.num_levels + 1)}

    def processor(self, **kwargs) -> SIDLogitsProcessor:
        return SIDLogitsProcessor(self.codes, self.sid_token_ids, self.start, self.end, EOS, **kwargs)

    def sid_tokens(self, codes) -> list[int]:
        return [self.start, *[self.sid_token_ids[lv][c] for lv, c in enumerate(codes)], self.end]

    def decode_sid(self, tokens: list[int]) -> tuple[int, ...] | None:
        """Codes of a `start c0 .. end` span, or None if any token is at the wrong place."""
        if len(tokens) != self.num_levels + 2 or tokens[0] != self.start or tokens[-1] != self.end:
            return None
        out = []
        for lv, t in enumerate(tokens[1:-1]):
            if t not in self.sid_token_ids[lv]:
                return None
            out.append(self.sid_token_ids[lv].index(t))
        return tuple(out)


CATALOGUES = {  # sizes, items, heavy prefix sharing, collisions (+ extra level)
    "3x(4,3,5)": ((4, 3, 5), 30, False, False),
    "2x(8,8)": ((8, 8), 40, False, False),
    "4x(3,4,2,6)": ((3, 4, 2, 6), 60, False, False),
    "shared(6,6,9)": ((6, 6, 9), 15, True, False),
    "collisions(3,2,2)+extra": ((3, 2, 2), 40, False, True),
}


@pytest.fixture(scope="module", params=list(CATALOGUES))
def setup(request):
    sizes, n, shared, collisions = CATALOGUES[request.param]
    cat = Catalogue(sizes, n, seed=len(sizes) * 7 + n, shared_prefix=shared, collisions=collisions)
    model = build_causal_lm(
        cat.vocab + 3, hidden_size=32, num_layers=1, num_heads=2, seed=0, pad_token_id=PAD, eos_token_id=EOS
    ).eval()
    return cat, model


def _mixed_batch(seed: int, batch: int = 3):
    """Left-padded prompts of different lengths made of text tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, batch)
    width = int(lengths.max())
    ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.as_tensor(rng.integers(3, FIRST_SID, n))
        mask[i, width - n :] = 1
    return ids, mask


def _generate(model, cat, ids, mask, **kwargs):
    proc = cat.processor(mode="sid", prompt_length=ids.shape[1])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        logits_processor=LogitsProcessorList([proc]),
        max_new_tokens=cat.num_levels + 3,
        pad_token_id=PAD,
        eos_token_id=EOS,
        **kwargs,
    )
    return out[:, ids.shape[1] :].tolist()


@pytest.mark.parametrize(
    "decoding",
    [
        dict(do_sample=False),
        dict(do_sample=True, top_k=0, temperature=3.0),
        dict(do_sample=True, num_return_sequences=4, temperature=2.0),
        dict(num_beams=8, num_return_sequences=8, do_sample=False),
        dict(num_beams=4, num_return_sequences=2, do_sample=True),
    ],
    ids=["greedy", "sample", "sample_nrs", "beam", "beam_sample"],
)
def test_every_generated_sid_is_a_catalogue_item(setup, decoding):
    cat, model = setup
    for seed in range(2):
        torch.manual_seed(seed)
        ids, mask = _mixed_batch(seed)
        for row in _generate(model, cat, ids, mask, **decoding):
            sid = cat.decode_sid(row[: cat.num_levels + 2])
            assert sid in cat.items, row
            assert row[cat.num_levels + 2] == EOS  # EOS forced after <|sid_end|>


def test_beam_search_returns_distinct_items_and_is_repeatable(setup):
    cat, model = setup
    ids, mask = _mixed_batch(5, batch=2)
    beams = min(6, len(cat.items))
    first = _generate(model, cat, ids, mask, num_beams=beams, num_return_sequences=beams)
    again = _generate(model, cat, ids, mask, num_beams=beams, num_return_sequences=beams)
    assert first == again
    for user in range(2):
        sids = [cat.decode_sid(r[: cat.num_levels + 2]) for r in first[user * beams : (user + 1) * beams]]
        assert all(s in cat.items for s in sids)


def _reference_allowed(cat: Catalogue, written: list[int]) -> set[int]:
    """Brute force: token ids that extend the written codes to a catalogue prefix."""
    level = len(written)
    return {
        cat.sid_token_ids[level][row[level]]
        for row in cat.codes.tolist()
        if list(row[:level]) == written and level < cat.num_levels
    }


def test_allowed_sets_match_brute_force(setup):
    cat, _ = setup
    rng = np.random.default_rng(0)
    prompt = [5, 6, 7]
    rows, expected = [], []
    for _ in range(40):
        item = cat.codes[rng.integers(len(cat.codes))].tolist()
        level = int(rng.integers(0, cat.num_levels))
        written = item[:level]
        rows.append(prompt + [cat.start] + [cat.sid_token_ids[lv][c] for lv, c in enumerate(written)])
        expected.append(_reference_allowed(cat, written))
    width = max(len(r) for r in rows)
    for mode in ("sid", "free"):
        for r, exp in zip(rows, expected):
            ids = torch.tensor([r])
            proc = (
                cat.processor(mode="sid", prompt_length=len(prompt))
                if mode == "sid"
                else cat.processor(mode="free")
            )
            out = proc(ids, torch.zeros(1, cat.vocab + 3))
            assert set(torch.nonzero(torch.isfinite(out[0])).flatten().tolist()) == exp
    # the same rows as one left-padded free-mode batch (different positions in the SID per row)
    batch = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    out = cat.processor(mode="free")(batch, torch.randn(len(rows), cat.vocab + 3))
    for i, exp in enumerate(expected):
        assert set(torch.nonzero(torch.isfinite(out[i])).flatten().tolist()) == exp


def test_scores_not_modified_in_place_and_allowed_scores_kept():
    cat = Catalogue((4, 3, 5), 30, seed=1)
    proc = cat.processor(mode="sid", prompt_length=2)
    ids = torch.tensor([[4, 5, cat.start], [4, 5, cat.start]])
    scores = torch.randn(2, cat.vocab)
    before = scores.clone()
    out = proc(ids, scores)
    assert torch.equal(scores, before)
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], scores[finite])  # code scores are not renormalised


def test_forced_markers_and_eos_in_sid_mode():
    cat = Catalogue((4, 3), 8, seed=2)
    proc = cat.processor(mode="sid", prompt_length=2)
    item = cat.codes[0].tolist()
    steps = [[4, 5], [4, 5, *cat.sid_tokens(item)[:-1]], [4, 5, *cat.sid_tokens(item)]]
    for ids, forced in zip(steps, [cat.start, cat.end, EOS]):
        out = proc(torch.tensor([ids]), torch.randn(1, cat.vocab))
        assert torch.nonzero(torch.isfinite(out[0])).flatten().tolist() == [forced]
        assert out[0, forced] == 0.0


def test_prefix_generation_forces_end_after_the_prefix():
    cat = Catalogue((4, 3, 5), 30, seed=3)
    proc = cat.processor(mode="sid", prompt_length=1, num_levels_to_generate=1)
    code = int(cat.codes[0, 0])
    out = proc(torch.tensor([[4, cat.start, cat.sid_token_ids[0][code]]]), torch.randn(1, cat.vocab))
    assert torch.nonzero(torch.isfinite(out[0])).flatten().tolist() == [cat.end]


def test_dead_end_row_allows_only_eos():
    cat = Catalogue((4, 3, 5), 10, seed=4)
    used = {tuple(r[:2]) for r in cat.codes.tolist()}
    missing = next((a, b) for a in range(4) for b in range(3) if (a, b) not in used)
    bad = [4, cat.start, cat.sid_token_ids[0][missing[0]], cat.sid_token_ids[1][missing[1]]]
    wrong_level = [4, cat.start, cat.sid_token_ids[1][0]]  # a level-1 token where level 0 belongs
    no_marker = [4, 5, 6]  # "sid" mode: the token after the prompt is not <|sid_start|>
    for ids, proc in [
        (bad, cat.processor(mode="free")),
        (bad, cat.processor(mode="sid", prompt_length=1)),
        (wrong_level, cat.processor(mode="free")),
        (no_marker, cat.processor(mode="sid", prompt_length=1)),
    ]:
        out = proc(torch.tensor([ids]), torch.randn(1, cat.vocab))
        assert torch.nonzero(torch.isfinite(out[0])).flatten().tolist() == [EOS]
        assert out[0, EOS] == DEAD_END_SCORE


class _OpenSIDs(LogitsProcessor):
    """Pushes the model to open a SID (before the constraint runs), so free mode is exercised often."""

    def __init__(self, start: int):
        self.start = start

    def __call__(self, input_ids, scores):
        bias = torch.zeros_like(scores)
        bias[:, self.start] = 4.0
        return scores + bias


def test_free_mode_text_with_constrained_sids(setup):
    cat, model = setup
    ids, mask = _mixed_batch(3, batch=4)
    torch.manual_seed(0)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        logits_processor=LogitsProcessorList([_OpenSIDs(cat.start), cat.processor(mode="free")]),
        max_new_tokens=4 * (cat.num_levels + 2),
        do_sample=True,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    n_spans = 0
    sid_tokens = {t for level in cat.sid_token_ids for t in level} | {cat.end}
    for row in out[:, ids.shape[1] :].tolist():
        if EOS in row:
            row = row[: row.index(EOS)]
        i = 0
        while i < len(row):
            if row[i] == cat.start:
                span = row[i : i + cat.num_levels + 2]
                if len(span) == cat.num_levels + 2:  # completed span
                    assert cat.decode_sid(span) in cat.items, row
                    n_spans += 1
                else:  # generation stopped inside the span: still a valid prefix
                    codes = [cat.sid_token_ids[lv].index(t) for lv, t in enumerate(span[1:])]
                    assert tuple(codes) in cat.prefixes
                i += cat.num_levels + 2
            else:
                assert row[i] not in sid_tokens, row  # no SID code or end marker outside a span
                i += 1
    assert n_spans > 0


def test_bad_construction_arguments():
    cat = Catalogue((4, 3), 8, seed=5)
    with pytest.raises(ValueError, match="prompt_length"):
        cat.processor(mode="sid")
    with pytest.raises(ValueError, match="only used in mode='sid'"):
        cat.processor(mode="free", prompt_length=3)
    with pytest.raises(ValueError, match="one list of token ids per SID level"):
        SIDLogitsProcessor(cat.codes, cat.sid_token_ids[:1], cat.start, cat.end, EOS, prompt_length=1)
    with pytest.raises(ValueError, match="outside the codebooks"):
        SIDLogitsProcessor(cat.codes + 10, cat.sid_token_ids, cat.start, cat.end, EOS, prompt_length=1)
    with pytest.raises(ValueError, match="num_levels_to_generate"):
        cat.processor(mode="sid", prompt_length=1, num_levels_to_generate=3)
    proc = cat.processor(mode="sid", prompt_length=1)
    with pytest.raises(ValueError, match="lacks the SID tokens"):
        proc(torch.tensor([[4]]), torch.randn(1, FIRST_SID))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores():
    cat = Catalogue((4, 3, 5), 30, seed=6)
    proc = cat.processor(mode="free")
    ids = torch.tensor([[4, cat.start, cat.sid_token_ids[0][int(cat.codes[0, 0])]]])
    cpu = proc(ids, torch.zeros(1, cat.vocab))
    gpu = proc(ids.cuda(), torch.zeros(1, cat.vocab, device="cuda"))
    assert gpu.device.type == "cuda"
    assert torch.equal(cpu, gpu.cpu())


def test_sid_fast_path_matches_general_path(setup):
    """`"sid"` mode has a specialised path; it must give exactly what the general (per-row) path gives."""
    cat, _ = setup
    rng = np.random.default_rng(1)
    prompt_length = 3
    for step in range(cat.num_levels + 3):
        rows = []
        for r in range(12):
            item = cat.codes[rng.integers(len(cat.codes))].tolist()
            gen = cat.sid_tokens(item) + [EOS]
            row = [4, 5, 6, *gen[:step]]
            if r % 4 == 3 and step > 1:  # corrupt one written token: a dead end
                row[prompt_length + 1 + int(rng.integers(0, min(step - 1, cat.num_levels)))] = 7
            rows.append(row)
        ids = torch.tensor(rows)
        scores = torch.randn(len(rows), cat.vocab + 3)
        fast = cat.processor(mode="sid", prompt_length=prompt_length)
        general = cat.processor(mode="sid", prompt_length=prompt_length)
        general._fast_sid_path = False
        assert torch.equal(fast(ids, scores), general(ids, scores)), step


def test_bare_layout_constrains_like_marked_with_the_marker_inserted(setup):
    """`layout="bare"`: the same masks as the marked layout at the same SID position, without the markers."""
    cat, _ = setup
    rng = np.random.default_rng(2)
    prompt_length = 3
    for levels in (None, 1):
        bare = cat.processor(
            mode="sid", prompt_length=prompt_length, num_levels_to_generate=levels, layout="bare"
        )
        marked = cat.processor(mode="sid", prompt_length=prompt_length, num_levels_to_generate=levels)
        for step in range(cat.num_levels + 2):
            rows = []
            for r in range(12):
                codes = cat.sid_tokens(cat.codes[rng.integers(len(cat.codes))].tolist())[1:-1]
                row = [4, 5, 6, *codes[:step]]
                if r % 4 == 3 and 1 < step <= cat.num_levels:  # a wrong written token: a dead end
                    row[prompt_length + int(rng.integers(0, step - 1))] = 7
                rows.append(row[: prompt_length + step])
            ids = torch.tensor(rows)
            with_marker = torch.cat(
                [ids[:, :prompt_length], torch.full((len(rows), 1), cat.start), ids[:, prompt_length:]], 1
            )
            scores = torch.randn(len(rows), cat.vocab + 3)
            expected = marked(with_marker, scores)
            got = bare(ids, scores)
            done = step >= (levels or cat.num_levels)
            if done:  # marked forces <|sid_end|> here; bare goes straight to EOS
                assert torch.isinf(got).sum(1).tolist() == [got.shape[1] - 1] * len(rows)
                assert (got[:, EOS] == 0).all()
            else:
                assert torch.equal(got, expected), (levels, step)
    with pytest.raises(ValueError, match="layout='bare' is only supported in mode='sid'"):
        cat.processor(mode="free", layout="bare")
    with pytest.raises(ValueError, match="layout must be one of"):
        cat.processor(mode="sid", prompt_length=3, layout="plain")


# ----------------------------------------------------------------------------------------------------------------
# recommend() with a real SemanticIDTokenizer
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec_setup():
    from hf_semtok.small_models import train_base_tokenizer
    from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

    rng = np.random.default_rng(0)
    n_items = 24
    all_codes = np.array([(a, b, c) for a in range(3) for b in range(4) for c in range(5)])
    codes = all_codes[rng.permutation(len(all_codes))[:n_items]]
    table = {f"item{i:02d}": tuple(int(c) for c in row) for i, row in enumerate(codes)}
    base = train_base_tokenizer(["a small catalogue of things to buy", "books and games"] * 5, vocab_size=300)
    tok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=[3, 4, 5])
    model = build_causal_lm(
        len(tok),
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        seed=0,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    ).eval()
    items = list(table)
    histories = [[items[(u * 5 + j) % n_items] for j in range(1 + u % 4)] for u in range(7)]
    return tok, model, table, histories


def test_recommend_returns_ranked_distinct_catalogue_items(rec_setup):
    from hf_semtok.generation import recommend

    tok, model, table, histories = rec_setup
    out = recommend(model, tok, histories, k=5, num_beams=8, batch_size=3, progress=False)
    assert len(out) == len(histories)
    for ranked in out:
        items = [item for item, _ in ranked]
        scores = [score for _, score in ranked]
        assert 1 <= len(items) <= 5
        assert all(item in table for item in items)
        assert len(set(items)) == len(items)
        assert scores == sorted(scores, reverse=True)
    again = recommend(model, tok, histories, k=5, num_beams=8, batch_size=3, progress=False)
    assert again == out
    # the same users one by one (no padding) get the same items
    single = recommend(model, tok, histories, k=5, num_beams=8, batch_size=1, progress=False)
    assert [[i for i, _ in r] for r in single] == [[i for i, _ in r] for r in out]
    # results come back in input order whatever the batching (users are grouped by prompt length inside)
    backwards = recommend(model, tok, histories[::-1], k=5, num_beams=8, batch_size=3, progress=False)
    assert [[i for i, _ in r] for r in backwards[::-1]] == [[i for i, _ in r] for r in out]


def test_recommend_scores_are_exact_sid_log_probs(rec_setup):
    """With as many beams as items, beam search is exhaustive: every item comes back, scored by the sum of its
    code tokens' log-probabilities under the model (the forced markers count 0)."""
    from hf_semtok.generation import recommend
    from hf_semtok.prompts import history_prompt

    tok, model, table, histories = rec_setup
    history = histories[2]
    ranked = recommend(model, tok, [history], k=len(table), num_beams=len(table), progress=False)[0]
    assert sorted(item for item, _ in ranked) == sorted(table)
    prompt = tok(history_prompt(tok, history), return_tensors="pt")["input_ids"][0]
    for item, score in ranked[:: max(1, len(ranked) // 6)]:
        sid_ids = tok.encode_items([item])  # start, codes, end
        ids = torch.cat([prompt, torch.tensor(sid_ids)])[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        n = len(prompt)
        exact = sum(logp[n + j, sid_ids[j + 1]].item() for j in range(tok.num_levels))  # code tokens only
        assert score == pytest.approx(exact, abs=1e-4)


def test_recommend_exclude_seen_and_prefix_level(rec_setup):
    from hf_semtok.generation import recommend

    tok, model, table, histories = rec_setup
    for history, ranked in zip(
        histories, recommend(model, tok, histories, k=4, exclude_seen=True, progress=False)
    ):
        assert not {item for item, _ in ranked} & set(history)
    by_prefix = recommend(model, tok, histories[:2], k=3, prefix_level=1, num_beams=6, progress=False)
    for ranked in by_prefix:
        prefixes = [p for p, _, _ in ranked]
        assert len(set(prefixes)) == len(prefixes) and 1 <= len(prefixes) <= 3  # 3 level-0 codes at most
        for prefix, _, items in ranked:
            assert len(prefix) == 1
            assert items == tok.items_with_prefix(prefix) and items


def test_recommend_bad_input(rec_setup):
    from hf_semtok.generation import recommend

    tok, model, table, histories = rec_setup
    with pytest.raises(ValueError, match="unknown to the tokenizer: 'nope'"):
        recommend(model, tok, [["nope"]], progress=False)
    with pytest.raises(ValueError, match="is empty"):
        recommend(model, tok, [[]], progress=False)
    with pytest.raises(ValueError, match="larger than the catalogue"):
        recommend(model, tok, histories, k=len(table) + 1, progress=False)
    with pytest.raises(ValueError, match="smaller than k"):
        recommend(model, tok, histories, k=10, num_beams=5, progress=False)
    with pytest.raises(ValueError, match="between 1 and 2 .*got 3\\."):
        recommend(model, tok, histories, k=2, prefix_level=3, progress=False)
    with pytest.raises(ValueError, match="a list of item ids"):
        recommend(model, tok, ["item01"], progress=False)
    small = build_causal_lm(len(tok) - 10, hidden_size=16, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="lacks the SID tokens"):
        recommend(small, tok, histories, progress=False)


def test_recommend_accepts_a_user_mapping(rec_setup):
    from hf_semtok.generation import recommend

    tok, model, _, histories = rec_setup
    as_list = recommend(model, tok, histories, k=3, progress=False)
    by_user = recommend(model, tok, {f"u{n}": h for n, h in enumerate(histories)}, k=3, progress=False)
    assert list(by_user) == [f"u{n}" for n in range(len(histories))]
    assert [[i for i, _ in r] for r in by_user.values()] == [[i for i, _ in r] for r in as_list]


def test_processor_from_tokenizer_parse_items_round_trip(rec_setup):
    """Free-mode generation through the real tokenizer: `parse_items` finds only catalogue items."""
    tok, model, table, _ = rec_setup
    ids = tok(["books and games"], return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        logits_processor=LogitsProcessorList(
            [_OpenSIDs(tok.sid_start_token_id), SIDLogitsProcessor.from_tokenizer(tok, mode="free")]
        ),
        max_new_tokens=25,
        do_sample=True,
        pad_token_id=tok.pad_token_id,
    )
    generated = out[0, ids.shape[1] :].tolist()
    starts = [i for i, t in enumerate(generated) if t == tok.sid_start_token_id]
    if starts and tok.sid_end_token_id not in generated[starts[-1] :]:
        generated = generated[: starts[-1]]  # drop a SID cut short by max_new_tokens
    found = tok.parse_items(generated, on_invalid="raise")
    assert found and all(item in table for item in found)


def _exact_sid_log_prob(model, tok, history, item) -> float:
    from hf_semtok.prompts import history_prompt

    prompt = tok(history_prompt(tok, history), return_tensors="pt")["input_ids"][0]
    sid_ids = tok.encode_items([item])  # start, codes, end
    ids = torch.cat([prompt, torch.tensor(sid_ids)])[None]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    n = len(prompt)
    return sum(logp[n + j, sid_ids[j + 1]].item() for j in range(tok.num_levels))


def test_recommend_greedy_and_sampling_are_scored(rec_setup):
    """num_beams=1 (greedy) and do_sample=True return catalogue items scored like beam search (no
    `sequences_scores` exist there)."""
    from hf_semtok.generation import recommend

    tok, model, table, histories = rec_setup
    greedy = recommend(model, tok, histories[:3], k=1, num_beams=1, progress=False)
    for history, ranked in zip(histories[:3], greedy):
        assert len(ranked) == 1 and ranked[0][0] in table
        assert ranked[0][1] == pytest.approx(_exact_sid_log_prob(model, tok, history, ranked[0][0]), abs=1e-4)
    torch.manual_seed(0)
    sampled = recommend(model, tok, histories[:2], k=4, num_beams=8, do_sample=True, progress=False)
    for history, ranked in zip(histories[:2], sampled):
        assert 1 <= len(ranked) <= 4
        items = [i for i, _ in ranked]
        assert len(set(items)) == len(items) and set(items) <= set(table)
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
        for item, score in ranked:
            assert score == pytest.approx(_exact_sid_log_prob(model, tok, history, item), abs=1e-4)


def test_recommend_integer_arguments(rec_setup):
    from hf_semtok.generation import recommend

    tok, model, _, histories = rec_setup
    for bad in (1.5, 2.0, "3", True, None):
        with pytest.raises(TypeError, match="`k` must be an int"):
            recommend(model, tok, histories[:1], k=bad, progress=False)
    with pytest.raises(TypeError, match="`num_beams` must be an int"):
        recommend(model, tok, histories[:1], k=2, num_beams=4.5, progress=False)
    with pytest.raises(TypeError, match="`batch_size` must be an int"):
        recommend(model, tok, histories[:1], k=2, batch_size="8", progress=False)
    with pytest.raises(ValueError, match="`k` must be >= 1"):
        recommend(model, tok, histories[:1], k=0, progress=False)
    with pytest.raises(TypeError, match="item ids are strings"):
        recommend(model, tok, [[1, 2]], k=2, progress=False)
    as_numpy = recommend(model, tok, histories[:2], k=np.int64(3), num_beams=np.int32(6), progress=False)
    assert as_numpy == recommend(model, tok, histories[:2], k=3, num_beams=6, progress=False)
    assert all(len(r) <= 3 for r in as_numpy)


def test_recommend_leaves_tokenizer_state_alone(rec_setup):
    """recommend() neither reads nor changes the shared tokenizer's padding/truncation settings."""
    from hf_semtok.generation import recommend

    tok, model, _, histories = rec_setup
    expected = recommend(model, tok, histories, k=3, num_beams=6, progress=False)
    backend = tok.backend_tokenizer
    side = tok.padding_side
    try:
        tok.padding_side = "right"
        backend.enable_truncation(
            max_length=3
        )  # as another thread calling tok(..., truncation=True) leaves it
        got = recommend(model, tok, histories, k=3, num_beams=6, progress=False)
        assert got == expected
        assert backend.truncation is not None and backend.truncation["max_length"] == 3
        assert tok.padding_side == "right"
    finally:
        backend.no_truncation()
        tok.padding_side = side


def test_recommend_with_a_concurrent_tokenizing_thread(rec_setup):
    import threading

    from hf_semtok.generation import recommend

    tok, model, _, histories = rec_setup
    expected = recommend(model, tok, histories, k=3, num_beams=6, progress=False)
    text = ["a small catalogue of things to buy books and games"] * 4
    short = [len(ids) for ids in tok(text, truncation=True, max_length=4)["input_ids"]]
    stop, errors = threading.Event(), []

    def tokenize_forever() -> None:
        while not stop.is_set():
            lengths = [len(ids) for ids in tok(text, truncation=True, max_length=4)["input_ids"]]
            if lengths != short:
                errors.append(lengths)

    worker = threading.Thread(target=tokenize_forever)
    worker.start()
    try:
        runs = [recommend(model, tok, histories, k=3, num_beams=6, progress=False) for _ in range(5)]
    finally:
        stop.set()
        worker.join()
    assert all(run == expected for run in runs)
    assert not errors


def test_recommend_uses_prefill_once_for_beam_search(rec_setup, monkeypatch):
    from hf_semtok import generation
    from hf_semtok.generation import PrefillOnceLM, recommend

    tok, model, _, histories = rec_setup
    plain = recommend(model, tok, histories, k=4, num_beams=8, progress=False, prefill_once=False)
    calls = []
    original = PrefillOnceLM.generate

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("num_beams"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(generation.PrefillOnceLM, "generate", counting)
    wrapped = recommend(model, tok, histories, k=4, num_beams=8, batch_size=4, progress=False)
    assert calls == [8, 8]  # two batches, both through the wrapper
    assert [[i for i, _ in r] for r in wrapped] == [[i for i, _ in r] for r in plain]
    for a, b in zip(wrapped, plain):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    calls.clear()
    already = recommend(PrefillOnceLM(model), tok, histories[:2], k=4, num_beams=8, progress=False)
    assert calls == [8]  # not wrapped twice
    assert [[i for i, _ in r] for r in already] == [[i for i, _ in r] for r in plain[:2]]


def test_marked_layout_decodes_one_step_per_code(rec_setup, monkeypatch):
    """The forced `<|sid_start|>` goes into the prompt and nothing runs after the last code: `generate()` gets
    prompts ending in the start marker and `max_new_tokens == num_levels` (two forward passes fewer per SID than
    writing both markers), for beam search, greedy search and prefixes alike."""
    from hf_semtok.generation import recommend

    tok, model, _, histories = rec_setup
    seen = []
    original = type(model).generate

    def spying(self, *args, **kwargs):
        seen.append((kwargs["input_ids"][:, -1].tolist(), kwargs["max_new_tokens"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spying)
    recommend(model, tok, histories[:3], k=4, num_beams=8, progress=False)
    recommend(model, tok, histories[:3], k=1, num_beams=1, progress=False)
    recommend(model, tok, histories[:3], k=2, num_beams=4, prefix_level=2, progress=False)
    assert [new for _, new in seen] == [tok.num_levels, tok.num_levels, 2]
    assert all(set(last) == {tok.sid_start_token_id} for last, _ in seen)


# ----------------------------------------------------------------------------------------------------------------
# recommend() in the bare SID layout (an item is its code tokens, no markers)
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bare_setup(rec_setup):
    import copy

    from hf_semtok.lm.sid_sequences import sid_only_chat_template

    tok, model, table, histories = rec_setup
    bare = copy.deepcopy(tok)  # the shared tokenizer stays marked
    bare.sid_layout = "bare"
    bare.chat_template = sid_only_chat_template()
    return bare, model, table, histories


def _exact_bare_log_prob(model, tok, history, item) -> float:
    prompt = tok.encode_items(history)
    codes = tok.encode_items([item])  # the L code tokens
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + codes])).logits[0].float(), dim=-1)
    return sum(logp[len(prompt) - 1 + j, codes[j]].item() for j in range(tok.num_levels))


def test_bare_layout_prompt_is_the_concatenated_codes(bare_setup):
    from hf_semtok.prompts import history_prompt, target_text

    tok, _, table, histories = bare_setup
    history = histories[3]
    ids = tok(history_prompt(tok, history))["input_ids"]
    expected = [int(t) for item in history for t in tok.codes_to_token_ids([table[item]])[0]]
    assert ids == expected and len(ids) == tok.num_levels * len(history)
    assert tok.sid_start_token_id not in ids and tok.sid_end_token_id not in ids
    assert tok.sid_layout == "bare" and tok.tokens_per_item == tok.num_levels
    assert tok.parse_items(ids) == list(history)  # the tokenizer's parser reads bare SIDs too
    assert target_text(tok, history[0]) == history_prompt(tok, history[:1]) + tok.eos_token


def test_bare_layout_recommend_is_exhaustive_and_exactly_scored(bare_setup):
    """Every item comes back, each scored by the log-probability of exactly its L code tokens after the prompt:
    the constraint starts at the first generated token and nothing else is generated."""
    from hf_semtok.generation import recommend

    tok, model, table, histories = bare_setup
    history = histories[2]
    ranked = recommend(model, tok, [history], k=len(table), num_beams=len(table), progress=False)[0]
    assert sorted(item for item, _ in ranked) == sorted(table)
    for item, score in ranked[:: max(1, len(ranked) // 6)]:
        assert score == pytest.approx(_exact_bare_log_prob(model, tok, history, item), abs=1e-4)
    # Batched, left-padded users of mixed lengths get only catalogue items.
    for ranked in recommend(model, tok, histories, k=5, num_beams=8, batch_size=3, progress=False):
        items = [item for item, _ in ranked]
        assert 1 <= len(items) <= 5 and set(items) <= set(table) and len(set(items)) == len(items)


def test_bare_layout_greedy_sampling_and_prefixes(bare_setup):
    from hf_semtok.generation import recommend

    tok, model, table, histories = bare_setup
    for history, ranked in zip(
        histories[:3], recommend(model, tok, histories[:3], k=1, num_beams=1, progress=False)
    ):
        assert len(ranked) == 1 and ranked[0][0] in table
        assert ranked[0][1] == pytest.approx(
            _exact_bare_log_prob(model, tok, history, ranked[0][0]), abs=1e-4
        )
    torch.manual_seed(0)
    for history, ranked in zip(
        histories[:2], recommend(model, tok, histories[:2], k=4, num_beams=8, do_sample=True, progress=False)
    ):
        assert ranked and set(i for i, _ in ranked) <= set(table)
        for item, score in ranked:
            assert score == pytest.approx(_exact_bare_log_prob(model, tok, history, item), abs=1e-4)
    by_prefix = recommend(model, tok, histories[:2], k=3, prefix_level=1, num_beams=3, progress=False)
    for ranked in by_prefix:
        assert sorted(p for p, _, _ in ranked) == [(0,), (1,), (2,)]  # all three level-0 codes
        for prefix, _, items in ranked:
            assert items and all(table[i][:1] == prefix for i in items)


def test_recommend_on_an_unmerged_peft_model_with_trainable_sid_rows(rec_setup):
    """peft wraps the embeddings of trainable SID rows in a module without `num_embeddings`."""
    import copy

    from peft import get_peft_model

    from hf_semtok.generation import recommend
    from hf_semtok.lm.sid_embeddings import sid_lora_config

    tok, model, table, histories = rec_setup
    peft_model = get_peft_model(copy.deepcopy(model), sid_lora_config(model, tok, r=2, lora_alpha=4))
    ranked = recommend(peft_model, tok, histories[:2], k=3, num_beams=4, progress=False)
    assert all(item in table for row in ranked for item, _ in row) and all(len(row) == 3 for row in ranked)


def test_recommend_with_no_users_returns_empty_and_titles_must_be_a_mapping(rec_setup):
    """Issue 35: `recommend(model, tok, [])` raised `max() arg is an empty sequence`, and a list of titles an
    AttributeError."""
    from hf_semtok.generation import recommend
    from hf_semtok.prompts import history_prompt

    tok, model, table, histories = rec_setup
    assert recommend(model, tok, [], k=3, progress=False) == []
    assert recommend(model, tok, {}, k=3, progress=False) == {}
    with pytest.raises(ValueError, match="larger than the catalogue"):  # the arguments are still checked
        recommend(model, tok, [], k=len(table) + 1, progress=False)
    for titles in (["Red Pen", "Glue"], "Red Pen"):
        with pytest.raises(
            TypeError, match=r"recommend\(\): titles must be a mapping item id -> title .*dict\(zip\(item_ids"
        ):
            recommend(model, tok, histories[:1], k=3, titles=titles, progress=False)
        with pytest.raises(TypeError, match=r"history_prompt\(\): titles must be a mapping"):
            history_prompt(tok, histories[0], titles=titles)
    for bad in (None, (h for h in histories), np.array([["item01"]])):
        with pytest.raises(
            TypeError, match=r"recommend\(\): histories must be a list of per-user item id lists"
        ):
            recommend(model, tok, bad, k=3, progress=False)
    titled = recommend(model, tok, histories[:1], k=3, titles={i: "a title" for i in table}, progress=False)
    assert len(titled[0]) >= 1


@pytest.mark.parametrize("flag", ["exclude_seen", "do_sample", "prefill_once"])
def test_recommend_refuses_a_flag_that_is_not_a_bool(rec_setup, flag):
    from hf_semtok.generation import recommend

    tok, model = rec_setup[0], rec_setup[1]
    with pytest.raises(TypeError, match=f"{flag} must be True or False; got str 'no'"):
        recommend(model, tok, [["item01"]], **{flag: "no"})
    assert recommend(model, tok, [["item01"]], k=2, **{flag: np.bool_(False)}, progress=False)[0]
