"""Amazon 2014 5-core folders in the P5 layout, and P5 / S3-Rec sequence text.

P5 / S3-Rec sequence text (Geng et al., RecSys 2022; Zhou et al., CIKM 2020): one line per user, `user item item
...`, chronological, plain or gzipped. The Amazon 2014 folders (`sequential_data.txt[.gz]`, `items_text.jsonl.gz`,
`item2attributes.json.gz`, `items.jsonl.gz`, `letter/` and `sids_*/` published SIDs) use **the P5 ids** (1-based,
as strings) for items and users. Published SIDs keyed by LC ids (= P5 id - 1) are shifted onto P5 ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hf_semtok.data.catalogue import (
    DEFAULT_TEXT_FIELDS,
    Catalogue,
    _clean,
    _fields_with_values,
    _find,
    _json_line,
    _open_text,
    _read_json,
    _sort_ids,
    compose_item_text,
)
from hf_semtok.data.lcrec import load_lcrec_index
from hf_semtok.io_utils import require_input_file

logger = logging.getLogger(__name__)


def load_sequence_text(path: str | Path) -> dict[str, list[str]]:
    """Read P5 / S3-Rec sequence text: one line per user, `user item item ...` (plain or `.gz`).

    Args:
        path: The sequence file.

    Returns:
        User id -> chronological item ids, in file order. Ids are kept as written.
    """
    path = Path(path)
    require_input_file(path, "Sequence file", "name the file (check the path)")
    histories: dict[str, list[str]] = {}
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            user = parts[0]
            if user in histories:
                raise ValueError(
                    f"{str(path)!r} line {line_no}: user {user!r} appears twice; one line per user."
                )
            histories[user] = parts[1:]
    return histories


def load_amazon2014(directory: str | Path, text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS) -> Catalogue:
    """Load an Amazon 2014 5-core folder in the P5 layout (Beauty, Sports_and_Outdoors, Toys_and_Games).

    Reads `sequential_data.txt[.gz]` (P5 ids, 1-based), item text from `items_text.jsonl.gz` when present
    (title, brand, categories; HTML entities unescaped), else opaque attribute ids from
    `item2attributes.json.gz` as categories (`"attr_<id>"`, no text), and published SIDs from `letter/` and
    `sids_*/` (LC ids, shifted by +1 onto P5 ids).

    Args:
        directory: The dataset folder.
        text_fields: Item fields joined into `Catalogue.texts`.

    Returns:
        A `Catalogue` whose item and user ids are P5 ids as strings (`"1"`, `"2"`, ...).
    """
    directory = Path(directory)
    seq_path = _find(directory, "sequential_data.txt")
    if seq_path is None:
        raise ValueError(
            f"No sequential_data.txt[.gz] in {str(directory)!r}; is this a P5-layout Amazon folder?"
        )
    histories = load_sequence_text(seq_path)
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    categories: dict[str, list[str]] = {}
    found: set[str] = set()  # text fields that some item has
    item_ids: list[str] = [i for h in histories.values() for i in h]
    items_path = _find(directory, "items.jsonl")
    if items_path is not None:
        with _open_text(items_path) as handle:
            rows = [_json_line(line, items_path, n) for n, line in enumerate(handle, 1) if line.strip()]
            item_ids = [str(row["item_id"]) for row in rows] + item_ids
    text_path = _find(directory, "items_text.jsonl")
    attr_path = _find(directory, "item2attributes.json")
    if text_path is not None:
        with _open_text(text_path) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row = _json_line(line, text_path, number)
                item = str(row["item_id"])
                title, brand = _clean(row.get("title")), _clean(row.get("brand"))
                paths = row.get("categories") or []
                cats = [c for c in (_clean(x) for x in (paths[0] if paths else [])) if c]
                if title:
                    titles[item] = title
                if cats:
                    categories[item] = cats
                text = compose_item_text(title, brand, cats, None, fields=text_fields)
                if text:
                    texts[item] = text
                    found |= _fields_with_values(title, brand, cats)
    elif attr_path is not None:
        for item, attrs in _read_json(attr_path).items():
            categories[str(item)] = [f"attr_{a}" for a in attrs]
    sids: dict[str, dict[str, tuple[int, ...]]] = {}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(sub.glob("*.index.json*")):
            variant = path.name.split(".")[0]
            sids[f"{sub.name}/{variant}"] = load_lcrec_index(path, id_offset=1)
    catalogue = Catalogue(
        item_ids=_sort_ids(item_ids),
        titles=titles,
        texts=texts,
        categories=categories,
        histories=histories,
        name=directory.name,
        published_sids=sids,
        text_fields=[f for f in text_fields if f in found],
    )
    logger.info(
        "Loaded %s: %d items (%d with text), %d users, %d interactions",
        catalogue.name,
        catalogue.num_items,
        len(texts),
        len(histories),
        catalogue.num_interactions,
    )
    return catalogue
