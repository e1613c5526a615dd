"""SIDLogitsProcessor's bit-packed prefix index: allowed codes equal brute force; memory follows the prefixes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hf_semtok.logits_process import DEAD_END_SCORE, SIDLogitsProcessor
from hf_semtok.prefix_index import SIDPrefixIndex, TokenPrefixLookup

SIZES = [5, 13, 3, 17]  # odd widths: rows of 1, 2, 1 and 3 bytes, codes that straddle bytes
START, END, EOS = 0, 1, 2


def _catalogue(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    every = np.array(list(itertools.product(*[range(s) for s in SIZES])))
    return every[rng.choice(len(every), size=n, replace=False)]


def _token_ids() -> list[list[int]]:
    ids, nxt = [], 3
    for size in SIZES:
        ids.append(list(range(nxt, nxt + size)))
        nxt += size
    return ids


def _allowed(proc: SIDLogitsProcessor, prefixes: list[tuple[int, ...]], fast: bool) -> list[set[int]]:
    """Codes the processor allows after each prefix (all prefixes of one length, "sid" mode)."""
    token_ids = _token_ids()
    proc._fast_sid_path = fast
    ids = torch.tensor([[7, START, *[token_ids[lv][c] for lv, c in enumerate(p)]] for p in prefixes])
    vocab = token_ids[-1][-1] + 1
    out = proc(ids, torch.zeros(len(prefixes), vocab))
    level = len(prefixes[0])
    cols = torch.tensor(token_ids[level])
    return [set(torch.nonzero(row[cols] > float("-inf")).flatten().tolist()) for row in out]


def _force_lookup(monkeypatch, lookup: str) -> None:
    """Make every level of processors built next use direct tables ("direct") or binary search ("search")."""
    for name in ("direct_lookup_min_bytes", "direct_lookup_max_bytes_per_prefix"):
        monkeypatch.setattr(TokenPrefixLookup, name, 2**40 if lookup == "direct" else 0)


def _assert_lookup(proc: SIDLogitsProcessor, lookup: str) -> None:
    assert [t is not None for t in proc._lookup.direct_rows[1:]] == [lookup == "direct"] * (
        proc.num_levels - 1
    )


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize(("fast", "lookup"), [(True, "direct"), (True, "search"), (False, "direct")])
def test_allowed_codes_equal_brute_force_at_every_level(fast, dense, lookup, monkeypatch):
    codes = _catalogue(300)
    _force_lookup(monkeypatch, lookup)
    proc = SIDLogitsProcessor(codes, _token_ids(), START, END, EOS, mode="sid", prompt_length=1)
    _assert_lookup(proc, lookup)
    proc.index.dense_children_max_bytes = SIDPrefixIndex.dense_children_max_bytes if dense else 0
    rng = np.random.default_rng(1)
    for level in range(len(SIZES)):
        real = [tuple(r[:level]) for r in codes[rng.choice(len(codes), 20)]]
        fake = [tuple(int(rng.integers(s)) for s in SIZES[:level]) for _ in range(20)]
        prefixes = real + fake if level else [()]
        if level == len(SIZES) - 1:  # the prefix space is not full here: some fake prefixes are absent
            assert any(p not in {tuple(r[:level]) for r in codes} for p in fake)
        got = _allowed(proc, prefixes, fast)
        for prefix, allowed in zip(prefixes, got):
            want = {int(r[level]) for r in codes if tuple(r[:level]) == prefix}
            assert allowed == want, (level, prefix)
    # the path under test ran: the general path keeps a device index (dense or not); the "sid" path needs none
    assert [("dense" in t) == dense for t in proc.index._device_cache.values()] == ([] if fast else [True])


def test_memory_is_bit_packed_per_level():
    codes = _catalogue(2000)
    proc = SIDLogitsProcessor(codes, _token_ids(), START, END, EOS, mode="sid", prompt_length=1)
    n_prefixes = [len({tuple(r[:lv]) for r in codes}) for lv in range(len(SIZES))]
    assert proc.num_prefixes == sum(n_prefixes)
    want_bytes = sum(n * ((s + 7) // 8) for n, s in zip(n_prefixes, SIZES))
    assert proc.index._packed_children.nbytes == want_bytes
    dense_bytes = proc.num_prefixes * max(SIZES)  # the former bool mask
    assert proc.index._packed_children.nbytes * 4 < dense_bytes


def test_index_does_not_depend_on_row_order():
    codes = _catalogue(500)
    a = SIDLogitsProcessor(codes, _token_ids(), START, END, EOS, mode="sid", prompt_length=1)
    b = SIDLogitsProcessor(codes[::-1].copy(), _token_ids(), START, END, EOS, mode="sid", prompt_length=1)
    assert np.array_equal(a.index._prefix_keys, b.index._prefix_keys)
    assert np.array_equal(a.index._packed_children, b.index._packed_children)


@pytest.mark.parametrize("lookup", ["direct", "search"])
@pytest.mark.parametrize("scattered", [True, False])
@pytest.mark.parametrize("host_mask", [True, False])
@pytest.mark.parametrize("layout", ["marked", "bare"])
def test_sid_path_equals_general_path_with_scattered_token_ids_and_dead_ends(
    layout, host_mask, scattered, lookup, monkeypatch
):
    """The "sid" path looks prefixes up in numpy (direct tables or binary search) and masks scattered
    (non-consecutive) token columns, with a vocabulary-wide host mask (CPU) or on the scores' device
    (`host_mask=False`: the accelerator path, run on CPU here): same scores as the general torch path, dead ends
    included (a wrong level, an unknown prefix, a missing start marker, a token outside the SID tokens' range)."""
    codes = _catalogue(400)
    _force_lookup(monkeypatch, lookup)
    rng = np.random.default_rng(3)
    ids = np.arange(3, 3 + sum(SIZES))
    ids = (
        rng.permutation(ids).tolist() if scattered else ids.tolist()
    )  # scattered: all levels' ids interleaved
    token_ids, at = [], 0
    for size in SIZES:
        token_ids.append(ids[at : at + size])
        at += size
    vocab, prompt_length = 3 + sum(SIZES) + 2, 2
    fast = SIDLogitsProcessor(codes, token_ids, START, END, EOS, prompt_length=prompt_length, layout=layout)
    general = SIDLogitsProcessor(codes, token_ids, START, END, EOS, prompt_length=prompt_length)  # marked
    general._fast_sid_path = False
    _assert_lookup(fast, lookup)
    if not host_mask:
        fast.host_mask_max_elements = 0
    # The general path has no bare layout of its own: a bare row is compared with the marked row that has the start
    # marker inserted, on the code steps (the two layouts differ only in the token forced after the last code).
    marker = [] if layout == "marked" else [START]
    for step in range(len(SIZES) + 3 if layout == "marked" else len(SIZES)):
        rows = []
        for r in range(16):
            item = codes[rng.integers(len(codes))]
            sid = [START, *[token_ids[lv][c] for lv, c in enumerate(item)], END, EOS]
            written = sid[:step] if layout == "marked" else sid[1 : step + 1]
            if r % 4 == 1 and len(written) > 1:  # a code token of the wrong level: dead end
                written[-1] = token_ids[(len(written) + 1) % len(SIZES)][0]
            if r % 4 == 2 and step and layout == "marked":  # no start marker: dead end
                written[0] = vocab - 1
            if r % 8 == 3 and len(written) > 1:  # a text token past every SID token id: dead end
                written[-1] = vocab - 1
            if r % 8 == 7 and len(written) > 1 + (layout == "marked"):  # the start marker as a code: dead end
                written[-1] = START
            rows.append([vocab - 2] * prompt_length + written)
        ids = torch.tensor(rows)
        scores = torch.randn(len(rows), vocab)
        general_ids = torch.tensor([row[:prompt_length] + marker + row[prompt_length:] for row in rows])
        assert torch.equal(fast(ids, scores), general(general_ids, scores)), step


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", ["marked", "bare"])
def test_sid_path_keeps_the_scores_dtype_and_values(dtype, layout):
    """float16/64 scores are masked in numpy through views, bfloat16 in torch: each keeps its dtype and gives
    the float32 result's mask with its own values, at every step, dead ends included; `scores` is not written."""
    codes = _catalogue(200)
    token_ids = _token_ids()
    vocab = token_ids[-1][-1] + 3
    proc = SIDLogitsProcessor(codes, token_ids, START, END, EOS, prompt_length=1, layout=layout)
    rng = np.random.default_rng(5)
    first = 1 if layout == "marked" else 0
    for step in range(len(SIZES) + first + 1):
        rows = []
        for r in range(6):
            sid = [START, *[token_ids[lv][c] for lv, c in enumerate(codes[rng.integers(len(codes))])], END]
            written = sid[:step] if layout == "marked" else sid[1 : step + 1]
            if r == 1 and len(written) > first + 1:  # the wrong level's code: a dead end
                written[-1] = token_ids[0][0]
            rows.append([vocab - 1, *written])
        ids = torch.tensor(rows)
        scores = torch.randn(len(rows), vocab).to(dtype)
        before = scores.clone()
        got = proc(ids, scores)
        want = proc(ids, scores.float())
        assert got.dtype == dtype and torch.equal(scores, before)
        assert torch.equal(torch.isinf(got), torch.isinf(want)), step
        kept = ~torch.isinf(want)
        assert torch.equal(got[kept], want[kept].to(dtype)), step  # DEAD_END_SCORE rounds in 16 bits


@pytest.mark.parametrize("lookup", ["direct", "search"])
def test_sid_path_refuses_tokens_below_and_above_the_sid_token_ids(lookup, monkeypatch):
    """Text ids below the start marker and the SID tokens (the usual layout: SID tokens appended to a text
    vocabulary), written where the marker or a code belongs, or an empty batch: same as the general path."""
    codes = _catalogue(300)
    _force_lookup(monkeypatch, lookup)
    start, end, eos, text = 50, 51, 2, [3, 7, 49]  # markers and SID ids above the text ids
    token_ids, nxt = [], 52
    for size in SIZES:
        token_ids.append(list(range(nxt, nxt + size)))
        nxt += size
    vocab = nxt + 4
    fast = SIDLogitsProcessor(codes, token_ids, start, end, eos, prompt_length=1)
    general = SIDLogitsProcessor(codes, token_ids, start, end, eos, prompt_length=1)
    general._fast_sid_path = False
    _assert_lookup(fast, lookup)
    rng = np.random.default_rng(7)
    for step in range(1, len(SIZES) + 1):
        rows = []
        for r in range(12):
            item = codes[rng.integers(len(codes))]
            written = [start, *[token_ids[lv][c] for lv, c in enumerate(item)]][:step]
            if r % 3 == 1:
                written[int(rng.integers(len(written)))] = text[r % len(text)]  # marker or code: dead end
            if r % 3 == 2:
                written[-1] = vocab - 1  # past every SID token id: dead end
            rows.append([0, *written])
        ids, scores = torch.tensor(rows), torch.randn(len(rows), vocab)
        got = fast(ids, scores)
        assert torch.equal(got, general(ids, scores)), step
        dead = [r % 3 != 0 for r in range(12)]
        assert torch.equal(got[dead].isfinite().sum(dim=1), torch.ones(sum(dead), dtype=torch.long)), step
        assert bool((got[dead, eos] == DEAD_END_SCORE).all()), step
        empty = fast(ids[:0], scores[:0])
        assert empty.shape == (0, vocab)


def test_scores_must_be_floating_point_and_input_ids_integer(sid_tokenizer):
    proc = SIDLogitsProcessor.from_tokenizer(sid_tokenizer, prompt_length=1)
    vocab = len(sid_tokenizer)
    with pytest.raises(
        TypeError,
        match=r"scores must be a floating-point tensor .*dtype torch.int64. Cast them with scores.float\(\)",
    ):
        proc(torch.tensor([[1]]), torch.zeros(1, vocab, dtype=torch.long))
    with pytest.raises(TypeError, match="got ndarray"):
        proc(torch.tensor([[1]]), np.zeros((1, vocab), dtype=np.float32))
    with pytest.raises(TypeError, match=r"input_ids must be an integer tensor .*torch.float32"):
        proc(torch.tensor([[1.0]]), torch.zeros(1, vocab))
    out = proc(torch.tensor([[1]]), torch.zeros(1, vocab))
    assert out.shape == (1, vocab) and out.dtype == torch.float32
