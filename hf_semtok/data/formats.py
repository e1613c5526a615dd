"""Item catalogues and user histories: the standard generative-retrieval data formats.

Supported layouts (all file paths are arguments; nothing here knows where a dataset lives):

- LC-Rec / LETTER JSON (Zheng et al., ICDE 2024; Wang et al., CIKM 2024): `<Name>.inter.json` (`{user: [item,
  ...]}`, chronological, 0-based integer ids), `<Name>.item.json` (`{item: {title, description, brand,
  categories}}`) and published Semantic IDs `<Name>.index.json` (`{item: ["<a_12>", "<b_3>", ...]}`). Any file
  may be gzipped (`.json.gz`). Item and user ids stay as they are in the files (LC ids, 0-based, as strings).
- P5 / S3-Rec sequence text (Geng et al., RecSys 2022; Zhou et al., CIKM 2020): one line per user,
  `user item item ...`, chronological, plain or gzipped.
- Amazon 2014 5-core folders in the P5 layout (`sequential_data.txt[.gz]`, `items_text.jsonl.gz`,
  `item2attributes.json.gz`, `items.jsonl.gz`, `letter/` and `sids_*/` published SIDs): **item and user ids are
  the P5 ids** (1-based, as strings). Published SIDs keyed by LC ids (= P5 id - 1) are shifted onto P5 ids.

Ids are always strings, so a catalogue never mixes `1` and `"1"`.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Catalogue",
    "compose_item_text",
    "leave_one_out_split",
    "load_amazon2014",
    "load_catalogue",
    "load_lcrec_dataset",
    "load_lcrec_index",
    "load_sequence_text",
    "parse_sid_strings",
]

logger = logging.getLogger(__name__)

#: Text fields joined into `Catalogue.texts` by default: TIGER's recipe (title, brand, categories; Rajput et al.,
#: 2023) without price, which these datasets do not ship. Add "description" for longer texts.
DEFAULT_TEXT_FIELDS = ("title", "brand", "categories")
_SID_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")
_PLACEHOLDER = re.compile(r"^(brand|title)_\d+$")


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
    """

    item_ids: list[str]
    titles: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    histories: dict[str, list[str]] = field(default_factory=dict)
    name: str = "catalogue"
    published_sids: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.item_ids = [str(i) for i in self.item_ids]
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
    with _open_text(path) as handle:
        return json.load(handle)


def _find(directory: Path, stem: str) -> Path | None:
    """Return `directory/stem` or `directory/stem.gz`, whichever exists."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
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
    unknown = set(fields) - {"title", "brand", "categories", "description"}
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
    if not path.is_file():
        raise ValueError(f"SID index file {str(path)!r} does not exist.")
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
    if not directory.is_dir():
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
            text = compose_item_text(title, brand, cats, _clean(meta.get("description")), fields=text_fields)
            if text:
                texts[item] = text
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


def load_sequence_text(path: str | Path) -> dict[str, list[str]]:
    """Read P5 / S3-Rec sequence text: one line per user, `user item item ...` (plain or `.gz`).

    Args:
        path: The sequence file.

    Returns:
        User id -> chronological item ids, in file order. Ids are kept as written.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Sequence file {str(path)!r} does not exist.")
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
    item_ids: list[str] = [i for h in histories.values() for i in h]
    items_path = _find(directory, "items.jsonl")
    if items_path is not None:
        with _open_text(items_path) as handle:
            item_ids = [str(json.loads(line)["item_id"]) for line in handle if line.strip()] + item_ids
    text_path = _find(directory, "items_text.jsonl")
    attr_path = _find(directory, "item2attributes.json")
    if text_path is not None:
        with _open_text(text_path) as handle:
            for line in handle:
                if not line.strip():
                    continue
                row = json.loads(line)
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
    """
    if max_history is not None and max_history < 1:
        raise ValueError(f"max_history must be >= 1 or None, got {max_history}.")
    train: dict[str, list[str]] = {}
    valid: dict[str, tuple[list[str], str]] = {}
    test: dict[str, tuple[list[str], str]] = {}

    def cut(items: list[str]) -> list[str]:
        return items[-max_history:] if max_history is not None else items

    n_short = 0
    for user, items in histories.items():
        items = list(items)
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


def load_catalogue(
    dataset_format: str = "synthetic",
    data_dir: str | Path | None = None,
    name: str | None = None,
    text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    seed: int = 42,
    synthetic_items: int = 1000,
    synthetic_users: int = 2000,
) -> Catalogue:
    """Load a catalogue by format name: the one entry point the recipes use.

    Args:
        dataset_format: `"synthetic"` (the embedded default, no files needed), `"lcrec"` (LC-Rec / LETTER JSON
            folder) or `"amazon2014"` (P5-layout Amazon 2014 folder).
        data_dir: The dataset folder (not used for `"synthetic"`).
        name: LC-Rec dataset name (`"Scientific"`); found automatically when the folder holds one dataset.
        text_fields: Item fields joined into `Catalogue.texts`.
        seed: Seed of the synthetic catalogue.
        synthetic_items: Items of the synthetic catalogue.
        synthetic_users: Users of the synthetic catalogue.

    Returns:
        A `Catalogue` (a `SyntheticCatalogue`, with embeddings, for `"synthetic"`).
    """
    if dataset_format == "synthetic":
        from hf_semtok.data.synthetic import make_synthetic_catalogue

        return make_synthetic_catalogue(n_items=synthetic_items, n_users=synthetic_users, seed=seed)
    if dataset_format not in ("lcrec", "amazon2014"):
        raise ValueError(f"Unknown dataset_format {dataset_format!r}; use synthetic, lcrec or amazon2014.")
    if data_dir is None:
        raise ValueError(
            f"dataset_format={dataset_format!r} needs data_dir, the folder holding the dataset files."
        )
    if dataset_format == "lcrec":
        return load_lcrec_dataset(data_dir, name=name, text_fields=text_fields)
    return load_amazon2014(data_dir, text_fields=text_fields)
