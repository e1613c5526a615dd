"""The `table` format: your own catalogue from an interactions table and an items table.

**Interactions**, one row per event (who took which item, and when):

| column | | |
|---|---|---|
| `user_id` | required | the user |
| `item_id` | required | the item |
| `timestamp` | optional | finite numbers (Unix time in any unit; integers compare exactly at any size) or ISO-8601 dates (`2024-05-01T12:30:00`, with or without a UTC offset, one kind per column); without it the file order decides |

**Items**, one row per item (optional: without it the items are those of the interactions):

| column | | |
|---|---|---|
| `item_id` | required | unique |
| text columns | optional | named by `text_columns` (default: whichever of `title`, `brand`, `categories` exist), joined into the text that is embedded: `"<title>. Brand: <brand>. Category: a > b."` |
| `title` | optional | the title shown in prompts and documents (`title_column`) |
| `categories` | optional | a category path, coarse to fine: `"Makeup > Lipstick"` or a list (`category_column`) |
| embedding columns | optional | one modality each (`embedding_columns`): a list of floats per row (Parquet, JSON Lines, datasets), or in CSV a string of numbers (`"0.1 0.2 ..."` or `"[0.1, 0.2, ...]"`); an empty value is a missing row |

Every column name can be changed (`user_column`, `item_column`, `timestamp_column`, `title_column`,
`category_column`); an optional column (`timestamp`, `title`, `categories`) is used when the table has it under its
default name, and a name you set must exist.

Rules:

- **Ids are strings.** CSV values are kept as written (`"007"` stays `"007"`). A Parquet, JSON Lines or `datasets`
  id column of integers is converted to decimal strings; that is the only conversion. Floats, booleans, empty
  or whitespace-only ids and a column that mixes numbers and strings are errors.
- **Column names are unique**; a table with a name twice is an error. A CSV value that spans lines because of a
  stray quote (`a,"Red Pen` never closed), swallowing the rows after it, is an error naming the line.
- **Histories** are each user's events sorted by timestamp; the sort is stable, so events with the same timestamp
  (and every event, without timestamps) keep their file order. Users appear in the order of their first event.
- **Consecutive duplicates**, a user taking the same item twice in a row (a double click, a reload), are dropped
  by default (`consecutive_duplicates="drop"`); `"keep"` keeps them. Repeats with another item between stay.
- **Unknown items**: an interaction naming an item absent from the items table is skipped and counted
  (`unknown_items="skip"`, logged with examples), or is an error (`"error"`).
- **Every item of the items table is in the catalogue**, in table order (row `i` of an embedding matrix is item
  `i`), including items nobody interacted with: they get Semantic IDs like the others.

Files are read by extension, `.csv`, `.parquet`, `.jsonl` (`.csv.gz` and `.jsonl.gz` too), or from a Hugging
Face dataset id or a `datasets.Dataset`, a `pyarrow.Table` or a `pandas.DataFrame` (see `table_sources.py`,
which also says why the reader is pyarrow; the column conversions are in `table_columns.py`). They are read in
blocks into integer codes, so memory is bounded by the catalogue built, not by the file.

The example in `EXAMPLE_TABLE_DIR` (`interactions.csv`, `items.csv`) is written from the synthetic catalogue by
`write_example_table`; regenerate it with
`python -c "from hf_semtok.data.table import write_example_table; write_example_table('hf_semtok/data/example_table')"`.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hf_semtok.data.catalogue import DEFAULT_TEXT_FIELDS, TEXT_FIELD_NAMES, Catalogue
from hf_semtok.data.embeddings import load_embedding_file
from hf_semtok.data.table_columns import (
    IdCodes,
    TimestampParser,
    category_lists,
    check_text_type,
    clean_strings,
    compose_table_text,
    compose_texts,
    embedding_matrix,
    first_true,
    id_strings,
    strings_by_item,
)
from hf_semtok.data.table_sources import TableSource, import_pyarrow, open_table

__all__ = [
    "EXAMPLE_TABLE_DIR",
    "TableCatalogue",
    "compose_table_text",
    "load_table_catalogue",
    "write_example_table",
]

logger = logging.getLogger(__name__)

#: The small example shipped with the package: `interactions.csv` and `items.csv` (see `write_example_table`).
EXAMPLE_TABLE_DIR = Path(__file__).resolve().parent / "example_table"
_DEFAULTS = {"timestamp_column": "timestamp", "title_column": "title", "category_column": "categories"}


@dataclass
class TableCatalogue(Catalogue):
    """A `Catalogue` read from tables, plus the item embeddings they held and what loading dropped.

    Args:
        embeddings: Modality name -> `(num_items, dim)` float32 matrix, rows in `item_ids` order (from
            `embedding_columns` or `embedding_files`); `catalogue_embeddings` uses them. Missing rows are NaN.
        load_stats: Counts of the load: `interactions_read`, `unknown_item_interactions_skipped`,
            `consecutive_duplicates_dropped`, `users`, `items_without_interactions`.
    """

    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    load_stats: dict[str, int] = field(default_factory=dict)


def _optional(value: str | None, option: str, source: TableSource) -> str | None:
    """The column of an optional role: None when unset, or when left at its default name and absent."""
    if value is None or (value == _DEFAULTS[option] and value not in source.names):
        return None
    source.require([value], {value: option})
    return value


def _read_interactions(
    source: TableSource,
    user_column: str,
    item_column: str,
    timestamp_column: str | None,
    item_ids: Any,
    unknown_items: str,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray | None, IdCodes | None, dict[str, int]]:
    """Read the interactions into codes: `(users, user codes, item codes, timestamps, item codes of an items-less
    load, counts)`. Item codes index `item_ids` (or the returned `IdCodes` without an items table)."""
    pa = import_pyarrow()
    columns = [user_column, item_column] + ([timestamp_column] if timestamp_column else [])
    source.require(
        columns,
        {user_column: "user_column", item_column: "item_column", timestamp_column or "": "timestamp_column"},
    )
    users, new_items = IdCodes(), (IdCodes() if item_ids is None else None)
    parse_time = TimestampParser(source.label, timestamp_column or "")
    user_parts, item_parts, time_parts = [], [], []
    row0, skipped, examples = 0, 0, Counter()
    for batch in source.batches(columns):
        n = batch.num_rows
        user = id_strings(batch.column(0), source.label, user_column, row0)
        item = id_strings(batch.column(1), source.label, item_column, row0)
        if new_items is not None:
            codes = new_items(item)
        else:
            codes = pa.compute.index_in(item, value_set=item_ids).fill_null(-1).to_numpy(zero_copy_only=False)
        keep = codes >= 0
        if not keep.all():
            missing = ~keep
            if unknown_items == "error":
                row = row0 + first_true(missing) + 1
                raise ValueError(
                    f"{source.label}: row {row} names item {item[row - row0 - 1].as_py()!r}, which is not in the items "
                    "table. Add it to the items table, fix the id, or set unknown_items: skip to drop such rows "
                    "(they are counted)."
                )
            skipped += int(missing.sum())
            if len(examples) < 5:
                examples.update(item.filter(pa.array(missing)).slice(0, 5).to_pylist())
        user_parts.append(users(user)[keep].astype(np.int32))
        item_parts.append(codes[keep].astype(np.int32))
        if timestamp_column:
            time_parts.append(parse_time(batch.column(2), row0)[keep])
        row0 += n
    if row0 == 0:
        raise ValueError(
            f"{source.label} has a header but no rows; it needs one row per event "
            f"({user_column},{item_column}{',' + timestamp_column if timestamp_column else ''})."
        )
    if skipped == row0:
        raise ValueError(
            f"{source.label}: none of its {row0} interactions names an item of the items table (e.g. "
            f"{sorted(examples)[:3]}). Check that item_column names the same ids in both tables."
        )
    if skipped:
        logger.warning(
            "%s: skipped %d of %d interactions whose item is not in the items table (e.g. %s); set "
            "unknown_items: error to fail instead", source.label, skipped, row0, sorted(examples)[:5],
        )  # fmt: skip
    counts = {"interactions_read": row0, "unknown_item_interactions_skipped": skipped}
    times = np.concatenate(time_parts) if timestamp_column else None
    return list(users.index), np.concatenate(user_parts), np.concatenate(item_parts), times, new_items, counts


def _histories(
    user_ids: list[str], user_codes: np.ndarray, item_codes: np.ndarray, times: np.ndarray | None,
    item_ids: list[str], consecutive_duplicates: str,
) -> tuple[dict[str, list[str]], int]:  # fmt: skip
    """Group events by user (first-appearance order), sort each history by time (stable), drop repeats."""
    if times is not None:
        order = np.lexsort((times, user_codes))  # stable: ties keep file order
    else:
        order = np.argsort(user_codes, kind="stable")
    users, items = user_codes[order], item_codes[order]
    del order
    new_user = np.empty(len(users), dtype=bool)
    new_user[0], new_user[1:] = True, users[1:] != users[:-1]
    dropped = 0
    if consecutive_duplicates == "drop":
        keep = new_user.copy()
        keep[1:] |= items[1:] != items[:-1]
        dropped = int(len(keep) - keep.sum())
        if dropped:
            users, items, new_user = users[keep], items[keep], new_user[keep]
    starts = np.flatnonzero(new_user)
    bounds = zip(users[starts].tolist(), starts.tolist(), [*starts[1:].tolist(), len(items)])
    names = np.asarray(item_ids, dtype=object)[items].tolist()  # references to the id strings, no copies
    return {user_ids[u]: names[a:b] for u, a, b in bounds}, dropped


@dataclass
class _Items:
    """The items table as read: ids (an Arrow string array), column -> values, and the roles of the columns."""

    ids: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    text_columns: list[str] = field(default_factory=list)
    title: str | None = None
    category: str | None = None
    embedding_columns: list[str] = field(default_factory=list)
    label: str = ""

    def catalogue_fields(self, item_ids: list[str]) -> dict[str, Any]:
        """The `TableCatalogue` fields the items table fills: titles, texts, categories, text_fields, embeddings."""
        values, title, category = self.values, self.title, self.category
        texts = (
            compose_texts([(c, values[c]) for c in self.text_columns], title, category)
            if self.text_columns
            else None
        )
        paths = category_lists(values[category]).to_pylist() if category else []
        return {
            "titles": strings_by_item(item_ids, clean_strings(values[title])) if title else {},
            "texts": strings_by_item(item_ids, texts) if texts is not None else {},
            "categories": {item: path for item, path in zip(item_ids, paths) if path},
            "text_fields": [
                c
                for c in self.text_columns
                if c in TEXT_FIELD_NAMES and clean_strings(values[c]).null_count < len(item_ids)
            ],
            "embeddings": {c: embedding_matrix(values[c], self.label, c) for c in self.embedding_columns},
        }


def _read_items(
    source: TableSource, item_column: str, text_columns: Sequence[str] | None, title_column: str | None,
    category_column: str | None, embedding_columns: Sequence[str],
) -> _Items:  # fmt: skip
    """Read the items table; duplicate ids are an error naming their rows."""
    pa = import_pyarrow()
    title = _optional(title_column, "title_column", source)
    category = _optional(category_column, "category_column", source)
    if text_columns is None:
        text_columns = [c for c in DEFAULT_TEXT_FIELDS if c in source.names]
    text_columns, embedding_columns = list(text_columns), list(embedding_columns)
    for option, names in (("embedding_columns", embedding_columns), ("text_columns", text_columns)):
        if item_column in names:
            raise ValueError(
                f"{source.label}: {option} names {item_column!r}, the item id column (item_column); list the "
                f"columns that hold the {'embeddings' if option == 'embedding_columns' else 'text'} instead."
            )
    wanted = list(
        dict.fromkeys([item_column, *text_columns, *embedding_columns, *filter(None, (title, category))])
    )
    options = {item_column: "item_column", **{c: "text_columns" for c in text_columns}}
    source.require(wanted, {**options, **{c: "embedding_columns" for c in embedding_columns}})
    ids, chunks, row0 = [], {c: [] for c in wanted[1:]}, 0
    for batch in source.batches(wanted):
        ids.append(id_strings(batch.column(0), source.label, item_column, row0))
        for i, column in enumerate(wanted[1:], start=1):
            chunks[column].append(batch.column(i))
        row0 += batch.num_rows
    if row0 == 0:
        raise ValueError(
            f"{source.label} has a header but no rows; it needs one row per item ({item_column},...)."
        )
    ids = pa.concat_arrays(ids)
    values = {column: pa.chunked_array(parts).combine_chunks() for column, parts in chunks.items()}
    for column in dict.fromkeys([*text_columns, *filter(None, (title, category))]):
        check_text_type(values[column], f"{source.label}: column {column!r}")
    if len(pa.compute.unique(ids)) != len(ids):
        rows: dict[str, list[int]] = {}
        for row, item in enumerate(ids.to_pylist(), start=1):
            rows.setdefault(item, []).append(row)
        dupes = {item: r for item, r in rows.items() if len(r) > 1}
        first = next(iter(dupes))
        raise ValueError(
            f"{source.label}: {item_column} {first!r} appears in rows {dupes[first][:5]} ({len(dupes)} ids appear "
            "more than once). The items table needs one row per item: drop or merge the duplicate rows (e.g. "
            f"pandas .drop_duplicates({item_column!r}))."
        )
    return _Items(ids, values, text_columns, title, category, embedding_columns, source.label)


# Long: every column option is documented here; the body is ~45 lines.
def load_table_catalogue(
    interactions: Any,
    items: Any = None,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    timestamp_column: str | None = "timestamp",
    text_columns: Sequence[str] | None = None,
    title_column: str | None = "title",
    category_column: str | None = "categories",
    embedding_columns: Sequence[str] = (),
    embedding_files: Mapping[str, str | Path] | None = None,
    unknown_items: Literal["skip", "error"] = "skip",
    consecutive_duplicates: Literal["drop", "keep"] = "drop",
    data_dir: str | Path | None = None,
    split: str = "train",
    encoding: str = "utf-8",
    name: str | None = None,
) -> TableCatalogue:
    """Load a catalogue from an interactions table and an items table (the schema is in the module docstring).

    Args:
        interactions: The interactions: a `.csv` / `.parquet` / `.jsonl` file (gzipped too), a Hugging Face dataset
            id, a `datasets.Dataset`, a `pyarrow.Table` or a `pandas.DataFrame`.
        items: The items table, in the same forms; None takes the items of the interactions (no text).
        user_column: Column of the user id.
        item_column: Column of the item id, in both tables.
        timestamp_column: Column that orders each history; used when present under its default name, an error
            when another name is set and missing; None orders by file row.
        text_columns: Item columns joined into the embedded text (see `compose_table_text`); default: whichever
            of `title`, `brand`, `categories` the items table has.
        title_column: Item column of the title (prompts, CPT documents, a trained base tokenizer).
        category_column: Item column of the category path (`"a > b"` or a list).
        embedding_columns: Item columns holding embeddings, one modality each (named by the column).
        embedding_files: Modality -> `.npy` / `.safetensors` file, rows in items-table order, or aligned by an
            integer `item_id` tensor in the `.safetensors` file (see `load_embedding_file`).
        unknown_items: `"skip"` (count and log) or `"error"` for interactions whose item is not in `items`.
        consecutive_duplicates: `"drop"` or `"keep"` a user's repeat of the item of their previous event.
        data_dir: Folder that relative file names are read from.
        split: Split of a Hub dataset or `DatasetDict`.
        encoding: Text encoding of CSV files.
        name: Catalogue name (default: the interactions file's folder name).

    Returns:
        A `TableCatalogue`: a `Catalogue` with `embeddings` and `load_stats`.

    Raises:
        ValueError: A missing column, a column name twice, an empty table, an id that is not a string or an
            integer (or is blank), an unparseable or non-finite timestamp, integer timestamps above 2**53 mixed with
            decimal ones, duplicate item rows, a CSV quote that swallows rows, a file that is not UTF-8, or (with
            `unknown_items="error"`) an interaction naming an unknown item. The message names the file, the
            column, the row and the fix.
    """
    if unknown_items not in ("skip", "error"):
        raise ValueError(f"unknown_items must be 'skip' or 'error', got {unknown_items!r}.")
    if consecutive_duplicates not in ("drop", "keep"):
        raise ValueError(f"consecutive_duplicates must be 'drop' or 'keep', got {consecutive_duplicates!r}.")
    if isinstance(text_columns, str) or isinstance(embedding_columns, str):
        raise TypeError("text_columns and embedding_columns are lists of column names, e.g. ['title'].")
    _check_options(
        required={"user_column": user_column, "item_column": item_column},
        optional={
            "timestamp_column": timestamp_column,
            "title_column": title_column,
            "category_column": category_column,
        },
        lists={"text_columns": text_columns, "embedding_columns": embedding_columns},
        embedding_files=embedding_files,
        data_dir=data_dir,
        encoding=encoding,
        name=name,
    )
    inter = open_table(interactions, "interactions", data_dir, split, encoding)
    timestamp = _optional(timestamp_column, "timestamp_column", inter)
    if timestamp is None:
        logger.info("%s: no timestamp column; each history follows the file order", inter.label)
    table = _Items()
    if items is not None:
        table = _read_items(
            open_table(items, "items", data_dir, split, encoding),
            item_column, text_columns, title_column, category_column, embedding_columns,
        )  # fmt: skip
    elif text_columns or embedding_columns:
        raise ValueError(
            "text_columns and embedding_columns are columns of the items table: pass items= too."
        )
    user_ids, users, codes, times, new_items, counts = _read_interactions(
        inter, user_column, item_column, timestamp, table.ids, unknown_items
    )
    item_ids = table.ids.to_pylist() if table.ids is not None else list(new_items.index)
    histories, dropped = _histories(user_ids, users, codes, times, item_ids, consecutive_duplicates)
    catalogue = TableCatalogue(
        item_ids=item_ids,
        histories=histories,
        name=name or _default_name(interactions),
        **table.catalogue_fields(item_ids),
    )
    for modality, path in (embedding_files or {}).items():
        catalogue.embeddings[modality] = load_embedding_file(
            path, key=modality, num_items=catalogue.num_items, item_ids=catalogue.item_ids
        )
    seen = np.zeros(len(item_ids), dtype=bool)
    seen[codes] = True
    catalogue.load_stats = {
        **counts,
        "consecutive_duplicates_dropped": dropped,
        "users": len(histories),
        "items_without_interactions": int((~seen).sum()),
    }
    logger.info("Loaded table catalogue %r: %s", catalogue.name, catalogue.load_stats)
    return catalogue


def _check_options(
    *,
    required: dict[str, Any],
    optional: dict[str, Any],
    lists: dict[str, Any],
    embedding_files: Any,
    data_dir: Any,
    encoding: Any,
    name: Any,
) -> None:
    """TypeError (ValueError for an unknown encoding) naming the option whose value has the wrong type."""
    for option, value in {**required, **optional}.items():
        if not isinstance(value, str) and not (value is None and option in optional):
            allowed = "a column name" + (" or None" if option in optional else "")
            raise TypeError(f"{option} must be {allowed} (a string); got {type(value).__name__} {value!r}.")
    for option, value in lists.items():
        if value is not None and (
            not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value)
        ):
            raise TypeError(f"{option} must be a list of column names, e.g. ['title']; got {value!r}.")
    if embedding_files is not None and not isinstance(embedding_files, Mapping):
        raise TypeError(
            "embedding_files maps a modality name to a file, e.g. {'text': 'text.npy'}; got "
            f"{type(embedding_files).__name__} {embedding_files!r}."
        )
    if data_dir is not None and not isinstance(data_dir, (str, Path)):
        raise TypeError(f"data_dir must be a folder path; got {type(data_dir).__name__} {data_dir!r}.")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string; got {type(name).__name__} {name!r}.")
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a codec name such as 'utf-8'; got {type(encoding).__name__}.")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(
            f"encoding {encoding!r} is not a text encoding Python knows; use e.g. 'utf-8', 'latin-1' or 'cp1252'."
        ) from None


def _default_name(source: Any) -> str:
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.parent.name if path.suffix and path.parent.name else str(source)
    return "table"


def write_example_table(
    directory: str | Path, n_items: int = 256, n_users: int = 300, seed: int = 42
) -> tuple[Path, Path]:
    """Write the example tables from the synthetic catalogue: `interactions.csv` and `items.csv`.

    Interactions carry ISO-8601 timestamps (each user's events hours to days apart, in history order) and are
    written as one event log sorted by time, users interleaved. Items carry `title`, `brand` and `categories`
    (`"Makeup > Lipstick"`). The same arguments write the same bytes.

    Args:
        directory: Output folder (created).
        n_items: Items of the synthetic catalogue.
        n_users: Users of the synthetic catalogue.
        seed: Seed of the catalogue and the timestamps.

    Returns:
        The paths of `interactions.csv` and `items.csv`.
    """
    from hf_semtok.data.synthetic import make_synthetic_catalogue

    catalogue = make_synthetic_catalogue(n_items=n_items, n_users=n_users, seed=seed)
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1)
    events = []
    for user, history in catalogue.histories.items():
        when = start + timedelta(seconds=int(rng.integers(0, 60 * 86400)))
        for item in history:
            events.append((when, user, item))
            when += timedelta(seconds=int(rng.integers(3600, 5 * 86400)))
    events.sort(key=lambda e: (e[0], e[1]))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inter_path, items_path = directory / "interactions.csv", directory / "items.csv"
    with inter_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["user_id", "item_id", "timestamp"])
        writer.writerows((user, item, when.isoformat()) for when, user, item in events)
    with items_path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["item_id", "title", "brand", "categories"])
        for item in catalogue.item_ids:
            brand = re.search(r"Brand: ([^.]+)\.", catalogue.texts.get(item, ""))
            writer.writerow(
                [
                    item,
                    catalogue.titles[item],
                    brand.group(1) if brand else "",
                    " > ".join(catalogue.categories[item]),
                ]
            )
    return inter_path, items_path
