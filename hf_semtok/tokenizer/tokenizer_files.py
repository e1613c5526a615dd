"""Files beside a saved `SemanticIDTokenizer`: finding them and naming the broken one in errors.

Copied beside a saved tokenizer for `trust_remote_code=True`, so it imports only the standard library,
`.constants` and `.sid_table` (relatively).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from .constants import (
    SID_END_TOKEN,
    SID_START_TOKEN,
    SID_TOKEN_PATTERN,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)
from .safe_paths import read_regular
from .sid_table import DuplicateKeyError, SIDTable, no_duplicate_keys

#: The largest tokenizer JSON file a load reads (a 150k-token `tokenizer.json` is about 10 MB).
MAX_JSON_BYTES = 512 << 20

__all__ = [
    "check_byte_level",
    "check_config_tokens",
    "check_files_are_files",
    "check_rqvae_sizes",
    "check_source",
    "check_tokenizer_config",
    "json_problem",
    "local_file",
    "read_json_object",
    "tokenizer_json_problem",
]

_RESAVE = "The file is damaged or was edited by hand; re-save the tokenizer with save_pretrained()."
#: A Hub repo id: `name` or `namespace/name` (letters, digits, `-`, `_`, `.`; at most 96 characters each).
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95})?$")
#: Top-level fields of a `tokenizers` tokenizer.json and the JSON kinds each may hold.
_TOKENIZER_JSON_FIELDS: dict[str, tuple[type | None, ...]] = {
    "version": (str,),
    "truncation": (dict, None),
    "padding": (dict, None),
    "added_tokens": (list,),
    "normalizer": (dict, None),
    "pre_tokenizer": (dict, None),
    "post_processor": (dict, None),
    "decoder": (dict, None),
    "model": (dict,),
}
_KIND_NAMES = {str: "a string", dict: "an object", list: "a list", None: "null"}
_POSITION = re.compile(r"line (\d+) column (\d+)")


def json_problem(path: str | os.PathLike | None) -> str:
    """Why `path` is not readable JSON ("" when it is, or when there is no such file)."""
    if not path or not os.path.isfile(path):
        return ""
    try:
        raw = read_regular(path, MAX_JSON_BYTES, "tokenizer file")
        json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except DuplicateKeyError as err:
        return f"the key {err.args[0]!r} appears twice in one JSON object (a JSON reader keeps only the last one)"
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err})"
    except RecursionError:
        return "JSON nested too deeply"
    return ""


def local_file(name_or_path: str | os.PathLike, filename: str, kwargs: Mapping[str, Any]) -> str | None:
    """Path of `filename` of a local directory, or of a Hub repository already in the cache; None if absent."""
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, kwargs.get("subfolder") or "", filename)
        return path if os.path.isfile(path) else None
    try:
        from transformers.utils import cached_file

        return cached_file(
            str(name_or_path),
            filename,
            cache_dir=kwargs.get("cache_dir"),
            revision=kwargs.get("revision"),
            subfolder=kwargs.get("subfolder") or "",
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except Exception:  # only used to name a broken file in an error message
        return None


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A JSON object file as a dict; ValueError naming the file if it is unreadable or not an object."""
    problem = json_problem(path)
    if problem:
        raise ValueError(f"{path}: {problem}; the {what} is truncated or corrupt. Re-save the tokenizer.")
    data = json.loads(
        read_regular(path, MAX_JSON_BYTES, what).decode("utf-8"), object_pairs_hook=no_duplicate_keys
    )
    if not isinstance(data, dict):
        raise ValueError(f"{path}: holds a JSON {type(data).__name__}, not a {what} object.")
    return data


def check_rqvae_sizes(sizes: Any, table: SIDTable, source: str | os.PathLike) -> None:
    """The RQ-VAE's `codebook_sizes` must be the table's semantic levels, or new items get wrong SIDs."""
    semantic = table.codebook_sizes[: table.num_semantic_levels]
    if not isinstance(sizes, (list, tuple)) or list(sizes) != semantic:
        raise ValueError(
            f"{source}: field 'codebook_sizes' = {sizes!r} disagrees with the item table's semantic levels "
            f"{semantic} (codebook_sizes {table.codebook_sizes}, num_semantic_levels {table.num_semantic_levels}). "
            "The RQ-VAE and the table come from different trainings; save them together with save_pretrained()."
        )


def check_files_are_files(directory: str | os.PathLike, names: list[str]) -> None:
    """ValueError when one of the tokenizer's file names in `directory` is a folder (a load would fail with
    `IsADirectoryError`, or call the file missing)."""
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            raise ValueError(
                f"{path}: is a folder where the tokenizer's file {name} belongs; move the folder away and put the "
                "file back, or re-save the tokenizer with save_pretrained()."
            )


def check_source(name_or_path: str | os.PathLike) -> None:
    """FileNotFoundError when `name_or_path` is neither a directory nor a possible Hub repo id.

    Without this, transformers answers a mistyped local path with "Repo id must be in the form ...".
    """
    text = os.fspath(name_or_path)
    if not text.strip():
        raise FileNotFoundError(
            f"The tokenizer path is empty ({text!r}); pass the folder of a saved tokenizer or a Hub repo id."
        )
    if os.path.isdir(text):
        return
    if os.path.exists(text):
        raise FileNotFoundError(
            f"{text}: is a file, not a tokenizer directory; pass the directory that holds {TOKENIZER_FILE}."
        )
    if not _REPO_ID.match(text) or ".." in text or "--" in text:
        raise FileNotFoundError(
            f"{text}: no such directory, and not a Hub repo id ('name' or 'namespace/name'). Check the path, or "
            "save the tokenizer there with save_pretrained()."
        )


#: Special-token fields of `tokenizer_config.json`: a token string, an AddedToken object (`{"content": ...}`) or
#: null. The SID markers must keep their names: the SID code expects them, and a renamed one would be added as a
#: new token.
_SPECIAL_TOKEN_FIELDS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_FIXED_TOKENS = {"sid_start_token": SID_START_TOKEN, "sid_end_token": SID_END_TOKEN}
#: Special tokens that must not be a SID token, and why.
_NOT_SID_TOKENS = {
    "eos_token": "generation would stop at the SID code (or marker) it stands for, and SIDs would end early.",
    "pad_token": "padding is masked out of the loss, so the model would never learn to write that SID token.",
}
_SID_TOKEN_RE = re.compile(SID_TOKEN_PATTERN)


def _is_reserved_sid_token(content: str, field: str) -> bool:
    """A SID code token or marker; an EOS of `<|sid_end|>` is allowed (generation then stops after the SID)."""
    if _SID_TOKEN_RE.fullmatch(content) or content == SID_START_TOKEN:
        return True
    return content == SID_END_TOKEN and field != "eos_token"


def _token_content(path: str | os.PathLike, field: str, value: Any) -> str | None:
    """The text of a special-token field (a string or an AddedToken object), None for null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(
        f'{path}: field {field!r} is {json.dumps(value)[:60]}; it must be a token string (e.g. "<|eos|>"), a '
        f"token object with a 'content' string, or null. {_RESAVE}"
    )


def _check_jinja(path: str | os.PathLike, templates: list[dict[str, Any]]) -> None:
    """Compile each chat template as transformers will on first use, so that a syntax error names the file now."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # pragma: no cover - a transformers without it: checked on first use instead
        return
    for entry in templates:
        try:
            _compile_jinja_template(entry["template"])
        except ImportError:  # jinja2 is not installed: transformers says so on first use
            return
        except Exception as err:  # noqa: BLE001 - jinja2's TemplateSyntaxError and kin
            which = f" (template {entry['name']!r})" if entry["name"] else ""
            raise ValueError(
                f"{path}: field 'chat_template'{which} is not a valid Jinja template ({type(err).__name__}: "
                f"{str(err)[:120]}). Fix the template or remove the field."
            ) from None


def check_config_tokens(path: str | os.PathLike | None) -> None:
    """Refuse a special token that `tokenizer_config.json` names but `tokenizer.json` beside it does not hold.

    transformers adds such a token at load as a new one, silently changing the special token ids (a hand-edited
    `eos_token`). Called once the files have loaded, so a damaged `tokenizer.json` is reported as such first. A
    text search: a token whose text appears anywhere in the file passes, so a valid file is never refused.

    Raises:
        ValueError: naming the config, the field and the token.
    """
    if path is None:
        return
    data = read_json_object(path, "tokenizer config")
    fields = [f for f in (*_SPECIAL_TOKEN_FIELDS, *_FIXED_TOKENS) if isinstance(data.get(f), (str, dict))]
    tokenizer_path = os.path.join(os.path.dirname(os.fspath(path)), TOKENIZER_FILE)
    if not fields or not os.path.isfile(tokenizer_path):
        return
    with open(tokenizer_path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    for field in fields:
        content = _token_content(path, field, data[field])
        if content and json.dumps(content)[1:-1] not in text:
            raise ValueError(
                f"{path}: field {field!r} is {content!r}, a token that {tokenizer_path} does not hold; loading would "
                f"add it as a new token and change the special token ids. Name a token of the vocabulary (e.g. the "
                f"one saved before the edit) or re-save the tokenizer with save_pretrained()."
            )


def _check_config_values(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Fields transformers reads at load or on first use, checked now: lengths, sides, chat template, names."""
    value = data.get("model_max_length")
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 1
        or value != int(value)
    ):
        raise ValueError(
            f"{path}: field 'model_max_length' is {value!r}; it must be a positive integer (the longest input "
            f"the model takes, e.g. 512). {_RESAVE}"
        )
    for side in ("padding_side", "truncation_side"):
        if side in data and data[side] not in ("left", "right"):
            raise ValueError(
                f"{path}: field {side!r} is {data[side]!r}; it must be 'left' or 'right'. {_RESAVE}"
            )
    template = data.get("chat_template")
    named = (
        isinstance(template, list)
        and bool(template)
        and all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str)
            for t in template
        )
    )
    if template is not None and not isinstance(template, str) and not named:
        raise ValueError(
            f"{path}: field 'chat_template' is {json.dumps(template)[:60]}; it must be a Jinja template string, a "
            f"non-empty list of {{'name': ..., 'template': ...}} objects, or absent. {_RESAVE}"
        )
    if template is not None:
        _check_jinja(path, template if isinstance(template, list) else [{"name": None, "template": template}])
    names = data.get("model_input_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ValueError(
            f"{path}: field 'model_input_names' is {json.dumps(names)[:60]}; it must be a list of strings such "
            f'as ["input_ids", "attention_mask"]. {_RESAVE}'
        )
    if data.get("split_special_tokens", False) is not False:
        raise ValueError(
            f"{path}: field 'split_special_tokens' is {json.dumps(data['split_special_tokens'])}; it must be false: "
            "the SID markers are special tokens, and split they would be written as text pieces, breaking the SID "
            f"layout. Remove the field or set it to false. {_RESAVE}"
        )
    if "clean_up_tokenization_spaces" in data and not isinstance(data["clean_up_tokenization_spaces"], bool):
        raise ValueError(f"{path}: field 'clean_up_tokenization_spaces' must be true or false. {_RESAVE}")


def check_tokenizer_config(
    path: str | os.PathLike | None, directory: str | os.PathLike | None = None
) -> None:
    """Validate `tokenizer_config.json` at load, before transformers reads it.

    A hand-edited config used to load and fail later (a `model_max_length` of 1.5, a `chat_template` of 5), a
    missing one loaded with no EOS or padding token, and a renamed SID marker was silently added as a new token.

    Args:
        path: The file, or None where it was not found.
        directory: The local tokenizer folder, when loading from one: a missing config is then an error (a Hub
            repository not yet in the cache is not checked here).

    Raises:
        FileNotFoundError: `directory` has no `tokenizer_config.json`.
        ValueError: naming the file, the field and the fix, for a field of the wrong type or value.
    """
    if path is None:
        if directory is not None and os.path.isdir(directory):
            raise FileNotFoundError(
                f"{os.path.join(directory, TOKENIZER_CONFIG_FILE)}: missing. It holds the EOS, padding and SID "
                "marker tokens and the SID layout; without it the tokenizer would load without them. Copy it back "
                "beside tokenizer.json, or re-save the tokenizer with save_pretrained()."
            )
        return
    data = read_json_object(path, "tokenizer config")
    _check_config_values(path, data)
    for field in (*_SPECIAL_TOKEN_FIELDS, *_FIXED_TOKENS):
        content = _token_content(path, field, data.get(field))
        if content and field in _NOT_SID_TOKENS and _is_reserved_sid_token(content, field):
            raise ValueError(
                f"{path}: field {field!r} is {content!r}, a SID token; {_NOT_SID_TOKENS[field]} Name a token of "
                "the base vocabulary (e.g. the one saved before the edit) or re-save the tokenizer with "
                "save_pretrained()."
            )
        expected = _FIXED_TOKENS.get(field)
        if expected is not None and field in data and content != expected:
            raise ValueError(
                f"{path}: field {field!r} is {content!r}; it must be {expected!r} (the SID marker the item tokens "
                f"are written with; another name would be added as a new token). Restore {expected!r} or re-save "
                "the tokenizer with save_pretrained()."
            )
    for field in ("additional_special_tokens", "extra_special_tokens"):
        value = data.get(field)
        if value is None:
            continue
        values = value.values() if isinstance(value, dict) else value
        if isinstance(values, str) or not isinstance(values, (list, type({}.values()))):
            raise ValueError(
                f"{path}: field {field!r} must be a list of tokens; got {json.dumps(value)[:60]}."
            )
        for token in values:
            _token_content(path, field, token)


def _top_level_spans(text: str) -> list[tuple[str, int, int]]:
    """`(key, start, end)` character spans of the values of a JSON object's top-level fields."""
    decoder = json.JSONDecoder()
    spans = []
    i = text.index("{") + 1
    while True:
        while text[i] in " \t\r\n,":
            i += 1
        if text[i] == "}":
            return spans
        key, i = json.decoder.scanstring(text, i + 1)
        i = text.index(":", i) + 1
        while text[i] in " \t\r\n":
            i += 1
        _, end = decoder.raw_decode(text, i)
        spans.append((key, i, end))
        i = end


def _field_at(text: str, message: str) -> str | None:
    """The top-level field of the JSON `text` that holds the position `line L column C` of a parser message."""
    found = _POSITION.search(message)
    if not found:
        return None
    line, column = int(found.group(1)), int(found.group(2))
    lines = text.split("\n")
    if line > len(lines):
        return None
    offset = sum(len(x) + 1 for x in lines[: line - 1]) + column - 1
    try:
        spans = _top_level_spans(text)
    except (ValueError, IndexError):
        return None
    for key, start, end in spans:
        if start <= offset <= end:
            return key
    return None


def tokenizer_json_problem(path: str | os.PathLike | None, error: BaseException | None = None) -> str:
    """Why `tokenizer.json` at `path` cannot be loaded, naming the field when one is wrong ("" when no reason
    is found). `error` is the exception the `tokenizers` library raised, whose position locates the field."""
    if not path or not os.path.isfile(path):
        return ""
    problem = json_problem(path)
    if problem:
        return f"{path}: {problem}; the file is truncated or corrupt. Re-save the tokenizer with save_pretrained()."
    with open(path, encoding="utf-8") as f:
        text = f.read()
    data = json.loads(text)
    if not isinstance(data, dict):
        return f"{path}: holds a JSON {type(data).__name__}, not a tokenizer object. {_RESAVE}"
    for key, kinds in _TOKENIZER_JSON_FIELDS.items():
        if key not in data:
            continue
        value = data[key]
        if not any(value is None if kind is None else isinstance(value, kind) for kind in kinds):
            expected = " or ".join(_KIND_NAMES[kind] for kind in kinds)
            return f"{path}: field {key!r} is {json.dumps(value)[:40]}; expected {expected}. {_RESAVE}"
    bad = [
        t
        for t in data.get("added_tokens", [])
        if not isinstance(t, dict) or not isinstance(t.get("content"), str)
    ]
    if bad:
        return f"{path}: field 'added_tokens' holds {str(bad[0])[:40]!r}, not a token object. {_RESAVE}"
    if error is not None:
        field = _field_at(text, str(error))
        if field is not None:
            return f"{path}: field {field!r} is invalid ({str(error)[:160]}). {_RESAVE}"
        if type(error) is Exception:  # what the `tokenizers` library raises for a file it cannot read
            return f"{path}: cannot be loaded ({str(error)[:160]}). {_RESAVE}"
    return ""


def _holds_byte_level(component: Any) -> bool:
    """Whether a `tokenizers` normalizer / pre-tokenizer (possibly a Sequence) contains a ByteLevel step."""
    if component is None:
        return False
    try:
        state = component.__getstate__()
    except Exception:  # an unknown component: do not guess
        return True
    return b'"ByteLevel"' in (state if isinstance(state, bytes) else str(state).encode())


def check_byte_level(backend: Any, path: str | os.PathLike | None) -> None:
    """ValueError when the decoder is ByteLevel but neither the pre-tokenizer nor the normalizer maps text to
    bytes: such a file tokenizes text as raw characters (most words become unknown pieces), silently."""
    decoder = getattr(backend, "decoder", None)
    if decoder is None or type(decoder).__name__ != "ByteLevel":
        return
    if _holds_byte_level(getattr(backend, "pre_tokenizer", None)) or _holds_byte_level(
        getattr(backend, "normalizer", None)
    ):
        return
    raise ValueError(
        f"{path or TOKENIZER_FILE}: field 'pre_tokenizer' has no ByteLevel step but the decoder is ByteLevel, so "
        f"text would be split into raw characters instead of byte-level tokens. {_RESAVE}"
    )
