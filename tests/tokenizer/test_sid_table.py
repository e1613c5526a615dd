"""SIDTable (validation, JSON schema, lookups), SIDTokenLookup and the SID-text helpers, checked against brute force."""

from __future__ import annotations

import itertools
import json
import pickle
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hf_semtok.constants import SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_TEMPLATE
from hf_semtok.tokenizer.sid_table import JSON_TABLE_VERSION, TABLE_FORMAT, HashedItemIndex, ItemIds, SIDTable
from hf_semtok.tokenizer.sid_tokens import (
    EV_END,
    EV_OTHER,
    EV_SID,
    EV_START,
    SIDTokenLookup,
    group_sid_events,
    parse_sid_string,
    scan_sid_text,
)

SIZES = [5, 3, 4]  # multi-resolution: 60 possible SIDs


def sid(*codes: int, markers: bool = True) -> str:
    body = "".join(SID_TOKEN_TEMPLATE.format(level=lv, code=c) for lv, c in enumerate(codes))
    return SID_START_TOKEN + body + SID_END_TOKEN if markers else body


def random_catalogue(n: int = 25, sizes=SIZES, seed: int = 0) -> dict[str, tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    every = list(itertools.product(*[range(s) for s in sizes]))
    picked = rng.choice(len(every), size=n, replace=False)
    return {f"item_{i:02d}": every[j] for i, j in enumerate(picked)}


@pytest.fixture(scope="module")
def catalogue():
    return random_catalogue()


@pytest.fixture(scope="module")
def index(catalogue):
    return SIDTable.from_any(catalogue, SIZES)


# ---------------------------------------------------------------- construction


def test_from_dict_keeps_order_codes_and_sizes(catalogue, index):
    assert index.item_ids == list(catalogue)
    assert index.codes.tolist() == [list(c) for c in catalogue.values()]
    assert index.codes.dtype == np.int64
    assert index.codebook_sizes == SIZES
    assert index.num_semantic_levels == 3
    assert index.index == {item: row for row, item in enumerate(catalogue)}
    assert not index.codes.flags.writeable


def test_table_keeps_metadata_and_a_private_copy_of_the_codes(catalogue):
    codes = np.array(list(catalogue.values()))
    table = SIDTable(list(catalogue), codes, SIZES, 2, "extra_level", {"collisions": 3})
    assert table.num_semantic_levels == 2 and table.has_extra_level and table.num_levels == 3
    assert table.collision_strategy == "extra_level" and table.stats == {"collisions": 3}
    assert SIDTable.from_any(table) is table  # one class: nothing to convert
    # The table keeps its own copy: changing the caller's array afterwards does not corrupt lookups.
    before = codes.copy()
    codes[0] = codes[1]
    np.testing.assert_array_equal(table.codes, before)
    assert table.rows_of_keys(table.keys_of(before[:1])).tolist() == [0]
    with pytest.raises(ValueError, match="read-only"):
        table.codes[0, 0] = 1


def test_one_class_everywhere():
    import hf_semtok
    import hf_semtok.sids
    import hf_semtok.sids.assignment

    assert hf_semtok.SIDTable is hf_semtok.tokenizer.SIDTable is SIDTable


def test_from_dict_rejects_non_integer_codes():
    with pytest.raises(ValueError, match=r"item 'a' has non-integer codes \(0, 1\.7\)"):
        SIDTable.from_any({"a": (0, 1.7), "b": (1, 0)}, codebook_sizes=[2, 2])
    for value in [(0, 1.0), (0, True), ("0", 1)]:  # integral floats, bools and digit strings are not codes
        with pytest.raises(ValueError, match="non-integer codes"):
            SIDTable.from_any({"a": value}, codebook_sizes=[2, 2])
    assert SIDTable.from_any({"a": (np.int32(0), 1)}, codebook_sizes=[2, 2]).codes.tolist() == [[0, 1]]


def test_from_duck_typed_object_with_sidtable_fields():
    obj = SimpleNamespace(item_ids=["1", "2"], codes=[[0, 1], [1, 0]], codebook_sizes=[2, 2])
    idx = SIDTable.from_any(obj)
    assert idx.item_ids == ["1", "2"]
    with pytest.raises(TypeError, match=r"must hold strings \(ids are never converted\); 1 \(int\)"):
        SIDTable.from_any(SimpleNamespace(item_ids=[1, 2], codes=[[0, 1], [1, 0]], codebook_sizes=[2, 2]))
    assert idx.num_semantic_levels == 2 and idx.collision_strategy is None and idx.stats == {}


def test_from_item_index_is_identity_unless_sizes_change(index):
    assert SIDTable.from_any(index) is index
    assert SIDTable.from_any(index, list(SIZES)) is index
    wider = SIDTable.from_any(index, [6, 3, 4])
    assert wider is not index
    assert wider.codebook_sizes == [6, 3, 4]
    assert wider.item_ids == index.item_ids
    np.testing.assert_array_equal(wider.codes, index.codes)
    with pytest.raises(ValueError, match=r"out of range \[0, 2\)"):
        SIDTable.from_any(index, [2, 3, 4])


def test_from_dict_with_rqvae_sizes_and_dedup_level():
    rqvae = SimpleNamespace(config=SimpleNamespace(codebook_sizes=[4, 4]))
    idx = SIDTable.from_any({"a": (1, 2), "b": (3, 0)}, rqvae=rqvae)
    assert idx.codebook_sizes == [4, 4] and idx.num_semantic_levels == 2
    # A third column the RQ-VAE does not know is a dedup level sized from the data.
    dedup = SIDTable.from_any({"a": (1, 2, 0), "b": (1, 2, 1), "c": (1, 2, 4)}, rqvae=rqvae)
    assert dedup.codebook_sizes == [4, 4, 5]
    assert dedup.num_semantic_levels == 2
    # Explicit sizes win over the RQ-VAE's.
    assert SIDTable.from_any({"a": (1, 2)}, [2, 3], rqvae=rqvae).codebook_sizes == [2, 3]


def test_from_any_rejects_other_types():
    with pytest.raises(TypeError, match="must be a dict item_id -> tuple of codes.*got list"):
        SIDTable.from_any([("a", (0, 1))], [2, 2])
    with pytest.raises(TypeError, match=r"got str. To read a saved table, pass SIDTable.from_json\(path\)"):
        SIDTable.from_any("sid_table.json", [2, 2])


def test_empty_table_is_rejected():
    with pytest.raises(ValueError, match="sid_table is empty"):
        SIDTable.from_any({}, [2, 2])


def test_missing_codebook_sizes_is_explained():
    with pytest.raises(ValueError, match="codebook_sizes is required.*pass codebook_sizes="):
        SIDTable.from_any({"a": (0, 1)})


def test_mixed_lengths_are_rejected():
    with pytest.raises(ValueError, match=r"same length; found lengths \[2, 3\]") as err:
        SIDTable.from_any({"a": (0, 1), "b": (0, 1, 2)}, [3, 3, 3])
    assert "'a'" in str(err.value) and "'b'" in str(err.value)  # an example item of each length


def test_duplicate_sids_name_both_items():
    with pytest.raises(ValueError, match=r"share the SID \(1, 2\); SIDs must be unique") as err:
        SIDTable.from_any({"a": (0, 0), "b": (1, 2), "c": (1, 2)}, [3, 3])
    assert "'b'" in str(err.value) and "'c'" in str(err.value)
    assert "'a'" not in str(err.value)


def test_duplicate_item_ids_are_rejected():
    with pytest.raises(ValueError, match=r"Duplicate item ids in 'item_ids': \['x'\]"):
        SIDTable(["x", "y", "x"], np.array([[0], [1], [2]]), [3])


@pytest.mark.parametrize(
    "codes, sizes, message",
    [
        (
            np.zeros((2, 2), dtype=int),
            [3, 3],
            r"must have shape \(num_items, num_levels\) = \(3, L\); got \(2, 2\)",
        ),
        (np.zeros(3, dtype=int), [3], r"field 'codes' must be 2-D .*got shape \(3,\)"),
        (
            np.zeros((3, 2), dtype=int),
            [],
            r"field 'codebook_sizes' must list 1 to 64 levels of 1 to 1048576 \(2\*\*20\) codes each; got \[\]",
        ),
        (np.zeros((3, 2), dtype=int), [3, 0], r"codes each; got \[3, 0\]"),
        (np.zeros((3, 2), dtype=int), [3, 2**20 + 1], r"1 to 1048576 \(2\*\*20\) codes each"),
        (
            np.zeros((3, 2), dtype=int),
            "33",
            r"field 'codebook_sizes' must be a list of integers .*got str '33'",
        ),
        (np.zeros((3, 2), dtype=int), [3, 4.0], r"field 'codebook_sizes' must be a list of integers; 4\.0"),
        (np.zeros((3, 2), dtype=int), [3, True], r"True \(bool\) is not"),
        (
            np.zeros((3, 2), dtype=int),
            [3, 3, 3],
            r"every SID has 2 codes but 'codebook_sizes' lists 3 levels",
        ),
        (
            np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]),
            [3, 3],
            r"field 'codes' must hold integers; got dtype float64",
        ),
        (
            np.array([[0, 1], [1, 3], [2, 3]]),
            [3, 3],
            r"code 3 of item 'b' at level 1 is out of range \[0, 3\).*2 item",
        ),
        (np.array([[0, 1], [-1, 0], [2, 2]]), [3, 3], r"code -1 of item 'b' at level 0 is out of range"),
        (np.zeros((3, 5), dtype=int), [2**20] * 5, r"more than 2\*\*62 SIDs"),
        (
            np.array([[True, False], [False, True], [True, True]]),
            [3, 3],
            r"must hold integers; got dtype bool",
        ),
    ],
)
def test_constructor_validation_messages(codes, sizes, message):
    with pytest.raises(ValueError, match=message) as err:
        SIDTable(["a", "b", "c"], codes, sizes, source="my_table.json")
    assert str(err.value).startswith("my_table.json: ")


def test_an_index_without_items_answers_every_lookup_with_nothing():
    idx = SIDTable([], np.zeros((0, 2), dtype=np.int64), [3, 3])
    assert idx.rows_of_keys(np.array([0, 4, 8])).tolist() == [-1, -1, -1]
    assert idx.rows_with_prefix([1]).tolist() == []
    assert idx.resolve(scan_sid_text(sid(1, 1)), "none") == [None]


# ---------------------------------------------------------------- JSON


def test_json_round_trip(tmp_path, catalogue):
    table = SIDTable(
        item_ids=list(catalogue),
        codes=np.array(list(catalogue.values())),
        codebook_sizes=SIZES,
        num_semantic_levels=2,
        collision_strategy="reassign",
        stats={"max_bucket": 2},
    )
    idx = table
    data = idx.to_dict()
    assert data["format"] == TABLE_FORMAT and data["version"] == JSON_TABLE_VERSION
    assert data["codes"] == table.codes.tolist()
    assert data["codebook_sizes"] == SIZES and data["num_semantic_levels"] == 2
    path = tmp_path / "sid_table.json"
    path.write_text(json.dumps(data))
    back = SIDTable.from_json(path)
    assert back.to_dict() == data
    assert back.rows_of_keys(back.keys_of(idx.codes)).tolist() == list(range(len(idx.item_ids)))
    # to_json writes exactly to_dict
    table.to_json(tmp_path / "table.json")
    assert json.loads((tmp_path / "table.json").read_text()) == data
    assert SIDTable.from_json(tmp_path / "table.json").to_dict() == data


def test_json_round_trip_of_an_empty_table(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"item_ids": [], "codes": [], "codebook_sizes": [4, 2]}))
    idx = SIDTable.from_json(path)
    assert idx.codes.shape == (0, 2) and idx.codebook_sizes == [4, 2]


def test_from_json_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "broken_table.json"
    path.write_text('{"item_ids": [')
    with pytest.raises(ValueError, match=r"broken_table\.json is not valid JSON"):
        SIDTable.from_json(path)


@pytest.mark.parametrize("missing", ["item_ids", "codes", "codebook_sizes"])
def test_from_json_missing_field_names_file_and_field(tmp_path, missing):
    data = {"item_ids": ["a"], "codes": [[0, 1]], "codebook_sizes": [2, 2]}
    del data[missing]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"partial\.json has no field '{missing}'"):
        SIDTable.from_json(path)


def test_from_json_validation_errors_name_the_file(tmp_path):
    path = tmp_path / "dups.json"
    path.write_text(json.dumps({"item_ids": ["a", "b"], "codes": [[0, 1], [0, 1]], "codebook_sizes": [2, 2]}))
    with pytest.raises(ValueError, match=r"dups\.json: items 'a' and 'b' share the SID \(0, 1\)"):
        SIDTable.from_json(path)
    path.write_text(json.dumps({"item_ids": ["a"], "codes": [[0, 1]], "codebook_sizes": [2, 2, 2]}))
    with pytest.raises(ValueError, match=r"dups\.json: every SID has 2 codes"):
        SIDTable.from_json(path)
    path.write_text(json.dumps({"item_ids": ["a"], "codes": [[0, 1.5]], "codebook_sizes": [2, 2]}))
    with pytest.raises(ValueError, match=r"dups\.json: field 'codes' must hold integers"):
        SIDTable.from_json(path)  # not silently truncated to (0, 1)
    path.write_text(json.dumps({"item_ids": ["a", "b"], "codes": [[0, 1], [1]], "codebook_sizes": [2, 2]}))
    with pytest.raises(ValueError, match=r"dups\.json: field 'codes' must be a list of equal-length"):
        SIDTable.from_json(path)
    path.write_text("3")
    with pytest.raises(ValueError, match=r"dups\.json holds a JSON int, not an object"):
        SIDTable.from_json(path)


def _v1_layout() -> dict:
    """sid_table.json as the tokenizer of the previous release wrote it (ItemIndex, format version 1)."""
    return {
        "format": "hf_semtok.sid_table",
        "version": 1,
        "codebook_sizes": [4, 4, 8],
        "num_semantic_levels": 2,
        "collision_strategy": "extra_level",
        "stats": {"collision_rate_before": 0.5},
        "item_ids": ["a", "b"],
        "codes": [[0, 1, 0], [0, 1, 1]],
    }


def _versionless_layout() -> dict:
    """A table file as `SIDTable.to_json` of the previous release wrote it: no format, no version."""
    return {
        "item_ids": ["a", "b"],
        "codes": [[0, 1, 0], [0, 1, 1]],
        "codebook_sizes": [4, 4, 8],
        "num_semantic_levels": 2,
        "collision_strategy": "extra_level",
        "stats": {"collision_rate_before": 0.5},
    }


@pytest.mark.parametrize("layout", [_v1_layout, _versionless_layout])
def test_files_of_the_previous_release_still_load(tmp_path, layout):
    path = tmp_path / "sid_table.json"
    path.write_text(json.dumps(layout()))
    table = SIDTable.from_json(path)
    assert table.as_dict() == {"a": (0, 1, 0), "b": (0, 1, 1)}
    assert table.codebook_sizes == [4, 4, 8] and table.num_semantic_levels == 2 and table.has_extra_level
    assert table.collision_strategy == "extra_level" and table.stats == {"collision_rate_before": 0.5}
    assert table.to_dict() == _v1_layout()  # re-saved in the current schema


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("codebook_sizes", "448", r"field 'codebook_sizes' must be a list of integers .*got str '448'"),
        ("codebook_sizes", [4, 4.7, 8], r"field 'codebook_sizes' must be a list of integers; 4\.7"),
        ("codebook_sizes", [4, 4.0, 8], r"field 'codebook_sizes' must be a list of integers; 4\.0"),
        ("codebook_sizes", [True, 4, 8], r"field 'codebook_sizes' .*True \(bool\) is not"),
        ("codebook_sizes", [4, 2**40, 8], r"field 'codebook_sizes' .*1 to 1048576 \(2\*\*20\) codes each"),
        ("codebook_sizes", {"0": 4}, r"field 'codebook_sizes' must be a list of integers"),
        ("codes", [[0, 1, 0], [0, 4.7, 1]], r"field 'codes' must hold integers; found \['float'\]"),
        ("codes", [[0, 1, 0], [0, True, 1]], r"field 'codes' must hold integers; found \['bool'\]"),
        ("codes", [[0, 1, 0], "011"], r"field 'codes' must be 2-D: a list of integer lists"),
        ("codes", "abc", r"field 'codes' must be 2-D: a list of integer lists"),
        ("codes", [[0, 1, 0], [0, 1, 2**70]], r"field 'codes' holds an integer too large"),
        ("item_ids", "ab", r"field 'item_ids' must be a list of item id strings; got str 'ab'"),
        ("item_ids", ["a", None], r"field 'item_ids' must hold strings .*None"),
        ("item_ids", ["a", 1.5], r"field 'item_ids' must hold strings .*1\.5"),
        ("num_semantic_levels", 99, r"field 'num_semantic_levels' must be an integer in \[1, 3\].*got 99"),
        ("num_semantic_levels", -1, r"field 'num_semantic_levels' .*got -1"),
        ("num_semantic_levels", 0, r"field 'num_semantic_levels' .*got 0"),
        ("num_semantic_levels", True, r"field 'num_semantic_levels' .*got True"),
        ("num_semantic_levels", 2.0, r"field 'num_semantic_levels' .*got 2\.0"),
        ("collision_strategy", 3, r"field 'collision_strategy' must be a string or null"),
        ("stats", [1], r"field 'stats' must be an object"),
        ("format", "other.table", r"field 'format' is 'other\.table', not 'hf_semtok\.sid_table'"),
        ("version", 3, r"version 3 of hf_semtok\.sid_table was written by a newer hf_semtok .*upgrade"),
        ("version", "1", r"field 'version' must be a positive integer; got '1'"),
        ("version", 0, r"field 'version' must be a positive integer; got 0"),
        ("extra", 1, r"unknown field\(s\) \['extra'\]"),
    ],
)
def test_strict_loading_names_file_field_and_fix(tmp_path, field, value, message):
    data = _v1_layout()
    data[field] = value
    path = tmp_path / "my_table.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        SIDTable.from_json(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"item_ids": ["a"], "codes": [[0', r"is not valid JSON .*truncated or corrupt"),
        (b"\xff\xfe{\x00", r"is not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, r"nested too deeply"),
        (b"", r"is not valid JSON"),
    ],
)
def test_unreadable_files_give_a_value_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad_table.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        SIDTable.from_json(path)
    assert str(path) in str(err.value)


def test_from_dict_without_fields_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="has no field 'codes'"):
        SIDTable.from_dict({"item_ids": [], "codebook_sizes": [2]})
    with pytest.raises(FileNotFoundError):
        SIDTable.from_json(tmp_path / "absent.json")


# ---------------------------------------------------------------- lookups vs brute force


def test_keys_are_mixed_radix_and_ordered_like_the_codes(index):
    keys = index.keys_of(index.codes)
    assert keys.tolist() == np.ravel_multi_index(index.codes.T, SIZES).tolist()
    assert np.all(np.diff(index.sorted_keys) > 0)
    # lexicographic order of the codes is the order of the keys
    assert [tuple(index.codes[r]) for r in index.order] == sorted(map(tuple, index.codes.tolist()))


def test_rows_of_keys_matches_brute_force(catalogue, index):
    row_of = {codes: row for row, codes in enumerate(catalogue.values())}
    every = np.array(list(itertools.product(*[range(s) for s in SIZES])))  # present and absent SIDs
    rows = index.rows_of_keys(index.keys_of(every))
    assert rows.tolist() == [row_of.get(tuple(c), -1) for c in every.tolist()]
    assert (rows >= 0).sum() == len(catalogue)
    # keys beyond the last / before the first possible key
    assert index.rows_of_keys(np.array([-1, 60, 10**12])).tolist() == [-1, -1, -1]
    # any shape in, the same shape out
    assert index.rows_of_keys(index.keys_of(every).reshape(3, 20)).shape == (3, 20)


def test_rows_with_prefix_matches_brute_force(catalogue, index):
    codes = list(catalogue.values())
    checked = 0
    for k in range(len(SIZES) + 1):
        for prefix in itertools.product(*[range(s) for s in SIZES[:k]]):
            expected = [r for r, c in enumerate(codes) if c[:k] == prefix]
            got = index.rows_with_prefix(list(prefix))
            assert got.tolist() == expected, prefix
            checked += bool(expected)
    assert checked > len(catalogue)  # non-empty answers at every level were compared
    assert index.rows_with_prefix([]).tolist() == list(range(len(catalogue)))
    # Out-of-range codes or too long a prefix match nothing (no wrap-around into a neighbouring key range).
    for prefix in ([0, SIZES[1]], [1, -1], [SIZES[0]], [0, 0, 0, 0]):
        assert index.rows_with_prefix(prefix).tolist() == [], prefix


def test_sid_texts_parse_back_to_the_codes(index):
    texts = index.sid_texts()
    assert texts[0] == sid(*index.codes[0].tolist())
    assert [parse_sid_string(t) for t in texts] == [tuple(c) for c in index.codes.tolist()]
    assert index.sid_texts() is texts  # cached


def test_resolve_random_texts_against_the_catalogue(catalogue):
    idx = SIDTable.from_any(catalogue, SIZES)
    rng = np.random.default_rng(7)
    known = set(catalogue.values())
    absent = [c for c in itertools.product(*[range(s) for s in SIZES]) if c not in known]
    item_of = {c: item for item, c in catalogue.items()}
    for _ in range(20):
        parts, expected, sids = [], [], []
        for _ in range(int(rng.integers(1, 6))):
            if rng.random() < 0.7:
                codes = list(catalogue.values())[int(rng.integers(len(catalogue)))]
            else:
                codes = absent[int(rng.integers(len(absent)))]
            parts.append(sid(*codes, markers=bool(rng.random() < 0.5)))
            sids.append(codes)
            expected.append(item_of.get(codes))
            if rng.random() < 0.5:
                parts.append(" then ")
        text = "".join(parts)
        events = scan_sid_text(text)
        assert idx.resolve(events, "none") == expected
        assert idx.resolve(events, "skip") == [e for e in expected if e is not None]
        assert idx.resolve(events, "keep_prefix") == [
            e if e is not None else c for e, c in zip(expected, sids)
        ]


def test_resolve_invalid_sids_per_policy(index):
    codes0 = tuple(index.codes[0].tolist())
    known = set(map(tuple, index.codes.tolist()))
    unknown = next(c for c in itertools.product(*[range(s) for s in SIZES]) if c not in known)
    text = (
        sid(*codes0)
        + sid(codes0[0], codes0[1], markers=False)  # cut short by the next level-0 token
        + sid(*unknown)  # well formed, names no item
        + SID_START_TOKEN
        + sid(0, 2, 9, markers=False)  # code 9 out of range at level 2
    )
    events = scan_sid_text(text)
    assert index.resolve(events, "skip") == [index.item_ids[0]]
    assert index.resolve(events, "none") == [index.item_ids[0], None, None, None]
    assert index.resolve(events, "keep_prefix") == [index.item_ids[0], codes0[:2], unknown, (0, 2, 9)]
    with pytest.raises(ValueError, match=rf"Invalid SID \({codes0[0]}, {codes0[1]}\) .*cut short"):
        index.resolve(events, "raise")
    with pytest.raises(ValueError, match=r"names no item in the catalogue"):
        index.resolve(scan_sid_text(sid(*unknown)), "raise")
    with pytest.raises(ValueError, match=r"code 9 out of range \[0, 4\) at level 2"):
        index.resolve(scan_sid_text(sid(0, 2, 9)), "raise")


def test_index_pickles(index):
    back = pickle.loads(pickle.dumps(index))
    assert back.item_ids == index.item_ids
    every = np.array(list(itertools.product(*[range(s) for s in SIZES])))
    assert (
        back.rows_of_keys(back.keys_of(every)).tolist() == index.rows_of_keys(index.keys_of(every)).tolist()
    )
    assert not back.codes.flags.writeable


# ---------------------------------------------------------------- SIDTokenLookup


def make_vocab(sizes=SIZES, seed: int = 0) -> dict[str, int]:
    """Added vocab with the SID tokens at shuffled ids, markers and other tokens among them."""
    tokens = [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for lv, k in enumerate(sizes) for c in range(k)]
    tokens += [SID_START_TOKEN, SID_END_TOKEN, "<|im_start|>", "<|pad|>"]
    ids = np.random.default_rng(seed).permutation(len(tokens)) + 100
    return {t: int(i) for t, i in zip(tokens, ids)}


@pytest.fixture(scope="module")
def vocab():
    return make_vocab()


@pytest.fixture(scope="module")
def lookup(vocab):
    return SIDTokenLookup(vocab, SIZES, "sid_table.json")


def test_codes_to_ids_uses_the_vocab(vocab, lookup):
    codes = np.array([[4, 2, 3], [0, 0, 0], [1, 1, 2]])
    ids = lookup.codes_to_ids(codes)
    expected = [
        [vocab[SID_TOKEN_TEMPLATE.format(level=lv, code=c)] for lv, c in enumerate(row)] for row in codes
    ]
    assert ids.tolist() == expected
    assert lookup.codes_to_ids([4, 2]).tolist() == [expected[0][:2]]  # 1-D prefix -> one row
    assert (lookup.start, lookup.end) == (vocab[SID_START_TOKEN], vocab[SID_END_TOKEN])


def test_ids_to_codes_round_trip_and_non_sid_ids(vocab, lookup):
    rng = np.random.default_rng(1)
    codes = np.stack([rng.integers(0, s, size=30) for s in SIZES], axis=1)
    levels, back = lookup.ids_to_codes(lookup.codes_to_ids(codes))
    assert levels.tolist() == [[0, 1, 2]] * 30
    np.testing.assert_array_equal(back, codes)
    others = [vocab[SID_START_TOKEN], vocab[SID_END_TOKEN], vocab["<|pad|>"], 0, 99, 10**6]
    levels, back = lookup.ids_to_codes(others)
    assert levels.tolist() == [-1] * 6 and back.tolist() == [-1] * 6


def test_ids_to_codes_accepts_tensors_and_keeps_shape(vocab, lookup):
    ids = lookup.codes_to_ids(np.array([[1, 2, 3], [4, 0, 1]]))
    # a marker, an id below every SID id and one above them all
    ids = np.concatenate(
        [ids, [[vocab[SID_END_TOKEN], 5], [10**6, vocab[SID_START_TOKEN]]]], axis=1
    )  # (2, 5)
    levels_np, codes_np = lookup.ids_to_codes(ids)
    levels_t, codes_t = lookup.ids_to_codes(torch.as_tensor(ids, dtype=torch.int32))
    assert isinstance(levels_t, torch.Tensor) and levels_t.shape == (2, 5)
    assert levels_t.tolist() == levels_np.tolist() == [[0, 1, 2, -1, -1], [0, 1, 2, -1, -1]]
    assert codes_t.tolist() == codes_np.tolist() == [[1, 2, 3, -1, -1], [4, 0, 1, -1, -1]]


def test_codes_to_ids_rejects_bad_codes(lookup):
    with pytest.raises(ValueError, match=r"Code 3 at level 1 is out of range \[0, 3\)"):
        lookup.codes_to_ids([[0, 3]])
    with pytest.raises(ValueError, match=r"Code -1 at level 0"):
        lookup.codes_to_ids([[-1, 0]])
    with pytest.raises(ValueError, match="Codes have 4 levels; the tokenizer has 3"):
        lookup.codes_to_ids([[0, 0, 0, 0]])


def test_scan_ids_events(vocab, lookup):
    sid_ids = lookup.codes_to_ids([2, 1, 0])[0].tolist()
    ids = [7, vocab[SID_START_TOKEN], *sid_ids, vocab[SID_END_TOKEN], vocab["<|pad|>"]]
    assert lookup.scan_ids(ids) == [
        (EV_OTHER, -1, -1),
        (EV_START, -1, -1),
        (EV_SID, 0, 2),
        (EV_SID, 1, 1),
        (EV_SID, 2, 0),
        (EV_END, -1, -1),
        (EV_OTHER, -1, -1),
    ]
    assert lookup.scan_ids(np.array([[vocab[SID_START_TOKEN]]])) == [(EV_START, -1, -1)]  # flattened
    # the events of a token sequence and of its text agree
    text = SID_START_TOKEN + "".join(
        SID_TOKEN_TEMPLATE.format(level=lv, code=c) for lv, c in enumerate([2, 1, 0])
    )
    assert lookup.scan_ids(ids[1:-2]) == scan_sid_text(text)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v.pop(SID_TOKEN_TEMPLATE.format(level=1, code=2)), r"codes per level \[5, 2, 4\]"),
        (lambda v: v.pop(SID_TOKEN_TEMPLATE.format(level=2, code=0)), r"codes per level \[5, 3, 3\]"),
    ],
)
def test_lookup_rejects_tokens_that_disagree_with_the_sizes(vocab, change, message):
    bad = dict(vocab)
    change(bad)
    with pytest.raises(
        ValueError, match=r"^tok\.json: field 'codebook_sizes' = \[5, 3, 4\] \(3 levels\) disagrees"
    ) as err:
        SIDTokenLookup(bad, SIZES, "tok.json")
    assert err.match(message)


@pytest.mark.parametrize(
    "token, where",
    [
        ("<|sid_3_0|>", r"level 3 \(the table has 3 levels\)"),
        ("<|sid_0_7|>", r"code 7 at level 0 \(codebook size 5\)"),  # a gap: code 1 replaced by code 7
        ("<|sid_999999999999_0|>", r"level 999999999999 \(the table has 3 levels\)"),  # once hung the load
        ("<|sid_0_999999999999|>", r"code 999999999999 at level 0"),
        ("<|sid_" + "9" * 5000 + "_0|>", r"level 999999999999\.\.\. \(5000 digits\)"),  # past int()'s limit
        ("<|sid_2_1048576|>", r"code 1048576 at level 2"),  # MAX_CODEBOOK_SIZE
    ],
)
def test_lookup_names_a_sid_token_outside_the_table(vocab, token, where):
    bad = dict(vocab)
    bad.pop(SID_TOKEN_TEMPLATE.format(level=0, code=1))
    bad[token] = 999
    with pytest.raises(ValueError, match=rf"^tokenizer\.json: added token '.*' names SID {where}") as err:
        SIDTokenLookup(bad, SIZES, "tok.json")
    assert "codebook_sizes [5, 3, 4] (tok.json)" in str(err.value) and len(str(err.value)) < 600
    with pytest.raises(ValueError, match=r"^data/tokenizer\.json: added token"):
        SIDTokenLookup(bad, SIZES, "tok.json", tokens_source="data/tokenizer.json")


@pytest.mark.parametrize("marker", [SID_START_TOKEN, SID_END_TOKEN])
def test_lookup_requires_both_markers(vocab, marker):
    bad = {t: i for t, i in vocab.items() if t != marker}
    with pytest.raises(ValueError, match=rf"tok\.json: the tokenizer has no {re.escape(marker)} token"):
        SIDTokenLookup(bad, SIZES, "tok.json")


def test_lookup_without_sid_tokens_is_rejected():
    with pytest.raises(ValueError, match=r"\(0 levels, codes per level \[\]\)"):
        SIDTokenLookup({SID_START_TOKEN: 0, SID_END_TOKEN: 1}, [2], "tok.json")


# ---------------------------------------------------------------- parse_sid_string


@pytest.mark.parametrize(
    "text, codes",
    [
        (sid(3, 0, 2), (3, 0, 2)),
        (sid(3, 0, 2, markers=False), (3, 0, 2)),
        (sid(12), (12,)),
        ("  " + sid(1, 2) + "\n", (1, 2)),
        (SID_START_TOKEN + " <|sid_0_4|>  <|sid_1_10|>\t" + SID_END_TOKEN, (4, 10)),
    ],
)
def test_parse_sid_string(text, codes):
    assert parse_sid_string(text) == codes


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        SID_START_TOKEN + SID_END_TOKEN,
        sid(1, 2) + " extra",
        "x" + sid(1, 2, markers=False),
        sid(1, 2, markers=False) + sid(3, markers=False),  # two SIDs: level 0 after level 1
        SID_START_TOKEN + sid(1, 2, markers=False),  # one marker only
        sid(1, 2, markers=False) + SID_END_TOKEN,
        sid(1, 2) + sid(3, 4),
        "<|sid_0_1|><|sid_1_x|>",
        "<|sid_0_-1|>",
    ],
)
def test_parse_sid_string_rejects_malformed_strings(text):
    with pytest.raises(ValueError, match="Malformed SID string"):
        parse_sid_string(text)


@pytest.mark.parametrize(
    "text, levels", [("<|sid_1_0|><|sid_2_0|>", "[1, 2]"), ("<|sid_0_0|><|sid_2_1|>", "[0, 2]")]
)
def test_parse_sid_string_names_levels_out_of_order(text, levels):
    with pytest.raises(ValueError, match=rf"levels \{levels[:-1]}\] are not 0, 1, 2, \.\.\. in order"):
        parse_sid_string(text)


# ---------------------------------------------------------------- scan_sid_text / group_sid_events


def test_scan_sid_text_events():
    text = f"buy {SID_START_TOKEN}<|sid_0_3|> <|sid_1_1|>{SID_END_TOKEN} and <|sid_0_2|>"
    assert scan_sid_text(text) == [
        (EV_OTHER, -1, -1),
        (EV_START, -1, -1),
        (EV_SID, 0, 3),
        (EV_SID, 1, 1),  # whitespace between tokens is not "other text"
        (EV_END, -1, -1),
        (EV_OTHER, -1, -1),
        (EV_SID, 0, 2),
    ]
    assert scan_sid_text("") == []
    assert scan_sid_text("<|sid_start|><|sid_start|>") == [(EV_START, -1, -1)] * 2


def test_scan_sid_text_reads_markers_as_markers_and_rejects_lookalikes():
    # near misses of a SID token are other text
    assert scan_sid_text("<|sid_0_a|><|sid_0_1|>") == [(EV_OTHER, -1, -1), (EV_SID, 0, 1)]
    assert scan_sid_text("<|sid_x|> <|sid_1_2|>") == [(EV_OTHER, -1, -1), (EV_SID, 1, 2)]


@pytest.mark.parametrize("token", ["<|sid_0_01|>", "<|sid_00_1|>", "<|sid_0_\uff11|>", "<|sid_\u0660_1|>"])
def test_sid_tokens_are_ascii_digits_without_leading_zeros(token):
    # Not tokens of the tokenizer, so not SIDs in text either: text and token ids agree.
    assert scan_sid_text(token) == []
    assert scan_sid_text(token + "<|sid_0_1|>") == [(EV_OTHER, -1, -1), (EV_SID, 0, 1)]
    with pytest.raises(ValueError, match="Malformed SID string"):
        parse_sid_string(token)
    assert SIDTokenLookup({**make_vocab([2]), token: 999}, [2], "t.json").codebook_sizes == [2]


def ev(*codes_by_level):
    return [(EV_SID, lv, c) for lv, c in codes_by_level]


@pytest.mark.parametrize(
    "events, expected",
    [
        (ev((0, 1), (1, 2)), [([1, 2], "")]),
        (ev((0, 1), (1, 2), (0, 3), (1, 0)), [([1, 2], ""), ([3, 0], "")]),
        ([(EV_START, -1, -1), *ev((0, 1), (1, 2)), (EV_END, -1, -1)], [([1, 2], "")]),
        (ev((0, 1)), [([1], "cut short")]),
        (ev((0, 1), (0, 2), (1, 2)), [([1], "cut short"), ([2, 2], "")]),
        (
            [*ev((0, 1)), (EV_OTHER, -1, -1), *ev((1, 2))],
            [([1], "cut short"), ([2], "level 1 where level 0 was expected")],
        ),
        ([*ev((0, 1)), (EV_END, -1, -1)], [([1], "cut short")]),
        (ev((0, 4), (1, 0)), [([4, 0], "code 4 out of range [0, 4) at level 0")]),
        (ev((0, 1), (1, 3)), [([1, 3], "code 3 out of range [0, 3) at level 1")]),
        (ev((0, 1), (2, 1)), [([1, 1], "level 2 where level 1 was expected")]),
        # the first problem is kept; the broken SID runs on until the next level-0 token
        (
            ev((0, 9), (2, 1), (1, 0), (0, 0), (1, 0)),
            [([9, 1, 0], "code 9 out of range [0, 4) at level 0"), ([0, 0], "")],
        ),
        ([(EV_OTHER, -1, -1), (EV_START, -1, -1), (EV_END, -1, -1)], []),
        ([], []),
    ],
)
def test_group_sid_events(events, expected):
    assert group_sid_events(events, [4, 3]) == expected


def test_group_sid_events_with_one_level():
    # every level-0 token is a whole SID; a level-1 token then follows nothing
    assert group_sid_events(ev((0, 1), (1, 0), (0, 0)), [2]) == [
        ([1], ""),
        ([0], "level 1 where level 0 was expected"),
        ([0], ""),
    ]
    # a broken SID is not closed by reaching L tokens, only by a level-0 token, a marker or other text
    assert group_sid_events(ev((0, 5), (1, 0)), [2]) == [([5, 0], "code 5 out of range [0, 2) at level 0")]


def test_group_sid_events_from_text_round_trips_random_sids():
    rng = np.random.default_rng(3)
    sizes = [6, 2, 5, 3]
    codes = np.stack([rng.integers(0, s, size=15) for s in sizes], axis=1)
    text = " ".join(sid(*row, markers=bool(i % 2)) for i, row in enumerate(codes.tolist()))
    assert group_sid_events(scan_sid_text(text), sizes) == [(row, "") for row in codes.tolist()]


# ---------------------------------------------------------------- compact (version 2) tables


def _compact_table(n: int = 300, seed: int = 0) -> SIDTable:
    rng = np.random.default_rng(seed)
    keys = rng.choice(16 * 16 * 8, size=n, replace=False)
    codes = np.stack(np.unravel_index(keys, (16, 16, 8)), axis=1)
    ids = ItemIds.from_list([f"itém-{i}" if i % 7 else f"ü{i}" for i in range(n)])
    return SIDTable(ids, codes, [16, 16, 8], collision_strategy="extra_level", stats={"max_bucket": 3})


def test_item_ids_buffer_equals_list_and_index_finds_every_id():
    ids = ["a", "", "é€", "b" * 300, "x"]
    packed = ItemIds.from_list(ids)
    assert packed == ids and list(packed) == ids and packed[2] == "é€" and packed[-1] == "x"
    index = HashedItemIndex(packed)
    assert [index[i] for i in ids] == list(range(len(ids)))
    assert "missing" not in index and 3 not in index and index.get("nope") is None
    assert index.rows_of(["x", "nope", "a"]).tolist() == [4, -1, 0]
    with pytest.raises(ValueError, match=r"Duplicate item ids in 'item_ids': \['b'\]"):
        HashedItemIndex(ItemIds.from_list(["a", "b", "c", "b"]))


def test_compact_round_trip_writes_smallest_dtype_and_matches_lookups(tmp_path):
    from safetensors.numpy import load_file

    table = _compact_table()
    plain = SIDTable(list(table.item_ids), table.codes, table.codebook_sizes)
    written = table.to_json(tmp_path / "sid_table.json", compact=True)
    assert [p.rsplit("/", 1)[-1] for p in written] == ["sid_table.json", "sid_codes.safetensors"]
    meta = json.loads((tmp_path / "sid_table.json").read_text())
    assert meta["version"] == 2 and meta["data_file"] == "sid_codes.safetensors" and meta["num_items"] == 300
    assert "item_ids" not in meta and "codes" not in meta
    assert load_file(str(tmp_path / "sid_codes.safetensors"))["codes"].dtype == np.uint8
    loaded = SIDTable.from_json(tmp_path / "sid_table.json")
    assert isinstance(loaded.item_ids, ItemIds) and loaded.item_ids == plain.item_ids
    assert loaded.codes.dtype == np.int64 and np.array_equal(loaded.codes, plain.codes)
    assert loaded.stats == {"max_bucket": 3} and loaded.collision_strategy == "extra_level"
    for row in (0, 7, 299):
        item = plain.item_ids[row]
        assert loaded.index_of(item) == row
        assert loaded.row_of_sid(plain.codes[row]) == row
        assert loaded.sid_text(row) == plain.sid_texts()[row]
    assert np.array_equal(loaded.rows_with_prefix([3]), plain.rows_with_prefix([3]))
    assert pickle.loads(pickle.dumps(loaded)).index_of(plain.item_ids[5]) == 5


def test_threshold_picks_the_layout(tmp_path, monkeypatch):
    import hf_semtok.tokenizer.sid_table as sid_table_module

    table = SIDTable.from_any(random_catalogue(), SIZES)
    assert table.to_json(tmp_path / "small.json") == (str(tmp_path / "small.json"),)
    assert json.loads((tmp_path / "small.json").read_text())["version"] == 1
    monkeypatch.setattr(sid_table_module, "COMPACT_MIN_ITEMS", 10)
    big = SIDTable.from_any(random_catalogue(), SIZES)  # built from a list: ids packed, hashed index
    assert isinstance(big.item_ids, ItemIds) and big.index_of("item_03") == 3
    written = big.to_json(tmp_path / "x-sid_table.json")
    assert written[1].endswith("x-sid_codes.safetensors")
    assert SIDTable.from_json(written[0]).item_ids == table.item_ids


def _rewrite(path, **tensors):
    from safetensors.numpy import load_file, save_file

    data = load_file(str(path))
    data.update(tensors)
    save_file({k: v for k, v in data.items() if v is not None}, str(path))


@pytest.mark.parametrize(
    "damage, error, match",
    [
        (
            lambda d: (d / "sid_codes.safetensors").unlink(),
            FileNotFoundError,
            r"names 'sid_codes.safetensors'",
        ),
        (
            lambda d: (d / "sid_codes.safetensors").write_bytes(b"\x10\x00junk"),
            ValueError,
            r"not a readable safetensors",
        ),
        (
            lambda d: _rewrite(
                d / "sid_codes.safetensors", item_ids_offsets=np.arange(301, dtype=np.int64) * 99
            ),
            ValueError,
            r"offsets must rise from 0 to the buffer length",
        ),
        (
            lambda d: _rewrite(d / "sid_codes.safetensors", codes=np.zeros((5, 3), dtype=np.uint8)),
            ValueError,
            r"tensor 'codes' must be an integer \(300, num_levels\)",
        ),
        (
            lambda d: _rewrite(d / "sid_codes.safetensors", codes=np.zeros((300, 3), dtype=np.uint8)),
            ValueError,
            r"share the SID",
        ),
        (
            lambda d: _rewrite(d / "sid_codes.safetensors", extra=np.zeros(1, dtype=np.uint8)),
            ValueError,
            r"tensors must be \['codes', 'item_ids_utf8', 'item_ids_offsets'\]",
        ),
        (
            lambda d: _patch_meta(d, data_file="../elsewhere.safetensors"),
            ValueError,
            r"field 'data_file' must be a file name",
        ),
        (lambda d: _patch_meta(d, data_file="."), ValueError, r"field 'data_file' must be a file name"),
        (
            lambda d: (d / "sub").mkdir() or _patch_meta(d, data_file="sub"),
            FileNotFoundError,
            r"names 'sub' .* is not a regular file",
        ),
        (
            lambda d: _patch_meta(d, item_ids=["a"]),
            ValueError,
            r"unknown field\(s\) \['item_ids'\] for version 2",
        ),
        (lambda d: _patch_meta(d, num_items="300"), ValueError, r"field 'num_items' must be an integer"),
    ],
)
def test_compact_loading_is_strict(tmp_path, damage, error, match):
    _compact_table().to_json(tmp_path / "sid_table.json", compact=True)
    damage(tmp_path)
    with pytest.raises(error, match=match) as info:
        SIDTable.from_json(tmp_path / "sid_table.json")
    assert str(tmp_path) in str(info.value)


def _patch_meta(directory, **fields):
    path = directory / "sid_table.json"
    meta = json.loads(path.read_text())
    meta.update(fields)
    path.write_text(json.dumps(meta))


def test_compact_dict_without_its_folder_says_how_to_read_it(tmp_path):
    _compact_table().to_json(tmp_path / "sid_table.json", compact=True)
    with pytest.raises(ValueError, match=r"version-2 \(compact\) table .*SIDTable.from_json"):
        SIDTable.from_dict(json.loads((tmp_path / "sid_table.json").read_text()))


def test_single_id_hash_matches_the_vectorised_one():
    from hf_semtok.tokenizer.item_ids import _hash_one, _hash_utf8

    ids = ["", "a", "é€", "item-123456789", "x" * 70]
    packed = ItemIds.from_list(ids)
    assert _hash_utf8(packed.buffer, packed.offsets).tolist() == [_hash_one(i) for i in ids]


# ------------------------------------------------------------------------------------------------ issue 35
def test_from_json_on_a_folder_or_a_name_too_long(tmp_path):
    with pytest.raises(ValueError, match=r"is a folder; pass the path of its sid_table.json file"):
        SIDTable.from_json(tmp_path)  # was IsADirectoryError
    with pytest.raises(FileNotFoundError, match=r"no such file; check the path"):
        SIDTable.from_json(tmp_path / ("a" * 300 + ".json"))  # was OSError [Errno 36]


def test_a_key_twice_in_sid_table_json_is_refused(tmp_path):
    """`json` keeps the last of two equal keys: a table with `item_ids` twice loaded the second list silently."""
    table = SIDTable.from_mapping({"a": (0, 1), "b": (1, 0)}, codebook_sizes=[2, 2])
    path = tmp_path / "sid_table.json"
    table.to_json(path)
    text = path.read_text().rstrip()
    path.write_text(text[:-1] + ', "item_ids": ["x", "y"]}')
    with pytest.raises(
        ValueError, match=r"sid_table.json: the key 'item_ids' appears twice in one JSON object.*Remove one"
    ):
        SIDTable.from_json(path)


@pytest.mark.parametrize("surrogate", ["\ud800", "a\udfffb"])
def test_item_ids_must_be_valid_unicode(tmp_path, surrogate):
    with pytest.raises(ValueError, match=r"item_ids\[1\] is .* lone surrogate and is not valid Unicode"):
        SIDTable.from_mapping({"a": (0, 1), surrogate: (1, 0)}, codebook_sizes=[2, 2])
    path = tmp_path / "sid_table.json"
    SIDTable.from_mapping({"a": (0, 1), "b": (1, 0)}, codebook_sizes=[2, 2]).to_json(path)
    escaped = json.dumps(surrogate)[1:-1]  # JSON may spell a lone surrogate as \\ud800
    path.write_text(path.read_text().replace('"b"', f'"{escaped}"'))
    with pytest.raises(ValueError, match=r"sid_table.json: field 'item_ids'\[1\] is .* lone surrogate"):
        SIDTable.from_json(path)


def test_row_of_sid_and_index_of_errors_name_the_fix(catalogue, index):
    item, codes = next(iter(catalogue.items()))
    assert index.row_of_sid(codes) == index.index_of(item) == 0
    assert index.row_of_sid([SIZES[0], 0, 0]) == -1  # out-of-range code: no item
    with pytest.raises(ValueError, match=r"has 3 codes .*got 1 .*rows_with_prefix"):
        index.row_of_sid([0])
    with pytest.raises(TypeError, match="integer"):
        index.row_of_sid([0, 1.5, 0])
    with pytest.raises(TypeError, match="tuple of integer codes"):
        index.row_of_sid("0,1,2")
    with pytest.raises(KeyError, match=r"'nope' is not in the SID table .*add_items"):
        index.index_of("nope")


def test_parse_items_refuses_negative_token_ids(sid_tokenizer):
    with pytest.raises(ValueError, match=r"token ids are >= 0; got -1"):
        sid_tokenizer.parse_items([-1, 5])
    with pytest.raises(ValueError, match=r">= 0; got -100"):
        sid_tokenizer.parse_items(torch.tensor([[3, 4], [-100, 5]]))
    assert sid_tokenizer.parse_items([5]) == []


def test_to_json_onto_a_bad_path_is_a_clear_error(tmp_path):
    table = SIDTable.from_mapping({"a": (0, 1), "b": (1, 0)}, codebook_sizes=[2, 2])
    (tmp_path / "afile").write_text("x")
    for path, message in [
        (tmp_path / "afile" / "x.json", "a part of the path is a file"),
        (tmp_path, "it is a folder"),
        (tmp_path / ("a" * 300 + ".json"), "too long"),
    ]:
        with pytest.raises(ValueError, match=message):
            table.to_json(path)
    with pytest.raises(TypeError, match="must be a file path"):
        table.to_json(None)
