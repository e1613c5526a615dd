"""YAML configs and command-line overrides for the recipes.

Every recipe describes its settings as a dataclass. A run reads an optional YAML file, then applies
overrides from the command line, in either spelling:

```bash
python recipes/train_rqvae.py --config recipes/configs/rqvae_synthetic.yaml --epochs 5 seed=3
python recipes/train_rqvae.py --codebook_sizes "[64, 64]" --contrastive_weight=0.0
```

Values are converted to the field's declared type (`int`, `float`, `bool`, `str`, `list[int]`, `tuple`,
`dict`, `Literal[...]`, `X | None`, nested dataclasses through dotted keys such as `trainer.lr=0.1`). An
unknown key raises a `ValueError` that lists the valid keys and the closest match.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = ["load_config", "parse_recipe_args", "config_to_dict", "format_config_help"]

T = TypeVar("T")

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
_NONE = {"none", "null", "~", ""}


def _unknown_key_error(key: str, valid: Sequence[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"Unknown config key {key!r} in {where}.{hint} Valid keys: {', '.join(sorted(valid))}. "
        "Fix the spelling or remove the key."
    )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (from YAML or a command-line string) to the declared type `tp`."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    # Optional / unions: None first, then each member in order.
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        if value is None or (
            isinstance(value, str) and value.strip().lower() in _NONE and type(None) in args
        ):
            if type(None) in args:
                return None
        errors = []
        for member in args:
            if member is type(None):
                continue
            try:
                return _convert(value, member, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(
            f"Config key {key!r}: cannot read {value!r} as {_type_name(tp)} ({'; '.join(errors)})."
        )
    if value is None:
        raise ValueError(f"Config key {key!r} cannot be null: give a {_type_name(tp)} value.")
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(
            f"Config key {key!r}: {value!r} is not one of {list(args)}. Use one of those values."
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ValueError(f"Config key {key!r} is a section; give a mapping, got {value!r}.")
        return _build(tp, value, where=f"section {key!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"Config key {key!r}: {value!r} is not a boolean; use true or false.")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"Config key {key!r}: expected an integer, got the boolean {value!r}.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"Config key {key!r}: expected an integer, got {value!r}.") from None
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"Config key {key!r}: expected a number, got the boolean {value!r}.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"Config key {key!r}: expected a number, got {value!r}.") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"Config key {key!r}: expected a string, got {value!r}.")
        return str(value)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, str):
            parsed = yaml.safe_load(value)
            value = parsed if isinstance(parsed, list) else [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"Config key {key!r}: expected a list such as [1, 2], got {value!r}.")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"Config key {key!r}: expected {len(args)} values, got {len(value)}.")
            return tuple(_convert(v, a, key) for v, a in zip(value, args))
        item_type = args[0] if args else Any
        items = [_convert(v, item_type, key) for v in value]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ValueError(f"Config key {key!r}: expected a mapping such as {{a: 1}}, got {value!r}.")
        if len(args) == 2:
            return {_convert(k, args[0], key): _convert(v, args[1], key) for k, v in value.items()}
        return dict(value)
    if isinstance(value, str) and tp is not str:
        return yaml.safe_load(value)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _build(cls: type[T], values: dict[str, Any], where: str) -> T:
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in types_:
            raise _unknown_key_error(str(key), list(types_), where)
        kwargs[key] = _convert(value, types_[key], key)
    return cls(**kwargs)


def _set_dotted(values: dict[str, Any], cls: type, dotted: str, raw: str) -> None:
    """Record the override `dotted=raw` in the nested dict `values`, checking each key against `cls`."""
    parts = dotted.split(".")
    target, current_cls = values, cls
    for i, part in enumerate(parts):
        types_ = _field_types(current_cls)
        if part not in types_:
            raise _unknown_key_error(part, list(types_), "the command-line overrides")
        if i == len(parts) - 1:
            target[part] = raw
            return
        sub_cls = types_[part]
        if not (dataclasses.is_dataclass(sub_cls) and isinstance(sub_cls, type)):
            raise ValueError(f"Override {dotted!r}: {part!r} is not a section, so it has no sub-keys.")
        existing = target.get(part)
        if existing is None:
            existing = {}
        elif dataclasses.is_dataclass(existing):
            existing = config_to_dict(existing)
        target[part] = existing
        target, current_cls = existing, sub_cls


def _parse_overrides(overrides: Sequence[str], cls: type) -> list[tuple[str, str]]:
    """Turn `--key value`, `--key=value`, `key=value` and bare `--flag` (booleans) into pairs."""
    types_ = _field_types(cls)
    pairs: list[tuple[str, str]] = []
    i = 0
    tokens = list(overrides)
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            body = token[2:]
            if "=" in body:
                key, raw = body.split("=", 1)
                i += 1
            else:
                key = body
                top = key.split(".")[0].replace("-", "_")
                is_flag = types_.get(top) is bool and "." not in key
                next_is_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
                if next_is_value and not (is_flag and tokens[i + 1].lower() not in _TRUE | _FALSE):
                    raw = tokens[i + 1]
                    i += 2
                elif is_flag:
                    raw = "true"
                    i += 1
                else:
                    raise ValueError(
                        f"Override --{key} needs a value: write `--{key} VALUE` or `--{key}=VALUE`."
                    )
        elif "=" in token:
            key, raw = token.split("=", 1)
            i += 1
        else:
            raise ValueError(
                f"Cannot read the argument {token!r}: write overrides as `--key value`, `--key=value` or `key=value`."
            )
        pairs.append((key.replace("-", "_"), raw))
    return pairs


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return a dataclass config as a plain dict (tuples as lists), ready for JSON or YAML."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def load_config(path: str | Path | None, overrides: Sequence[str] | None, dataclass_type: type[T]) -> T:
    """Build a `dataclass_type` from an optional YAML file plus command-line style overrides.

    Args:
        path: A YAML file whose top level is a mapping of field names to values, or `None` for the defaults.
        overrides: Strings such as `["--epochs", "5", "seed=3", "--lr=1e-3", "--use_cpu"]`. They win over
            the YAML values. A bare `--flag` sets a boolean field to true. Dotted keys reach nested sections.
        dataclass_type: The dataclass describing the config.

    Returns:
        An instance of `dataclass_type`.

    Raises:
        ValueError: The file is missing or not a mapping, a key is unknown (the message lists the valid keys
            and the closest match), or a value cannot be converted to the field's type.
    """
    if not (dataclasses.is_dataclass(dataclass_type) and isinstance(dataclass_type, type)):
        raise ValueError(f"load_config needs a dataclass type, got {dataclass_type!r}.")
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Config file {str(path)!r} does not exist; check the path given to --config.")
        with path.open(encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"Config file {str(path)!r} must hold a mapping of keys to values at the top level."
            )
        types_ = _field_types(dataclass_type)
        for key in loaded:
            if key not in types_:
                raise _unknown_key_error(str(key), list(types_), f"the config file {str(path)!r}")
        values.update(loaded)
    for key, raw in _parse_overrides(overrides or [], dataclass_type):
        _set_dotted(values, dataclass_type, key, raw)
    return _build(dataclass_type, values, where="the config")


def format_config_help(dataclass_type: type, prog: str | None = None) -> str:
    """Return a usage text listing every config key with its type and default."""
    lines = [
        f"usage: {prog or 'recipe'} [--config FILE.yaml] [--key value | key=value ...]",
        "",
        (dataclass_type.__doc__ or "").strip().splitlines()[0] if dataclass_type.__doc__ else "",
        "",
        "keys:",
    ]
    hints = typing.get_type_hints(dataclass_type)
    for f in dataclasses.fields(dataclass_type):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        lines.append(f"  --{f.name}  ({_type_name(hints.get(f.name, Any))}, default: {default!r})")
    return "\n".join(lines)


def parse_recipe_args(dataclass_type: type[T], argv: Sequence[str] | None = None) -> T:
    """Parse a recipe's command line: `--config path.yaml` plus `--key value` / `key=value` overrides.

    Args:
        dataclass_type: The recipe's config dataclass.
        argv: Arguments without the program name; `None` reads `sys.argv[1:]`. `-h`/`--help` prints the keys
            and exits.

    Returns:
        An instance of `dataclass_type`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        sys.stdout.write(format_config_help(dataclass_type, prog=Path(sys.argv[0]).name) + "\n")
        raise SystemExit(0)
    config_path = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token in ("--config", "-c"):
            if i + 1 >= len(args):
                raise ValueError("--config needs a path: `--config recipes/configs/<name>.yaml`.")
            config_path = args[i + 1]
            i += 2
        elif token.startswith("--config="):
            config_path = token.split("=", 1)[1]
            i += 1
        else:
            rest.append(token)
            i += 1
    return load_config(config_path, rest, dataclass_type)
