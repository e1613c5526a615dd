"""SID grammars for inference servers: the catalogue as a Lark (llguidance) or EBNF (xgrammar) grammar.

A server that takes a grammar per request (vLLM's `StructuredOutputsParams(grammar=...)`, SGLang's `ebnf`,
TensorRT-LLM's `GuidedDecodingParams(grammar=...)`) then only lets the model write SIDs of real items, with no
hf_semtok code in the server.

The grammar is the catalogue's prefix trie with equal subtrees shared (a minimal DAG, built bottom-up): one rule
per distinct subtree, whose alternatives group the codes that lead to the same child rule into one token set. Its
size follows the distinct prefixes of the catalogue (at most one reference per prefix, plus one token id per
distinct (prefix, code) edge), never items x levels, and a level where every prefix allows the same codes (a
complete codebook, a dedup level that is always 0) collapses to a single rule.

SID tokens are matched by token id in both dialects, so nothing else can spell them out of base-vocabulary pieces:
llguidance's Lark takes token-id terminals (`<[302-305]>`, negated `<[^300-309]>`), and xgrammar's EBNF its
`Token(302, 303)` / `ExcludeToken(...)` elements. `token_match="text"` (xgrammar only) writes the SID tokens as
string literals instead, for xgrammar releases without token elements; a base vocabulary that can spell
`<|sid_0_3|>` out of pieces then may (the item written is the same string).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from hf_semtok.tokenizer.constants import SID_END_TOKEN, SID_START_TOKEN, SID_TOKEN_TEMPLATE

__all__ = ["GRAMMAR_DIALECTS", "GRAMMAR_MODES", "export_grammar", "sid_grammar"]

logger = logging.getLogger(__name__)

#: Grammar languages `export_grammar` writes: `"llguidance"` (Lark with token-id terminals; vLLM's `guidance`
#: back-end, llguidance directly) and `"xgrammar"` (EBNF with `Token(...)` elements; vLLM's and SGLang's default
#: back-end, TensorRT-LLM).
GRAMMAR_DIALECTS = ("llguidance", "xgrammar")
#: `"sid"`: the completion is one SID (then EOS); `"free"`: text in which every `<|sid_start|>` opens a SID of a
#: real item, closed by `<|sid_end|>` (as `SIDLogitsProcessor(mode="free")`).
GRAMMAR_MODES = ("sid", "free")

_RULE_PREFIX = "s"


def _ranges(ids: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct ids as inclusive `(first, last)` runs of consecutive ids."""
    if len(ids) == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1)
    firsts = np.concatenate([ids[:1], ids[breaks + 1]])
    lasts = np.concatenate([ids[breaks], ids[-1:]])
    return list(zip(firsts.tolist(), lasts.tolist()))


class _Writer:
    """How one dialect writes a token set, a negated token set, a rule and the start rule."""

    def __init__(self, dialect: str, token_match: str, token_text: dict[int, str]) -> None:
        self.dialect = dialect
        self.token_match = token_match
        self.token_text = token_text
        self.start_name = "start" if dialect == "llguidance" else "root"
        self.assign = ": " if dialect == "llguidance" else " ::= "

    def tokens(self, ids: np.ndarray) -> str:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if self.token_match == "text":
            literals = [f'"{self.token_text[int(t)]}"' for t in ids]
            return literals[0] if len(literals) == 1 else "(" + " | ".join(literals) + ")"
        if self.dialect == "llguidance":
            runs = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in _ranges(ids))
            return f"<[{runs}]>"
        return "Token(" + ", ".join(map(str, ids.tolist())) + ")"

    def tokens_except(self, ids: np.ndarray) -> str:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if self.dialect == "llguidance":
            runs = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in _ranges(ids))
            return f"<[^{runs}]>"
        return "ExcludeToken(" + ", ".join(map(str, ids.tolist())) + ")"

    def rule(self, name: str, alternatives: list[str]) -> str:
        return name + self.assign + " | ".join(alternatives)


def _unique_rows(codes: np.ndarray) -> np.ndarray:
    """The distinct rows of `codes` in lexicographic order."""
    order = np.lexsort(codes.T[::-1])
    rows = codes[order]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    return rows[keep]


def _trie_rules(
    codes: np.ndarray, sid_token_ids: Sequence[Sequence[int]], writer: _Writer
) -> tuple[list[str], str, int]:
    """The trie of `codes` as shared rules, bottom-up.

    Returns:
        `(rules, root_name, num_prefixes)`: the rule lines (deepest first), the name of the rule for the whole SID,
        and the number of distinct prefixes of lengths 0 .. L-1 (what the grammar's size follows).
    """
    num_levels = codes.shape[1]
    rows = _unique_rows(codes)
    child_class = np.zeros(len(rows), dtype=np.int64)  # 0: the end of the SID (no rule)
    rules: list[str] = []
    num_prefixes = 0
    for depth in range(num_levels - 1, -1, -1):
        # Entries: the distinct prefixes of length depth + 1 (sorted), each with the class of what follows it.
        level_codes = rows[:, depth]
        starts = np.ones(len(rows), dtype=bool)
        if depth:
            starts[1:] = (rows[1:, :depth] != rows[:-1, :depth]).any(axis=1)
        else:
            starts[1:] = False
        first = np.flatnonzero(starts)  # (groups,) first entry of each parent prefix
        bounds = np.append(first, len(rows))
        num_prefixes += len(first)
        pair = (
            level_codes * (int(child_class.max()) + 1) + child_class
        )  # (entries,) one int per (code, child)
        level_ids = np.asarray(sid_token_ids[depth], dtype=np.int64)
        interned: dict[bytes, int] = {}
        group_class = np.empty(len(first), dtype=np.int64)
        sizes = np.diff(bounds)
        # Parents with one child (the deep levels of a large catalogue): one key each, deduplicated in numpy first.
        singles = np.flatnonzero(sizes == 1)
        if len(singles):
            values, index, inverse = np.unique(pair[first[singles]], return_index=True, return_inverse=True)
            single_class = np.empty(len(values), dtype=np.int64)
            for k, value in enumerate(values.tolist()):
                entry = int(first[singles[index[k]]])
                single_class[k] = _intern(
                    interned, np.asarray([value]).tobytes(), rules, writer, level_ids,
                    level_codes[entry : entry + 1], child_class[entry : entry + 1],
                )  # fmt: skip
            group_class[singles] = single_class[inverse]
        for g in np.flatnonzero(sizes != 1).tolist():
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            group_class[g] = _intern(
                interned,
                pair[lo:hi].tobytes(),
                rules,
                writer,
                level_ids,
                level_codes[lo:hi],
                child_class[lo:hi],
            )
        rows = rows[first, :depth]
        child_class = group_class
    return rules, _rule_name(int(child_class[0])), num_prefixes


def _rule_name(rule_class: int) -> str:
    return f"{_RULE_PREFIX}{rule_class}"


def _intern(
    interned: dict[bytes, int],
    key: bytes,
    rules: list[str],
    writer: _Writer,
    level_ids: np.ndarray,
    codes: np.ndarray,
    children: np.ndarray,
) -> int:
    """The class (rule number, from 1) of a subtree: the codes allowed here and the class each leads to."""
    found = interned.get(key)
    if found is not None:
        return found
    rule_class = len(rules) + 1
    alternatives = []
    order = np.argsort(children, kind="stable")
    sorted_children = children[order]
    cuts = np.flatnonzero(np.r_[True, sorted_children[1:] != sorted_children[:-1]])
    for lo, hi in zip(cuts.tolist(), [*cuts[1:].tolist(), len(order)]):
        child = int(sorted_children[lo])
        token_set = writer.tokens(level_ids[codes[order[lo:hi]]])
        alternatives.append(token_set if child == 0 else f"{token_set} {_rule_name(child)}")
    rules.append(writer.rule(_rule_name(rule_class), alternatives))
    interned[key] = rule_class
    return rule_class


def sid_grammar(
    sid_codes: Any,
    sid_token_ids: Sequence[Sequence[int]],
    *,
    dialect: Literal["llguidance", "xgrammar"] = "llguidance",
    mode: Literal["sid", "free"] = "sid",
    layout: Literal["marked", "bare"] = "marked",
    sid_start_token_id: int | None = None,
    sid_end_token_id: int | None = None,
    token_match: Literal["id", "text"] = "id",
    vocab_size: int | None = None,
) -> str:
    """A grammar whose sentences are the SIDs of a catalogue (see the module docstring). `export_grammar` reads
    the arguments from a tokenizer; this takes them directly (e.g. a `SIDTable`'s codes).

    Args:
        sid_codes: `(n_items, L)` integer codes of the catalogue.
        sid_token_ids: Per level, the token id of each code (`sid_token_ids[l][c]`).
        dialect: `"llguidance"` (Lark) or `"xgrammar"` (EBNF).
        mode: `"sid"` (one SID) or `"free"` (text with SID spans; marked layout only).
        layout: `"marked"` (`<|sid_start|>` codes `<|sid_end|>`) or `"bare"` (the codes only).
        sid_start_token_id: Id of `<|sid_start|>` (marked layout and free mode).
        sid_end_token_id: Id of `<|sid_end|>` (marked layout and free mode).
        token_match: `"id"` (token-id terminals) or `"text"` (xgrammar only: SID tokens as string literals,
            `<|sid_{level}_{code}|>`, for xgrammar releases without `Token(...)`; `"sid"` mode only).
        vocab_size: The model's vocabulary size (`len(tokenizer)`): every token id must be below it. Without it,
            ids are only checked to be 32-bit (what the servers' token ids are).

    Returns:
        The grammar text. Its start rule is `start` (Lark) or `root` (EBNF).

    Raises:
        TypeError: A token id (or `vocab_size`) that is not an integer.
        ValueError: An unknown dialect, mode, layout or token match; a combination the dialect cannot express;
            codes that do not fit the codebooks; a missing marker id; a negative, out-of-vocabulary or repeated
            token id.
    """
    _check_grammar_options(dialect, mode, layout, token_match, sid_start_token_id, sid_end_token_id)
    sid_token_ids, sid_start_token_id, sid_end_token_id = _checked_token_ids(
        sid_token_ids, sid_start_token_id, sid_end_token_id, vocab_size
    )
    codes = _checked_codes(sid_codes, sid_token_ids)
    token_text = (
        _sid_token_texts(sid_token_ids, sid_start_token_id, sid_end_token_id) if token_match == "text" else {}
    )
    writer = _Writer(dialect, token_match, token_text)
    rules, root, num_prefixes = _trie_rules(codes, sid_token_ids, writer)
    if layout == "marked":
        start = writer.tokens(np.asarray([sid_start_token_id]))
        end = writer.tokens(np.asarray([sid_end_token_id]))
        sid = f"{start} {root} {end}"
    else:
        sid = root
    if mode == "free":
        excluded = np.concatenate(
            [np.asarray(ids, dtype=np.int64) for ids in sid_token_ids]
            + [np.asarray([sid_start_token_id, sid_end_token_id], dtype=np.int64)]
        )
        top = f"({writer.tokens_except(excluded)} | {sid})*"
    else:
        top = sid
    lines = [writer.start_name + writer.assign + top, *reversed(rules)]
    logger.debug(
        "SID grammar (%s, %s, %s): %d rules for %d distinct prefixes", dialect, mode, layout, len(rules),
        num_prefixes,
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def _check_grammar_options(
    dialect: str,
    mode: str,
    layout: str,
    token_match: str,
    sid_start_token_id: int | None,
    sid_end_token_id: int | None,
) -> None:
    """Refuse an unknown dialect, mode, layout or token match, a combination the dialect cannot express, and a
    missing marker id."""
    if dialect not in GRAMMAR_DIALECTS:
        raise ValueError(f"dialect must be one of {list(GRAMMAR_DIALECTS)}; got {dialect!r}.")
    if mode not in GRAMMAR_MODES:
        raise ValueError(f"mode must be one of {list(GRAMMAR_MODES)}; got {mode!r}.")
    if layout not in ("marked", "bare"):
        raise ValueError(f"layout must be 'marked' or 'bare'; got {layout!r}.")
    if token_match not in ("id", "text"):
        raise ValueError(f"token_match must be 'id' or 'text'; got {token_match!r}.")
    if token_match == "text" and (dialect != "xgrammar" or mode != "sid"):
        raise ValueError(
            "token_match='text' is for the xgrammar dialect in mode='sid' only (llguidance always matches token "
            "ids, and free text cannot exclude SID tokens by their text); use token_match='id'."
        )
    if mode == "free" and layout != "marked":
        raise ValueError("mode='free' needs layout='marked': free text needs <|sid_start|> to open a SID.")
    if (layout == "marked" or mode == "free") and (sid_start_token_id is None or sid_end_token_id is None):
        raise ValueError("The marked layout and free mode need sid_start_token_id and sid_end_token_id.")


def _token_id(value: Any, what: str, limit: int, limit_name: str) -> int:
    """`value` as a token id: an integer (not a bool or float) in `[0, limit)`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{what} is {value!r} ({type(value).__name__}); token ids are integers. Pass the tokenizer's ids "
            "(tokenizer.sid_token_ids, tokenizer.sid_start_token_id, tokenizer.sid_end_token_id)."
        )
    if not 0 <= int(value) < limit:
        raise ValueError(
            f"{what} is {int(value)}, outside the vocabulary (token ids run from 0 to {limit_name} - 1 = "
            f"{limit - 1}). Pass the ids of the tokenizer the served model uses."
        )
    return int(value)


def _checked_token_ids(
    sid_token_ids: Any, sid_start_token_id: Any, sid_end_token_id: Any, vocab_size: Any
) -> tuple[list[np.ndarray], int | None, int | None]:
    """The SID token ids per level as int64 arrays and the marker ids, each an integer below the vocabulary
    size (or 2**31), none used twice: a grammar with a float, negative or out-of-vocabulary id names a token the
    model does not have."""
    limit, limit_name = 2**31, "2**31"
    if vocab_size is not None:
        limit = _token_id(vocab_size, "vocab_size", 2**31 + 1, "2**31 + 1")
        limit_name = "vocab_size"
    if isinstance(sid_token_ids, (str, bytes)) or not isinstance(sid_token_ids, (Sequence, np.ndarray)):
        raise TypeError(
            f"sid_token_ids must be a list of token-id lists, one per SID level; got {type(sid_token_ids).__name__}."
        )
    levels, owner = [], {}
    for lv, ids in enumerate(sid_token_ids):
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, np.ndarray)):
            raise TypeError(f"sid_token_ids[{lv}] must be a list of token ids; got {type(ids).__name__}.")
        checked = [_token_id(t, f"sid_token_ids[{lv}][{c}]", limit, limit_name) for c, t in enumerate(ids)]
        for c, t in enumerate(checked):
            if t in owner:
                raise ValueError(
                    f"sid_token_ids[{lv}][{c}] is {t}, the id of {owner[t]} too; every SID code needs its own token. "
                    "Pass tokenizer.sid_token_ids."
                )
            owner[t] = f"sid_token_ids[{lv}][{c}]"
        levels.append(np.asarray(checked, dtype=np.int64))
    markers = []
    for name, value in (("sid_start_token_id", sid_start_token_id), ("sid_end_token_id", sid_end_token_id)):
        if value is None:
            markers.append(None)
            continue
        token = _token_id(value, name, limit, limit_name)
        if token in owner:
            raise ValueError(
                f"{name} is {token}, the id of {owner[token]} too; the markers need their own tokens."
            )
        owner[token] = name
        markers.append(token)
    return levels, markers[0], markers[1]


def _checked_codes(sid_codes: Any, sid_token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """`sid_codes` as a non-empty `(n_items, L)` int64 array whose codes fit the codebooks of `sid_token_ids`."""
    try:
        codes = np.asarray(sid_codes)
    except ValueError:  # numpy: "setting an array element with a sequence" (rows of different lengths)
        raise ValueError(
            "sid_codes must be a rectangular (n_items, num_levels) integer array, one row of codes per item; its "
            "rows have different lengths. Pass tokenizer.sid_codes."
        ) from None
    if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(
            f"sid_codes must be a non-empty (n_items, num_levels) array; got shape {codes.shape}."
        )
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"sid_codes must hold integer codes, got dtype {codes.dtype}; pass tokenizer.sid_codes."
        )
    codes = codes.astype(np.int64, copy=False)
    num_levels = codes.shape[1]
    if len(sid_token_ids) != num_levels:
        raise ValueError(
            f"sid_token_ids has {len(sid_token_ids)} levels but sid_codes has {num_levels} columns; "
            "pass one list of token ids per SID level (tokenizer.sid_token_ids)."
        )
    sizes = [len(ids) for ids in sid_token_ids]
    if codes.min() < 0 or any(int(codes[:, lv].max()) >= sizes[lv] for lv in range(num_levels)):
        raise ValueError(f"sid_codes contain codes outside the codebooks (sizes {sizes}).")
    return codes


def _sid_token_texts(
    sid_token_ids: Sequence[Sequence[int]], sid_start_token_id: int | None, sid_end_token_id: int | None
) -> dict[int, str]:
    """Token id -> text of every SID token and marker (for `token_match="text"`)."""
    token_text: dict[int, str] = {}
    for lv, ids in enumerate(sid_token_ids):
        for code, token_id in enumerate(ids):
            token_text[int(token_id)] = SID_TOKEN_TEMPLATE.format(level=lv, code=code)
    if sid_start_token_id is not None:
        token_text[int(sid_start_token_id)] = SID_START_TOKEN
    if sid_end_token_id is not None:
        token_text[int(sid_end_token_id)] = SID_END_TOKEN
    return token_text


def export_grammar(
    tokenizer: Any,
    dialect: Literal["llguidance", "xgrammar"] = "llguidance",
    mode: Literal["sid", "free"] = "sid",
    layout: Literal["marked", "bare"] | None = None,
    token_match: Literal["id", "text"] = "id",
) -> str:
    """The tokenizer's catalogue as a grammar for a server's structured-output back-end.

    Pass the text as the request's grammar: vLLM (0.12 and later)
    `SamplingParams(structured_outputs=StructuredOutputsParams(grammar=text))` (with
    `structured_outputs_config={"backend": "guidance"}` for `"llguidance"`, `"xgrammar"` for `"xgrammar"`);
    SGLang `sampling_params={"ebnf": text}` (`"xgrammar"`). Every completion the server allows is then a real
    item's SID in the tokenizer's layout (`"sid"` mode), or text whose every SID span is one (`"free"` mode).
    Token ids are the tokenizer's: the served model folder must hold this tokenizer.

    Size: llguidance refuses grammars past 65,535 internal symbols (its matcher reports an assertion on
    `grammar.symbols.len()`); a random catalogue over [256, 256, 256] compiles at 10k items and fails at 100k
    (`benchmarks/serving.py`). Use the xgrammar dialect, or `SIDVLLMLogitsProcessor`, for larger catalogues.

    Args:
        tokenizer: A `SemanticIDTokenizer`.
        dialect: `"llguidance"` (Lark with token-id terminals) or `"xgrammar"` (EBNF with `Token(...)`).
        mode: `"sid"` (the completion is one SID, then EOS) or `"free"` (text with SID spans, marked layout).
        layout: `"marked"` or `"bare"`; default: the tokenizer's `sid_layout` (`"marked"` in `"free"` mode).
        token_match: `"id"` (default) or `"text"` (xgrammar without token elements; see `sid_grammar`).

    Returns:
        The grammar text (start rule `start` in Lark, `root` in EBNF).

    Raises:
        TypeError: `tokenizer` is not a `SemanticIDTokenizer` (it has no SID table).
        ValueError: As `sid_grammar`.
    """
    if isinstance(tokenizer, type):
        raise TypeError(
            f"export_grammar: `tokenizer` is the class {tokenizer.__name__}, not a tokenizer; pass an instance, e.g. "
            f"{tokenizer.__name__}.from_pretrained(path)."
        )
    if not hasattr(tokenizer, "sid_codes") or not hasattr(tokenizer, "sid_token_ids"):
        raise TypeError(
            "export_grammar needs a SemanticIDTokenizer (with an item table); got "
            f"{type(tokenizer).__name__}. Load it with hf_semtok imported, e.g. AutoTokenizer.from_pretrained(dir)."
        )
    if layout is None:
        layout = "marked" if mode == "free" else getattr(tokenizer, "sid_layout", "marked")
    return sid_grammar(
        tokenizer.sid_codes,
        tokenizer.sid_token_ids,
        dialect=dialect,
        mode=mode,
        layout=layout,
        sid_start_token_id=tokenizer.sid_start_token_id,
        sid_end_token_id=tokenizer.sid_end_token_id,
        token_match=token_match,
        vocab_size=len(tokenizer),
    )
