"""`TransitionPrior`: item-to-item transition counts, the training-free recommender users try first, and a
collaborative prior that `recommend()` fuses into constrained beam search (`TransitionPriorLogitsProcessor`).

Counts: over every training sequence, item `j` following item `i` within `window` steps adds `1 / distance` to
`T(i -> j)`. Scores of a history `[..., i_2, i_1]` (`i_1` the newest):
`score(j) = sum_{k=1..num_history} decay^(k-1) * T(i_k -> j)`. The history's own items score 0 by default (a
5-core catalogue rarely repeats an item). This is the item-to-item "people who bought X next bought Y" rule that
session-based recommendation compares against (e.g. the "SR" / "AR" rules of Ludewig & Jannach, UMUAI 2018,
arXiv 1803.09587); `benchmarks/transition.py` measures it on the Amazon protocol.

The counts are a compressed sparse row matrix held in numpy arrays (no scipy), saved as
`transition_prior.safetensors` plus `transition_prior.json` (settings and item ids); no pickle.

```python
train, valid, test = leave_one_out_split(catalogue.histories)
prior = TransitionPrior.fit(train, item_ids=tokenizer.item_ids, window=10, num_history=20, decay=0.5)
prior.recommend(histories, k=10)  # the heuristic alone
recommend(model, tokenizer, histories, prior=prior, prior_weight=1.0)  # fused into constrained beam search
```
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_semtok.io_utils import register_file_names, save_file_set

__all__ = ["TransitionPrior", "TRANSITION_PRIOR_CONFIG_FILE", "TRANSITION_PRIOR_WEIGHTS_FILE"]

logger = logging.getLogger(__name__)

#: Files of a saved `TransitionPrior`: its settings and item ids, and its count arrays.
TRANSITION_PRIOR_CONFIG_FILE = "transition_prior.json"
TRANSITION_PRIOR_WEIGHTS_FILE = "transition_prior.safetensors"
_FORMAT_VERSION = 1
_SOURCE = "TransitionPrior"
_FILE_SET_KIND = "transition_prior"
# A prior's save writes these two names, so only these may be deleted as obsolete.
register_file_names(
    _FILE_SET_KIND,
    lambda prefix: lambda name: name in (TRANSITION_PRIOR_CONFIG_FILE, TRANSITION_PRIOR_WEIGHTS_FILE),
)
#: The largest settings file (with the item ids) a load reads: a 10M-item catalogue's ids take a few hundred MB, so a
#: planted huge or sparse file is refused before it is read into memory. (The counts are memory-mapped.)
_MAX_CONFIG_BYTES = 2 << 30
# Scores are rounded to this many significant bits before ranking, so sums that are equal up to float rounding
# (1/2 + 1/3 against 5/6) tie and the popularity rule decides, whatever the order of summation.
_TIE_BITS = 40


def _round_for_ties(x: np.ndarray) -> np.ndarray:
    """`x` with its mantissa rounded to `_TIE_BITS` bits (relative rounding: small scores keep their order)."""
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(mantissa * 2.0**_TIE_BITS) / 2.0**_TIE_BITS, exponent)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{_SOURCE}: {name} must be an int >= {minimum}; got {type(value).__name__} {value!r}."
        )
    if value < minimum:
        raise ValueError(f"{_SOURCE}: {name} must be >= {minimum}; got {value}.")
    return int(value)


def _check_decay(decay: Any) -> float:
    if isinstance(decay, (bool, np.bool_)) or not isinstance(decay, numbers.Real) or not math.isfinite(decay):
        raise TypeError(f"{_SOURCE}: decay must be a finite number in [0, 1]; got {decay!r}.")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(
            f"{_SOURCE}: decay must lie in [0, 1] (1: every history item counts alike); got {decay}."
        )
    return float(decay)


def _as_sequences(sequences: Any) -> list[Sequence[str]]:
    if isinstance(sequences, Mapping):
        sequences = [sequences[user] for user in sorted(sequences, key=str)]
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Iterable):
        raise TypeError(
            f"{_SOURCE}: sequences must be a mapping user -> item ids or a list of item id lists; got "
            f"{type(sequences).__name__}."
        )
    out = []
    for n, seq in enumerate(sequences):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
            raise TypeError(
                f"{_SOURCE}: sequence {n} must be a list of item ids; got {type(seq).__name__} {str(seq)[:40]!r}."
            )
        out.append(seq)
    return out


def _check_ids(ids: Sequence[Any], what: str) -> None:
    """Item ids are strings, compared as written: `1` and `"1"` are never taken for one another."""
    if isinstance(ids, (set, frozenset, str, bytes, Mapping)) or ids is None:
        raise TypeError(
            f"{_SOURCE}: {what} must be a list of item ids in order; got {type(ids).__name__} (a set has no order, "
            "a string would be read as characters: pass a list)."
        )
    for position, item in enumerate(ids):
        if not isinstance(item, str):
            raise TypeError(
                f"{_SOURCE}: {what}[{position}] is {type(item).__name__} {item!r}; item ids are strings (write "
                f"{str(item)!r} if that is the item's id)."
            )


class TransitionPrior:
    """Item-to-item transition counts and the scores they give a history (see the module docstring).

    Build one with [`TransitionPrior.fit`] from users' training sequences, or load one with
    [`TransitionPrior.from_pretrained`]. `window` is fixed by the counts; `num_history`, `decay` and
    `exclude_history` only change how a history is scored ([`with_settings`] returns a copy with others).

    Args:
        item_ids: The catalogue's item ids; column `j` of every score vector is `item_ids[j]`. Unique strings.
        indptr: `(n_items + 1,)` int64 row pointers of the counts `T` (compressed sparse rows).
        indices: `(nnz,)` int64 column of each stored count, sorted within a row.
        data: `(nnz,)` float64 counts, each > 0.
        popularity: `(n_items,)` int64 occurrences of each item in the fitted sequences (the tie rule and the
            padding of [`recommend`]).
        window: Steps ahead that were counted.
        num_history: Newest history items that are scored.
        decay: Weight factor per step back in the history (`decay^(k-1)` for the `k`-th newest item).
        exclude_history: Give the history's own items score 0.

    Raises:
        TypeError, ValueError: Inconsistent arrays or settings (the message names the field).
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        popularity: np.ndarray,
        window: int,
        num_history: int = 5,
        decay: float = 0.5,
        exclude_history: bool = True,
    ) -> None:
        self.item_ids = list(item_ids)
        _check_ids(self.item_ids, "item_ids")
        self.index = {item: j for j, item in enumerate(self.item_ids)}
        if len(self.index) != len(self.item_ids) or not self.item_ids:
            raise ValueError(
                f"{_SOURCE}: item_ids must be non-empty and unique; got {len(self.item_ids)} ids."
            )
        n = len(self.item_ids)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.data = np.asarray(data, dtype=np.float64)
        self.popularity = np.asarray(popularity, dtype=np.int64)
        if self.indptr.shape != (n + 1,) or self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0):
            raise ValueError(
                f"{_SOURCE}: indptr must be ({n + 1},) non-decreasing from 0; got {self.indptr.shape}."
            )
        nnz = int(self.indptr[-1])
        if self.indices.shape != (nnz,) or self.data.shape != (nnz,):
            raise ValueError(
                f"{_SOURCE}: indices and data must hold indptr[-1] = {nnz} entries; got {self.indices.shape} and "
                f"{self.data.shape}."
            )
        if nnz and (self.indices.min() < 0 or self.indices.max() >= n or not np.all(self.data > 0)):
            raise ValueError(f"{_SOURCE}: counts must have columns in [0, {n}) and positive values.")
        if self.popularity.shape != (n,) or (n and self.popularity.min() < 0):
            raise ValueError(
                f"{_SOURCE}: popularity must be ({n},) counts >= 0; got {self.popularity.shape}."
            )
        self.window = _check_int("window", window, 1)
        self.num_history = _check_int("num_history", num_history, 1)
        self.decay = _check_decay(decay)
        if not isinstance(exclude_history, (bool, np.bool_)):
            raise TypeError(f"{_SOURCE}: exclude_history must be True or False; got {exclude_history!r}.")
        self.exclude_history = bool(exclude_history)
        # The popularity order (most frequent first, then catalogue order) and each item's place in it.
        self.popularity_order = np.lexsort((np.arange(n), -self.popularity))
        self.popularity_rank = np.empty(n, dtype=np.int64)
        self.popularity_rank[self.popularity_order] = np.arange(n)

    # ------------------------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        sequences: Mapping[Any, Sequence[str]] | Iterable[Sequence[str]],
        item_ids: Sequence[str] | None = None,
        window: int = 3,
        num_history: int = 5,
        decay: float = 0.5,
        exclude_history: bool = True,
    ) -> TransitionPrior:
        """Count the transitions of users' chronological training sequences.

        Args:
            sequences: User -> item ids, or a list of item id lists, oldest first. Pass training data only
                (e.g. the train part of `leave_one_out_split`), so that no held-out target is counted.
            item_ids: The catalogue (columns of the scores); default: the items of `sequences` in order of
                first appearance. Items of the catalogue that no sequence holds get no counts.
            window: Item `j` at most `window` steps after item `i` counts `1 / distance` towards `T(i -> j)`.
            num_history: Newest history items scored.
            decay: Weight factor per step back in the history.
            exclude_history: Give the history's own items score 0.

        Returns:
            A `TransitionPrior`.

        Raises:
            TypeError: Sequences that are not lists of item ids, or settings of the wrong type.
            ValueError: An item missing from `item_ids`, or a setting out of range.
        """
        window = _check_int("window", window, 1)
        seqs = _as_sequences(sequences)
        for user, seq in enumerate(seqs):
            _check_ids(seq, f"sequence {user}")
        if item_ids is None:
            item_ids = list(dict.fromkeys(i for seq in seqs for i in seq))
        _check_ids(item_ids, "item_ids")
        index = {item: j for j, item in enumerate(item_ids)}
        n = len(index)
        if n == 0:
            raise ValueError(f"{_SOURCE}.fit: no items; pass non-empty sequences or item_ids.")
        flat, owner = [], []
        for user, seq in enumerate(seqs):
            try:
                flat.extend(index[i] for i in seq)
            except KeyError as err:
                raise ValueError(
                    f"{_SOURCE}.fit: sequence {user} holds item {err.args[0]!r}, which is not in item_ids; add it "
                    "to the catalogue or drop it."
                ) from None
            owner.extend([user] * len(seq))
        flat_items = np.asarray(flat, dtype=np.int64)
        owners = np.asarray(owner, dtype=np.int64)
        popularity = np.bincount(flat_items, minlength=n).astype(np.int64)
        keys, weights = [], []
        longest = max((len(seq) for seq in seqs), default=0)
        for distance in range(
            1, min(window, longest) + 1
        ):  # no pair lies further apart than the longest sequence
            same = owners[:-distance] == owners[distance:]  # pairs inside one user's sequence
            keys.append(flat_items[:-distance][same] * n + flat_items[distance:][same])
            weights.append(np.full(int(same.sum()), 1.0 / distance))
        key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        weight = np.concatenate(weights) if weights else np.zeros(0)
        unique, inverse = np.unique(key, return_inverse=True)  # sorted (row, column) pairs
        data = np.bincount(inverse, weights=weight, minlength=len(unique))
        rows, columns = np.divmod(unique, n)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
        logger.info(
            "TransitionPrior.fit: %d sequences, %d items, %d item pairs (window %d)",
            len(seqs),
            n,
            len(unique),
            window,
        )
        return cls(item_ids, indptr, columns, data, popularity, window, num_history, decay, exclude_history)

    def with_settings(
        self,
        num_history: int | None = None,
        decay: float | None = None,
        exclude_history: bool | None = None,
    ) -> TransitionPrior:
        """A copy with other scoring settings, sharing the counts (`window` is part of the counts: refit for it)."""
        return TransitionPrior(
            self.item_ids,
            self.indptr,
            self.indices,
            self.data,
            self.popularity,
            self.window,
            self.num_history if num_history is None else num_history,
            self.decay if decay is None else decay,
            self.exclude_history if exclude_history is None else exclude_history,
        )

    @property
    def num_items(self) -> int:
        """Items in the catalogue (columns of the scores)."""
        return len(self.item_ids)

    def settings(self) -> dict[str, Any]:
        """`window`, `num_history`, `decay` and `exclude_history` as a dict."""
        return {
            "window": self.window,
            "num_history": self.num_history,
            "decay": self.decay,
            "exclude_history": self.exclude_history,
        }

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"TransitionPrior({self.num_items} items, {int(self.indptr[-1])} pairs, {settings})"

    # ------------------------------------------------------------------------------------------------------
    # Scores and the heuristic ranking
    # ------------------------------------------------------------------------------------------------------
    def _history_indices(self, histories: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
            raise TypeError(
                f"{_SOURCE}: histories must be a list of item id lists; got {type(histories).__name__}."
            )
        out = []
        for user, history in enumerate(histories):
            if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
                raise TypeError(
                    f"{_SOURCE}: histories[{user}] must be a list of item ids; got {type(history).__name__}."
                )
            _check_ids(history, f"histories[{user}]")
            try:
                out.append(np.fromiter((self.index[i] for i in history), dtype=np.int64, count=len(history)))
            except KeyError as err:
                raise ValueError(
                    f"{_SOURCE}: histories[{user}] holds item {err.args[0]!r}, unknown to the prior; fit it on a "
                    "catalogue (item_ids=...) that has the item."
                ) from None
        return out

    def _sparse_scores(self, rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scores > 0 of `rows` (history item indices) as `(users, items, values)`, sorted by user then item."""
        n = self.num_items
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
        newest = [row[::-1][: self.num_history] for row in rows]  # i_1, i_2, ... per user
        if not newest or not sum(map(len, newest)):
            return empty
        user_of = np.repeat(np.arange(len(rows), dtype=np.int64), [len(r) for r in newest])
        item_of = np.concatenate(newest)
        weight_of = np.concatenate(
            [self.decay ** np.arange(len(r), dtype=np.float64) for r in newest]
        )  # 0**0 = 1
        starts = self.indptr[item_of]
        lengths = self.indptr[item_of + 1] - starts  # stored transitions of each scored history item
        total = int(lengths.sum())
        if not total:
            return empty
        # positions of every stored entry of those rows, in one vector: start of its row + rank in the row
        positions = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
        keys = np.repeat(user_of, lengths) * n + self.indices[positions]  # (total,) user * n + item
        # Summed in a dense (users * n) vector: bincount is linear in the transitions gathered, where sorting the
        # keys is not (a long window gathers millions); only the touched entries are read back.
        dense = np.bincount(
            keys, weights=self.data[positions] * np.repeat(weight_of, lengths), minlength=len(rows) * n
        )
        touched = np.zeros(len(dense), dtype=bool)
        touched[keys] = True
        if self.exclude_history:
            touched[np.concatenate([user * n + row for user, row in enumerate(rows)])] = False
        flat = np.flatnonzero(touched)  # sorted by user, then item
        users, items = np.divmod(flat, n)
        return users, items, dense[flat]

    def batch_scores(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores of every item for each history (see the module docstring).

        Args:
            histories: Per user, item ids oldest first (an empty history scores nothing).

        Returns:
            `(len(histories), num_items)` float64 scores >= 0 (0: no transition reaches the item).

        Raises:
            TypeError, ValueError: A history that is not a list of known item ids.
        """
        rows = self._history_indices(histories)
        out = np.zeros((len(rows), self.num_items), dtype=np.float64)
        users, items, values = self._sparse_scores(rows)
        out[users, items] = values
        return out

    def scores(self, history: Sequence[str]) -> np.ndarray:
        """Scores of every item for one history: `(num_items,)` float64 (see [`batch_scores`])."""
        return self.batch_scores([history])[0]

    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, batch_size: int | None = None
    ) -> list[list[str]]:
        """The transition heuristic's top `k` items per history.

        Items are ranked by score; ties (equal up to float rounding) go to the more popular item (fitted counts),
        then to catalogue order. Items that score 0 are never ranked above one that scores; when fewer than `k`
        items score, the list is filled from the popularity order. With `exclude_history`, history items are
        never returned.

        Args:
            histories: Per user, item ids oldest first.
            k: Items per user.
            batch_size: Histories scored at once (memory: `batch_size * num_items` floats; default: about 8M
                floats).

        Returns:
            Per history, `k` item ids (fewer only if the catalogue minus the history is smaller), best first.
        """
        k = _check_int("k", k, 1)
        if batch_size is None:
            batch_size = max(1, 2**23 // self.num_items)
        batch_size = _check_int("batch_size", batch_size, 1)
        rows = self._history_indices(histories)
        popular = self.popularity_order.tolist()
        ranked: list[list[str]] = []
        for first in range(0, len(rows), batch_size):
            chunk = rows[first : first + batch_size]
            users, items, values = self._sparse_scores(chunk)
            order = np.lexsort((self.popularity_rank[items], -_round_for_ties(values), users))
            users, items = users[order], items[order]
            bounds = np.searchsorted(users, np.arange(len(chunk) + 1))
            for user, row in enumerate(chunk):
                top = items[bounds[user] : min(bounds[user] + k, bounds[user + 1])].tolist()
                if len(top) < k:
                    skip = set(top) | (set(row.tolist()) if self.exclude_history else set())
                    for item in popular:
                        if len(top) == k:
                            break
                        if item not in skip:
                            top.append(item)
                ranked.append([self.item_ids[j] for j in top])
        return ranked

    # ------------------------------------------------------------------------------------------------------
    # Save and load (safetensors + JSON)
    # ------------------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `transition_prior.json` (settings, item ids) and `transition_prior.safetensors` (counts) into
        `save_directory`, atomically (other files there are left alone)."""
        from safetensors.numpy import save_file

        config = {"format_version": _FORMAT_VERSION, **self.settings(), "item_ids": self.item_ids}
        with save_file_set(save_directory, _FILE_SET_KIND) as staging:
            (staging / TRANSITION_PRIOR_CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")
            save_file(
                {
                    "indptr": self.indptr,
                    "indices": self.indices,
                    "data": self.data,
                    "popularity": self.popularity,
                },
                str(staging / TRANSITION_PRIOR_WEIGHTS_FILE),
            )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> TransitionPrior:
        """Load a prior written by [`save_pretrained`] (reads only).

        Raises:
            FileNotFoundError: A file is missing.
            ValueError: A file of another format version, or arrays that do not fit the item ids.
        """
        from safetensors.numpy import load_file

        from hf_semtok.tokenizer.safe_paths import check_regular_files, read_regular

        folder = Path(directory)
        config_path, weights_path = (
            folder / TRANSITION_PRIOR_CONFIG_FILE,
            folder / TRANSITION_PRIOR_WEIGHTS_FILE,
        )
        for path in (config_path, weights_path):
            if not path.exists():
                raise FileNotFoundError(
                    f"{_SOURCE}.from_pretrained: {path} not found; save a prior there with prior.save_pretrained()."
                )
        check_regular_files(folder, "prior", [TRANSITION_PRIOR_WEIGHTS_FILE])
        raw = [read_regular(config_path, _MAX_CONFIG_BYTES, "prior file")]
        try:
            config = json.loads(raw[0].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ValueError(
                f"{config_path}: not a prior's JSON file ({err}); save the prior again."
            ) from None
        if not isinstance(config, dict) or config.get("format_version") != _FORMAT_VERSION:
            version = config.get("format_version") if isinstance(config, dict) else None
            raise ValueError(
                f"{config_path}: format_version {version!r}, this library reads "
                f"{_FORMAT_VERSION}; refit and save the prior with this version."
            )
        missing_keys = {"item_ids", "window", "num_history", "decay", "exclude_history"} - set(config)
        if missing_keys:
            raise ValueError(f"{config_path}: missing fields {sorted(missing_keys)}; save the prior again.")
        try:
            arrays = load_file(str(weights_path))  # memory-mapped: a huge or sparse file is not read whole
        except Exception as err:  # safetensors raises its own error type for truncated or corrupt files
            raise ValueError(
                f"{weights_path}: not a readable safetensors file ({type(err).__name__}); save the prior again."
            ) from None
        missing = {"indptr", "indices", "data", "popularity"} - set(arrays)
        if missing:
            raise ValueError(f"{weights_path}: missing tensors {sorted(missing)}; save the prior again.")
        return cls(
            config["item_ids"],
            arrays["indptr"],
            arrays["indices"],
            arrays["data"],
            arrays["popularity"],
            config["window"],
            config["num_history"],
            config["decay"],
            config["exclude_history"],
        )
