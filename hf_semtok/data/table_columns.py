"""Column conversions of the `table` format: ids to strings, timestamps to sortable numbers, ids to dense codes,
text columns to one text per item, embedding columns to matrices. Each error names the table, column and row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_semtok.data.table_sources import import_pyarrow

__all__ = [
    "IdCodes",
    "TimestampParser",
    "category_lists",
    "clean_strings",
    "compose_table_text",
    "compose_texts",
    "embedding_matrix",
    "first_true",
    "id_strings",
    "strings_by_item",
]

_NUMBER, _DATE, _DATE_UTC = "number", "date without a UTC offset", "date with a UTC offset"
#: The largest integer that float64 holds exactly, with every integer below it.
_EXACT_FLOAT_INT = 2**53


def first_true(mask: Any) -> int:
    """Index of the first true value of a boolean mask (the caller knows there is one)."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def id_strings(array: Any, label: str, column: str, row0: int) -> Any:
    """An id column as an Arrow string array: strings as written, integers as decimal strings, anything else (and
    an empty or whitespace-only id) an error naming the row."""
    pa = import_pyarrow()
    pc = pa.compute
    kind = array.type
    if pa.types.is_dictionary(kind):
        array, kind = array.dictionary_decode(), kind.value_type
    if array.null_count:
        row = row0 + first_true(array.is_null().to_numpy(zero_copy_only=False)) + 1
        raise ValueError(f"{label}: row {row} has no {column!r}; every row needs one. Fill or drop that row.")
    if pa.types.is_integer(kind):
        return pc.cast(array, pa.string())
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        array = pc.cast(array, pa.string())
    elif not pa.types.is_string(kind):
        example = array[0].as_py() if len(array) else None
        raise ValueError(
            f"{label}: column {column!r} holds {kind} values ({example!r}). Ids are strings: only text and integer "
            "columns are read as ids (integers become '42'); write the ids as text or integers."
        )
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(array)), 0)
    if pc.any(empty).as_py():
        at = first_true(empty.to_numpy(zero_copy_only=False))
        value = array[at].as_py()
        blank = f" (only whitespace: {value!r})" if value else ""
        raise ValueError(
            f"{label}: row {row0 + at + 1} has an empty {column!r}{blank}; every row needs one. Fill or drop that "
            "row."
        )
    return array


class TimestampParser:
    """Turns one timestamp column, batch by batch, into sortable numbers: int64 for integers (exact at any size),
    float64 for decimal numbers, int64 ns for dates.

    A column that holds integers above 2**53 and decimal numbers is refused: the loader would compare both as
    float64, where such integers are no longer exact (2**53 + 1 == 2**53).
    """

    def __init__(self, label: str, column: str) -> None:
        self.label, self.column, self.kind = label, column, None
        self.big_integer: tuple[int, Any] | None = None  # (row, value) of the first integer above 2**53
        self.decimal: tuple[int, Any] | None = None  # (row, value) of the first decimal (float) number

    def _bad(self, row: int, value: Any, why: str = "") -> ValueError:
        return ValueError(
            f"{self.label}: column {self.column!r}, row {row}: cannot read {value!r} as a timestamp{why}. Write "
            "numbers (Unix time) or ISO-8601 dates ('2024-05-01T12:30:00', with or without a UTC offset), one kind "
            "per column; or set timestamp_column: null to order each user's events by file row."
        )

    def _parse_strings(self, array: Any) -> tuple[str, Any] | None:
        """`(kind, parsed array)` of the first kind that reads every value (only the column's kind once known).
        Numbers are read as int64 when every value of the batch is an integer, else as float64."""
        pa = import_pyarrow()
        attempts = [
            (_NUMBER, pa.int64()),
            (_NUMBER, pa.float64()),
            (_DATE, pa.timestamp("ns")),
            (_DATE_UTC, pa.timestamp("ns", "UTC")),
        ]
        for kind, target in attempts:
            if self.kind is not None and kind != self.kind:
                continue
            try:
                return kind, pa.compute.cast(array, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return None

    def _locate(self, array: Any, row0: int) -> ValueError:
        """The error for the first value of a batch that no kind reads, or whose kind differs from the first's."""
        pa = import_pyarrow()
        first = self.kind
        values = array.to_pylist()
        for offset, value in enumerate(values):
            parsed = self._parse_strings(pa.array([value], pa.string()))
            if parsed is None:
                return self._bad(row0 + offset + 1, value, f" ({first})" if first else "")
            first = first or parsed[0]
            if parsed[0] != first:
                return self._bad(
                    row0 + offset + 1, value, f": it is a {parsed[0]}, but earlier rows are {first}s"
                )
        return self._bad(row0 + 1, values[0] if values else None)

    def _numbers(self, raw: Any, parsed: Any, row0: int) -> np.ndarray:
        """Check a batch of numbers: finite, and no integer above 2**53 in a column with decimal numbers."""
        pa = import_pyarrow()
        pc = pa.compute
        values = parsed.to_numpy(zero_copy_only=False)
        if pa.types.is_integer(parsed.type):
            big = np.abs(values) > _EXACT_FLOAT_INT
            if big.any() and self.big_integer is None:
                at = first_true(big)
                self.big_integer = (row0 + at + 1, raw[at].as_py())
        else:
            finite = np.isfinite(values)
            if not finite.all():
                at = first_true(~finite)
                raise self._bad(row0 + at + 1, raw[at].as_py(), " (not a finite number)")
            decimal = np.ones(len(values), dtype=bool)
            if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
                # integers written out in a batch that also holds decimals: the float cast rounded them
                whole = pc.match_substring_regex(raw, r"^\s*[+-]?[0-9]+\s*$").to_numpy(zero_copy_only=False)
                decimal = ~whole
                big = whole & (np.abs(values) >= _EXACT_FLOAT_INT)
                if big.any() and self.big_integer is None:
                    at = first_true(big)
                    self.big_integer = (row0 + at + 1, raw[at].as_py())
            if self.decimal is None and decimal.any():
                at = first_true(decimal)
                self.decimal = (row0 + at + 1, raw[at].as_py())
        if self.big_integer is not None and self.decimal is not None:
            (row, value), (other_row, other) = self.big_integer, self.decimal
            raise ValueError(
                f"{self.label}: column {self.column!r} holds integers above 2**53 (row {row}: {value!r}) and decimal "
                f"numbers (row {other_row}: {other!r}); compared as floats, such integers lose their exact order. "
                "Write every timestamp as an integer (e.g. Unix time in nanoseconds) or as an ISO-8601 date."
            )
        return values

    def __call__(self, array: Any, row0: int) -> np.ndarray:
        pa = import_pyarrow()
        if array.null_count:
            row = row0 + first_true(array.is_null().to_numpy(zero_copy_only=False)) + 1
            raise self._bad(row, None, " (the value is missing)")
        kind = array.type
        if pa.types.is_integer(kind):
            try:
                parsed = (_NUMBER, pa.compute.cast(array, pa.int64()))
            except pa.ArrowInvalid:  # uint64 past int64
                big = pa.compute.greater(array, pa.scalar(2**63 - 1, kind)).to_numpy(zero_copy_only=False)
                at = first_true(big)
                raise self._bad(row0 + at + 1, array[at].as_py(), " (larger than 2**63 - 1)") from None
        elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            parsed = (_NUMBER, pa.compute.cast(array, pa.float64()))
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            tz = kind.tz if pa.types.is_timestamp(kind) else None
            parsed = (_DATE_UTC if tz else _DATE, pa.compute.cast(array, pa.timestamp("ns", tz)))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            parsed = self._parse_strings(array)
            if parsed is None:
                raise self._locate(array, row0)
        else:
            raise self._bad(row0 + 1, array[0].as_py() if len(array) else None, f" (the column is {kind})")
        if self.kind is not None and parsed[0] != self.kind:
            raise self._bad(
                row0 + 1, array[0].as_py(), f": it is a {parsed[0]}, but earlier rows are {self.kind}s"
            )
        self.kind = parsed[0]
        if parsed[0] == _NUMBER:
            return self._numbers(array, parsed[1], row0)
        return parsed[1].cast(pa.int64()).to_numpy(zero_copy_only=False)


class IdCodes:
    """Maps id strings to dense integer codes in order of first appearance, one batch at a time."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, array: Any) -> np.ndarray:
        encoded = array.dictionary_encode()
        index = self.index
        mapping = np.fromiter(
            (index.setdefault(value, len(index)) for value in encoded.dictionary.to_pylist()),
            dtype=np.int64,
            count=len(encoded.dictionary),
        )
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)]


def clean_strings(array: Any) -> Any:
    """Any item column as trimmed text, one string per row: lists joined with `", "`, numbers written out, and
    empty values (null, NaN, blank) null."""
    pa = import_pyarrow()
    pc = pa.compute
    kind = array.type
    check_text_type(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        array = pc.binary_join(pc.cast(array, pa.list_(pa.string())), ", ")
    elif pa.types.is_floating(kind):
        array = pc.cast(pc.if_else(pc.is_nan(array), pa.scalar(None, kind), array), pa.string())
    elif not pa.types.is_string(kind):
        array = pc.cast(array, pa.string())
    array = pc.utf8_trim_whitespace(array)
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def check_text_type(
    array: Any, where: str = "A text column (title, categories or a text_columns entry)"
) -> None:
    """TypeError for a column that cannot be read as text: objects (structs, maps) or nested lists."""
    pa = import_pyarrow()
    kind = array.type
    inner = (
        kind.value_type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
        else kind
    )
    ok = (
        pa.types.is_string(inner)
        or pa.types.is_large_string(inner)
        or pa.types.is_binary(inner)
        or pa.types.is_large_binary(inner)
        or pa.types.is_integer(inner)
        or pa.types.is_floating(inner)
        or pa.types.is_boolean(inner)
        or pa.types.is_null(inner)
        or pa.types.is_temporal(inner)
        or pa.types.is_decimal(inner)
        or pa.types.is_dictionary(inner)
    )
    if not ok:
        raise TypeError(
            f"{where} holds values of type {kind}; it needs a "
            "string (or a list of strings) per item. Flatten objects and nested lists into text first."
        )


def category_lists(array: Any) -> Any:
    """A category column (`"a > b"` strings or lists) as an Arrow list array of trimmed, non-empty names."""
    pa = import_pyarrow()
    pc = pa.compute
    kind = array.type
    check_text_type(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        lists = pc.cast(array, pa.list_(pa.string()))
    else:
        lists = pc.split_pattern(clean_strings(array), ">")
    flat = pc.utf8_trim_whitespace(lists.flatten())
    keep = pc.fill_null(pc.not_equal(flat, ""), False)
    parents = pc.list_parent_indices(lists).to_numpy()[keep.to_numpy(zero_copy_only=False)]
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=len(lists)), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(keep))


def _join(parts: list[Any], separator: str) -> Any:
    """Row-wise join of string arrays, leaving out nulls (null where every part is null)."""
    pc = import_pyarrow().compute
    joined = parts[0]
    for part in parts[1:]:  # (pyarrow's null_handling="skip" drops all-null rows from its output: not used)
        joined = pc.coalesce(pc.binary_join_element_wise(joined, part, separator), joined, part)
    return joined


def compose_texts(
    columns: Sequence[tuple[str, Any]],
    title_column: str | None = "title",
    category_column: str | None = "categories",
) -> Any:
    """Join items' text columns, row by row, into sentence-like texts for a sentence embedder.

    The title column gives its value alone, and so does `description`; the category column reads
    `Category: a > b`; any other column `<Column name>: value` (`brand` -> `Brand: OPI`; a list value is joined
    with commas). Empty values are left out.

    Args:
        columns: `(column name, Arrow array or list of values)` pairs in the order to join them, one value per item.
        title_column: The column whose value stands alone.
        category_column: The column holding a category path (`"a > b"` or a list).

    Returns:
        An Arrow string array: for example `"OPI Nail Lacquer. Brand: OPI. Category: Beauty > Nails."`, null for
        an item whose values are all empty.
    """
    pa = import_pyarrow()
    pc = pa.compute
    parts = []
    for name, values in columns:
        values = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if name == category_column:
            path = pc.binary_join(category_lists(values), " > ")
            part = pc.binary_join_element_wise("Category: ", pc.if_else(pc.equal(path, ""), None, path), "")
        else:
            text = pc.utf8_rtrim(clean_strings(values), characters=". ")
            text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
            label = f"{name.replace('_', ' ').capitalize()}: "
            part = (
                text
                if name in (title_column, "description")
                else pc.binary_join_element_wise(label, text, "")
            )
        parts.append(part)
    return pc.binary_join_element_wise(_join(parts, ". "), ".", "")


def compose_table_text(
    values: Sequence[tuple[str, Any]],
    title_column: str | None = "title",
    category_column: str | None = "categories",
) -> str | None:
    """One item's text from its `(column, value)` pairs, as `compose_texts` writes it (None when all are empty).

    Example:
        `compose_table_text([("title", "OPI Nail Lacquer"), ("brand", "OPI"), ("categories", "Beauty > Nails")])`
        gives `"OPI Nail Lacquer. Brand: OPI. Category: Beauty > Nails."`.
    """
    if not values:
        return None
    columns = [(name, [value]) for name, value in values]
    return compose_texts(columns, title_column, category_column)[0].as_py()


def strings_by_item(item_ids: list[str], array: Any) -> dict[str, str]:
    """Item id -> value of a string array, for the items whose value is not null."""
    return {item: value for item, value in zip(item_ids, array.to_pylist()) if value is not None}


def embedding_matrix(values: Any, label: str, column: str) -> np.ndarray:
    """One embedding column (lists of floats, or strings of numbers) as a float32 matrix; empty rows are NaN.

    Raises:
        TypeError: a row that is not a flat list of numbers (strings, booleans, nested lists, a bare number).
        ValueError: rows of different sizes, an empty list, a value too large for float32 (or inf), or a row
            only partly NaN.
    """
    pa = import_pyarrow()
    kind = values.type
    out = None
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) and (
        pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)
    ):
        lengths = pa.compute.list_value_length(values).to_numpy(zero_copy_only=False)  # NaN where null
        dims = set(np.unique(lengths[~np.isnan(lengths)]).astype(int).tolist()) if len(lengths) else set()
        if len(dims) == 1:
            present = ~np.isnan(lengths)
            out = np.full((len(values), dims.pop()), np.nan, dtype=np.float32)  # (n_items, dim)
            flat = pa.compute.list_flatten(values.filter(pa.array(present)))
            with np.errstate(over="ignore"):
                out[present] = (
                    flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(int(present.sum()), -1)
                )
    if out is None:
        out = _embedding_rows(values.to_pylist(), label, column)
    _check_embedding_values(out, label, column)
    return out


def _embedding_rows(values: list[Any], label: str, column: str) -> np.ndarray:
    """The slow path of `embedding_matrix`: each row checked on its own."""
    rows: list[np.ndarray | None] = []
    for value in values:
        where = f"{label}: column {column!r}, row {len(rows) + 1}"
        if value is None or (isinstance(value, str) and not value.strip()):
            rows.append(None)
        elif isinstance(value, str):
            try:
                rows.append(np.array(value.strip().strip("[]").replace(",", " ").split(), dtype=np.float32))
            except ValueError:
                raise ValueError(
                    f"{where}: {value[:40]!r} is not a list of numbers; write '0.1 0.2 ...' or '[0.1, 0.2, ...]'."
                ) from None
        elif isinstance(value, (list, tuple, np.ndarray)):
            bad = [
                v
                for v in value
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number))
            ]
            if bad:
                raise TypeError(
                    f"{where}: an embedding is a flat list of numbers; it holds {type(bad[0]).__name__} "
                    f"{str(bad[0])[:40]!r}. Store one list of floats per item."
                )
            with np.errstate(over="ignore"):
                rows.append(np.asarray(value, dtype=np.float64).astype(np.float32))
        else:
            raise TypeError(
                f"{where}: an embedding is a list of numbers; got {type(value).__name__} {str(value)[:40]!r}. "
                "Store one list of floats per item (e.g. [0.1, 0.2, ...])."
            )
    dims = {len(r) for r in rows if r is not None}
    if len(dims) != 1:
        raise ValueError(
            f"{label}: column {column!r} has embeddings of sizes {sorted(dims)[:5] or 'none'}; every row needs the "
            "same number of values (leave a row empty when the item has none)."
        )
    out = np.full((len(rows), dims.pop()), np.nan, dtype=np.float32)  # (n_items, dim)
    for i, row in enumerate(rows):
        if row is not None:
            out[i] = row
    return out


def _check_embedding_values(out: np.ndarray, label: str, column: str) -> None:
    """Refuse 0-wide embeddings, values that are inf in float32 and rows only partly NaN (a missing row is all NaN)."""
    if out.shape[1] == 0:
        raise ValueError(
            f"{label}: column {column!r} holds empty lists; an embedding needs at least one value (leave the value "
            "empty, or null, for an item without one)."
        )
    inf = np.isinf(out).any(axis=1)
    if inf.any():
        row = int(np.flatnonzero(inf)[0]) + 1
        raise ValueError(
            f"{label}: column {column!r}, row {row}: a value is infinite or too large for float32 (|x| > 3.4e38); "
            "embeddings must be finite (normalise or clip them)."
        )
    nan = np.isnan(out)
    partial = nan.any(axis=1) & ~nan.all(axis=1)
    if partial.any():
        row = int(np.flatnonzero(partial)[0]) + 1
        raise ValueError(
            f"{label}: column {column!r}, row {row}: some values are NaN; fill them, or leave the whole value "
            "empty (null) for an item without an embedding."
        )
