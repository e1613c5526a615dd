"""SIDPrefixIndex's public lookups (allowed codes, token ids and masks for a batch of code prefixes) and the
errors its inputs get."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hf_semtok.logits_process import SIDPrefixIndex as ReExported
from hf_semtok.prefix_index import SIDPrefixIndex

SIZES = [5, 13, 3]


def _index(n: int = 120, seed: int = 0) -> tuple[SIDPrefixIndex, np.ndarray, list[list[int]]]:
    rng = np.random.default_rng(seed)
    every = np.array(list(itertools.product(*[range(s) for s in SIZES])))
    codes = every[rng.choice(len(every), size=n, replace=False)]
    codes = codes[
        codes[:, 0] != SIZES[0] - 1
    ]  # no SID starts with the last code: absent prefixes at every level
    token_ids, nxt = [], 10
    for size in SIZES:
        token_ids.append(list(range(nxt, nxt + size)))
        nxt += size
    return SIDPrefixIndex(codes, token_ids), codes, token_ids


@pytest.mark.parametrize("level", range(len(SIZES)))
def test_allowed_codes_token_ids_and_mask_equal_brute_force(level):
    index, codes, token_ids = _index(n=25)  # 25 of 195 SIDs: some prefixes of length 1 and 2 are absent
    rng = np.random.default_rng(level)
    real = codes[rng.choice(len(codes), 10), :level]
    fake = np.stack([rng.integers(s, size=10) for s in SIZES[:level]], axis=1) if level else real[:0]
    prefixes = np.concatenate([real, fake]).reshape(len(real) + len(fake), level)
    allowed = index.allowed_codes(prefixes)
    vocab = token_ids[-1][-1] + 5
    mask = index.allowed_token_mask(torch.as_tensor(prefixes), vocab)
    assert allowed.shape == (len(prefixes), SIZES[level]) and mask.shape == (len(prefixes), vocab)
    for row, prefix in enumerate(prefixes.tolist()):
        want = sorted({int(c[level]) for c in codes if c[:level].tolist() == prefix})
        assert np.flatnonzero(allowed[row]).tolist() == want, prefix
        want_tokens = [token_ids[level][c] for c in want]
        assert index.allowed_token_ids(prefix) == want_tokens
        assert torch.nonzero(mask[row]).flatten().tolist() == want_tokens
    if level:  # absent prefixes: nothing may follow them
        absent = [
            p
            for p in itertools.product(*map(range, SIZES[:level]))
            if list(p) not in codes[:, :level].tolist()
        ]
        assert absent and not index.allowed_codes(np.asarray(absent).reshape(len(absent), level)).any()
    assert ReExported is SIDPrefixIndex


def test_from_tokenizer_and_sizes():
    index, codes, token_ids = _index()

    class Tok:
        sid_codes, sid_token_ids = codes, token_ids

    other = SIDPrefixIndex.from_tokenizer(Tok())
    assert other.codebook_sizes == SIZES and other.num_prefixes == index.num_prefixes
    assert index.num_prefixes == sum(len({tuple(r[:lv]) for r in codes.tolist()}) for lv in range(len(SIZES)))
    with pytest.raises(TypeError, match="needs a SemanticIDTokenizer"):
        SIDPrefixIndex.from_tokenizer(object())


@pytest.mark.parametrize(
    ("prefixes", "error", "fragment"),
    [
        ([[0.5]], TypeError, "integer codes"),
        ([[True]], TypeError, "integer codes"),
        ([["1"]], TypeError, "integer codes"),
        ([[0, 1, 2]], ValueError, "leave no level"),
        ([[0], [1, 2]], ValueError, "different lengths"),
        ([[5]], ValueError, "code 5 at level 0 is outside"),
        ([[-1]], ValueError, "code -1 at level 0 is outside"),
        (np.array([[2**64 - 1]], dtype=np.uint64), ValueError, f"code {2**64 - 1} at level 0"),
        (np.zeros((2, 2, 1), dtype=np.int64), ValueError, "(rows, length)"),
    ],
)
def test_bad_prefixes_are_refused(prefixes, error, fragment):
    index, _, _ = _index()
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        index.allowed_codes(prefixes)


@pytest.mark.parametrize(
    ("codes", "token_ids", "error", "fragment"),
    [
        ([[0, 1.5]], [[1, 2], [3, 4]], ValueError, "integer codes"),
        (np.array([[0, 2**64 - 1]], dtype=np.uint64), [[1, 2], [3, 4]], ValueError, str(2**64 - 1)),
        ([[0, 1]], [[1, 2], [3.0, 4]], TypeError, "token ids are ints"),
        ([[0, 1]], [[1, 2], [3, "4"]], TypeError, "token ids are ints"),
        ([[0, 1]], [[1, 2], [3, True]], TypeError, "token ids are ints"),
        ([[0, 1]], [[1, 2], [3, -4]], ValueError, "token ids are >= 0"),
        ([[0, 1]], [[1, 2], []], ValueError, "is empty"),
        ([[0, 1]], "12", TypeError, "one list of token ids per SID level"),
        ([[0, 1]], None, TypeError, "one list of token ids per SID level"),
        ([[0, 1]], [[1, 2], 3], TypeError, "must be a list of token ids"),
    ],
)
def test_bad_codes_and_token_ids_are_refused(codes, token_ids, error, fragment):
    with pytest.raises(error, match=fragment):
        SIDPrefixIndex(codes, token_ids)


def test_mask_on_a_vocabulary_too_small_is_refused():
    index, _, token_ids = _index()
    with pytest.raises(ValueError, match="vocab_size=20 but SID token ids go up to"):
        index.allowed_token_mask([[0]], 20)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        index.allowed_token_mask([[0]], 50.0)
