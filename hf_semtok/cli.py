"""Command lines of the recipes and of the `hf-semtok` console script, through `transformers.HfArgumentParser`.

    hf-semtok demo [--config demo.yaml] [--quick] [--output_dir DIR] [--seed N] [--no_progress] [key=value ...]

`demo` runs `hf_semtok.demo.run_demo`: synthetic catalogue -> RQ-VAE SIDs -> tokenizer -> small LM -> CPT -> LoRA
-> recommendations and Recall@10 / NDCG@10 beside a popularity baseline, offline, in a few minutes on 2 cores.

[`parse_args_with_config`] is the parser every recipe uses: the dataclasses' fields are the options (with their
`metadata["help"]`), `--config file.yaml` sets any of them, and options given on the command line win over the
file. `key=value` is accepted as a spelling of `--key value`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from hf_semtok.demo import SCRATCH, DemoConfig, demo_overrides, run_demo

__all__ = ["main", "parse_args_with_config", "read_yaml_config", "section_from_mapping"]

_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_DOTTED = re.compile(r"^(?:--)?([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.DOTALL)
_NULL = {"none", "null", "~"}


def _field_hints(dataclass_types: Sequence[type]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for dtype in dataclass_types:
        type_hints = typing.get_type_hints(dtype)
        hints.update({f.name: type_hints[f.name] for f in dataclasses.fields(dtype) if f.init})
    return hints


def _unknown_key_error(key: str, valid: Iterable[str], where: str) -> ValueError:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"Unknown config key {key!r} in {where}.{hint} Valid keys: {', '.join(valid)}. "
        "Fix the spelling or remove the key."
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} appears twice (only one value can hold)",
                    key_node.start_mark,
                )
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_config(path: str | Path, valid_keys: Iterable[str]) -> dict[str, Any]:
    """Read a YAML config file: a mapping whose keys must all be in `valid_keys`.

    Raises:
        ValueError: The file is missing (or a folder), is not UTF-8 text or not YAML (a key twice, nesting too
            deep), is not a mapping, or has a key not in `valid_keys` (the message names the closest valid key).
            Every message names the file.
    """
    path = Path(path)
    if not os.path.isfile(path):  # (pathlib's is_file raises for a name too long for the file system)
        where = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ValueError(
            f"Config file {str(path)!r} {where}; check the path given to --config (a .yaml file)."
        )
    try:
        with path.open(encoding="utf-8") as handle:
            values = yaml.load(handle, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise ValueError(
            f"Config file {str(path)!r} is nested too deeply to be a config; it holds keys and values, a few "
            "levels deep."
        ) from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"Config file {str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8."
        ) from None
    except yaml.YAMLError as err:
        raise ValueError(f"Config file {str(path)!r} is not valid YAML: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"Config file {str(path)!r} must hold a mapping of keys to values at the top level.")
    valid = set(valid_keys)
    for key in values:
        if key not in valid:
            raise _unknown_key_error(str(key), valid, f"the config file {str(path)!r}")
    return values


def section_from_mapping(cls: type, value: Any, name: str) -> Any:
    """Build the dataclass `cls` from a config section: a mapping (from YAML), a YAML string, `None` or an instance.

    Raises:
        ValueError: The value is not a mapping, or a key is not a field of `cls` (the closest one is named).
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"Config section {name!r} must be a mapping of {cls.__name__} keys, got {value!r}.")
    valid = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in value:
        if key not in valid:
            raise _unknown_key_error(str(key), valid, f"the config section {name!r}")
    return cls(**value)


def _split_dotted(
    args: Sequence[str], hints: Mapping[str, Any]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Take `--section.key value` (or `section.key=value`) overrides of mapping-valued fields out of `args`."""
    rest: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    i = 0
    while i < len(args):
        match = _DOTTED.match(args[i])
        if not match or not (args[i].startswith("--") or match.group(3) is not None):
            rest.append(args[i])
            i += 1
            continue
        section, key, value = match.groups()
        if section not in hints:
            raise _unknown_key_error(section, hints, "the command-line arguments")
        if value is None:
            if i + 1 >= len(args):
                raise ValueError(f"--{section}.{key} needs a value: write `--{section}.{key} VALUE`.")
            value = args[i + 1]
            i += 1
        sections.setdefault(section, {})[key] = yaml.safe_load(value)
        i += 1
    return rest, sections


def _is_list(hint: Any) -> bool:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    candidates = typing.get_args(hint) if union else (hint,)
    return any(typing.get_origin(c) is list or c is list for c in candidates)


def _normalise_argv(args: Sequence[str], hints: Mapping[str, Any]) -> list[str]:
    """Rewrite `key=value` as `--key value`, and a YAML list (`[1, 2]`) given to a list option as its items."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        match = _KEY_VALUE.match(token)
        if match:
            key, value = match.groups()
        elif token.startswith("--") and "=" in token:
            key, value = token[2:].split("=", 1)
        elif token.startswith("--") and i + 1 < len(args) and args[i + 1].lstrip().startswith("["):
            key, value = token[2:], args[i + 1]
            i += 1
        else:
            out.append(token)
            i += 1
            continue
        i += 1
        key = key.replace("-", "_")
        if key in hints and _is_list(hints[key]) and value.lstrip().startswith("["):
            items = yaml.safe_load(value)
            out.extend([f"--{key}", *(str(item) for item in items)])
        else:
            out.extend([f"--{key}", value])
    return out


def _check_list_values(values: Mapping[str, Any], hints: Mapping[str, Any], where: str) -> None:
    """A list option given one value in YAML (`hidden_sizes: 16`) is an error naming the key and the fix, not a
    crash later ("'int' object is not iterable") nor a silent `[16]`."""
    for key, value in values.items():
        hint = hints.get(key)
        if hint is None or not _is_list(hint) or value is None or isinstance(value, (list, tuple)):
            continue
        members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
        if any(isinstance(m, type) and not isinstance(value, bool) and isinstance(value, m) for m in members):
            continue  # `list[str] | str`: a plain string is one of the accepted types
        raise ValueError(
            f"`{key}` in {where} must be a list, e.g. `{key}: [{value}]`; got {type(value).__name__} {value!r}."
        )


def _accept_null(parser: argparse.ArgumentParser, hints: Mapping[str, Any]) -> None:
    """Let an `X | None` option (X not `str`) read `none`/`null` as `None`."""
    for action in parser._actions:
        hint = hints.get(action.dest)
        members = typing.get_args(hint) if hint is not None else ()
        if action.type is None or type(None) not in members or str in members:
            continue  # a string option keeps "none" as text (e.g. report_to: none)
        convert: Callable[[str], Any] = action.type

        def nullable(text: str, convert: Callable[[str], Any] = convert) -> Any:
            return None if text.strip().lower() in _NULL else convert(text)

        nullable.__name__ = getattr(convert, "__name__", "value")
        action.type = nullable


def parse_args_with_config(
    dataclass_types: type | Sequence[type],
    argv: Sequence[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    prog: str | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Parse `--config file.yaml` plus command-line options into dataclasses with `transformers.HfArgumentParser`.

    Precedence, lowest first: the dataclass defaults, the YAML file, `overrides`, the command line.

    Args:
        dataclass_types: One dataclass or several (their fields are the options; `metadata["help"]` is the help).
        argv: Arguments without the program name; `None` reads `sys.argv[1:]`. `--help` prints every option.
        overrides: Values applied over the YAML file (e.g. the `--quick` sizes of the demo).
        prog: Program name shown in `--help`.
        description: Text shown in `--help`.

    A field holding a section (a mapping, e.g. the RQ-VAE settings of a benchmark) also takes dotted overrides,
    `--sid.codebook_sizes "[1024, 512, 256]"`, merged into the YAML section.

    Returns:
        A tuple with one instance per dataclass type, in order.

    Raises:
        ValueError: The YAML file is missing or has an unknown key, or an argument names no option (the message
            suggests the closest one). A value of the wrong type exits through argparse (status 2).
    """
    types_ = [dataclass_types] if isinstance(dataclass_types, type) else list(dataclass_types)
    parser = HfArgumentParser(types_, prog=prog, description=description, allow_abbrev=False)
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE.yaml",
        help="YAML file of these options; the command line wins.",
    )
    hints = _field_hints(types_)
    _accept_null(parser, hints)
    plain_defaults = {
        f.name: f.default
        for t in types_
        for f in dataclasses.fields(t)
        if f.default is not dataclasses.MISSING
    }
    for (
        action
    ) in parser._actions:  # HfArgumentParser drops the plain default of a list field (`list[str] | str`)
        default = plain_defaults.get(action.dest)
        if action.nargs == "+" and action.default is None and isinstance(default, str) and default:
            action.default = default  # argparse passes it through the item type: "all-linear" stays a string
    args, sections = _split_dotted(list(sys.argv[1:] if argv is None else argv), hints)
    args = _normalise_argv(args, hints)

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    config_path = pre.parse_known_args(args)[0].config
    values = read_yaml_config(config_path, hints) if config_path else {}
    _check_list_values(values, hints, f"the config file {config_path!r}")
    values.update(overrides or {})
    for section, updates in sections.items():
        base = values.get(section)
        if isinstance(base, str):
            base = yaml.safe_load(base)
        values[section] = {**(base if isinstance(base, dict) else {}), **updates}
    for action in parser._actions:
        if action.dest in values:
            action.required = False
    parser.set_defaults(**values)

    *outputs, _extra, remaining = parser.parse_args_into_dataclasses(
        args, return_remaining_strings=True, look_for_args_file=False
    )
    for token in remaining:
        if token.startswith("-"):
            raise _unknown_key_error(token.lstrip("-").split("=", 1)[0], hints, "the command-line arguments")
        raise ValueError(
            f"Cannot read the argument {token!r}: write options as `--key value`, `--key=value` or `key=value`."
        )
    return tuple(outputs)


@dataclasses.dataclass
class _DemoCommand:
    quick: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "A smaller run (about a minute), for tests: the QUICK_OVERRIDES sizes "
            "(SMOLLM2_QUICK_OVERRIDES with --base smollm2)."
        },
    )


def _check_output_dir(output_dir: str) -> None:
    """`output_dir` must be a folder or a path where one can be made: no file at it or above it."""
    path = Path(output_dir)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "is a file" if part == path else f"lies under the file {str(part)!r}"
                raise ValueError(
                    f"--output_dir {str(path)!r} {where}, not a folder; give a folder path (created if missing)."
                )
            return


def _demo(argv: Sequence[str]) -> int:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--quick", nargs="?", const=True, default=False)
    pre.add_argument("--base", default=None)
    known = pre.parse_known_args(_normalise_argv(argv, {}))[0]
    use_quick = known.quick not in (False, "false", "False")
    cfg, command = parse_args_with_config(
        [DemoConfig, _DemoCommand],
        argv,
        overrides=demo_overrides(known.base, use_quick) or None,
        prog="hf-semtok demo",
        description="End-to-end offline demo on a synthetic catalogue; options also as key=value.",
    )
    _check_output_dir(cfg.output_dir)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = "" if cfg.base == SCRATCH else f" on {cfg.base}"
    sys.stdout.write(f"hf-semtok demo ({'quick' if command.quick else 'full'}) -> {cfg.output_dir}{base}\n")
    run_demo(cfg, out=sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-semtok`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="hf-semtok", description="Semantic IDs for generative recommendation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "demo",
        add_help=False,
        help="End-to-end offline demo on a synthetic catalogue (`demo --help`: options).",
    )
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "demo":
        return _demo(rest)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
