"""The `table` format: interactions + items tables in every file form, into the same `Catalogue`, and every bad
input a clear error naming the file, the column and the fix."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import (
    EXAMPLE_TABLE_DIR,
    DatasetArguments,
    TableCatalogue,
    catalogue_embeddings,
    leave_one_out_split,
    load_catalogue,
    load_table_catalogue,
    make_synthetic_catalogue,
    write_example_table,
)

INTERACTIONS = [  # user, item, timestamp (file order is not time order)
    ("u1", "b", 20),
    ("u2", "a", 5),
    ("u1", "a", 10),
    ("u1", "c", 20),  # same time as (u1, b): the file order breaks the tie, b before c
    ("u2", "c", 7),
    ("u2", "c", 8),  # a consecutive repeat of c: dropped by default
    ("u2", "a", 9),  # a repeat with another item between: kept
]
ITEMS = [
    ("a", "Red Pen", "Acme", "Office > Pens"),
    ("b", "Stapler", "", "Office"),
    ("c", "Glue", "Acme", ""),
    ("d", "Ruler", "Acme", "Office > Measuring"),  # nobody took it: still an item
]
HISTORIES = {"u1": ["a", "b", "c"], "u2": ["a", "c", "a"]}


def _write_csv(path: Path, header: list[str], rows: list[tuple], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    data = buffer.getvalue().encode(encoding)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def _tables() -> tuple[pa.Table, pa.Table]:
    users, items, times = zip(*INTERACTIONS)
    ids, titles, brands, cats = zip(*ITEMS)
    return (
        pa.table({"user_id": users, "item_id": items, "timestamp": times}),
        pa.table({"item_id": ids, "title": titles, "brand": brands, "categories": cats}),
    )


def _write(table: pa.Table, path: Path) -> Path:
    """`table` in the file form of `path`'s extension."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        pq.write_table(table, path)
    elif name.endswith(".jsonl"):
        text = "".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode()
        path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)
    else:
        _write_csv(path, table.column_names, [tuple(r.values()) for r in table.to_pylist()])
    return path


def _csv_pair(tmp_path: Path) -> tuple[Path, Path]:
    inter, items = _tables()
    return _write(inter, tmp_path / "interactions.csv"), _write(items, tmp_path / "items.csv")


def test_csv_tables_give_sorted_histories_texts_and_every_item(tmp_path):
    cat = load_table_catalogue(*_csv_pair(tmp_path))
    assert isinstance(cat, TableCatalogue)
    assert cat.item_ids == ["a", "b", "c", "d"]  # items-table order; d was never taken and is still an item
    assert cat.histories == HISTORIES
    assert list(cat.histories) == ["u1", "u2"]  # users in the order of their first event
    assert cat.titles["a"] == "Red Pen"
    assert cat.texts["a"] == "Red Pen. Brand: Acme. Category: Office > Pens."
    assert cat.texts["b"] == "Stapler. Category: Office."  # empty values are left out
    assert cat.categories == {"a": ["Office", "Pens"], "b": ["Office"], "d": ["Office", "Measuring"]}
    assert cat.text_fields == ["title", "brand", "categories"]
    assert cat.load_stats == {
        "interactions_read": 7,
        "unknown_item_interactions_skipped": 0,
        "consecutive_duplicates_dropped": 1,
        "users": 2,
        "items_without_interactions": 1,
    }
    train, valid, test = leave_one_out_split(cat.histories)
    assert test["u1"] == (["a", "b"], "c") and train["u2"] == ["a"]


@pytest.mark.parametrize(
    "suffixes",
    [(".csv.gz", ".csv.gz"), (".parquet", ".parquet"), (".jsonl", ".jsonl"), (".jsonl.gz", ".parquet")],
)
def test_every_file_form_reads_into_the_same_catalogue(tmp_path, suffixes):
    reference = load_table_catalogue(*_csv_pair(tmp_path))
    inter, items = _tables()
    cat = load_table_catalogue(
        _write(inter, tmp_path / f"i{suffixes[0]}"), _write(items, tmp_path / f"t{suffixes[1]}")
    )
    assert (cat.item_ids, cat.histories, cat.texts) == (
        reference.item_ids,
        reference.histories,
        reference.texts,
    )


def test_tables_in_memory_arrow_and_pandas(tmp_path):
    inter, items = _tables()
    assert load_table_catalogue(inter, items).histories == HISTORIES
    pandas = pytest.importorskip("pandas")
    cat = load_table_catalogue(inter.to_pandas(), items.to_pandas())
    assert cat.histories == HISTORIES and cat.name == "table"
    mixed = pandas.DataFrame({"user_id": ["u1", 2], "item_id": ["a", "b"]})
    with pytest.raises(ValueError, match="Ids are strings"):
        load_table_catalogue(mixed, items)


def test_order_without_timestamps_is_the_file_order_and_duplicates_can_be_kept(tmp_path):
    inter, items = _tables()
    no_time = load_table_catalogue(inter.drop_columns("timestamp"), items)
    assert no_time.histories == {"u1": ["b", "a", "c"], "u2": ["a", "c", "a"]}
    assert load_table_catalogue(inter, items, timestamp_column=None).histories == no_time.histories
    kept = load_table_catalogue(inter, items, consecutive_duplicates="keep")
    assert kept.histories["u2"] == ["a", "c", "c", "a"]
    assert kept.load_stats["consecutive_duplicates_dropped"] == 0


def test_iso_dates_with_offsets_sort_in_utc(tmp_path):
    path = _write_csv(
        tmp_path / "events.csv",
        ["user", "sku", "when"],
        [
            ("u", "x", "2024-05-01T12:00:00+02:00"),
            ("u", "y", "2024-05-01T11:00:00Z"),
            ("u", "z", "2024-05-01T10:30:00Z"),
        ],
    )
    cat = load_table_catalogue(path, user_column="user", item_column="sku", timestamp_column="when")
    assert cat.histories == {"u": ["x", "z", "y"]}  # 10:00Z, 10:30Z, 11:00Z
    assert cat.item_ids == ["x", "y", "z"]  # without an items table: the items of the interactions
    naive = _write_csv(
        tmp_path / "n.csv",
        ["user_id", "item_id", "timestamp"],
        [("u", "x", "2024-05-02"), ("u", "y", "2024-05-01 08:00:00")],
    )
    assert load_table_catalogue(naive).histories == {"u": ["y", "x"]}


def test_ids_are_strings_as_written_and_integer_columns_convert(tmp_path):
    path = _write_csv(tmp_path / "i.csv", ["user_id", "item_id"], [("01", "007"), ("01", "7")])
    assert load_table_catalogue(path).histories == {"01": ["007", "7"]}  # CSV: kept as written
    pq.write_table(pa.table({"user_id": [1, 1], "item_id": [7, 8]}), tmp_path / "i.parquet")
    pq.write_table(pa.table({"item_id": [8, 7], "title": ["B", "A"]}), tmp_path / "t.parquet")
    cat = load_table_catalogue(tmp_path / "i.parquet", tmp_path / "t.parquet")
    assert cat.item_ids == ["8", "7"] and cat.histories == {"1": ["7", "8"]}


def test_unknown_items_are_skipped_and_counted_or_an_error(tmp_path, caplog):
    inter, items = _tables()
    inter = pa.concat_tables([inter, pa.table({"user_id": ["u3"], "item_id": ["zz"], "timestamp": [1]})])
    path = _write(inter, tmp_path / "interactions.csv")
    cat = load_table_catalogue(path, items)
    assert cat.load_stats["unknown_item_interactions_skipped"] == 1 and "u3" not in cat.histories
    assert "skipped 1 of 8 interactions" in caplog.text and "'zz'" in caplog.text
    with pytest.raises(ValueError, match=r"interactions.csv: row 8 names item 'zz'.*unknown_items: skip"):
        load_table_catalogue(path, items, unknown_items="error")


def test_embeddings_from_columns_and_files(tmp_path):
    inter, items = _tables()
    vectors = [[1.0, 0.0], [0.0, 1.0], None, [0.5, 0.5]]
    parquet_items = items.append_column("emb", pa.array(vectors, pa.list_(pa.float32())))
    cat = load_table_catalogue(
        inter, _write(parquet_items, tmp_path / "items.parquet"), embedding_columns=["emb"]
    )
    assert cat.embeddings["emb"].shape == (4, 2) and np.isnan(cat.embeddings["emb"][2]).all()
    assert np.array_equal(catalogue_embeddings(cat)["emb"][3], [0.5, 0.5])  # "auto" uses the table's own
    csv_items = items.append_column("emb", pa.array(["1 0", "[0, 1]", "", "0.5,0.5"]))
    from_csv = load_table_catalogue(
        inter, _write(csv_items, tmp_path / "items.csv"), embedding_columns=["emb"]
    )
    assert np.array_equal(from_csv.embeddings["emb"], cat.embeddings["emb"], equal_nan=True)
    # a .safetensors file aligned by an integer item_id tensor (rows in another order, one item absent)
    int_items = pa.table({"item_id": [10, 11, 12], "title": ["x", "y", "z"]})
    int_inter = pa.table({"user_id": ["u", "u"], "item_id": [10, 12]})
    save_file(
        {"text": np.array([[2, 2], [0, 0]], np.float32), "item_id": np.array([12, 10])},
        tmp_path / "e.safetensors",
    )
    np.save(tmp_path / "e.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    aligned = load_table_catalogue(
        int_inter,
        int_items,
        embedding_files={"text": tmp_path / "e.safetensors", "image": tmp_path / "e.npy"},
    )
    assert np.array_equal(aligned.embeddings["text"], [[0, 0], [np.nan, np.nan], [2, 2]], equal_nan=True)
    assert np.array_equal(aligned.embeddings["image"][2], [4, 5])  # .npy: rows in items-table order


def test_the_example_is_the_synthetic_catalogue_and_regenerates_byte_for_byte(tmp_path):
    cat = load_table_catalogue(EXAMPLE_TABLE_DIR / "interactions.csv", EXAMPLE_TABLE_DIR / "items.csv")
    synthetic = make_synthetic_catalogue(n_items=256, n_users=300, seed=42)
    assert cat.item_ids == synthetic.item_ids and cat.histories == synthetic.histories
    assert cat.titles == synthetic.titles and cat.categories == synthetic.categories
    assert (
        cat.load_stats["items_without_interactions"] > 0
    )  # they get SIDs like the others (test_recipe_table)
    written = write_example_table(tmp_path)
    for path in written:
        assert path.read_bytes() == (EXAMPLE_TABLE_DIR / path.name).read_bytes(), path.name


def test_dataset_arguments_read_the_table_keys_and_find_the_files(tmp_path):
    _csv_pair(tmp_path)
    config = tmp_path / "data.yaml"
    config.write_text(f"dataset_format: table\ndata_dir: {tmp_path}\ntext_columns: [title]\n")
    (args,) = parse_args_with_config(
        DatasetArguments, ["--config", str(config), "--consecutive_duplicates", "keep"]
    )
    cat = args.load_catalogue()
    assert cat.histories["u2"] == ["a", "c", "c", "a"] and cat.texts["a"] == "Red Pen."
    (named,) = parse_args_with_config(
        DatasetArguments,
        [
            "--dataset_format",
            "table",
            "--interactions",
            "interactions.csv",
            "--data_dir",
            str(tmp_path),
            "--timestamp_column",
            "null",
        ],
    )
    assert named.load_catalogue().item_ids == ["b", "a", "c"]  # no items table: the items of the interactions
    assert DatasetArguments().table_options() == {}  # other formats ignore the table keys
    with pytest.raises(ValueError, match="options of dataset_format='table'"):
        load_catalogue("synthetic", interactions="x.csv")
    with pytest.raises(ValueError, match="needs interactions"):
        load_catalogue("table")


# ------------------------------------------------------------------------------------------------ bad input
def _bad(tmp_path: Path, name: str, text: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_missing_column_names_file_column_and_option(tmp_path):
    inter = _bad(tmp_path, "inter.csv", "user,item_id\nu,a\n")
    with pytest.raises(
        ValueError, match=r"inter.csv has no column 'user_id' \(its columns: user, item_id\).*set user_column"
    ):
        load_table_catalogue(inter)
    items = _bad(tmp_path, "items.csv", "item_id,name\na,Pen\n")
    ok = _bad(tmp_path, "ok.csv", "user_id,item_id\nu,a\n")
    with pytest.raises(
        ValueError,
        match=r"items.csv has no column 'tile' \(its columns: item_id, name\).*set text_columns",
    ):
        load_table_catalogue(ok, items, text_columns=["tile"])
    with pytest.raises(ValueError, match=r"items.csv has no column 'headline'.*set title_column"):
        load_table_catalogue(ok, items, title_column="headline")
    with pytest.raises(ValueError, match=r"inter.csv has no column 'time'.*set timestamp_column"):
        load_table_catalogue(ok.parent / "inter.csv", timestamp_column="time", user_column="user")


def test_ids_of_mixed_or_float_types_say_ids_are_strings(tmp_path):
    mixed = _bad(
        tmp_path, "mixed.jsonl", '{"user_id": "u", "item_id": 1}\n{"user_id": "u", "item_id": "2"}\n'
    )
    with pytest.raises(ValueError, match=r"mixed.jsonl: a column mixes numbers and strings.*Ids are strings"):
        load_table_catalogue(mixed)
    pq.write_table(pa.table({"user_id": ["u"], "item_id": [1.0]}), tmp_path / "f.parquet")
    with pytest.raises(
        ValueError, match=r"f.parquet: column 'item_id' holds double values \(1.0\). Ids are strings"
    ):
        load_table_catalogue(tmp_path / "f.parquet")
    empty_id = _bad(tmp_path, "e.csv", "user_id,item_id\nu,a\nu,\n")
    with pytest.raises(ValueError, match=r"e.csv: row 2 has an empty 'item_id'"):
        load_table_catalogue(empty_id)


@pytest.mark.parametrize(
    "rows, row, value",
    [
        ("u,a,1\nu,b,yesterday\n", 2, "yesterday"),
        ("u,a,2024-01-01\nu,b,2024-13-45\n", 2, "2024-13-45"),
        ("u,a,2024-01-01T00:00:00\nu,b,2024-01-01T00:00:00Z\n", 2, "2024-01-01T00:00:00Z"),
        ("u,a,\n", 1, ""),
    ],
)
def test_unparseable_timestamp_names_row_value_and_fix(tmp_path, rows, row, value):
    path = _bad(tmp_path, "t.csv", "user_id,item_id,timestamp\n" + rows)
    with pytest.raises(
        ValueError,
        match=rf"t.csv: column 'timestamp', row {row}: cannot read '{value}'.*timestamp_column: null",
    ):
        load_table_catalogue(path)


def test_empty_files_and_header_only(tmp_path):
    ok = _bad(tmp_path, "ok.csv", "user_id,item_id\nu,a\n")
    for name in ("empty.csv", "empty.jsonl", "empty.parquet", "empty.csv.gz"):
        path = _bad(tmp_path, name, gzip.compress(b"") if name.endswith(".gz") else b"")
        with pytest.raises(ValueError, match=rf"{name} is empty: the first line must name the columns"):
            load_table_catalogue(path)
    header = _bad(tmp_path, "header.csv", "user_id,item_id\n")
    with pytest.raises(ValueError, match="header.csv has a header but no rows"):
        load_table_catalogue(header)
    with pytest.raises(ValueError, match="items.csv has a header but no rows"):
        load_table_catalogue(ok, _bad(tmp_path, "items.csv", "item_id,title\n"))


def test_duplicate_item_rows_name_the_id_and_rows(tmp_path):
    ok = _bad(tmp_path, "ok.csv", "user_id,item_id\nu,a\n")
    items = _bad(tmp_path, "items.csv", "item_id,title\na,Pen\nb,Glue\na,Pen again\n")
    with pytest.raises(
        ValueError, match=r"items.csv: item_id 'a' appears in rows \[1, 3\].*one row per item"
    ):
        load_table_catalogue(ok, items)


def test_non_utf8_files_name_the_line_and_the_fix(tmp_path):
    latin = "user_id,item_id\nu,a\nu,café\n".encode("latin-1")
    for name in ("latin.csv", "latin.csv.gz"):
        path = _bad(tmp_path, name, gzip.compress(latin) if name.endswith(".gz") else latin)
        with pytest.raises(
            ValueError, match=rf"{name} is not UTF-8 text \(line 3: .*table_encoding: latin-1"
        ):
            load_table_catalogue(path)
    assert load_table_catalogue(tmp_path / "latin.csv", encoding="latin-1").histories == {"u": ["a", "café"]}
    jsonl = _bad(
        tmp_path,
        "l.jsonl",
        '{"user_id": "u", "item_id": "a"}\n{"user_id": "u", "item_id": "caf\xe9"}\n'.encode("latin-1"),
    )
    with pytest.raises(ValueError, match=r"l.jsonl is not UTF-8 text \(line 2"):
        load_table_catalogue(jsonl)


def test_other_bad_sources(tmp_path):
    with pytest.raises(ValueError, match=r"missing.csv' does not exist"):
        load_table_catalogue(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"has an extension the table format does not read; use .csv"):
        load_table_catalogue(_bad(tmp_path, "data.xlsx", "x"))
    with pytest.raises(ValueError, match="is a folder"):
        load_table_catalogue(tmp_path)
    with pytest.raises(TypeError, match="must be a file path"):
        load_table_catalogue(42)
    with pytest.raises(ValueError, match="unknown_items must be 'skip' or 'error'"):
        load_table_catalogue(tmp_path / "x.csv", unknown_items="drop")


def test_hub_ids_need_datasets_and_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"'my-org/shop-events' is not a file.*pip install datasets"):
        load_table_catalogue("my-org/shop-events")


def test_datasets_objects_read_like_files():
    datasets = pytest.importorskip("datasets")
    inter, items = _tables()
    events = datasets.Dataset(inter)
    cat = load_table_catalogue(datasets.DatasetDict({"train": events}), datasets.Dataset(items))
    assert cat.histories == HISTORIES
    with pytest.raises(ValueError, match=r"has no split 'test'.*table_split"):
        load_table_catalogue(datasets.DatasetDict({"train": events}), split="test")


def test_hub_ids_load_through_datasets(monkeypatch):
    datasets = pytest.importorskip("datasets")
    inter, _ = _tables()
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset(inter)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cat = load_table_catalogue("my-org/shop-events", split="validation")
    assert calls == [("my-org/shop-events", "validation")] and cat.name == "my-org/shop-events"
    assert cat.histories == HISTORIES


def test_the_scale_benchmark_table_row_at_a_tiny_size(tmp_path):
    """benchmarks/scale.py's table row (run at 10M / 1M for the README) writes its files and loads them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_scale", Path(__file__).parents[2] / "benchmarks" / "scale.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sizes = bench.part_table_files(2000, tmp_path, 300)
    assert sizes["interactions.csv"] > 0 and sizes["items.csv"] > 0
    row = bench.part_table(2000, tmp_path, 300)
    assert row["table_items_loaded"] == 300 and 0 < row["table_events_kept"] <= 2000
    assert row["table_users"] == 200 and row["table_load_s"] >= 0


# ------------------------------------------------------------------------------------------------ issue 35
def test_a_stray_quote_that_swallows_rows_names_the_line_and_the_fix(tmp_path, caplog):
    ok = _bad(tmp_path, "ok.csv", "user_id,item_id\nu,a\n")
    unclosed = _bad(tmp_path, "items.csv", 'item_id,title\na,"Red Pen\nb,Glue\nc,Stapler\nd,Ruler\n')
    with pytest.raises(
        ValueError,
        match=r"items.csv, line 2: the value of column 'title' opens a quote that runs on to line 5, so lines "
        r"3-5, which look like rows of their own, were read into that one value \(3 rows lost\).*Escape or "
        r"remove the quote on line 2",
    ):
        load_table_catalogue(ok, unclosed)
    closed_later = _bad(tmp_path, "i2.csv", 'user_id,item_id\nu,"a\nu,b\nu,c" x\nu,d\n')
    with pytest.raises(ValueError, match=r"i2.csv, line 2: the value of column 'item_id'.*\(2 rows lost\)"):
        load_table_catalogue(closed_later)
    big = _bad(tmp_path, "big.csv", 'user_id,item_id\nu,"a\n' + "u,b\n" * 40000)
    with pytest.raises(ValueError, match=r"big.csv, line 2: a quoted value runs on past 128 KiB"):
        load_table_catalogue(big)
    # line breaks inside a properly quoted value are valid CSV: loaded, and logged
    text = _bad(tmp_path, "text.csv", 'item_id,title\na,"Line one\nLine, two"\nb,Glue\n\n')
    cat = load_table_catalogue(ok, text)
    assert cat.titles == {"a": "Line one\nLine, two", "b": "Glue"}
    assert "1 values span several lines" in caplog.text


def test_duplicate_column_names_are_refused(tmp_path):
    path = _bad(tmp_path, "d.csv", "user_id,item_id,item_id\nu,a,b\n")
    with pytest.raises(
        ValueError,
        match=r"d.csv: the column name 'item_id' appears twice \(columns 2 and 3\).*rename or drop",
    ):
        load_table_catalogue(path)
    table = pa.table([["u"], ["a"], ["x"], ["y"]], names=["user_id", "item_id", "title", "title"])
    with pytest.raises(ValueError, match="the column name 'title' appears twice"):
        load_table_catalogue(table)
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame([["u", "a", "b"]], columns=["user_id", "item_id", "item_id"])
    with pytest.raises(
        ValueError, match=r"the interactions DataFrame: the column name 'item_id' appears twice"
    ):
        load_table_catalogue(frame)


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "nan"])
def test_non_finite_timestamps_are_refused(tmp_path, value):
    path = _bad(tmp_path, "t.csv", f"user_id,item_id,timestamp\nu,a,1\nu,b,{value}\n")
    with pytest.raises(
        ValueError,
        match=rf"t.csv: column 'timestamp', row 2: cannot read '{value}' as a timestamp \(not a finite",
    ):
        load_table_catalogue(path)
    floats = pa.table({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": [1.0, float(value)]})
    with pytest.raises(ValueError, match="row 2: cannot read .* as a timestamp"):
        load_table_catalogue(floats)


def test_integer_timestamps_above_2_53_stay_exact(tmp_path):
    big = 2**53
    rows = [("u", "a", big + 1), ("u", "b", big)]  # as float64 both are 2**53: the file order would win
    csv_path = _write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    assert load_table_catalogue(csv_path).histories == {"u": ["b", "a"]}
    users, items, times = zip(*rows)
    table = pa.table({"user_id": users, "item_id": items, "timestamp": pa.array(times, pa.int64())})
    assert load_table_catalogue(table).histories == {"u": ["b", "a"]}
    mixed = _write_csv(tmp_path / "m.csv", ["user_id", "item_id", "timestamp"], [*rows, ("u", "c", "1.5")])
    with pytest.raises(
        ValueError,
        match=r"m.csv: column 'timestamp' holds integers above 2\*\*53 \(row 1: '9007199254740993'\) and decimal "
        r"numbers \(row 3: '1.5'\).*Write every timestamp as an integer",
    ):
        load_table_catalogue(mixed)


def test_whitespace_only_ids_are_refused(tmp_path):
    path = _bad(tmp_path, "w.csv", "user_id,item_id\nu,a\nu,  \n")
    with pytest.raises(ValueError, match=r"w.csv: row 2 has an empty 'item_id' \(only whitespace: '  '\)"):
        load_table_catalogue(path)
    with pytest.raises(ValueError, match=r"row 1 has an empty 'user_id' \(only whitespace: '\\t'\)"):
        load_table_catalogue(pa.table({"user_id": ["\t"], "item_id": ["a"]}))


def test_json_lines_rows_longer_than_a_block_are_read(tmp_path, monkeypatch):
    from hf_semtok.data import table_sources

    monkeypatch.setattr(table_sources, "BLOCK_BYTES", 64)  # pyarrow: "straddling object straddles two blocks"
    long_id = "b" * 300
    path = _bad(
        tmp_path,
        "l.jsonl",
        '{"user_id": "u", "item_id": "a"}\n' * 3 + f'{{"user_id": "u", "item_id": "{long_id}"}}\n',
    )
    assert load_table_catalogue(path).histories == {"u": ["a", long_id]}
    monkeypatch.setattr(table_sources, "_MAX_JSON_LINE", 100)
    with pytest.raises(
        ValueError, match=r"l.jsonl, line 4: the line is 0 MiB long; JSON Lines holds one record"
    ):
        load_table_catalogue(path)


def test_paths_too_long_or_folders_are_clear_errors(tmp_path):
    long_name = str(tmp_path / ("a" * 300 + ".csv"))  # pathlib raised OSError [Errno 36] File name too long
    with pytest.raises(ValueError, match="does not exist; check the path"):
        load_table_catalogue(long_name)
    ok = _bad(tmp_path, "ok.csv", "user_id,item_id\nu,a\n")
    with pytest.raises(ValueError, match="does not exist; check the path"):
        load_table_catalogue("a" * 300)
    with pytest.raises(ValueError, match=r"Embedding file .* is a folder; name a .npy or .safetensors file"):
        load_table_catalogue(ok, embedding_files={"text": tmp_path})
    os.mkfifo(tmp_path / "pipe.npy")  # reading a FIFO would block forever
    with pytest.raises(ValueError, match=r"Embedding file .* is not a regular file \(a pipe"):
        load_table_catalogue(ok, embedding_files={"text": tmp_path / "pipe.npy"})
    with pytest.raises(ValueError, match=r"Embedding file .* cannot be looked up \(File name too long\)"):
        load_table_catalogue(ok, embedding_files={"text": long_name[:-4] + ".npy"})


def test_json_lines_nested_too_deeply_or_not_objects_are_clear_errors(tmp_path):
    """pyarrow's JSON parser crashes the process (a segmentation fault) on very deep nesting: refused first."""
    deep = _bad(
        tmp_path, "d.jsonl", '{"user_id": "u", "item_id": "a"}\n{"x": ' + "[" * 50_000 + "]" * 50_000 + "}\n"
    )
    with pytest.raises(ValueError, match=r"d.jsonl, line 2: values nested about 50001 levels deep"):
        load_table_catalogue(deep)
    brackets = _bad(
        tmp_path, "b.jsonl", "".join(f'{{"user_id": "u", "item_id": "a[{i}"}}\n' for i in range(2000))
    )
    assert load_table_catalogue(brackets).item_ids[:2] == [
        "a[0",
        "a[1",
    ]  # unbalanced brackets in text: per line
    for text in ('["u", "a"]\n', "5\n"):
        with pytest.raises(ValueError, match=r"a.jsonl: a line is not a JSON object .*one object per line"):
            load_table_catalogue(_bad(tmp_path, "a.jsonl", text))


@pytest.mark.parametrize(
    ("option", "value", "error", "fragment"),
    [
        ("user_column", None, TypeError, r"user_column must be a column name \(a string\); got NoneType"),
        ("timestamp_column", 5, TypeError, r"timestamp_column must be a column name or None .*got int 5"),
        ("title_column", ["title"], TypeError, r"title_column must be a column name or None"),
        ("text_columns", [1], TypeError, r"text_columns must be a list of column names"),
        ("embedding_files", "x.npy", TypeError, r"embedding_files maps a modality name to a file"),
        ("data_dir", 5, TypeError, r"data_dir must be a folder path; got int"),
        ("encoding", "nope", ValueError, r"encoding 'nope' is not a text encoding Python knows"),
        ("encoding", None, TypeError, r"encoding must be a codec name"),
    ],
)
def test_options_of_the_wrong_type_name_the_option(tmp_path, option, value, error, fragment):
    """These raised "'NoneType' object is not iterable", "unhashable type: 'list'", a LookupError and the like."""
    inter, items = _csv_pair(tmp_path)
    with pytest.raises(error, match=fragment):
        load_table_catalogue(inter, items, **{option: value})


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (["a", "b"], TypeError, r"row 1: an embedding is a flat list of numbers; it holds str 'a'"),
        ([True, False], TypeError, r"row 1: .* it holds bool 'True'"),
        ([[1, 2]], TypeError, r"row 1: .* it holds list '\[1, 2\]'"),
        (1.0, TypeError, r"row 1: an embedding is a list of numbers; got float '1.0'"),
        ([1e300, 0.0], ValueError, r"row 1: a value is infinite or too large for float32"),
        ([float("nan"), 0.0], ValueError, r"row 1: some values are NaN"),
    ],
)
def test_bad_embedding_values_name_the_row_and_the_fix(tmp_path, value, error, message):
    rows = [{"item_id": "a", "e": value}, {"item_id": "b", "e": value}]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inter = pa.table({"user_id": ["u", "u"], "item_id": ["a", "b"]})
    with pytest.raises(error, match=message):
        load_table_catalogue(inter, path, embedding_columns=["e"])


def test_empty_embedding_lists_and_the_id_column_as_embeddings_are_errors(tmp_path):
    inter = pa.table({"user_id": ["u", "u"], "item_id": ["a", "b"]})
    items = pa.table({"item_id": ["a", "b"], "e": pa.array([[], []], pa.list_(pa.float32()))})
    with pytest.raises(ValueError, match=r"column 'e' holds empty lists; .*leave the value empty"):
        load_table_catalogue(inter, items, embedding_columns=["e"])
    with pytest.raises(ValueError, match=r"embedding_columns names 'item_id', the item id column"):
        load_table_catalogue(inter, items, embedding_columns=["item_id"])


def test_object_titles_mixed_categories_and_fifos_are_clear_errors(tmp_path):
    inter = pa.table({"user_id": ["u"], "item_id": ["A"]})
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"item_id": "A", "title": {"x": 1}}) + "\n")
    with pytest.raises(TypeError, match=r"column 'title' holds values of type struct<x: int64>; .*string"):
        load_table_catalogue(inter, items)
    items.write_text(json.dumps({"item_id": "A", "categories": ["a", ["b"], 3]}) + "\n")
    with pytest.raises(ValueError, match=r"a column mixes lists and other values .*a flat list in every row"):
        load_table_catalogue(inter, items)
    if sys.platform != "win32":
        import os

        fifo = tmp_path / "interactions.csv"
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match=r"is not a regular file \(a pipe, socket or device\)"):
            load_table_catalogue(str(fifo))
