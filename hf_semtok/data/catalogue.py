"""The `Catalogue` (items, their text, user histories), item text composition and the leave-one-out split.

Ids are always strings, so a catalogue never mixes `1` and `"1"`. The file helpers here are shared by the format
readers (`lcrec.py`, `amazon2014.py`).
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from hf_semtok.io_utils import require_input_file

logger = logging.getLogger(__name__)


#: Text fields joined into `Catalogue.texts` by default: TIGER's recipe (title, brand, categories; Rajput et al.,
#: 2023) without price, which these datasets do not ship. Add "description" for longer texts.
DEFAULT_TEXT_FIELDS = ("title", "brand", "categories")
#: Every field `compose_item_text` can join, in the order it joins them.
TEXT_FIELD_NAMES = ("title", "brand", "categories", "description")


_PLACEHOLDER = re.compile(r"^(brand|title)_\d+$")


def check_count(name: str, value: Any, source: str, minimum: int = 1, optional: bool = False) -> int | None:
    """`value` as an int `>= minimum` (numpy ints allowed; None when `optional`); TypeError/ValueError naming it."""
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{source}: {name} must be an int >= {minimum}{' or None' if optional else ''}; got "
            f"{type(value).__name__} {value!r}."
        )
    if value < minimum:
        raise ValueError(
            f"{source}: {name} must be >= {minimum}{' or None' if optional else ''}, got {value}."
        )
    return int(value)


def check_history(items: Any, source: str, user: Any = None) -> list[Any]:
    """One history as a list of item ids; a string (read as characters otherwise), a mapping or a non-list is a
    TypeError, and so is an item id that is neither a string nor an int."""
    where = f"the history of user {user!r}" if user is not None else "a history"
    if hasattr(items, "tolist") and not isinstance(items, (str, bytes)):  # numpy arrays
        items = items.tolist()
    if isinstance(items, (str, bytes)):
        raise TypeError(
            f"{source}: {where} is a string ({str(items)[:40]!r}), not a list of item ids; wrap a single item as "
            "[item]."
        )
    if isinstance(items, Mapping) or not isinstance(items, Sequence):
        raise TypeError(
            f"{source}: {where} must be a list of item ids; got {type(items).__name__} {str(items)[:40]!r}."
        )
    bad = [i for i in items if not isinstance(i, (str, int, np.integer)) or isinstance(i, (bool, np.bool_))]
    if bad:
        raise TypeError(
            f"{source}: {where} must hold item ids (strings or ints); {bad[0]!r} ({type(bad[0]).__name__}) is not."
        )
    return list(items)


@dataclass
class Catalogue:
    """An item catalogue with optional text and the users' chronological histories.

    Args:
        item_ids: Every item id, in a fixed order (row `i` of an embedding matrix is `item_ids[i]`). Unique.
        titles: Item id -> title (items without a title are absent).
        texts: Item id -> full text for embedding (title, brand, categories, ... joined).
        categories: Item id -> category path, coarse to fine (absent when unknown).
        histories: User id -> chronological list of item ids. Every item must be in `item_ids`.
        name: Dataset name, for logs and reports.
        published_sids: Published Semantic-ID sets found beside the data: set name -> {item id -> code tuple}.
        text_fields: The fields `texts` was composed from that at least one item has, in the order they were
            joined (`["title", "categories"]` for a source without brands). Loaders fill it; empty when unknown.
    """

    item_ids: list[str]
    titles: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    histories: dict[str, list[str]] = field(default_factory=dict)
    name: str = "catalogue"
    published_sids: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    text_fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.item_ids = [str(i) for i in self.item_ids]
        if isinstance(self.text_fields, str):
            raise TypeError(f"Catalogue {self.name!r}: text_fields is a list of field names, e.g. ['title'].")
        self.text_fields = list(self.text_fields)
        unknown_fields = [f for f in self.text_fields if f not in TEXT_FIELD_NAMES]
        if unknown_fields:
            raise ValueError(
                f"Catalogue {self.name!r}: unknown text_fields {unknown_fields}; use {list(TEXT_FIELD_NAMES)}."
            )
        if not self.item_ids:
            raise ValueError(f"Catalogue {self.name!r} is empty: give at least one item id.")
        known = set(self.item_ids)
        if len(known) != len(self.item_ids):
            seen: set[str] = set()
            dupes = [i for i in self.item_ids if i in seen or seen.add(i)]
            raise ValueError(
                f"Catalogue {self.name!r} has duplicate item ids {sorted(set(dupes))[:10]}; item ids must be unique."
            )
        for label, mapping in (
            ("titles", self.titles),
            ("texts", self.texts),
            ("categories", self.categories),
        ):
            extra = [i for i in mapping if i not in known]
            if extra:
                raise ValueError(
                    f"Catalogue {self.name!r}: {label} name {len(extra)} items that are not in item_ids, e.g. "
                    f"{extra[:5]}. Add them to item_ids or drop them."
                )
        unknown = sorted({i for h in self.histories.values() for i in h if i not in known})
        if unknown:
            raise ValueError(
                f"Catalogue {self.name!r}: histories name {len(unknown)} items that are not in item_ids, e.g. "
                f"{unknown[:5]}. Add them to item_ids or filter the histories."
            )

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def num_items(self) -> int:
        """Number of items."""
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        """Total number of (user, item) events in the histories."""
        return sum(len(h) for h in self.histories.values())

    def item_index(self) -> dict[str, int]:
        """Return item id -> row index in `item_ids`."""
        return {item: i for i, item in enumerate(self.item_ids)}

    def item_texts(self, fallback_to_title: bool = True) -> list[str]:
        """Return one text per item, in `item_ids` order, ready for `embed_texts`.

        Args:
            fallback_to_title: Use the title, then the id, for items without a text.

        Returns:
            A list of `num_items` strings.

        Raises:
            ValueError: An item has no text and `fallback_to_title` is false.
        """
        out = []
        for item in self.item_ids:
            text = self.texts.get(item)
            if text is None:
                if not fallback_to_title:
                    raise ValueError(
                        f"Item {item!r} has no text; fill Catalogue.texts or allow the fallback."
                    )
                text = self.titles.get(item) or f"item {item}"
            out.append(text)
        return out


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _read_json(path: Path) -> Any:
    """The JSON in `path` (gzip allowed); ValueError naming the file when it is truncated, corrupt or not UTF-8."""
    try:
        with _open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{str(path)!r} is not valid JSON ({err}); the file is truncated or corrupt: download or write it again."
        ) from None
    except RecursionError:
        raise ValueError(
            f"{str(path)!r} holds JSON nested too deeply for a dataset file; it is corrupt or not the file "
            "expected: download or write it again."
        ) from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(
            f"{str(path)!r} cannot be read as UTF-8 JSON ({type(err).__name__}: {err}); the file is truncated or "
            "corrupt: download or write it again."
        ) from None


def _json_line(line: str, path: Path, number: int) -> Any:
    """One line of a JSON-lines file; ValueError naming the file and line when it is not valid JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{str(path)!r} line {number}: not valid JSON ({err}); the file is truncated or corrupt."
        ) from None
    except RecursionError:
        raise ValueError(
            f"{str(path)!r} line {number}: JSON nested too deeply for a record; the file is corrupt."
        ) from None


def _find(directory: Path, stem: str) -> Path | None:
    """Return `directory/stem` or `directory/stem.gz`, whichever exists (None if neither).

    Raises:
        ValueError: The name exists but is not a regular file (a folder, a pipe, a device): reading it could block.
    """
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if os.path.lexists(candidate):
            return require_input_file(
                candidate, "Dataset file", "replace it with the regular file it should be"
            )
    return None


def _sort_ids(ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(ids))
    if all(i.isdigit() for i in ids):
        return sorted(ids, key=int)
    return ids


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = html.unescape(str(value)).strip()
    if not text or _PLACEHOLDER.match(text):
        return None
    return text


def compose_item_text(
    title: str | None,
    brand: str | None = None,
    categories: Sequence[str] | None = None,
    description: str | None = None,
    fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
) -> str | None:
    """Join an item's fields into one sentence-like text for a sentence embedder.

    Args:
        title: Item title.
        brand: Brand name.
        categories: Category path, coarse to fine.
        description: Free-text description.
        fields: Which of "title", "brand", "categories", "description" to include, in this order.

    Returns:
        For example `"OPI Nail Lacquer. Brand: OPI. Category: Beauty > Makeup > Nails."`, or `None` when every
        selected field is empty.
    """
    unknown = set(fields) - set(TEXT_FIELD_NAMES)
    if unknown:
        raise ValueError(f"Unknown text fields {sorted(unknown)}; use title, brand, categories, description.")
    parts = []
    for name in fields:
        if name == "title" and title:
            parts.append(title.rstrip(". "))
        elif name == "brand" and brand:
            parts.append(f"Brand: {brand.rstrip('. ')}")
        elif name == "categories" and categories:
            parts.append("Category: " + " > ".join(categories))
        elif name == "description" and description:
            parts.append(description.rstrip(". "))
    return ". ".join(parts) + "." if parts else None


def _fields_with_values(
    title: Any, brand: Any = None, categories: Any = None, description: Any = None
) -> set[str]:
    """Names of the `compose_item_text` fields that are non-empty for one item (loaders fill `text_fields`)."""
    values = {"title": title, "brand": brand, "categories": categories, "description": description}
    return {name for name, value in values.items() if value}


def leave_one_out_split(
    histories: Mapping[str, Sequence[str]], max_history: int | None = None
) -> tuple[dict[str, list[str]], dict[str, tuple[list[str], str]], dict[str, tuple[list[str], str]]]:
    """Split chronological histories leave-one-out (TIGER, P5, S3-Rec, LC-Rec, LETTER protocol).

    For a user with items `[i_1, ..., i_n]` and `n >= 3`: the training history is `[i_1, ..., i_{n-2}]`; the
    validation example is (`[i_1, ..., i_{n-2}]`, `i_{n-1}`); the test example is (`[i_1, ..., i_{n-1}]`, `i_n`),
    whose history includes the validation item. Users with fewer than 3 items (absent from 5-core data) keep
    their whole history for training and get no validation or test example, as in SASRec's partition
    (Kang & McAuley, ICDM 2018). No validation or test target is ever part of a training history.

    Args:
        histories: User id -> chronological item ids.
        max_history: Keep only the most recent `max_history` items of validation and test histories
            (TIGER uses 20). `None` keeps all. Training histories are never truncated.

    Returns:
        `(train, valid, test)`: `train` maps user -> training items; `valid` and `test` map user ->
        `(history, target)`.

    Raises:
        TypeError: `histories` is not a mapping, a history is not a list of item ids (a string would be read as
            its characters), or `max_history` is not an int.
        ValueError: `max_history < 1`.
    """
    max_history = check_count("max_history", max_history, "leave_one_out_split", optional=True)
    if not isinstance(histories, Mapping):
        raise TypeError(
            "leave_one_out_split: `histories` must be a mapping user id -> chronological item ids; got "
            f"{type(histories).__name__}. A list of histories has no user ids: pass dict(enumerate(histories))."
        )
    train: dict[str, list[str]] = {}
    valid: dict[str, tuple[list[str], str]] = {}
    test: dict[str, tuple[list[str], str]] = {}

    def cut(items: list[str]) -> list[str]:
        return items[-max_history:] if max_history is not None else items

    n_short = 0
    for user, items in histories.items():
        items = check_history(items, "leave_one_out_split", user)
        if len(items) < 3:
            train[user] = items
            n_short += 1
            continue
        train[user] = items[:-2]
        valid[user] = (cut(items[:-2]), items[-2])
        test[user] = (cut(items[:-1]), items[-1])
    if n_short:
        logger.info(
            "leave_one_out_split: %d users with fewer than 3 items are used for training only", n_short
        )
    return train, valid, test


def history_windows(length: int, width: int, stride: int) -> list[tuple[int, int, int]]:
    """Cut a history of `length` items into windows of at most `width` items, `stride` items apart.

    The one windowing rule of the library: the first window starts at item 0, every next one `stride` items
    later, and the last one ends at the last item (no window is started once the previous one reached the end).
    Each window also says which of its items no earlier window held, so a caller can make every item a target
    exactly once: the generator's training windows (`width = max_history + 1`), the SFT examples (`stride=1`:
    item `t` is predicted from `history[max(0, t - max_history) : t]`) and the CPT history documents
    (`width = max_history`) are all cut here.

    Args:
        length: Items in the history (0 gives no window).
        width: Most items per window (>= 1).
        stride: Items between the starts of two windows (>= 1).

    Returns:
        `(start, first_new, stop)` per window: the window is `history[start:stop]`, and `history[first_new:stop]`
        are the items no earlier window held (`first_new == start` for the first window).

    Example:
        `history_windows(25, 21, 10)` gives `[(0, 0, 21), (10, 21, 25)]`.
    """
    if width < 1 or stride < 1:
        raise ValueError(
            f"history_windows needs width >= 1 and stride >= 1; got width={width}, stride={stride}."
        )
    windows = []
    start, covered = 0, 0
    while start < length:
        stop = min(start + width, length)
        windows.append((start, max(start, covered), stop))
        if stop >= length:
            break
        covered = stop
        start += stride
    return windows
