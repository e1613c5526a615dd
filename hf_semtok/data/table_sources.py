"""Readers of the `table` format: one interface over CSV, Parquet and JSON Lines files, Arrow tables, pandas
frames and `datasets` datasets (or Hub ids), yielding Arrow record batches of the columns asked for.

**Why pyarrow.** `pyarrow` (a dependency of hf_semtok since the `table` format) reads all three file formats with
multithreaded C++ parsers, gzip included (chosen by the `.gz` extension), and reads them *in blocks*, so a file of
10M interactions never becomes 10M Python objects at once: the loader keeps integer codes per block and memory
stays bounded by the catalogue it builds. Columns come typed, so an id column can be read as text (`"007"` stays
`"007"`) and a bad value can be pointed at by row. A `datasets.Dataset` *is* an Arrow table, so it passes through
without a copy. `pandas` would turn every id into a Python object (and needs pyarrow for Parquet anyway);
`datasets` itself would first copy every file into its cache and is an optional import here, used only for a
`datasets` object or a Hub id.

Every error names the file (or dataset), the column when there is one, and the fix.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import gzip
import io
import logging
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["TABLE_EXTENSIONS", "TableSource", "file_kind", "first_non_utf8", "import_pyarrow", "open_table"]

#: File extensions of the `table` format and their reader; `.csv` and `.jsonl` may be gzipped (`.csv.gz`).
TABLE_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json"}
#: Rows per record batch of the Parquet and in-memory readers; CSV and JSON read blocks of `BLOCK_BYTES`.
BATCH_ROWS = 1 << 20
BLOCK_BYTES = 32 << 20
#: The longest JSON Lines record read (pyarrow's block size is a 32-bit integer).
_MAX_JSON_LINE = 512 << 20
#: The deepest nesting of a JSON Lines record read (pyarrow's parser crashes the process somewhere past 10,000).
_MAX_JSON_DEPTH = 1000
_UTF8_HINT = (
    "re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`), or for a CSV file give its "
    "encoding (`table_encoding: latin-1`)"
)


def import_pyarrow() -> Any:
    """The `pyarrow` module (with `pyarrow.compute`), or an ImportError saying how to install it."""
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401  (registers pyarrow.compute)
    except ImportError as err:  # pragma: no cover - pyarrow is a dependency
        raise ImportError(
            "The table format reads files with pyarrow: `pip install pyarrow` (a dependency of hf-semtok)."
        ) from err
    return pyarrow


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def file_kind(path: Path) -> str | None:
    """The reader of `path` by its extension (`"csv"`, `"parquet"`, `"json"`), or None for another extension."""
    name = path.name.lower().removesuffix(".gz")
    for ext, kind in TABLE_EXTENSIONS.items():
        if name.endswith(ext):
            return None if kind == "parquet" and _is_gzip(path) else kind
    return None


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")  # type: ignore[return-value]


def first_non_utf8(path: Path) -> tuple[int, bytes] | None:
    """`(line number, bad bytes)` of the first byte sequence of `path` that is not UTF-8, or None when it all is."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with _open_binary(path) as handle:
        while chunk := handle.read(1 << 22):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                # the decoder may hold up to 3 bytes of a split character from the previous chunk
                start = max(err.start - len(err.object) + len(chunk), 0)
                return line + chunk[:start].count(b"\n"), chunk[start : start + 4]
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return line, b""
    return None


def not_utf8_error(label: str, path: Path | None) -> ValueError:
    where = ""
    if path is not None:
        found = first_non_utf8(path)
        if found is not None:
            where = f" (line {found[0]}: bytes {found[1]!r})"
    return ValueError(f"{label} is not UTF-8 text{where}; {_UTF8_HINT}.")


def _check_unique_names(label: str, names: Sequence[Any]) -> None:
    """A ValueError naming the first column name that `names` holds twice: which column is meant is ambiguous."""
    seen: dict[Any, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise ValueError(
                f"{label}: the column name {name!r} appears twice (columns {seen[name]} and {position}); which one "
                "is meant is ambiguous. Give every column its own name (rename or drop one)."
            )
        seen[name] = position


@dataclass
class TableSource:
    """One table to read: where it is (`label`, for messages), its column names, and a batch reader.

    Args:
        label: The file path or dataset, as errors name it.
        names: The table's column names.
        read: `read(columns)` yields Arrow record batches holding `columns`, in that order.
        path: The local file, when the table is one.
    """

    label: str
    names: list[str]
    read: Callable[[Sequence[str]], Iterator[Any]]
    path: Path | None = None

    def __post_init__(self) -> None:
        _check_unique_names(self.label, self.names)

    def require(self, columns: Sequence[str], option: dict[str, str]) -> None:
        """Raise a ValueError naming the first column of `columns` that the table lacks, and how to fix it.

        Args:
            columns: Column names the loader needs.
            option: Column name -> the option that named it (`"item_column"`), for the message.
        """
        for column in columns:
            if column not in self.names:
                close = difflib.get_close_matches(column, self.names, n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"{self.label} has no column {column!r} (its columns: {', '.join(self.names) or 'none'}).{hint} "
                    f"Rename the column in the file, or set {option.get(column, 'the column option')}: <name> to "
                    "the column that holds it."
                )

    def batches(self, columns: Sequence[str]) -> Iterator[Any]:
        """Yield record batches of `columns`, turning reader errors into ValueErrors that name the table."""
        pa = import_pyarrow()
        iterator = iter(self.read(columns))
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError, zlib.error) as err:
                raise self._error(err) from None
            yield batch

    def _error(self, err: Exception) -> ValueError:
        message = str(err).split("\n")[0]
        if "UTF8" in message or "UTF-8" in message:
            return not_utf8_error(self.label, self.path)
        # pyarrow.json: a line that is a list or a number, not an object
        if "changed from object to" in message:
            return ValueError(
                f"{self.label}: a line is not a JSON object ({message}). JSON Lines tables hold one object per "
                'line, keyed by column: {"user_id": "u1", "item_id": "i7", "timestamp": 1714566600}.'
            )
        if (
            "changed from" in message
        ):  # pyarrow.json: one column with numbers in some rows and strings in others
            if "array" in message:  # a list column with a nested list or a plain value in some row
                return ValueError(
                    f"{self.label}: a column mixes lists and other values ({message}). Write a list column "
                    '(categories, embeddings) as a flat list in every row, e.g. ["a", "b"] or [0.1, 0.2].'
                )
            return ValueError(
                f"{self.label}: a column mixes numbers and strings ({message}). Ids are strings: write every id "
                'of a column the same way, all quoted ("42") or all numbers (42).'
            )
        if "Expected" in message and "columns" in message:
            return ValueError(
                f"{self.label}: a row has another number of fields than the header ({message}); quote values "
                "that hold the separator, and give every row one value per column."
            )
        return ValueError(f"{self.label} cannot be read ({type(err).__name__}: {message}); check the file.")


def _empty(label: str) -> ValueError:
    return ValueError(
        f"{label} is empty: the first line must name the columns (e.g. user_id,item_id,timestamp), followed "
        "by one row per record."
    )


def _csv_source(path: Path, encoding: str) -> TableSource:
    pa = import_pyarrow()
    from pyarrow import csv as pa_csv

    label = str(path)
    header_encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding=header_encoding, newline="")
            header = next(csv.reader(text), None)
    except UnicodeDecodeError:
        raise not_utf8_error(label, path) from None
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{label} cannot be read ({err}); the file is truncated or corrupt.") from None
    if not header or not any(h.strip() for h in header):
        raise _empty(label)

    def read(columns: Sequence[str]) -> Iterator[Any]:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(encoding=encoding, block_size=BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(columns),
                column_types={c: pa.string() for c in columns},  # every value as written; the loader converts
            ),
        )
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            yield batch
        if _content_lines(path) > rows + 1:  # some value spans lines (or blank lines): find out which
            _check_multiline_values(path, header_encoding, header, label)

    return TableSource(label, header, read, path)


def _content_lines(path: Path) -> int:
    """Lines of `path` up to its last non-blank one: the header plus one per row, when no value spans lines."""
    lines, trailing, text = 0, 0, False
    with _open_binary(path) as handle:
        while chunk := handle.read(1 << 22):
            newlines = chunk.count(b"\n")
            lines += newlines
            stripped = chunk.rstrip(b"\r\n")
            if stripped:
                text, trailing = True, chunk.count(b"\n", len(stripped))
            else:
                trailing += newlines
    return lines - trailing + 1 if text else 0


def _check_multiline_values(path: Path, encoding: str, header: list[str], label: str) -> None:
    """Refuse a quoted value that swallowed rows: an opening quote that a stray quote (`a,"Red Pen` with no closing
    quote) leaves open reads every following line into one value, until the next quote or the end of the file,
    and those rows vanish. A value whose inner lines each split into one field per column is taken for such rows
    when there are two or more of them, or when the quote never closes; other values with line breaks (a
    description in paragraphs) are valid CSV and only logged."""
    fix = (
        "A stray quote is the usual cause: a value that begins with a quote must end with one, and a quote inside "
        'a quoted value is written twice ("Red ""Pen"""). Escape or remove the quote'
    )
    width, spans = len(header), []
    with _open_binary(path) as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding=encoding, newline=""))
        next(reader, None)
        start = reader.line_num + 1
        try:
            for row in reader:
                for column, value in zip(header, row):
                    if "\n" in value or "\r" in value:
                        spans.append((start, reader.line_num, column, value))
                start = reader.line_num + 1
        except csv.Error as err:  # a value past the csv module's field size limit: a quote ran on and on
            raise ValueError(
                f"{label}, line {start}: a quoted value runs on past {csv.field_size_limit() // 1024} KiB ({err}), "
                f"swallowing the rows after it. {fix} on line {start}."
            ) from None
    for first, last, column, value in spans:
        inner = value.splitlines()[1:]
        cut = inner[:-1] if len(inner) > 1 else inner  # the last line may be cut short by a closing quote
        filled = [line for line in cut if line.strip()]
        rows = filled and all(len(next(csv.reader([line]))) == width for line in filled)
        # one row-like line could be a line of text; a value that ends in a line break never saw its closing quote
        if rows and (len(inner) > 1 or value.endswith(("\n", "\r"))):
            raise ValueError(
                f"{label}, line {first}: the value of column {column!r} opens a quote that runs on to line {last}, "
                f"so lines {first + 1}-{last}, which look like rows of their own, were read into that one value "
                f"({last - first} rows lost). {fix} on line {first}."
            )
    if spans:
        first, last, column, _ = spans[0]
        logger.warning(
            "%s: %d values span several lines (%d lines in all; the first is column %r at lines %d-%d). Line breaks "
            "inside quoted values are valid CSV; if these should be rows, a stray quote joined them.",
            label,
            len(spans),
            sum(b - a for a, b, _, _ in spans),
            column,
            first,
            last,
        )


def _json_source(path: Path) -> TableSource:
    pa = import_pyarrow()
    from pyarrow import json as pa_json

    label = str(path)
    if first_non_utf8(path) is not None:  # pyarrow.json would replace bad bytes with U+FFFD silently
        raise not_utf8_error(label, path)
    options = pa_json.ReadOptions(block_size=_json_block_size(path, label))
    try:
        names = pa_json.open_json(path, read_options=options).schema.names
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error) as err:
        if "Empty JSON" in str(err):
            raise _empty(label) from None
        raise TableSource(label, [], lambda c: iter(()), path)._error(err) from None

    def read(columns: Sequence[str]) -> Iterator[Any]:
        for batch in pa_json.open_json(path, read_options=options):
            yield pa.record_batch([batch.column(c) for c in columns], names=list(columns))

    return TableSource(label, names, read, path)


_BRACKET_STEP = np.zeros(256, dtype=np.int8)  # +1 for `[` and `{`, -1 for `]` and `}`
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


def _json_lines_shape(path: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """`((bytes, line), (depth, line))`: the longest line of `path`, and the deepest nesting of `[` / `{` in one
    line (an upper bound: brackets inside strings count too; exact lines only where a chunk nests deeper than
    `_MAX_JSON_DEPTH`)."""
    longest, depth, line, run, carry = (0, 1), (0, 1), 1, 0, 0
    with _open_binary(path) as handle:
        while chunk := handle.read(1 << 22):
            data = np.frombuffer(chunk, dtype=np.uint8)
            ends = np.flatnonzero(data == 10)  # (newlines in the chunk,)
            level = (
                np.cumsum(_BRACKET_STEP[data], dtype=np.int32) + carry
            )  # (bytes,) nesting, from a line start
            # A line's depth is at most the chunk's range of levels: only a range past the limit needs the per-line
            # maxima (the levels at each line's start are subtracted).
            if int(level.max()) - min(int(level.min()), 0) > _MAX_JSON_DEPTH:
                starts = np.concatenate(
                    [[0], ends[ends + 1 < len(data)] + 1]
                )  # (lines,) first byte of each line
                base = np.concatenate([[0], level[starts[1:] - 1]])  # (lines,) level where the line began
                per_line = np.maximum.reduceat(level, starts) - base  # (lines,) deepest nesting in each line
                k = int(per_line.argmax())
                if per_line[k] > depth[0]:
                    depth = (int(per_line[k]), line + k)
            carry = int(level[-1]) - (int(level[ends[-1]]) if len(ends) else 0)
            if len(ends) == 0:
                run += len(chunk)
                continue
            lengths = np.diff(ends, prepend=-1) - 1  # (newlines,) bytes of each line, without its newline
            lengths[0] += run
            k = int(lengths.argmax())
            if lengths[k] > longest[0]:
                longest = (int(lengths[k]), line + k)
            line, run = line + len(ends), len(chunk) - int(ends[-1]) - 1
    return ((run, line) if run > longest[0] else longest), depth


def _json_block_size(path: Path, label: str) -> int:
    """A block size of the JSON reader that holds the longest line: pyarrow cannot parse a record that straddles
    two blocks ("straddling object straddles two block boundaries"). Lines nested deeper than
    `_MAX_JSON_DEPTH` are refused first: pyarrow's JSON parser crashes the process on very deep nesting."""
    (longest, line), (depth, deep_line) = _json_lines_shape(path)
    if depth > _MAX_JSON_DEPTH:
        raise ValueError(
            f"{label}, line {deep_line}: values nested about {depth} levels deep; a table row holds flat values "
            f"(ids, a timestamp, a title, a list of floats), at most {_MAX_JSON_DEPTH} levels. The file is not a "
            "table of this format, or is damaged."
        )
    if longest < BLOCK_BYTES // 2:
        return BLOCK_BYTES
    if longest > _MAX_JSON_LINE:
        raise ValueError(
            f"{label}, line {line}: the line is {longest >> 20} MiB long; JSON Lines holds one record per line, and a "
            f"record this large (more than {_MAX_JSON_LINE >> 20} MiB) is not read. If the file is one JSON "
            "document or has records without line breaks between them, write one record per line."
        )
    return 2 * longest + 2


def _parquet_source(path: Path) -> TableSource:
    pa = import_pyarrow()
    import pyarrow.parquet as pq

    label = str(path)
    if path.stat().st_size == 0:
        raise _empty(label)
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{label} is not a readable Parquet file ({err}); write it again.") from None

    def read(columns: Sequence[str]) -> Iterator[Any]:
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=list(columns))

    return TableSource(label, names, read, path)


def _arrow_source(table: Any, label: str) -> TableSource:
    def read(columns: Sequence[str]) -> Iterator[Any]:
        yield from table.select(list(columns)).to_batches(max_chunksize=BATCH_ROWS)

    return TableSource(label, list(table.column_names), read)


def _datasets_source(dataset: Any, label: str, split: str) -> TableSource:
    if isinstance(dataset, Mapping):  # a DatasetDict: one split of it
        splits = list(dataset.keys())
        if split not in splits:
            raise ValueError(
                f"{label} has no split {split!r} (its splits: {splits}); set table_split: <name>."
            )
        dataset, label = dataset[split], f"{label} (split {split!r})"
    names = list(dataset.column_names or [])

    def read(columns: Sequence[str]) -> Iterator[Any]:
        pa = import_pyarrow()
        for table in dataset.select_columns(list(columns)).with_format("arrow").iter(batch_size=BATCH_ROWS):
            yield from pa.table(table).select(list(columns)).to_batches()

    return TableSource(label, names, read)


def _hub_dataset(name: str, split: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"{name!r} is not a file, so it was read as a Hugging Face dataset id, which needs the datasets "
            "library: `pip install datasets`. If it is a file, check the path (files end in .csv, .parquet or "
            ".jsonl, gzipped .csv.gz / .jsonl.gz)."
        ) from None
    return datasets.load_dataset(name, split=split)


def open_table(
    source: Any, role: str, data_dir: str | Path | None = None, split: str = "train", encoding: str = "utf-8"
) -> TableSource:
    """Open one table of the `table` format.

    Args:
        source: A `.csv` / `.parquet` / `.jsonl` file (`.csv.gz`, `.jsonl.gz` too), a Hugging Face dataset id (read
            with `datasets.load_dataset`, when `datasets` is installed), a `datasets.Dataset` / `DatasetDict`, a
            `pyarrow.Table` or a `pandas.DataFrame`.
        role: `"interactions"` or `"items"`, for messages.
        data_dir: Folder that a relative file name is read from.
        split: The split of a Hub id or a `DatasetDict`.
        encoding: Text encoding of a CSV file (JSON Lines and Parquet are UTF-8 by definition).

    Returns:
        A `TableSource`.

    Raises:
        ValueError: A missing file, an unknown extension, an empty file, or a file that is not UTF-8.
        ImportError: `source` is neither a file nor a table object and `datasets` is not installed.
        TypeError: `source` is of an unsupported type.
    """
    pa = import_pyarrow()
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        # (os.path, not pathlib: pathlib's is_file raises for a name too long for the file system)
        if data_dir is not None and not path.is_absolute() and not os.path.exists(path):
            path = Path(data_dir) / path
        kind = file_kind(path)
        if os.path.isdir(path):
            raise ValueError(
                f"The {role} table {str(path)!r} is a folder; name a file in it (.csv, .parquet or .jsonl)."
            )
        if os.path.isfile(path):
            if kind is None:
                raise ValueError(
                    f"The {role} file {str(path)!r} has an extension the table format does not read; use .csv, "
                    ".parquet or .jsonl (gzipped: .csv.gz, .jsonl.gz)."
                )
            if path.stat().st_size == 0:
                raise _empty(str(path))
            return {"csv": lambda: _csv_source(path, encoding), "json": lambda: _json_source(path)}.get(
                kind, lambda: _parquet_source(path)
            )()
        if os.path.exists(path):
            raise ValueError(
                f"The {role} file {str(path)!r} is not a regular file (a pipe, socket or device); write the table "
                "to a .csv, .parquet or .jsonl file and pass that path."
            )
        if kind is not None or str(source).startswith((".", "/", "~")) or len(str(source)) > 255:
            raise ValueError(f"The {role} file {str(path)!r} does not exist; check the path.")
        return _datasets_source(_hub_dataset(str(source), split), f"dataset {str(source)!r}", split)
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        return _arrow_source(source, f"the {role} table")
    module = type(source).__module__.split(".")[0]
    if module == "pandas":
        _check_unique_names(f"the {role} DataFrame", list(source.columns))
        try:
            table = pa.Table.from_pandas(source, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(
                f"The {role} DataFrame cannot be read ({err}); a column mixes types. Ids are strings: convert "
                "the id columns with .astype(str)."
            ) from None
        return _arrow_source(table, f"the {role} DataFrame")
    if module == "datasets":
        return _datasets_source(source, f"the {role} dataset", split)
    raise TypeError(
        f"The {role} table must be a file path, a Hugging Face dataset id, a datasets.Dataset, a pyarrow.Table "
        f"or a pandas.DataFrame; got {type(source).__name__}."
    )
