"""LC-Rec / LETTER JSON (Zheng et al., ICDE 2024; Wang et al., CIKM 2024).

`<Name>.inter.json` (`{user: [item, ...]}`, chronological, 0-based integer ids), `<Name>.item.json` (`{item:
{title, description, brand, categories}}`) and published Semantic IDs `<Name>.index.json` (`{item: ["<a_12>",
"<b_3>", ...]}`). Any file may be gzipped (`.json.gz`). Item and user ids stay as they are in the files.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from hf_semtok.data.catalogue import (
    DEFAULT_TEXT_FIELDS,
    Catalogue,
    _clean,
    _fields_with_values,
    _find,
    _read_json,
    _sort_ids,
    compose_item_text,
)
from hf_semtok.io_utils import require_input_file

logger = logging.getLogger(__name__)


_SID_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


def parse_sid_strings(tokens: Sequence[str], item: str = "?") -> tuple[int, ...]:
    """Parse LC-Rec SID tokens `["<a_12>", "<b_3>", ...]` into `(12, 3, ...)`.

    Args:
        tokens: One token per level; the letters must run a, b, c, ... in order.
        item: Item id, for the error message.

    Returns:
        The codes as a tuple of ints.
    """
    codes = []
    for level, token in enumerate(tokens):
        match = _SID_TOKEN.match(str(token))
        if match is None or ord(match.group(1)) - ord("a") != level:
            raise ValueError(
                f"Item {item!r}: cannot parse SID token {token!r} at level {level}; expected "
                f"'<{chr(ord('a') + level)}_N>' (LC-Rec index format)."
            )
        codes.append(int(match.group(2)))
    return tuple(codes)


def load_lcrec_index(path: str | Path, id_offset: int = 0) -> dict[str, tuple[int, ...]]:
    """Read published Semantic IDs in the LC-Rec / LETTER `*.index.json[.gz]` format.

    Args:
        path: The index file, `{item: ["<a_12>", "<b_3>", ...]}`.
        id_offset: Added to integer item ids, e.g. `1` to map LC ids (0-based) onto P5 ids (1-based).

    Returns:
        Item id (string) -> tuple of codes, one per level.
    """
    path = Path(path)
    require_input_file(path, "SID index file", "name the .index.json file")
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{str(path)!r} is not an LC-Rec index: expected a JSON object {{item: [tokens]}}.")
    out = {}
    for item, tokens in raw.items():
        if id_offset:
            try:
                key = str(int(item) + id_offset)
            except ValueError:
                raise ValueError(
                    f"{str(path)!r}: item id {item!r} is not an integer, so id_offset={id_offset} cannot be added; "
                    "use id_offset=0 for string ids."
                ) from None
        else:
            key = str(item)
        if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)):
            raise ValueError(
                f"{str(path)!r}: item {item!r} has {type(tokens).__name__} {tokens!r:.60}; expected a list of SID "
                'tokens, one per level, e.g. ["<a_12>", "<b_3>", "<c_7>"].'
            )
        out[key] = parse_sid_strings(tokens, item=str(item))
    lengths = {len(c) for c in out.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"{str(path)!r} mixes SID lengths {sorted(lengths)}; every item needs the same levels."
        )
    return out


def _lcrec_name(directory: Path, name: str | None) -> str:
    if name is not None:
        return name
    found = sorted({p.name.split(".inter.json")[0] for p in directory.glob("*.inter.json*")})
    if len(found) != 1:
        raise ValueError(
            f"Found {len(found)} '<Name>.inter.json[.gz]' files in {str(directory)!r} ({found}); pass name= to choose."
        )
    return found[0]


def _published_sids(directory: Path, name: str, id_offset: int) -> dict[str, dict[str, tuple[int, ...]]]:
    """Collect `<Name>.index.json` and `<variant>.<Name>.index.json` files in `directory` and its sub-folders."""
    sets: dict[str, dict[str, tuple[int, ...]]] = {}
    patterns = [
        f"{name}.index.json",
        f"{name}.index.json.gz",
        f"*.{name}.index.json",
        f"*.{name}.index.json.gz",
    ]
    paths = sorted({p for pat in patterns for sub in ("", "*/") for p in directory.glob(sub + pat)})
    for path in paths:
        stem = path.name.split(f"{name}.index.json")[0].rstrip(".")
        rel = path.parent.relative_to(directory)
        label = "/".join(x for x in (str(rel) if str(rel) != "." else "", stem or "index") if x)
        sets[label] = load_lcrec_index(path, id_offset=id_offset)
    return sets


def load_lcrec_dataset(
    directory: str | Path,
    name: str | None = None,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    load_sids: bool = True,
) -> Catalogue:
    """Load an LC-Rec / LETTER dataset folder.

    Args:
        directory: Folder holding `<Name>.inter.json[.gz]`, optionally `<Name>.item.json[.gz]` and published SIDs
            (`<Name>.index.json[.gz]`, or `<variant>.<Name>.index.json[.gz]` in the folder or a sub-folder).
        name: Dataset name (`"Scientific"`); found from the single `*.inter.json` file when omitted.
        text_fields: Item fields joined into `Catalogue.texts` (see `compose_item_text`).
        load_sids: Read the published SID files into `Catalogue.published_sids`, keyed by variant
            (e.g. `"index"` or `"sids_collisiongenrec/rqvae_native"`).

    Returns:
        A `Catalogue` with LC ids (0-based, as strings) for items and users. Without an item file, the items are
        those of the histories and the SID files.
    """
    directory = Path(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"Dataset folder {str(directory)!r} does not exist.")
    name = _lcrec_name(directory, name)
    inter_path = _find(directory, f"{name}.inter.json")
    if inter_path is None:
        raise ValueError(f"No {name}.inter.json[.gz] in {str(directory)!r}.")
    raw_hist = _read_json(inter_path)
    histories = {str(u): [str(i) for i in items] for u, items in raw_hist.items()}
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    categories: dict[str, list[str]] = {}
    found: set[str] = set()  # text fields that some item has
    item_ids: list[str] = []
    item_path = _find(directory, f"{name}.item.json")
    if item_path is not None:
        for item, meta in _read_json(item_path).items():
            item = str(item)
            item_ids.append(item)
            title = _clean(meta.get("title"))
            brand = _clean(meta.get("brand"))
            raw_cats = meta.get("categories") or []
            if isinstance(raw_cats, str):  # "A,B, with comma,C": a comma followed by a space is inside a name
                raw_cats = re.split(r",(?! )", raw_cats)
            cats = [c for c in (_clean(x) for x in raw_cats) if c]
            if title:
                titles[item] = title
            if cats:
                categories[item] = cats
            description = _clean(meta.get("description"))
            text = compose_item_text(title, brand, cats, description, fields=text_fields)
            if text:
                texts[item] = text
                found |= _fields_with_values(title, brand, cats, description)
    sids = _published_sids(directory, name, id_offset=0) if load_sids else {}
    if not item_ids:
        item_ids = [i for h in histories.values() for i in h] + [i for s in sids.values() for i in s]
    catalogue = Catalogue(
        item_ids=_sort_ids(item_ids),
        titles=titles,
        texts=texts,
        categories=categories,
        histories=histories,
        name=name,
        published_sids=sids,
        text_fields=[f for f in text_fields if f in found],
    )
    logger.info(
        "Loaded %s: %d items, %d users, %d interactions, %d published SID sets",
        name,
        catalogue.num_items,
        len(histories),
        catalogue.num_interactions,
        len(sids),
    )
    return catalogue
