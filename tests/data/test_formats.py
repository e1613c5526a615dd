from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hf_semtok.data import (
    Catalogue,
    compose_item_text,
    leave_one_out_split,
    load_amazon2014,
    load_lcrec_dataset,
    load_lcrec_index,
    load_sequence_text,
    parse_sid_strings,
)

SCIENTIFIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon18-scientific"


def _write_json(path: Path, obj) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            json.dump(obj, handle)
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")


@pytest.fixture
def lcrec_dir(tmp_path):
    _write_json(tmp_path / "Toy.inter.json.gz", {"0": [0, 1, 2, 3], "1": [2, 1, 0], "2": [3, 4]})
    items = {
        "0": {"title": "Red &amp; Blue Pen", "brand": "Acme", "categories": "Office,Pens, Markers & Ink,Gel"},
        "1": {"title": "Stapler", "brand": "brand_12", "categories": "", "description": "Metal."},
        "2": {"title": "Glue", "brand": "", "categories": "Office,Adhesives"},
        "3": {"title": "Ruler", "brand": "Acme", "categories": "Office"},
        "4": {"title": "", "brand": "", "categories": ""},
    }
    _write_json(tmp_path / "Toy.item.json", items)
    index = {str(i): [f"<a_{i % 2}>", f"<b_{i}>", "<c_0>"] for i in range(5)}
    _write_json(tmp_path / "Toy.index.json", index)
    (tmp_path / "sids_other").mkdir()
    _write_json(
        tmp_path / "sids_other" / "rq.Toy.index.json.gz", {str(i): [f"<a_{i}>", "<b_1>"] for i in range(5)}
    )
    return tmp_path


def test_load_lcrec_dataset_reads_items_text_histories_and_sids(lcrec_dir):
    cat = load_lcrec_dataset(lcrec_dir)
    assert cat.name == "Toy"
    assert cat.item_ids == ["0", "1", "2", "3", "4"]
    assert cat.histories == {"0": ["0", "1", "2", "3"], "1": ["2", "1", "0"], "2": ["3", "4"]}
    assert cat.titles["0"] == "Red & Blue Pen"  # HTML entities unescaped
    assert "4" not in cat.titles
    # a comma followed by a space stays inside one category name
    assert cat.categories["0"] == ["Office", "Pens, Markers & Ink", "Gel"]
    assert cat.texts["0"] == "Red & Blue Pen. Brand: Acme. Category: Office > Pens, Markers & Ink > Gel."
    assert (
        cat.texts["1"] == "Stapler."
    )  # placeholder brand "brand_12" dropped; description not a default field
    assert "4" not in cat.texts
    assert cat.item_texts()[4] == "item 4"
    assert set(cat.published_sids) == {"index", "sids_other/rq"}
    assert cat.published_sids["index"]["3"] == (1, 3, 0)
    assert cat.published_sids["sids_other/rq"]["4"] == (4, 1)
    with_desc = load_lcrec_dataset(
        lcrec_dir, name="Toy", text_fields=("title", "description"), load_sids=False
    )
    assert with_desc.texts["1"] == "Stapler. Metal."
    assert with_desc.published_sids == {}
    # the fields some item has, in the order asked for
    assert cat.text_fields == ["title", "brand", "categories"]
    assert with_desc.text_fields == ["title", "description"]
    reordered = load_lcrec_dataset(lcrec_dir, text_fields=("brand", "title", "description"), load_sids=False)
    assert reordered.text_fields == ["brand", "title", "description"]


def test_load_lcrec_without_item_file_uses_history_and_sid_items(tmp_path):
    _write_json(tmp_path / "X.inter.json", {"0": [10, 2, 7]})
    _write_json(tmp_path / "X.index.json", {"10": ["<a_1>"], "2": ["<a_0>"], "7": ["<a_3>"], "99": ["<a_2>"]})
    cat = load_lcrec_dataset(tmp_path)
    assert cat.item_ids == ["2", "7", "10", "99"]
    assert cat.texts == {} and cat.titles == {} and cat.text_fields == []


def test_load_lcrec_index_offsets_and_errors(tmp_path):
    path = tmp_path / "a.index.json"
    _write_json(path, {"0": ["<a_5>", "<b_7>"], "1": ["<a_0>", "<b_255>"]})
    assert load_lcrec_index(path) == {"0": (5, 7), "1": (0, 255)}
    assert load_lcrec_index(path, id_offset=1) == {"1": (5, 7), "2": (0, 255)}
    _write_json(path, {"0": ["<a_5>", "<c_7>"]})
    with pytest.raises(ValueError, match="expected '<b_N>'"):
        load_lcrec_index(path)
    _write_json(path, {"0": ["<a_5>", "<b_7>"], "1": ["<a_1>"]})
    with pytest.raises(ValueError, match="mixes SID lengths"):
        load_lcrec_index(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_lcrec_index(tmp_path / "nope.json")
    _write_json(path, {"0": ["<a_5>", "<b_7>"], "x9": ["<a_1>", "<b_2>"]})
    with pytest.raises(ValueError, match="a.index.json.*item id 'x9' is not an integer.*id_offset=0"):
        load_lcrec_index(path, id_offset=1)
    assert load_lcrec_index(path)["x9"] == (1, 2)
    _write_json(path, {"0": "<a_5><b_7>"})
    with pytest.raises(ValueError, match="item '0' has str .*expected a list of SID tokens"):
        load_lcrec_index(path)
    assert parse_sid_strings(["<a_12>", "<b_3>", "<c_0>", "<d_9>"]) == (12, 3, 0, 9)


def test_load_lcrec_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_lcrec_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="Found 0"):
        load_lcrec_dataset(tmp_path)
    _write_json(tmp_path / "A.inter.json", {"0": [0]})
    _write_json(tmp_path / "B.inter.json", {"0": [0]})
    with pytest.raises(ValueError, match="pass name="):
        load_lcrec_dataset(tmp_path)
    _write_json(tmp_path / "A.item.json", {"0": {"title": "x"}})
    _write_json(tmp_path / "A.inter.json", {"0": [0, 5]})
    with pytest.raises(ValueError, match=r"histories name 1 items that are not in item_ids.*'5'"):
        load_lcrec_dataset(tmp_path, name="A")


def test_load_sequence_text_plain_and_gz(tmp_path):
    plain = tmp_path / "seq.txt"
    plain.write_text("1 1 2 3\n2 4 2\n\n3 5 1 2 4\n")
    expected = {"1": ["1", "2", "3"], "2": ["4", "2"], "3": ["5", "1", "2", "4"]}
    assert load_sequence_text(plain) == expected
    gz = tmp_path / "seq.txt.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(plain.read_text())
    assert load_sequence_text(gz) == expected
    plain.write_text("1 1 2\n1 3 4\n")
    with pytest.raises(ValueError, match="appears twice"):
        load_sequence_text(plain)


def test_load_amazon2014_text_and_sid_id_shift(tmp_path):
    with gzip.open(tmp_path / "sequential_data.txt.gz", "wt") as handle:
        handle.write("1 1 2 3\n2 3 2 1 4\n")
    rows = [
        {
            "item_id": 1,
            "asin": "A",
            "title": "Nail &quot;Red&quot;",
            "brand": "OPI",
            "categories": [["Beauty", "Nails"]],
        },
        {"item_id": 2, "asin": "B", "title": None, "brand": None, "categories": [["Beauty"]]},
        {"item_id": 3, "asin": "C", "title": "Brush", "brand": None, "categories": []},
        {
            "item_id": 4,
            "asin": "D",
            "title": "Comb",
            "brand": "X",
            "categories": [["Beauty", "Hair"], ["Tools"]],
        },
    ]
    with gzip.open(tmp_path / "items_text.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "letter").mkdir()
    _write_json(tmp_path / "letter" / "Toy.index.json.gz", {str(i): [f"<a_{i}>", "<b_0>"] for i in range(4)})
    cat = load_amazon2014(tmp_path)
    assert cat.item_ids == ["1", "2", "3", "4"]
    assert cat.histories == {"1": ["1", "2", "3"], "2": ["3", "2", "1", "4"]}
    assert cat.titles == {"1": 'Nail "Red"', "3": "Brush", "4": "Comb"}
    assert cat.categories["4"] == ["Beauty", "Hair"]  # the first category path
    assert cat.texts["1"] == 'Nail "Red". Brand: OPI. Category: Beauty > Nails.'
    assert cat.text_fields == ["title", "brand", "categories"]
    # LC id 0 is P5 id 1
    assert cat.published_sids["letter/Toy"]["1"] == (0, 0)
    assert cat.published_sids["letter/Toy"]["4"] == (3, 0)


def test_load_amazon2014_source_without_brands_says_so(tmp_path):
    # Toys ships no brand (null throughout): the catalogue's text_fields leave it out, so reports do not claim it
    (tmp_path / "sequential_data.txt").write_text("1 1 2\n")
    rows = [
        {"item_id": 1, "title": "Kite", "brand": None, "categories": [["Toys", "Outdoor"]]},
        {"item_id": 2, "title": "Ball", "brand": "", "categories": []},
    ]
    (tmp_path / "items_text.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cat = load_amazon2014(tmp_path)
    assert cat.texts == {"1": "Kite. Category: Toys > Outdoor.", "2": "Ball."}
    assert cat.text_fields == ["title", "categories"]
    assert load_amazon2014(tmp_path, text_fields=("brand", "title")).text_fields == ["title"]


def test_load_amazon2014_attribute_fallback(tmp_path):
    (tmp_path / "sequential_data.txt").write_text("1 2 1 3\n")
    _write_json(tmp_path / "item2attributes.json.gz", {"1": [4, 5], "2": [4], "3": [6]})
    cat = load_amazon2014(tmp_path)
    assert cat.categories == {"1": ["attr_4", "attr_5"], "2": ["attr_4"], "3": ["attr_6"]}
    assert cat.texts == {} and cat.text_fields == []
    with pytest.raises(ValueError, match="sequential_data"):
        load_amazon2014(tmp_path / "letter")


def test_leave_one_out_split_protocol():
    histories = {"u1": ["a", "b", "c", "d", "e"], "u2": ["x", "y", "z"], "u3": ["p", "q"], "u4": ["s"]}
    train, valid, test = leave_one_out_split(histories)
    assert train == {"u1": ["a", "b", "c"], "u2": ["x"], "u3": ["p", "q"], "u4": ["s"]}
    assert valid == {"u1": (["a", "b", "c"], "d"), "u2": (["x"], "y")}
    assert test == {"u1": (["a", "b", "c", "d"], "e"), "u2": (["x", "y"], "z")}
    # no valid/test target is ever in training for that user
    for user, (_, target) in test.items():
        assert target == histories[user][-1]
    _, valid, test = leave_one_out_split(histories, max_history=2)
    assert test["u1"] == (["c", "d"], "e")
    assert valid["u1"] == (["b", "c"], "d")
    with pytest.raises(ValueError, match="max_history"):
        leave_one_out_split(histories, max_history=0)


def test_catalogue_validation():
    with pytest.raises(ValueError, match="empty"):
        Catalogue(item_ids=[])
    with pytest.raises(ValueError, match=r"duplicate item ids \['a'\]"):
        Catalogue(item_ids=["a", "b", "a"])
    with pytest.raises(ValueError, match="titles name 1 items"):
        Catalogue(item_ids=["a"], titles={"b": "B"})
    cat = Catalogue(item_ids=[1, 2], histories={"u": ["1", "2", "1"]})
    assert cat.item_ids == ["1", "2"] and cat.num_interactions == 3 and len(cat) == 2
    assert cat.item_index() == {"1": 0, "2": 1}
    with pytest.raises(ValueError, match="no text"):
        cat.item_texts(fallback_to_title=False)
    with pytest.raises(ValueError, match="Unknown text fields"):
        compose_item_text("t", fields=("title", "price"))
    with pytest.raises(ValueError, match=r"unknown text_fields \['price'\]"):
        Catalogue(item_ids=["a"], text_fields=["title", "price"])
    with pytest.raises(TypeError, match="list of field names"):
        Catalogue(item_ids=["a"], text_fields="title")
    assert Catalogue(item_ids=["a"], text_fields=("title",)).text_fields == ["title"]


@pytest.mark.skipif(not SCIENTIFIC.is_dir(), reason="shared Amazon 2018 Scientific data not present")
def test_real_scientific_dataset():
    cat = load_lcrec_dataset(SCIENTIFIC)
    assert (cat.num_items, len(cat.histories), cat.num_interactions) == (4344, 8317, 58492)
    assert len(cat.published_sids) == 4
    for sids in cat.published_sids.values():
        assert set(sids) == set(cat.item_ids)
        assert {len(c) for c in sids.values()} == {4}
    train, valid, test = leave_one_out_split(cat.histories)
    assert len(test) == len(valid) == 8317  # 5-core: every user has >= 3 items
    assert sum(len(h) for h in train.values()) == cat.num_interactions - 2 * 8317


def test_load_catalogue_dispatch(lcrec_dir):
    from hf_semtok.data import load_catalogue
    from hf_semtok.data.synthetic import SyntheticCatalogue

    syn = load_catalogue("synthetic", synthetic_items=100, synthetic_users=20, seed=1)
    assert isinstance(syn, SyntheticCatalogue) and syn.num_items == 100 and len(syn.histories) == 20
    assert load_catalogue("lcrec", lcrec_dir).item_ids == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="needs data_dir"):
        load_catalogue("lcrec")
    with pytest.raises(ValueError, match="Unknown dataset_format 'csv'"):
        load_catalogue("csv", lcrec_dir)


def test_dataset_files_nested_too_deeply_or_at_a_folder_are_clear_errors(tmp_path):
    """Issue 35: a RecursionError from deeply nested JSON, and OSError [Errno 36] / "does not exist" for a path too
    long or a folder."""
    path = tmp_path / "Toy.index.json"
    path.write_text('{"0": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match=r"Toy.index.json' holds JSON nested too deeply"):
        load_lcrec_index(path)
    with pytest.raises(ValueError, match=r"SID index file .* is a folder; name the .index.json file"):
        load_lcrec_index(tmp_path)
    with pytest.raises(ValueError, match=r"SID index file .* cannot be looked up \(File name too long\)"):
        load_lcrec_index(tmp_path / ("a" * 300 + ".index.json"))
    with pytest.raises(ValueError, match=r"Dataset folder .* does not exist"):
        load_lcrec_dataset(tmp_path / ("a" * 300))
