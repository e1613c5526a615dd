"""hf_semtok.serving: the exported grammars run in the real matchers (llguidance, xgrammar) and allow exactly what
SIDLogitsProcessor allows; the prefix_allowed_tokens_fn export and the vLLM adapter's batch state do too.

Tokenizers are built in code on each base family the tests use (byte-level BPE, WordPiece, Unigram), over a small
3-level catalogue with shared prefixes, so "nothing else completes" is checked on every code combination.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BASE_TEXTS

from hf_semtok import SemanticIDTokenizer, SIDLogitsProcessor, build_causal_lm, train_base_tokenizer
from hf_semtok.serving import export_grammar, export_prefix_allowed_tokens_fn, sid_grammar
from hf_semtok.serving.prefix_fn import SIDConstraint

llguidance = pytest.importorskip("llguidance")
llguidance_hf = pytest.importorskip("llguidance.hf")
xgr = pytest.importorskip("xgrammar")

SIZES = [4, 3, 5]
FAMILIES = ["byte_bpe", "wordpiece", "unigram"]


def _catalogue() -> dict[str, tuple[int, ...]]:
    """24 items out of the 60 code combinations: shared prefixes, one full subtree, some one-child prefixes."""
    rng = random.Random(0)
    combos = list(itertools.product(*(range(s) for s in SIZES)))
    chosen = set(rng.sample(combos, 19)) | {(3, 1, c) for c in range(5)}
    return {f"item{n}": codes for n, codes in enumerate(sorted(chosen))}


CATALOGUE = _catalogue()


@pytest.fixture(scope="module", params=FAMILIES)
def family_tokenizer(request):
    base = train_base_tokenizer(BASE_TEXTS, vocab_size=200, kind=request.param)
    return SemanticIDTokenizer.from_base(base, sid_table=CATALOGUE, codebook_sizes=SIZES)


def _llguidance_tokenizer(tokenizer):
    """llguidance's tokenizer: `llguidance.hf.from_tokenizer`, which refuses WordPiece decoders (as vLLM's guidance
    back-end does); there, a wrapper over the token strings (the grammars match SID tokens by id, not by text)."""
    try:
        return llguidance_hf.from_tokenizer(tokenizer)
    except ValueError:

        class Tokens:
            eos_token_id = tokenizer.eos_token_id
            bos_token_id = tokenizer.bos_token_id
            tokens = [t.encode() for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
            special_token_ids = list(tokenizer.all_special_ids)

            def __call__(self, text: str) -> list[int]:
                return tokenizer.encode(text, add_special_tokens=False)

        return llguidance.LLTokenizer(llguidance.TokenizerWrapper(Tokens()), n_vocab=len(tokenizer))


#: (id(tokenizer), dialect, grammar) -> (tokenizer, llguidance (tokenizer, grammar) or xgrammar's compiled grammar);
#: the tokenizer is kept so that its id is never reused by another one.
_COMPILED: dict = {}


class _Matcher:
    """One dialect's matcher behind a common face: consume tokens, read the allowed-token mask."""

    def __init__(self, tokenizer, dialect: str, grammar: str) -> None:
        self.vocab = len(tokenizer)
        self.dialect = dialect
        key = (id(tokenizer), dialect, grammar)
        if key not in _COMPILED:
            if dialect == "llguidance":
                lark = llguidance.LLMatcher.grammar_from_lark(grammar)
                _COMPILED[key] = (tokenizer, (_llguidance_tokenizer(tokenizer), lark))
            else:
                info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=self.vocab)
                _COMPILED[key] = (
                    tokenizer,
                    xgr.GrammarCompiler(info, max_threads=1).compile_grammar(grammar),
                )
        if dialect == "llguidance":
            self.m = llguidance.LLMatcher(*_COMPILED[key][1], log_level=0)
            assert not self.m.is_error(), self.m.get_error()
        else:
            self.m = xgr.GrammarMatcher(_COMPILED[key][1])
            self.bitmask = xgr.allocate_token_bitmask(1, self.vocab)

    def mask(self) -> np.ndarray:
        if self.dialect == "llguidance":
            raw = np.frombuffer(self.m.compute_bitmask(), dtype=np.uint8)
        else:
            self.m.fill_next_token_bitmask(self.bitmask)
            raw = self.bitmask.numpy().view(np.uint8).reshape(-1)
        return np.unpackbits(raw, bitorder="little")[: self.vocab].astype(bool)

    def accept(self, token: int) -> bool:
        if self.dialect == "llguidance":
            return self.m.consume_token(token) and not self.m.is_error()
        return self.m.accept_token(token)

    def accepts_all(self, tokens: list[int]) -> bool:
        return all(self.accept(t) for t in tokens)


def _sid_tokens(tokenizer, codes, layout: str) -> list[int]:
    ids = [tokenizer.sid_token_ids[level][c] for level, c in enumerate(codes)]
    return [tokenizer.sid_start_token_id, *ids, tokenizer.sid_end_token_id] if layout == "marked" else ids


def _processor_mask(processor: SIDLogitsProcessor, row: list[int], vocab: int) -> np.ndarray:
    out = processor(torch.tensor([row]), torch.zeros(1, vocab))
    return torch.isfinite(out[0]).numpy()


@pytest.mark.parametrize("dialect", ["llguidance", "xgrammar"])
@pytest.mark.parametrize("layout", ["marked", "bare"])
def test_grammar_accepts_every_item_and_nothing_else(family_tokenizer, dialect, layout):
    tok = family_tokenizer
    grammar = export_grammar(tok, dialect=dialect, layout=layout)
    for codes in itertools.product(*(range(s) for s in SIZES)):
        matcher = _Matcher(tok, dialect, grammar)
        tokens = _sid_tokens(tok, codes, layout)
        if codes in CATALOGUE.values():
            assert matcher.accepts_all(tokens), codes
            # complete: only EOS may follow
            assert np.flatnonzero(matcher.mask()).tolist() == [tok.eos_token_id], codes
        else:
            assert not matcher.accepts_all(tokens), codes


@pytest.mark.parametrize("dialect", ["llguidance", "xgrammar"])
@pytest.mark.parametrize("layout", ["marked", "bare"])
def test_grammar_masks_equal_the_processor_on_every_prefix(family_tokenizer, dialect, layout):
    tok = family_tokenizer
    grammar = export_grammar(tok, dialect=dialect, layout=layout)
    prompt = tok("user history next item", add_special_tokens=False)["input_ids"]
    processor = SIDLogitsProcessor.from_tokenizer(tok, prompt_length=len(prompt), layout=layout)
    fn = export_prefix_allowed_tokens_fn(tok, prompt_length=len(prompt), layout=layout)
    vocab = len(tok)
    for item in random.Random(1).sample(sorted(CATALOGUE), 8):
        matcher = _Matcher(tok, dialect, grammar)
        tokens = _sid_tokens(tok, CATALOGUE[item], layout)
        for step in range(len(tokens) + 1):  # every prefix of the item, the complete SID included
            row = prompt + tokens[:step]
            expected = _processor_mask(processor, row, vocab)
            assert np.array_equal(matcher.mask(), expected), (item, step)
            assert fn(0, torch.tensor(row)) == np.flatnonzero(expected).tolist(), (item, step)
            if step < len(tokens):
                assert matcher.accept(tokens[step])


def _free_rows(tok, n_rows: int, length: int, seed: int) -> list[list[int]]:
    """Rows of free text with SID spans of real items: base-vocabulary tokens, and spans opened at random."""
    rng = random.Random(seed)
    codes = sorted(CATALOGUE.values())
    text_ids = [t for t in range(len(tok)) if t < tok.sid_start_token_id and t != tok.eos_token_id]
    rows = []
    for _ in range(n_rows):
        row: list[int] = []
        while len(row) < length:
            if rng.random() < 0.3:
                row += _sid_tokens(tok, rng.choice(codes), "marked")
            else:
                row.append(rng.choice(text_ids))
        rows.append(row[:length])
    return rows


@pytest.mark.parametrize("dialect", ["llguidance", "xgrammar"])
def test_free_mode_grammar_masks_equal_the_processor(family_tokenizer, dialect):
    tok = family_tokenizer
    grammar = export_grammar(tok, dialect=dialect, mode="free")
    processor = SIDLogitsProcessor.from_tokenizer(tok, mode="free")
    fn = export_prefix_allowed_tokens_fn(tok, mode="free")
    vocab = len(tok)
    for row in _free_rows(tok, n_rows=3, length=16, seed=2):
        matcher = _Matcher(tok, dialect, grammar)
        for step in range(len(row) + 1):
            expected = _processor_mask(processor, row[:step] or [tok.bos_token_id], vocab)
            assert np.array_equal(matcher.mask(), expected), (row, step)
            assert fn(0, row[:step]) == np.flatnonzero(expected).tolist()
            if step < len(row):
                assert matcher.accept(row[step])
    # a SID that is not an item does not get through
    missing = next(c for c in itertools.product(*(range(s) for s in SIZES)) if c not in CATALOGUE.values())
    matcher = _Matcher(tok, dialect, grammar)
    assert not matcher.accepts_all(_sid_tokens(tok, missing, "marked"))


def test_grammar_is_factored_by_prefix(sid_tokenizer):
    """A complete codebook product collapses to one rule per level; shared subtrees are written once."""
    full = np.array(list(itertools.product(range(8), range(8), range(8))))
    ids = [list(range(100 + 8 * lv, 108 + 8 * lv)) for lv in range(3)]
    grammar = sid_grammar(full, ids, dialect="llguidance", layout="bare")
    assert grammar.splitlines() == [
        "start: s3",
        "s3: <[100-107]> s2",
        "s2: <[108-115]> s1",
        "s1: <[116-123]>",
    ]
    # 4096 random items over 64 x 64 x 64: one rule per distinct prefix at most (shared subtrees once), and each
    # (prefix, code) edge written at most once, not items x levels.
    codes = np.random.default_rng(0).integers(0, 64, size=(4096, 3))
    ids = [list(range(1000 + 64 * lv, 1064 + 64 * lv)) for lv in range(3)]
    grammar = sid_grammar(codes, ids, dialect="xgrammar", layout="bare")
    distinct = [
        len({tuple(c[:depth]) for c in codes.tolist()}) for depth in range(4)
    ]  # prefixes of length 0..3
    assert grammar.count("::=") <= sum(distinct[:3]) + 1
    written_ids = sum(len(m.split(",")) for m in re.findall(r"Token\(([^)]*)\)", grammar))
    assert written_ids <= sum(distinct[1:]) < codes.size


def test_xgrammar_text_literals_accept_items_only(family_tokenizer):
    """token_match='text' (SID tokens as string literals, for xgrammar without token elements): every item is
    accepted token by token, every other code combination is refused."""
    tok = family_tokenizer
    grammar = export_grammar(tok, dialect="xgrammar", token_match="text")
    assert "Token(" not in grammar and '"<|sid_start|>"' in grammar
    for codes in itertools.product(*(range(s) for s in SIZES)):
        matcher = _Matcher(tok, "xgrammar", grammar)
        accepted = matcher.accepts_all(_sid_tokens(tok, codes, "marked"))
        assert accepted == (codes in CATALOGUE.values()), codes
        if accepted:
            assert matcher.accept(tok.eos_token_id) and matcher.m.is_terminated()
    with pytest.raises(ValueError, match="token_match='text'"):
        export_grammar(tok, dialect="llguidance", token_match="text")


def test_export_errors_name_the_fix(sid_tokenizer, base_tokenizer):
    with pytest.raises(ValueError, match="dialect must be one of"):
        export_grammar(sid_tokenizer, dialect="gbnf")
    with pytest.raises(ValueError, match="layout='marked'"):
        export_grammar(sid_tokenizer, mode="free", layout="bare")
    with pytest.raises(TypeError, match="SemanticIDTokenizer"):
        export_grammar(base_tokenizer)
    with pytest.raises(TypeError, match="`tokenizer` is the class SemanticIDTokenizer, not a tokenizer"):
        export_grammar(SemanticIDTokenizer)
    with pytest.raises(ValueError, match=r"sid_codes must be a rectangular .* rows have different lengths"):
        sid_grammar([[0, 1], [1]], sid_tokenizer.sid_token_ids, layout="bare")
    with pytest.raises(ValueError, match="prompt_length"):
        export_prefix_allowed_tokens_fn(sid_tokenizer)
    with pytest.raises(ValueError, match="vocab_size"):
        SIDConstraint.from_tokenizer(sid_tokenizer, vocab_size=10)


@pytest.mark.parametrize(
    ("change", "error", "fragment"),
    [
        (
            {"level0": [1.5, 2, 3, 4]},
            TypeError,
            r"sid_token_ids\[0\]\[0\] is 1.5 \(float\); token ids are integers",
        ),
        ({"level0": [True, 2, 3, 4]}, TypeError, r"sid_token_ids\[0\]\[0\] is True \(bool\)"),
        ({"level0": [-1, 2, 3, 4]}, ValueError, r"sid_token_ids\[0\]\[0\] is -1, outside the vocabulary"),
        (
            {"level0": [10**12, 2, 3, 4], "vocab_size": None},
            ValueError,
            r"is 1000000000000, outside the vocabulary .* 2\*\*31 - 1",
        ),
        (
            {"vocab_size": 308},
            ValueError,
            r"sid_token_ids\[1\]\[2\] is 308, outside the vocabulary .*vocab_size - 1",
        ),
        (
            {"level0": [306, 2, 3, 4]},
            ValueError,
            r"sid_token_ids\[1\]\[0\] is 306, the id of sid_token_ids\[0\]\[0\]",
        ),
        ({"start": 2.0}, TypeError, r"sid_start_token_id is 2.0 \(float\)"),
        ({"start": 302}, ValueError, r"sid_start_token_id is 302, the id of sid_token_ids\[0\]\[0\] too"),
        ({"vocab_size": 1.5e3}, TypeError, r"vocab_size is 1500.0 \(float\)"),
    ],
)
def test_grammar_refuses_float_negative_and_out_of_vocabulary_token_ids(
    sid_tokenizer, change, error, fragment
):
    ids = [list(level) for level in sid_tokenizer.sid_token_ids]  # [[302..305], [306..309]]
    ids[0] = change.get("level0", ids[0])
    with pytest.raises(error, match=fragment):
        sid_grammar(
            sid_tokenizer.sid_codes,
            ids,
            sid_start_token_id=change.get("start", sid_tokenizer.sid_start_token_id),
            sid_end_token_id=sid_tokenizer.sid_end_token_id,
            vocab_size=change.get("vocab_size", len(sid_tokenizer)),
        )


def test_constraint_batch_mask_and_dead_ends(sid_tokenizer):
    """SIDConstraint.mask (what the vLLM adapter applies) equals allowed_token_ids row by row, rows at different
    steps in one batch; a row given a wrong token may only end."""
    tok = sid_tokenizer
    constraint = SIDConstraint.from_tokenizer(tok, vocab_size=len(tok) + 6)
    start, end = tok.sid_start_token_id, tok.sid_end_token_id
    code = tok.sid_token_ids
    rows = [
        [],
        [start],
        [start, code[0][2]],
        [start, code[0][2], code[1][3]],
        [start, code[0][1], code[1][2], end],
    ]
    rows += [[code[0][1]], [start, code[1][0]], [start, 5]]  # dead ends: no marker, wrong level, a text token
    mask = constraint.mask(rows)
    assert mask.shape == (len(rows), len(tok) + 6)
    for r, row in enumerate(rows):
        assert np.flatnonzero(mask[r]).tolist() == constraint.allowed_token_ids(row)
        processor = SIDLogitsProcessor.from_tokenizer(tok, prompt_length=1)
        assert np.array_equal(mask[r], _processor_mask(processor, [tok.bos_token_id, *row], len(tok) + 6))
    assert constraint.allowed_token_ids([start, code[0][2]]) == [code[1][c] for c in range(4)]
    for dead in rows[-3:]:
        assert constraint.allowed_token_ids(dead) == [tok.eos_token_id]


# ------------------------------------------------------------------------------------------------ vLLM
VLLM_PYTHON_ENV = "HF_SEMTOK_VLLM_PYTHON"
REPO = Path(__file__).resolve().parents[2]


def _served_model(tmp_path: Path) -> tuple[Path, SemanticIDTokenizer]:
    """A tiny random LM and its tokenizer (byte-level BPE, the test catalogue) saved as one model folder, with the
    exported marked grammars beside them."""
    base = train_base_tokenizer(BASE_TEXTS, vocab_size=300)
    tok = SemanticIDTokenizer.from_base(base, sid_table=CATALOGUE, codebook_sizes=SIZES)
    model = build_causal_lm(
        len(tok), hidden_size=128, num_layers=1, num_heads=2, seed=0, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model_dir = tmp_path / "served"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    for dialect in ("llguidance", "xgrammar"):
        (model_dir / f"grammar_{dialect}.txt").write_text(export_grammar(tok, dialect=dialect))
    return model_dir, tok


@pytest.mark.slow
def test_vllm_serves_only_real_items(tmp_path):
    """End to end in vLLM on CPU (offline `vllm.LLM`): the exported grammar on the xgrammar and guidance back-ends,
    and the v1 logits processor in a batch that mixes constrained and unconstrained requests.

    vLLM pins its own torch / transformers / llguidance, so it lives in a virtual environment of its own: set
    HF_SEMTOK_VLLM_PYTHON to its interpreter (docs/serving.md). Skipped where neither that nor vllm is installed."""
    python = sys.executable if importlib.util.find_spec("vllm") else os.environ.get(VLLM_PYTHON_ENV)
    if not python:
        pytest.skip(
            f"vLLM is not installed here; set {VLLM_PYTHON_ENV} to a Python with vllm (docs/serving.md)."
        )
    model_dir, tok = _served_model(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [python, str(REPO / "tests" / "serving" / "vllm_e2e.py"), str(model_dir)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    valid = {tok.items_to_text([item]) for item in CATALOGUE}
    constrained = [k for k in result if k.startswith(("grammar_", "processor_constrained"))]
    assert len(constrained) == 4
    for key in constrained:
        assert result[key] and all(text in valid for text in result[key]), (key, result[key])
    # the same random model writes non-items when nothing constrains it (so the checks above can fail)
    for key in ("unconstrained", "processor_plain_1", "processor_plain_3"):
        assert not all(text in valid for text in result[key]), key
    # free mode: the prompt opened a SID; it is closed on a real item, then text goes on
    for text in result["processor_free"]:
        assert any(("<|sid_start|>" + text).startswith(item) for item in valid), text


class _FakeBatchUpdate:
    """vLLM's BatchUpdate fields (removed, added as (index, params, prompt ids, live output ids), moved)."""

    def __init__(self, removed=(), added=(), moved=()):
        self.batch_size, self.removed, self.added, self.moved = 0, list(removed), list(added), list(moved)


def test_vllm_logits_processor_batch_state(tmp_path, monkeypatch, request):
    """The v1 logits processor against vLLM's interface (a stand-in module where vllm is not installed): rows are
    added, swapped, moved and removed as vLLM reports them; constrained rows get SIDConstraint's mask, others none."""
    import enum
    import types

    if importlib.util.find_spec("vllm") is None:
        fake = types.ModuleType("vllm.v1.sample.logits_processor")

        class MoveDirectionality(enum.Enum):
            UNIDIRECTIONAL = enum.auto()
            SWAP = enum.auto()

        fake.LogitsProcessor, fake.BatchUpdate, fake.MoveDirectionality = (
            object,
            _FakeBatchUpdate,
            MoveDirectionality,
        )
        for name in ("vllm", "vllm.v1", "vllm.v1.sample"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, "vllm.v1.sample.logits_processor", fake)
        monkeypatch.delitem(sys.modules, "hf_semtok.serving.vllm_logits", raising=False)
        request.addfinalizer(
            lambda: sys.modules.pop("hf_semtok.serving.vllm_logits", None)
        )  # built on the stand-in
    from hf_semtok.serving import vllm_logits

    direction = vllm_logits.MoveDirectionality
    model_dir, tok = _served_model(tmp_path)
    config = types.SimpleNamespace(model_config=types.SimpleNamespace(tokenizer=str(model_dir)))
    proc = vllm_logits.SIDVLLMLogitsProcessor(config, torch.device("cpu"), False)
    assert proc.is_argmax_invariant() is False
    sid = types.SimpleNamespace(extra_args={"hf_semtok_sid": "sid"})
    plain = types.SimpleNamespace(extra_args=None)
    with pytest.raises(ValueError, match="hf_semtok_sid"):
        proc.validate_params(types.SimpleNamespace(extra_args={"hf_semtok_sid": "beam"}))
    start, code = tok.sid_start_token_id, tok.sid_token_ids
    out0, out1, out2 = [], [start], [start, code[0][3]]
    proc.update_state(
        _FakeBatchUpdate(added=[(0, sid, [5], out0), (1, plain, [5], out1), (2, sid, [5], out2)])
    )
    proc.update_state(
        _FakeBatchUpdate(moved=[(0, 1, direction.SWAP)])
    )  # row 0 is now plain, row 1 constrained
    constraint = SIDConstraint.from_tokenizer(tok, vocab_size=len(tok) + 4)
    logits = torch.randn(3, len(tok) + 4)
    masked = proc.apply(logits.clone())
    assert torch.equal(masked[0], logits[0])  # unconstrained row untouched
    for row, tokens in ((1, out0), (2, out2)):
        assert torch.equal(torch.isfinite(masked[row]), torch.from_numpy(constraint.mask([tokens])[0]))
    out2.append(code[1][1])  # vLLM appends to the live output list: the next step reads it
    masked = proc.apply(torch.zeros(3, len(tok) + 4))
    assert torch.isfinite(masked[2]).nonzero().flatten().tolist() == constraint.allowed_token_ids(out2)
    proc.update_state(_FakeBatchUpdate(removed=[1], moved=[(2, 0, direction.UNIDIRECTIONAL)]))
    masked = proc.apply(torch.zeros(2, len(tok) + 4))
    assert torch.isfinite(masked[0]).nonzero().flatten().tolist() == constraint.allowed_token_ids(out2)
    assert torch.isfinite(masked[1]).all()


@pytest.mark.slow
def test_serving_benchmark_writes_its_table(tmp_path):
    """`benchmarks/serving.py` on a tiny catalogue: every dialect and the processor walk real items without error,
    and the JSON and Markdown it writes carry the command, the seed and the thread count."""
    spec = importlib.util.spec_from_file_location("bench_serving", REPO / "benchmarks" / "serving.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--sizes", "2000", "--walks", "3", "--output_dir", str(tmp_path)]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "serving.json").read_text())
    (row,) = report["sizes"]
    for name in ("llguidance", "xgrammar", "SIDLogitsProcessor"):
        assert "error" not in row[name] and row[name]["mask_us"] > 0, row[name]
    assert row["llguidance"]["rules"] == row["xgrammar"]["rules"] <= row["distinct_prefixes"]
    table = (tmp_path / "serving.md").read_text()
    assert "Command: `python benchmarks/serving.py --sizes 2000" in table and "Seed 0, 1 thread(s)" in table
    assert table.count("| 2,000 |") == 3


def test_prefix_fn_refuses_input_that_is_not_one_row_of_ids(sid_tokenizer):
    fn = export_prefix_allowed_tokens_fn(sid_tokenizer, prompt_length=0)
    assert fn(0, torch.tensor([], dtype=torch.long)) == fn(0, []) == fn(0, np.zeros(0, dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"one row of token ids .*2-D input of shape \(1, 2\) .*input_ids\[row\]"
    ):
        fn(0, torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="nested sequence"):
        fn(0, [[1, 2]])
    with pytest.raises(TypeError, match="got str 'abc'"):
        fn(0, "abc")
    with pytest.raises(TypeError, match="got float 1.5 among the ids"):
        fn(0, [1.5])
    with pytest.raises(TypeError, match="got bool True"):
        fn(0, [True])
    with pytest.raises(TypeError, match="dtype float32"):
        fn(0, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="negative id -1"):
        fn(0, [-1])
