"""The item catalogue API of a `SemanticIDTokenizer`: item <-> SID, items <-> tokens, cold start.

A mixin over the tokenizer's `SIDTable` (`self._table`), its SID token lookup (`self._lookup`) and the optional
RQ-VAE (`self._rqvae`). Copied beside a saved tokenizer for `trust_remote_code=True`, so it imports only the
standard library, numpy and its siblings (relatively).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .constants import SID_LAYOUTS
from .item_ids import check_item_ids
from .library_hooks import get_hook
from .sid_table import SIDTable, as_code_matrix, as_int
from .sid_tokens import check_token_ids, parse_sid_string, scan_sid_text, token_id_rows
from .tokenizer_files import check_rqvae_sizes, read_json_object

logger = logging.getLogger(__name__)

__all__ = ["SIDCatalogueMixin"]

ON_INVALID = ("skip", "raise", "none", "keep_prefix")


#: The `tokenizer_config.json` key that holds the SID layout.
SID_LAYOUT_KEY = "sid_layout"


def check_sid_layout(layout: Any, source: str) -> str:
    """`layout` if it is one of `SID_LAYOUTS`, else a ValueError naming `source` and the choices."""
    if not isinstance(layout, str) or layout not in SID_LAYOUTS:
        raise ValueError(f"{source}: sid_layout must be one of {list(SID_LAYOUTS)}, got {layout!r}.")
    return layout


class SIDCatalogueMixin:
    """Catalogue methods of `SemanticIDTokenizer` (see its docstring for the attributes they read)."""

    # ---------------------------------------------------------------- the SID layout
    @property
    def sid_layout(self) -> str:
        """How one item is written: `"marked"` (`<|sid_start|>` + L code tokens + `<|sid_end|>`, the default) or
        `"bare"` (the L code tokens only).

        `items_to_text`, `encode_items`, `history_prompt`, `target_text` and `recommend` follow it. It is saved in
        `tokenizer_config.json` (key `sid_layout`); a tokenizer saved without the key is `"marked"`. LLM
        fine-tuning uses the markers to delimit SIDs inside text; a generator trained from scratch reads nothing
        but SIDs, where the level-specific code tokens already mark every boundary.
        """
        return check_sid_layout(
            self.init_kwargs.get(SID_LAYOUT_KEY, SID_LAYOUTS[0]),
            f"the {SID_LAYOUT_KEY} key of tokenizer_config.json",
        )

    @sid_layout.setter
    def sid_layout(self, layout: str) -> None:
        self.init_kwargs[SID_LAYOUT_KEY] = check_sid_layout(layout, "sid_layout")

    @property
    def tokens_per_item(self) -> int:
        """Tokens one item takes in the SID layout: `L + 2` marked, `L` bare."""
        return self.num_levels + (2 if self.sid_layout == "marked" else 0)

    @property
    def num_levels(self) -> int:
        """Codes per SID (dedup level included)."""
        return len(self._table.codebook_sizes)

    @property
    def codebook_sizes(self) -> list[int]:
        """Number of codes at each level."""
        return list(self._table.codebook_sizes)

    @property
    def num_items(self) -> int:
        """Number of items in the catalogue."""
        return len(self._table.item_ids)

    @property
    def item_ids(self) -> list[str]:
        """Item ids in table order."""
        return list(self._table.item_ids)

    @property
    def sid_codes(self) -> np.ndarray:
        """Read-only `(num_items, num_levels)` int64 codes in `item_ids` order."""
        return self._table.codes

    @property
    def num_semantic_levels(self) -> int:
        """Levels that come from the RQ-VAE (the rest is the dedup level)."""
        return self._table.num_semantic_levels

    @property
    def collision_stats(self) -> dict[str, Any]:
        """Collision statistics stored with the table (empty for a plain dict table)."""
        return dict(self._table.stats)

    @property
    def collision_strategy(self) -> str | None:
        """How colliding items were given unique SIDs (`"extra_level"`, `"reassign"`, or None if unknown)."""
        return self._table.collision_strategy

    @property
    def sid_token_ids(self) -> list[list[int]]:
        """Token ids of the SID tokens: `sid_token_ids[level][code]` (cached; do not modify)."""
        return self._sid_lookup.per_level_lists

    @property
    def all_sid_token_ids(self) -> list[int]:
        """Every SID token id plus the two markers, sorted (the rows `extend_model` initialises)."""
        ids = np.concatenate([*self._sid_lookup.per_level, [self.sid_start_token_id, self.sid_end_token_id]])
        return sorted(int(i) for i in ids)

    @property
    def sid_start_token_id(self) -> int:
        """Id of `<|sid_start|>`."""
        return self._sid_lookup.start

    @property
    def sid_end_token_id(self) -> int:
        """Id of `<|sid_end|>`."""
        return self._sid_lookup.end

    @property
    def sid_table(self) -> SIDTable:
        """The item table (`hf_semtok.SIDTable`) the tokenizer carries; treat it as read-only."""
        return self._table

    def sid_table_dict(self) -> dict[str, tuple[int, ...]]:
        """The catalogue as a plain `dict[item_id, tuple[int, ...]]`."""
        return {
            item: tuple(int(c) for c in row) for item, row in zip(self._table.item_ids, self._table.codes)
        }

    # ---------------------------------------------------------------- lookups
    def _row(self, item_id: str) -> int:
        if not isinstance(item_id, str):
            raise TypeError(
                f"Item ids are strings; got {type(item_id).__name__} {item_id!r}. Ids are never converted: pass "
                "str(...) yourself if an integer id is meant (tokenizer.item_ids lists them)."
            )
        try:
            return self._table.index[item_id]
        except KeyError:
            raise ValueError(
                f"Unknown item id {item_id!r}: not in the tokenizer's item table ({self.num_items} items). "
                "Give new items SIDs with add_items(...)."
            ) from None

    def _check_codes(self, codes: Sequence[int]) -> tuple[int, ...]:
        if isinstance(codes, (str, bytes, Mapping)) or not isinstance(codes, (Sequence, np.ndarray)):
            raise TypeError(f"A SID is a tuple of integer codes; got {type(codes).__name__} {codes!r}.")
        codes = tuple(as_int(c, f"Code {level} of the SID {tuple(codes)!r}") for level, c in enumerate(codes))
        sizes = self._table.codebook_sizes
        if len(codes) > len(sizes):
            raise ValueError(f"SID {codes} has {len(codes)} codes but the tokenizer has {len(sizes)} levels.")
        for level, (code, size) in enumerate(zip(codes, sizes)):
            if not 0 <= code < size:
                raise ValueError(f"Code {code} at level {level} of SID {codes} is out of range [0, {size}).")
        return codes

    def item_to_sid(self, item_id: str) -> tuple[int, ...]:
        """The SID (tuple of codes, one per level) of an item.

        Raises:
            TypeError: if `item_id` is not a string (ids are never converted).
            ValueError: if the item id is not in the table.
        """
        return tuple(int(c) for c in self._table.codes[self._row(item_id)])

    def sid_to_item(self, codes: Sequence[int] | str) -> str:
        """The item whose SID is `codes` (a tuple of ints, or the SID token string of one item).

        Raises:
            ValueError: for a malformed SID string, a wrong number of codes, a code out of range, or a SID that
                names no item.
        """
        if isinstance(codes, str):
            codes = parse_sid_string(codes)
        codes = self._check_codes(codes)
        if len(codes) != self.num_levels:
            raise ValueError(f"SID {codes} has {len(codes)} codes; a full SID has {self.num_levels}.")
        row = self._table.row_of_sid(codes)
        if row < 0:
            raise ValueError(f"No item has the SID {codes}.")
        return self._table.item_ids[row]

    def items_with_prefix(self, codes_prefix: Sequence[int]) -> list[str]:
        """Items whose SID starts with `codes_prefix` (table order). An empty prefix gives every item."""
        prefix = self._check_codes(codes_prefix)
        return [self._table.item_ids[int(r)] for r in self._table.rows_with_prefix(prefix)]

    def items_to_text(self, item_ids: str | Iterable[str]) -> str:
        """The SID token string of items in the tokenizer's `sid_layout` (no separator between items)."""
        item_ids = _item_list(item_ids, "items_to_text")
        table, marked = self._table, self.sid_layout == "marked"
        return "".join(table.sid_text(self._row(item), marked=marked) for item in item_ids)

    def codes_to_token_ids(self, codes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Token ids of SID codes: `(n, k)` codes (k <= num_levels), or one SID's `(k,)`, -> `(n, k)` ids.

        Raises:
            ValueError: codes that are not integers (floats, bools and digit strings are refused), input that is
                not 1-D or 2-D, or a code out of range.
        """
        return self._sid_lookup.codes_to_ids(codes)

    def encode_items(self, item_ids: str | Iterable[str]) -> list[int]:
        """Token ids of `items_to_text(item_ids)`: `[start, sid_0, ..., sid_{L-1}, end]` per item when the layout
        is marked, `[sid_0, ..., sid_{L-1}]` when it is bare (`tokens_per_item` ids per item)."""
        rows = [self._row(i) for i in _item_list(item_ids, "encode_items")]
        ids = self.codes_to_token_ids(self._table.codes[rows]) if rows else np.zeros((0, self.num_levels))
        if self.sid_layout == "bare":
            return np.asarray(ids, dtype=np.int64).reshape(-1).tolist()  # (n_items * L,)
        out = np.empty((len(rows), self.num_levels + 2), dtype=np.int64)  # (n_items, L + 2)
        out[:, 0] = self.sid_start_token_id
        out[:, 1:-1] = ids
        out[:, -1] = self.sid_end_token_id
        return out.reshape(-1).tolist()

    def token_ids_to_codes(self, token_ids: Any) -> tuple[Any, Any]:
        """Vectorised map token id -> (level, code); both -1 for tokens that are not SID tokens.

        Args:
            token_ids: Any-shaped ints: numpy array, list, or torch tensor (the result stays on its device).

        Returns:
            `(levels, codes)`, same shape and kind as the input.

        Raises:
            TypeError: ids that are not integers (floats, bools, strings, None).
            ValueError: an id too large for int64.
        """
        return self._sid_lookup.ids_to_codes(check_token_ids(token_ids))

    # ---------------------------------------------------------------- parsing generated output
    def parse_items(self, text_or_token_ids: Any, on_invalid: str = "skip") -> list[Any]:
        """Extract the items named in generated output.

        A SID is read as consecutive SID tokens of levels 0, 1, ..., L-1 (markers optional, whitespace between
        tokens of one SID ignored). Anything else is invalid: a SID cut short or with levels out of order, a
        code outside the codebook, or a well-formed SID that names no item.

        Args:
            text_or_token_ids: A string, a list / 1-D array / tensor of token ids, or a batch of them (list of
                strings, 2-D ids); a batch gives one list per row.
            on_invalid: `"skip"` drops invalid SIDs, `"raise"` raises `ValueError`, `"none"` puts `None` in their
                place, `"keep_prefix"` puts their codes (a tuple, possibly partial) in their place.

        Returns:
            Item ids in order of appearance (or a list of such lists for a batch).

        Raises:
            TypeError: input that is not text or integer token ids.
            ValueError: a bad `on_invalid`, 3-D input, or a negative token id.
        """
        if on_invalid not in ON_INVALID:
            raise ValueError(f"on_invalid must be one of {ON_INVALID}; got {on_invalid!r}.")
        x = text_or_token_ids
        if isinstance(x, str):
            return self._table.resolve(scan_sid_text(x), on_invalid)
        if isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x):
            return [self._table.resolve(scan_sid_text(t), on_invalid) for t in x]
        ids = token_id_rows(x)
        for row in [ids] if isinstance(ids, np.ndarray) else ids:
            if row.size and int(row.min()) < 0:
                raise ValueError(
                    f"parse_items: token ids are >= 0; got {int(row.min())}. Pass the ids the model generated "
                    "(drop padding markers such as -100 first)."
                )
        if isinstance(ids, np.ndarray) and ids.ndim == 1:
            return self._table.resolve(self._sid_lookup.scan_ids(ids), on_invalid)
        return [self._table.resolve(self._sid_lookup.scan_ids(row), on_invalid) for row in ids]

    # ---------------------------------------------------------------- cold start
    @property
    def has_rqvae(self) -> bool:
        """Whether the tokenizer carries an RQ-VAE (loaded or still on disk)."""
        return self._rqvae is not None or self._rqvae_files is not None

    @property
    def rqvae(self) -> Any:
        """The RQ-VAE carried by the tokenizer, or None. Built on first use from the bytes its files held when the
        tokenizer was loaded (so a later save into that folder cannot change it)."""
        if self._rqvae is None and self._rqvae_files is not None:
            data = getattr(self, "_rqvae_bytes", None)
            self._rqvae = _load_rqvae(*self._rqvae_files, table=self._table, data=data)
        return self._rqvae

    def _require_rqvae(self) -> Any:
        if self.rqvae is None:
            raise ValueError(
                "This tokenizer carries no RQ-VAE; build it with from_base(..., rqvae=model) to give new items "
                "SIDs from embeddings, or pass codes= to add_items."
            )
        return self.rqvae

    def sids_for_embeddings(self, embeddings: Any, **encode_kwargs: Any) -> np.ndarray:
        """Semantic codes the RQ-VAE gives `embeddings` (no dedup level; see `add_items` for full SIDs).

        Args:
            embeddings: `(n, dim)` array or `dict[modality, (n, dim_m)]`, as for `RQVAEModel.encode`.

        Returns:
            `(n, num_semantic_levels)` int64 codes.
        """
        codes = self._require_rqvae().encode(embeddings, **encode_kwargs)
        return as_code_matrix(codes, "RQ-VAE codes")

    def add_items(
        self, item_ids: Sequence[str], embeddings: Any = None, codes: Any = None
    ) -> dict[str, tuple[int, ...]]:
        """Give new items unique SIDs without retraining, under the table's collision policy.

        Args:
            item_ids: New item ids (not yet in the table): distinct non-empty strings (see `check_item_ids`).
            embeddings: Their embeddings, encoded by the carried RQ-VAE.
            codes: Or their semantic codes `(n, num_semantic_levels)` directly.

        Returns:
            `dict[item_id, sid]` for the new items. The table (and `save_pretrained`) includes them.

        Raises:
            TypeError: `item_ids` is not a sequence of strings (a set, a string, None or int ids).
            ValueError: An id already in the table, a duplicate or empty id, or codes of the wrong shape.
        """
        add_items_to_table = get_hook("add_items_to_table")
        item_ids = check_item_ids(item_ids, "add_items")
        blank = next((p for p, i in enumerate(item_ids) if i.isspace()), None)
        if blank is not None:  # as the table readers refuse them
            raise ValueError(
                f"add_items: item_ids[{blank}] is {item_ids[blank]!r}, only whitespace; give a real id."
            )
        known = [i for i in item_ids if i in self._table.index]
        if known:
            raise ValueError(f"add_items: {len(known)} item(s) already in the table, e.g. {known[:3]}.")
        if (embeddings is None) == (codes is None):
            raise ValueError("add_items needs exactly one of embeddings= or codes=.")
        distances = None
        if embeddings is not None:
            codes, distances = self._require_rqvae().encode(embeddings, return_distances=True)
            distances = _to_numpy(distances)
        given = "codes" if distances is None else "embeddings"
        codes = as_code_matrix(codes, f"add_items: {given}")
        if codes.shape[0] != len(item_ids):
            raise ValueError(
                f"add_items: {given} must have one row per new item ({len(item_ids)}); got {codes.shape[0]} rows."
            )
        table = add_items_to_table(self._table, item_ids, codes, distances=distances)
        new_table = SIDTable.from_any(table)
        if new_table.codebook_sizes != self._table.codebook_sizes:
            raise ValueError(
                f"add_items changed codebook_sizes {self._table.codebook_sizes} -> {new_table.codebook_sizes}; "
                "the tokenizer has no tokens for the new codes. Rebuild it with from_base()."
            )
        self._table = new_table
        return {i: self.item_to_sid(i) for i in item_ids}


def _item_list(item_ids: Any, source: str) -> list[str]:
    """One item id, or an ordered list of them (repeats allowed): never a set, a mapping or None."""
    return [item_ids] if isinstance(item_ids, str) else check_item_ids(item_ids, source, unique=False)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _holds(path: str, data: bytes) -> bool:
    """Whether the file `path` still holds exactly `data`."""
    try:
        if os.path.getsize(path) != len(data):
            return False
        with open(path, "rb") as handle:
            return handle.read() == data
    except OSError:
        return False


def _load_rqvae(
    config_file: str, weights_file: str, table: SIDTable | None = None, data: Sequence[bytes] | None = None
) -> Any:
    """Load and check the RQ-VAE saved beside a tokenizer (`RQVAEModel.from_files`); errors name the real file.

    With `data` (the two files' bytes, read when the tokenizer was loaded) the model is built from those bytes,
    not from whatever the files hold now (from private copies when a later save changed the files).
    """
    load_rqvae = get_hook("load_rqvae")
    unchanged = data is not None and _holds(config_file, data[0]) and _holds(weights_file, data[1])
    if data is None or unchanged:  # the files themselves, so that messages name them
        if table is not None:
            check_rqvae_sizes(
                read_json_object(config_file, "RQ-VAE config").get("codebook_sizes"), table, config_file
            )
        model = load_rqvae(config_file, weights_file)
        if data is None or (_holds(config_file, data[0]) and _holds(weights_file, data[1])):
            return model
    real = (str(config_file), str(weights_file))
    with tempfile.TemporaryDirectory(prefix="hf_semtok_rqvae-") as tmp:
        paths = [os.path.join(tmp, name) for name in ("config.json", "model.safetensors")]
        for path, content in zip(paths, data):
            with open(path, "wb") as handle:
                handle.write(content)
        try:
            if table is not None:
                sizes = read_json_object(paths[0], "RQ-VAE config").get("codebook_sizes")
                check_rqvae_sizes(sizes, table, real[0])
            return load_rqvae(*paths)
        except (ValueError, OSError) as err:  # name the tokenizer's files, not the private copies
            message = str(err).replace(paths[0], real[0]).replace(paths[1], real[1])
            if message == str(err):
                raise
            raise type(err)(message) from err
