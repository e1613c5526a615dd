"""The item table: item id <-> Semantic ID, validated once, saved as one versioned file.

[`SIDTable`] is the one table of the library: `assign_unique_sids` builds it, `train_rqvae` saves it, and a
`SemanticIDTokenizer` carries it (`tokenizer.sid_table`) and writes it beside itself as `sid_table.json`.
Pure numpy and dicts (picklable; torch is used only on tensors the caller passes in).

Two versions of one schema (`"format": "hf_semtok.sid_table"`):

- version 1, small tables: everything in `sid_table.json` (item ids and codes as JSON lists);
- version 2, tables of `COMPACT_MIN_ITEMS` items or more: `sid_table.json` keeps the metadata and names a
  `sid_codes.safetensors` beside it with the codes in the smallest unsigned integer type that fits and the item
  ids as one UTF-8 buffer plus offsets. In memory such a table keeps the ids in that buffer ([`ItemIds`]) and
  finds an id's row through sorted 64-bit hashes ([`HashedItemIndex`]), never a Python dict of every item.

This file is copied beside a saved tokenizer for `trust_remote_code=True`, so it imports only the standard
library, numpy and its siblings (relatively).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .constants import MAX_CODEBOOK_SIZE, SID_CODES_FILE, SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_TEMPLATE
from .item_ids import HashedItemIndex, ItemIds, _smallest_uint, _write_bytes, check_item_ids
from .safe_paths import read_regular
from .sid_checks import (
    MAX_NUM_LEVELS,
    DuplicateKeyError,
    _is_int,
    _jsonable,
    as_code_matrix,
    as_int,
    as_int_list,
    check_code_range,
    check_codebook_sizes,
    check_table_codes,
    check_table_metadata,
    check_unique_item_ids,
    no_duplicate_keys,
)
from .sid_tokens import group_sid_events

#: The largest `sid_table.json` a load reads (its codes live in `sid_codes.safetensors`; 10M item ids fit well
#: within it): a bound on what a planted file can make a load read.
MAX_SID_TABLE_JSON_BYTES = 4 << 30

try:  # a dependency of transformers; only the compact (version 2) table needs it
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as _st_load
    from safetensors.numpy import save as _st_save
except ImportError:  # pragma: no cover - safetensors comes with transformers
    SafetensorError = _st_load = _st_save = None

__all__ = [
    "COMPACT_MIN_ITEMS",
    "HashedItemIndex",
    "ItemIds",
    "MAX_CODEBOOK_SIZE",
    "MAX_NUM_LEVELS",
    "SIDTable",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "as_code_matrix",
    "as_int",
    "as_int_list",
    "check_code_range",
    "check_unique_item_ids",
    "DuplicateKeyError",
    "no_duplicate_keys",
]

#: `"format"` of `sid_table.json`.
TABLE_FORMAT = "hf_semtok.sid_table"
#: Newest `"version"` of `sid_table.json`: 1 (all in JSON) or 2 (metadata in JSON, arrays in
#: `sid_codes.safetensors`). Files without format/version (written by `SIDTable.to_json` before the table had a
#: schema) are read as version 1.
TABLE_VERSION = 2
#: Version of the all-JSON layout, still written for tables under `COMPACT_MIN_ITEMS` items.
JSON_TABLE_VERSION = 1
#: From this many items on, `SIDTable.to_json` writes version 2 (codes and ids in `sid_codes.safetensors`) and
#: a table built from a list keeps its ids in an [`ItemIds`] buffer with a [`HashedItemIndex`].
COMPACT_MIN_ITEMS = 100_000
#: Values of a table's `collision_strategy` (None: unknown): the policies of `hf_semtok.sids`, or `"none"` for SIDs
#: that are unique as given.
TABLE_COLLISION_STRATEGIES = ("extra_level", "reassign", "none")
#: Name of the binary file of a version-2 table (beside `sid_table.json`; a save prefix applies to both).


_REQUIRED_FIELDS = ("item_ids", "codes", "codebook_sizes")
_OPTIONAL_FIELDS = ("num_semantic_levels", "collision_strategy", "stats")
_V2_REQUIRED_FIELDS = ("codebook_sizes", "num_items", "data_file")
_V2_TENSORS = ("codes", "item_ids_utf8", "item_ids_offsets")
_FIX = "re-save it with SIDTable.to_json() or SemanticIDTokenizer.save_pretrained()"


# ----------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------
class SIDTable:
    """Item id -> Semantic ID, with unique rows, and the lookups the tokenizer and the decoder need.

    Codes are packed into one int64 key per item (`sum(code[l] * stride[l])`), kept sorted, so exact lookups
    and prefix ranges are one `searchsorted`. The table is validated once, here, whatever built it.

    Args:
        item_ids: Item identifiers, in row order: non-empty strings, never converted (see `check_item_ids`).
        codes: `(n_items, L)` integer codes, one SID per row, all rows distinct.
        codebook_sizes: Number of codes of each of the `L` levels (the dedup level included when present); each
            in `[1, MAX_CODEBOOK_SIZE]`.
        num_semantic_levels: Levels that come from the RQ-VAE (`L` or `L - 1`); default `L`.
        collision_strategy: `"extra_level"`, `"reassign"`, `"none"`, or None when unknown.
        stats: Collision statistics and assignment counts.
        source: File or object named in error messages.

    Attributes:
        item_ids, codes, codebook_sizes, num_semantic_levels, collision_strategy, stats: As above; `codes` is a
            read-only int64 copy.

    Raises:
        TypeError: `item_ids` of the wrong type (a set, a string, non-string ids; see `check_item_ids`).
        ValueError: naming `source`, the field and the fix, for any inconsistency.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        codes: Any,
        codebook_sizes: Sequence[int],
        num_semantic_levels: int | None = None,
        collision_strategy: str | None = "extra_level",
        stats: Mapping[str, Any] | None = None,
        source: str = "SIDTable",
    ) -> None:
        # duplicates are checked below, where the index is built
        item_ids = check_item_ids(item_ids, source, unique=False, compact_min_items=COMPACT_MIN_ITEMS)
        sizes = check_codebook_sizes(codebook_sizes, source)
        num_semantic = check_table_metadata(
            num_semantic_levels, collision_strategy, stats, len(sizes), TABLE_COLLISION_STRATEGIES, source
        )
        codes = check_table_codes(codes, len(item_ids), sizes, source)
        check_code_range(codes, sizes, item_ids, source)
        if isinstance(item_ids, ItemIds):
            index: Mapping[str, int] = HashedItemIndex(item_ids, source)
        else:
            index = check_unique_item_ids(item_ids, source)
        strides = np.ones(len(sizes), dtype=np.int64)
        for level in range(len(sizes) - 2, -1, -1):
            strides[level] = strides[level + 1] * sizes[level + 1]
        keys = codes @ strides  # (n_items,)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if same.size:
            a, b = item_ids[int(order[same[0]])], item_ids[int(order[same[0] + 1])]
            raise ValueError(
                f"{source}: items {a!r} and {b!r} share the SID {tuple(int(c) for c in codes[index[a]])}; SIDs "
                "must be unique (build the table with hf_semtok.sids.assign_unique_sids)."
            )
        codes.flags.writeable = False
        self.item_ids = item_ids
        self.codes = codes
        self.codebook_sizes = sizes
        self.num_semantic_levels = num_semantic
        self.collision_strategy = collision_strategy
        self.stats = dict(stats or {})
        self.index = index
        self.strides = strides
        self.sorted_keys = sorted_keys
        self.order = order
        self._sid_texts: list[str] | None = None
        self._level_tokens: list[list[str]] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.codes.flags.writeable = False  # pickling drops the flag

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return (
            f"SIDTable(num_items={len(self)}, codebook_sizes={self.codebook_sizes}, "
            f"num_semantic_levels={self.num_semantic_levels}, collision_strategy={self.collision_strategy!r})"
        )

    @property
    def num_levels(self) -> int:
        """Length `L` of every SID (dedup level included)."""
        return len(self.codebook_sizes)

    @property
    def has_extra_level(self) -> bool:
        """Whether the last level is the dedup level."""
        return self.num_levels > self.num_semantic_levels

    def index_of(self, item_id: str) -> int:
        """Row of `item_id`.

        Raises:
            KeyError: `item_id` is not in the table (the message names it).
        """
        try:
            return self.index[item_id]
        except KeyError:
            raise KeyError(
                f"Item {item_id!r} is not in the SID table ({len(self.item_ids)} items); check the id, or give it "
                "a SID first with tokenizer.add_items."
            ) from None

    def as_dict(self) -> dict[str, tuple[int, ...]]:
        """`{item_id: (code_0, ..., code_{L-1})}`."""
        return {item: tuple(row) for item, row in zip(self.item_ids, self.codes.tolist())}

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def from_mapping(
        cls,
        table: Mapping[str, Sequence[int]],
        codebook_sizes: Sequence[int] | None = None,
        rqvae: Any = None,
        source: str = "sid_table",
    ) -> SIDTable:
        """Build from `{item_id: codes}`.

        Args:
            table: Item id -> tuple of integer codes (all the same length).
            codebook_sizes: Codes per level. Without it, the sizes of `rqvae.config.codebook_sizes` (a further
                dedup level the RQ-VAE does not know is sized from the data).
            rqvae: An `RQVAEModel`, used only for its codebook sizes.
            source: Named in error messages.
        """
        if not isinstance(table, Mapping):
            hint = (
                " To read a saved table, pass SIDTable.from_json(path)."
                if isinstance(table, (str, os.PathLike))
                else ""
            )
            raise TypeError(
                f"{source} must be a dict item_id -> tuple of codes or a hf_semtok.SIDTable; got "
                f"{type(table).__name__}.{hint}"
            )
        if not table:
            raise ValueError(f"{source} is empty; the tokenizer needs at least one item.")
        item_ids = list(table)
        rows = []
        for item, value in table.items():
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
                raise ValueError(
                    f"{source}: the SID of item {item!r} must be a tuple of integers; got {value!r}."
                )
            if not all(_is_int(c) for c in value):
                raise ValueError(
                    f"{source}: the SID of item {item!r} has non-integer codes {tuple(value)!r}."
                )
            rows.append([int(c) for c in value])
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            by_len = {len(r): item for item, r in zip(item_ids, rows)}
            raise ValueError(
                f"{source}: all SIDs must have the same length; found lengths {sorted(lengths)} "
                f"(e.g. {by_len}). Pad with a dedup level (hf_semtok.sids.assign_unique_sids)."
            )
        codes = np.asarray(rows, dtype=np.int64)
        num_semantic = None
        if codebook_sizes is None:
            if rqvae is None:
                raise ValueError(
                    "codebook_sizes is required when sid_table is a plain dict and no rqvae is given; pass "
                    "codebook_sizes=[size of level 0, size of level 1, ...]."
                )
            sizes = as_int_list(list(rqvae.config.codebook_sizes), "codebook_sizes", "the RQ-VAE config")
            num_semantic = len(sizes)
            if codes.shape[1] == len(sizes) + 1:  # a dedup level the RQ-VAE does not know: size from the data
                sizes.append(int(codes[:, -1].max()) + 1)
            codebook_sizes = sizes
        return cls(item_ids, codes, codebook_sizes, num_semantic, None, None, source=source)

    @classmethod
    def from_any(cls, table: Any, codebook_sizes: Sequence[int] | None = None, rqvae: Any = None) -> SIDTable:
        """A `SIDTable` from a `SIDTable` (returned as is), an object with its fields, or a mapping.

        `codebook_sizes`, when given and different from the table's, rebuilds the table with those sizes.
        """
        if isinstance(table, cls) and (
            codebook_sizes is None or list(codebook_sizes) == table.codebook_sizes
        ):
            return table
        if all(hasattr(table, name) for name in ("item_ids", "codes", "codebook_sizes")):
            return cls(
                table.item_ids,
                table.codes,
                codebook_sizes if codebook_sizes is not None else table.codebook_sizes,
                getattr(table, "num_semantic_levels", None),
                getattr(table, "collision_strategy", None),
                getattr(table, "stats", None),
                source="sid_table",
            )
        return cls.from_mapping(table, codebook_sizes, rqvae)

    # ------------------------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """What a version-1 `sid_table.json` holds: format, version and the fields (JSON-able)."""
        return {
            "format": TABLE_FORMAT,
            "version": JSON_TABLE_VERSION,
            **self._metadata(),
            "item_ids": list(self.item_ids),
            "codes": self.codes.tolist(),
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "codebook_sizes": list(self.codebook_sizes),
            "num_semantic_levels": self.num_semantic_levels,
            "collision_strategy": self.collision_strategy,
            "stats": _jsonable(self.stats),
        }

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "SID table data", directory: str | os.PathLike | None = None
    ) -> SIDTable:
        """Inverse of [`to_dict`]; also reads the versionless layout of earlier `SIDTable.to_json` files.

        Args:
            data: The parsed `sid_table.json`.
            source: Named in error messages.
            directory: Folder of the JSON file, where a version-2 table's `data_file` lies (see [`from_json`]).

        Raises:
            ValueError: naming `source` and the field, for an unknown format, a newer version, a missing or
                unknown field, or any value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{source} holds a JSON {type(data).__name__}, not an object; it is not a SID table ({_FIX})."
            )
        data = dict(data)
        fmt, version = data.pop("format", None), data.pop("version", None)
        if fmt is not None or version is not None:
            if fmt != TABLE_FORMAT:
                raise ValueError(
                    f"{source}: field 'format' is {fmt!r}, not {TABLE_FORMAT!r}; it is not a SID table written by "
                    "hf_semtok."
                )
            if not _is_int(version) or version < 1:
                raise ValueError(
                    f"{source}: field 'version' must be a positive integer; got {version!r} ({_FIX})."
                )
            if version > TABLE_VERSION:
                raise ValueError(
                    f"{source}: version {version} of {TABLE_FORMAT} was written by a newer hf_semtok (this one "
                    f"reads versions up to {TABLE_VERSION}); upgrade hf_semtok (pip install -U hf-semtok)."
                )
        if version == 2:
            return cls._from_v2(data, source, directory)
        for name in _REQUIRED_FIELDS:
            if name not in data:
                raise ValueError(
                    f"{source} has no field {name!r}; it is not a SID table written by hf_semtok."
                )
        unknown = sorted(set(data) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown}; a SID table has "
                f"{['format', 'version', *_REQUIRED_FIELDS, *_OPTIONAL_FIELDS]} ({_FIX})."
            )
        return cls(
            check_item_ids(data["item_ids"], source, in_file=True, unique=False),
            data["codes"],
            data["codebook_sizes"],
            data.get("num_semantic_levels"),
            data.get("collision_strategy"),
            data.get("stats"),
            source=source,
        )

    @classmethod
    def _from_v2(cls, data: dict[str, Any], source: str, directory: str | os.PathLike | None) -> SIDTable:
        """Version 2: metadata from the JSON, codes and ids from its `data_file` (safetensors)."""
        for name in _V2_REQUIRED_FIELDS:
            if name not in data:
                raise ValueError(
                    f"{source} (version 2) has no field {name!r}; it is not a SID table written by hf_semtok "
                    f"({_FIX})."
                )
        unknown = sorted(set(data) - set(_V2_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown} for version 2; a compact SID table has "
                f"{['format', 'version', *_V2_REQUIRED_FIELDS, *_OPTIONAL_FIELDS]} ({_FIX})."
            )
        data_file, num_items = data["data_file"], data["num_items"]
        if (
            not isinstance(data_file, str)
            or data_file in ("", ".", "..")
            or os.path.basename(data_file) != data_file
        ):
            raise ValueError(
                f"{source}: field 'data_file' must be a file name beside the JSON file (no folders), e.g. "
                f"{SID_CODES_FILE!r}; got {data_file!r}."
            )
        if not _is_int(num_items) or num_items < 0:
            raise ValueError(f"{source}: field 'num_items' must be an integer >= 0; got {num_items!r}.")
        if directory is None:
            raise ValueError(
                f"{source} is a version-2 (compact) table whose arrays lie in {data_file!r}; read it with "
                "SIDTable.from_json(path_of_sid_table_json)."
            )
        path = os.path.join(directory, data_file)
        if _st_load is None:  # pragma: no cover - safetensors comes with transformers
            raise ImportError(f"Reading {path} needs the safetensors package (pip install safetensors).")
        if not os.path.isfile(path):
            where = "is not a regular file" if os.path.lexists(path) else "does not exist"
            raise FileNotFoundError(
                f"{source} names {data_file!r} (the codes and item ids) but {path} {where}; copy it beside "
                f"the JSON file or {_FIX}."
            )
        try:
            tensors = _st_load(path)
        except (SafetensorError, ValueError, OSError) as err:
            raise ValueError(
                f"{path} is not a readable safetensors file ({err}); it is truncated or corrupt."
            ) from None
        if sorted(tensors) != sorted(_V2_TENSORS):
            raise ValueError(f"{path}: tensors must be {list(_V2_TENSORS)}; got {sorted(tensors)} ({_FIX}).")
        codes, blob, offsets = (tensors[k] for k in _V2_TENSORS)
        if not np.issubdtype(codes.dtype, np.integer) or codes.ndim != 2 or codes.shape[0] != num_items:
            raise ValueError(
                f"{path}: tensor 'codes' must be an integer ({num_items}, num_levels) array ('num_items' of "
                f"{source}); got {codes.dtype} {tuple(codes.shape)}."
            )
        if offsets.dtype != np.int64 or offsets.shape != (num_items + 1,):
            raise ValueError(
                f"{path}: tensor 'item_ids_offsets' must be int64 of shape ({num_items + 1},); got "
                f"{offsets.dtype} {tuple(offsets.shape)}."
            )
        item_ids = ItemIds(blob, offsets, source=f"{path}: tensor 'item_ids_utf8'")
        return cls(
            item_ids,
            codes,
            data["codebook_sizes"],
            data.get("num_semantic_levels"),
            data.get("collision_strategy"),
            data.get("stats"),
            source=path,
        )

    def to_json(self, path: str | os.PathLike, compact: bool | None = None) -> tuple[str, ...]:
        """Write the table to `path` (atomically when hf_semtok is installed: temporary file, then rename).

        Args:
            path: The JSON file (`sid_table.json`).
            compact: Write version 2: `path` keeps the metadata and the arrays go to `sid_codes.safetensors` beside
                it (`<prefix>-sid_codes.safetensors` for `<prefix>-sid_table.json`). Default: from
                `COMPACT_MIN_ITEMS` items on.

        Returns:
            The paths written (the JSON file, then the data file if any).
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"SIDTable.to_json: path must be a file path (str or os.PathLike); got {type(path).__name__}."
            )
        try:
            return self._to_json(path, compact)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as err:
            raise ValueError(
                f"SIDTable.to_json: cannot write {os.fspath(path)!r} ({err.strerror}): a part of the path is a file, "
                "or the path is a folder. Pass a file path such as out/sid_table.json."
            ) from None
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:
                raise ValueError(
                    f"SIDTable.to_json: the path {os.fspath(path)!r} is too long; choose a shorter one."
                ) from None
            raise

    def _to_json(self, path: str | os.PathLike, compact: bool | None) -> tuple[str, ...]:
        if compact is None:
            compact = len(self) >= COMPACT_MIN_ITEMS
        if not compact:
            _write_bytes(json.dumps(self.to_dict()).encode("utf-8"), path)
            return (str(path),)
        if _st_save is None:  # pragma: no cover - safetensors comes with transformers
            raise ImportError(
                "Writing a compact SID table needs the safetensors package (pip install safetensors)."
            )
        name = os.path.basename(str(path))
        base = (
            name[: -len("sid_table.json")]
            if name.endswith("sid_table.json")
            else name.rsplit(".", 1)[0] + "."
        )
        data_path = os.path.join(os.path.dirname(str(path)), base + SID_CODES_FILE)
        ids = self.item_ids if isinstance(self.item_ids, ItemIds) else ItemIds.from_list(self.item_ids)
        tensors = {
            "codes": self.codes.astype(_smallest_uint(max(self.codebook_sizes) - 1)),
            "item_ids_utf8": ids.buffer,
            "item_ids_offsets": ids.offsets,
        }
        _write_bytes(_st_save(tensors, metadata={"format": TABLE_FORMAT, "version": "2"}), data_path)
        meta = {
            "format": TABLE_FORMAT,
            "version": 2,
            **self._metadata(),
            "num_items": len(self),
            "data_file": os.path.basename(data_path),
        }
        _write_bytes(json.dumps(meta).encode("utf-8"), path)
        return (str(path), data_path)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> SIDTable:
        """Read `sid_table.json`: version 2 (with its `sid_codes.safetensors`), version 1, or an unversioned file.

        Raises:
            FileNotFoundError: when `path` (or the data file a version-2 table names) does not exist.
            ValueError: naming the file (and field) for bytes that are not UTF-8 JSON or a table that is invalid.
        """
        name = str(path)
        if os.path.isdir(path):
            raise ValueError(f"{name} is a folder; pass the path of its sid_table.json file.")
        if os.path.exists(path) and not os.path.isfile(path):
            raise ValueError(
                f"{name} is not a regular file (a FIFO, a device or a socket); pass a sid_table.json file."
            )
        if not os.path.isfile(
            path
        ):  # (open() raises OSError [Errno 36] for a name too long for the file system)
            raise FileNotFoundError(f"{name}: no such file; check the path of the sid_table.json file.")
        raw = read_regular(path, MAX_SID_TABLE_JSON_BYTES, "SID table")
        try:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
        except DuplicateKeyError as err:
            raise ValueError(
                f"{name}: the key {err.args[0]!r} appears twice in one JSON object; a JSON reader keeps only the "
                f"last one, so which table is meant is unclear. Remove one of them ({_FIX})."
            ) from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{name} is not UTF-8 text ({err}); it is not a SID table ({_FIX}).") from None
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{name} is not valid JSON ({err}); the file is truncated or corrupt ({_FIX})."
            ) from None
        except RecursionError:
            raise ValueError(f"{name} is JSON nested too deeply to be a SID table ({_FIX}).") from None
        return cls.from_dict(data, source=name, directory=os.path.dirname(os.path.abspath(name)))

    # ------------------------------------------------------------------------------------ lookups
    def sid_texts(self) -> list[str]:
        """Per row, the item's SID string `<|sid_start|><|sid_0_a|>...<|sid_end|>` (built once, then cached)."""
        if self._sid_texts is None:
            tokens = [
                [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for c in range(k)]
                for lv, k in enumerate(self.codebook_sizes)
            ]
            self._sid_texts = [
                SID_START_TOKEN + "".join(tokens[lv][c] for lv, c in enumerate(row)) + SID_END_TOKEN
                for row in self.codes.tolist()
            ]
        return self._sid_texts

    def sid_text(self, row: int, marked: bool = True) -> str:
        """The SID string of one row, built on demand (no cache of every item's string); `marked=False` leaves out
        the `<|sid_start|>` / `<|sid_end|>` markers."""
        if self._level_tokens is None:
            self._level_tokens = [
                [SID_TOKEN_TEMPLATE.format(level=lv, code=c) for c in range(k)]
                for lv, k in enumerate(self.codebook_sizes)
            ]
        tokens = self._level_tokens
        body = "".join(tokens[lv][c] for lv, c in enumerate(self.codes[row].tolist()))
        return SID_START_TOKEN + body + SID_END_TOKEN if marked else body

    def rows_of_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each item id (vectorised for a compact table), -1 where the id is unknown."""
        item_ids = list(item_ids)
        odd = [i for i in item_ids if not isinstance(i, str)]
        if odd:
            raise TypeError(
                f"Item ids are strings; got {type(odd[0]).__name__} {odd[0]!r} (never converted)."
            )
        if isinstance(self.index, HashedItemIndex):
            return self.index.rows_of(item_ids)
        get = self.index.get
        return np.asarray([get(i, -1) for i in item_ids], dtype=np.int64)

    def keys_of(self, codes: np.ndarray) -> np.ndarray:
        """Packed int64 key of each row of `(n, L)` codes."""
        return np.asarray(codes, dtype=np.int64) @ self.strides

    def rows_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Row index of each packed key, -1 where no item has it."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(self.sorted_keys):
            return np.full(keys.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return np.where(self.sorted_keys[pos] == keys, self.order[pos], -1)

    def row_of_sid(self, codes: Sequence[int]) -> int:
        """Row of the item whose full SID is `codes`, -1 if none (or if a code is outside its codebook).

        Raises:
            TypeError: `codes` is not a sequence of integers.
            ValueError: `codes` does not have one code per level.
        """
        if isinstance(codes, (str, bytes, Mapping)) or not isinstance(codes, (Sequence, np.ndarray)):
            raise TypeError(f"A SID is a tuple of integer codes; got {type(codes).__name__} {codes!r}.")
        codes = [as_int(c, f"Code {level} of the SID {tuple(codes)!r}") for level, c in enumerate(codes)]
        if len(codes) != len(self.codebook_sizes):
            raise ValueError(
                f"A SID of this table has {len(self.codebook_sizes)} codes (one per level); got {len(codes)} in "
                f"{tuple(codes)!r}. Pass the full SID (use rows_with_prefix for a prefix)."
            )
        if any(not 0 <= c < s for c, s in zip(codes, self.codebook_sizes)):
            return -1  # no SID has an out-of-range code
        return int(self.rows_of_keys(self.keys_of(np.asarray([codes], dtype=np.int64)))[0])

    def rows_with_prefix(self, prefix: Sequence[int]) -> np.ndarray:
        """Rows (ascending) of the items whose SID starts with `prefix`: one key range of the sorted keys.

        Raises:
            TypeError: `prefix` is not a sequence of integers (floats, bools and digit strings are refused).
        """
        if isinstance(prefix, (str, bytes, Mapping)) or not isinstance(prefix, (Sequence, np.ndarray)):
            raise TypeError(
                f"A SID prefix is a tuple of integer codes; got {type(prefix).__name__} {prefix!r}."
            )
        prefix = [
            as_int(c, f"Code {level} of the SID prefix {tuple(prefix)!r}") for level, c in enumerate(prefix)
        ]
        k = len(prefix)
        if k > len(self.codebook_sizes) or any(
            not 0 <= int(c) < s for c, s in zip(prefix, self.codebook_sizes)
        ):
            return np.zeros(0, dtype=np.int64)  # no SID has an out-of-range code
        lo = int(np.dot(np.asarray(prefix, dtype=np.int64), self.strides[:k])) if k else 0
        hi = lo + (int(self.strides[k - 1]) if k else int(self.strides[0]) * self.codebook_sizes[0])
        a, b = np.searchsorted(self.sorted_keys, [lo, hi])
        return np.sort(self.order[a:b])

    def resolve(self, events: Sequence[tuple[int, int, int]], on_invalid: str) -> list[Any]:
        """Item ids of the SIDs in `events`; invalid ones handled per `on_invalid` (see `parse_items`)."""
        segments = group_sid_events(events, self.codebook_sizes)
        good = [i for i, (_, reason) in enumerate(segments) if not reason]
        rows = np.full(len(segments), -1, dtype=np.int64)
        if good:
            rows[good] = self.rows_of_keys(self.keys_of(np.asarray([segments[i][0] for i in good])))
        result: list[Any] = []
        for (codes, reason), row in zip(segments, rows.tolist()):
            if row >= 0:
                result.append(self.item_ids[row])
                continue
            reason = reason or "names no item in the catalogue"
            if on_invalid == "raise":
                raise ValueError(f"Invalid SID {tuple(codes)} in the output: {reason}.")
            if on_invalid == "none":
                result.append(None)
            elif on_invalid == "keep_prefix":
                result.append(tuple(codes))
        return result
