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
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TABLE_EXTENSIONS", "TableSource", "file_kind", "first_non_utf8", "import_pyarrow", "open_table"]

#: File extensions of the `table` format and their reader; `.csv` and `.jsonl` may be gzipped (`.csv.gz`).
TABLE_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json"}
#: Rows per record batch of the Parquet and in-memory readers; CSV and JSON read blocks of `BLOCK_BYTES`.
BATCH_ROWS = 1 << 20
BLOCK_BYTES = 32 << 20
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
        if (
            "changed from" in message
        ):  # pyarrow.json: one column with numbers in some rows and strings in others
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
        yield from reader

    return TableSource(label, header, read, path)


def _json_source(path: Path) -> TableSource:
    pa = import_pyarrow()
    from pyarrow import json as pa_json

    label = str(path)
    if first_non_utf8(path) is not None:  # pyarrow.json would replace bad bytes with U+FFFD silently
        raise not_utf8_error(label, path)
    options = pa_json.ReadOptions(block_size=BLOCK_BYTES)
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
        if data_dir is not None and not path.is_absolute() and not path.exists():
            path = Path(data_dir) / path
        kind = file_kind(path)
        if path.is_dir():
            raise ValueError(
                f"The {role} table {str(path)!r} is a folder; name a file in it (.csv, .parquet or .jsonl)."
            )
        if path.is_file():
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
        if kind is not None or str(source).startswith((".", "/", "~")):
            raise ValueError(f"The {role} file {str(path)!r} does not exist; check the path.")
        return _datasets_source(_hub_dataset(str(source), split), f"dataset {str(source)!r}", split)
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        return _arrow_source(source, f"the {role} table")
    module = type(source).__module__.split(".")[0]
    if module == "pandas":
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
