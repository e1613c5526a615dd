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
import enum
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from transformers import HfArgumentParser

from hf_semtok.demo import SCRATCH, DemoConfig, demo_overrides, run_demo
from hf_semtok.io_utils import require_input_file
from hf_semtok.run_lock import hold_output_dir
from hf_semtok.small_models import SMOLLM2, smollm2_gguf_path

__all__ = [
    "ConfigTypeError",
    "load_yaml_text",
    "main",
    "parse_args_with_config",
    "read_yaml_config",
    "section_from_mapping",
]

_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_DOTTED = re.compile(r"^(?:--)?([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.DOTALL)
_NULL = {"none", "null", "~"}
#: Fields that name a folder or file the run writes: an empty value would write into the current folder.
_OUTPUT_FIELDS = ("output_dir", "output_file")


class ConfigTypeError(TypeError, ValueError):
    """A config value of the wrong type. A `TypeError`, and a `ValueError` as config errors were before."""


class _AliasError(yaml.composer.ComposerError):
    """A YAML alias in a config (refused)."""


class _ConfigLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` for config files: YAML 1.2 floats (`1e-4` is a number, as in JSON, not the text that
    YAML 1.1 makes of it), and no aliases (`*name`): a few lines of nested aliases expand to gigabytes (the
    "billion laughs"), and every value is written back into `recipe_config.yaml`."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasError(
                None,
                None,
                f"found the alias *{event.anchor}: aliases (&name / *name) are not accepted in a config, since a "
                "few of them can expand a small file into a huge one; write the value out where it is used",
                event.start_mark,
            )
        return super().compose_node(parent, index)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_text(text: str) -> Any:
    """Parse YAML text as the config files are read: safe types, `1e-4` as a number, no aliases, no key twice.

    Raises:
        yaml.YAMLError: The text is not YAML, uses an alias (`*name`), or gives a key twice.
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


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


class _UniqueKeyLoader(_ConfigLoader):
    """The config loader, also refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""

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
    require_input_file(path, "Config file", "check the path given to --config (a .yaml file)")
    try:
        with path.open(encoding="utf-8") as handle:
            values = load_yaml_text(handle.read())
    except RecursionError:
        raise ValueError(
            f"Config file {str(path)!r} is nested too deeply to be a config; it holds keys and values, a few "
            "levels deep."
        ) from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"Config file {str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8."
        ) from None
    except _AliasError as err:
        raise ValueError(f"Config file {str(path)!r} uses a YAML alias, which is refused: {err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"Config file {str(path)!r} is not valid YAML: {err}") from None
    if values is None:
        raise ValueError(
            f"Config file {str(path)!r} is empty; write the options as `key: value` lines (`--help` lists them), or "
            "leave out --config to run with the defaults."
        )
    if not isinstance(values, dict):
        raise ValueError(f"Config file {str(path)!r} must hold a mapping of keys to values at the top level.")
    valid = set(valid_keys)
    for key in values:
        if key not in valid:
            raise _unknown_key_error(str(key), valid, f"the config file {str(path)!r}")
    return values


def _yaml_option(text: str, option: str) -> Any:
    """A YAML value given on the command line (a list, a mapping); a clear error naming the option when it is not."""
    try:
        return load_yaml_text(text)
    except (yaml.YAMLError, RecursionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{option} {text[:80]!r} is not valid YAML ({reason}); write a list as `[1, 2]` and a mapping as "
            "`{key: value}`, quoted for the shell."
        ) from None


def section_from_mapping(cls: type, value: Any, name: str) -> Any:
    """Build the dataclass `cls` from a config section: a mapping (from YAML), a YAML string, `None` or an instance.

    Raises:
        ValueError: The value is not a mapping, or a key is not a field of `cls` (the closest one is named).
    """
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        value = _yaml_option(value, f"--{name}")
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
        sections.setdefault(section, {})[key] = _yaml_option(value, f"--{section}.{key}")
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
            if value.startswith("~"):  # the shell expands `key=~/x`, not `--key=~/x`: expand it here
                value = os.path.expanduser(value)
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
            items = _yaml_option(value, f"--{key}")
            out.extend([f"--{key}", *(str(item) for item in items)])
        else:
            out.extend([f"--{key}", value])
    return out


def _members(hint: Any) -> tuple[Any, ...]:
    """The types a hint allows: the members of a union, else the hint itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value has a type the field `hint` allows (the values of a `Literal` or an `Enum` are checked
    against the command line's choices afterwards)."""
    if hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_matches(value, member) for member in typing.get_args(hint))
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is Literal:  # the type here; the value is checked against the choices, as on the command line
        return any(type(value) is type(c) for c in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, (str, hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value) if args else True
    if hint is dict or origin is dict:
        args = typing.get_args(hint)
        if not isinstance(value, dict):
            return False
        return all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()) if args else True
    return True  # another class (e.g. accelerate's ParallelismConfig): its own constructor checks it


_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _describe(hint: Any) -> str:
    """A hint in words, for an error message: "a number", "true or false", "a list of integers or null"."""
    words = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "text",
        dict: "a mapping",
        list: "a list",
        type(None): "null",
    }
    parts = []
    for member in _members(hint):
        origin = typing.get_origin(member)
        if member in words:
            parts.append(words[member])
        elif origin is list:
            item = typing.get_args(member)[0]
            parts.append(f"a list of {_PLURAL.get(item, _describe(item))}")
        elif origin is dict:
            parts.append("a mapping")
        elif origin is Literal:
            parts.append("one of " + ", ".join(repr(c) for c in typing.get_args(member)))
        elif isinstance(member, type) and issubclass(member, enum.Enum):
            parts.append("one of " + ", ".join(repr(m.value) for m in member))
        else:
            parts.append(getattr(member, "__name__", str(member)))
    return " or ".join(dict.fromkeys(parts))


def _type_fix(key: str, value: Any, hint: Any) -> str:
    """How to write `value` for a field of type `hint`, when there is an obvious way."""
    members = _members(hint)
    if isinstance(value, str) and any(m in (int, float) for m in members):
        try:
            (int if int in members else float)(value)
        except ValueError:
            return ""
        return f" Write the number without quotes: `{key}: {value.strip()}`."
    if isinstance(value, str) and bool in members and value.lower() in ("true", "false"):
        return f" Write it without quotes: `{key}: {value.lower()}`."
    if str in members and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f" Quote it if it is meant as text: `{key}: '{value}'`."
    return ""


def _action_for(parser: argparse.ArgumentParser, dest: str) -> argparse.Action | None:
    for action in parser._actions:
        if action.dest == dest and action.option_strings and not action.option_strings[0].startswith("--no_"):
            return action
    return None


def _check_config_values(
    values: dict[str, Any], parser: argparse.ArgumentParser, hints: Mapping[str, Any], where: str
) -> None:
    """Hold the YAML values to what the command line accepts: each value's type must be one the field allows (the
    YAML types, not text to convert: `epochs: '1'` is text where a number belongs), and a field with choices (a
    `Literal` or an `Enum`) must get one of them. A value starting with `~` in a text field is expanded to the home
    folder, as the shell expands it on the command line, and `true`/`false` given to a text-only field is the text
    `--key true` gives (`resume_from_checkpoint: true`). Values are checked (and rewritten) in place.

    Raises:
        ConfigTypeError: A value has the wrong type (a `TypeError`, and a `ValueError`); the message names the key,
            the expected type and the fix.
        ValueError: A value is not one of the field's choices, or an output path is empty.
    """
    for key, value in values.items():
        hint = hints.get(key)
        if hint is None:
            continue
        if isinstance(value, bool) and not _matches(value, hint) and str in _members(hint):
            value = values[key] = str(value).lower()  # the text `--key true` gives on the command line
        if not _matches(value, hint):
            got = "null" if value is None else f"{type(value).__name__} {value!r}"
            if _is_list(hint) and value is not None and not isinstance(value, (list, dict)):
                raise ConfigTypeError(
                    f"`{key}` in {where} must be a list, e.g. `{key}: [{value}]`; got {got}."
                )
            raise ConfigTypeError(
                f"`{key}` in {where} must be {_describe(hint)}; got {got}.{_type_fix(key, value, hint)}"
            )
        if isinstance(value, str) and value.startswith("~") and str in _members(hint):
            value = values[key] = os.path.expanduser(value)
        if key in _OUTPUT_FIELDS and isinstance(value, str) and not value.strip():
            raise ValueError(
                f"`{key}` in {where} is empty, which would write into the current folder; give a path such as "
                f"`{key}: outputs/my-run`."
            )
        action = _action_for(parser, key)
        choices = getattr(action, "choices", None)
        if choices is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            item = item.value if isinstance(item, enum.Enum) else item
            if item not in choices:
                close = difflib.get_close_matches(str(item), [str(c) for c in choices], n=1, cutoff=0.5)
                hint_text = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"`{key}: {item}` in {where} is not one of the accepted values "
                    f"({', '.join(repr(c) for c in choices)}).{hint_text}"
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

    YAML values meet the command line's rules: a value of the wrong YAML type (`epochs: '1'`, text where a number
    belongs) or outside a field's choices (`train_mode: bogus`) is refused, aliases (`*name`) are refused, `~` at
    the start of a text value is the home folder, and an empty `output_dir` / `output_file` is refused.

    Raises:
        ConfigTypeError: A YAML value has the wrong type (a `TypeError`, and a `ValueError` as before; the message
            names the key, the type and the fix).
        ValueError: The YAML file is missing, is not YAML, uses an alias or has an unknown key; a YAML value is
            not one of the field's choices; `output_dir` is empty; or an argument names no option (the message
            suggests the closest one). A command-line value of the wrong type exits through argparse (status 2).
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
    _check_config_values(values, parser, hints, f"the config file {config_path!r}")
    values.update(overrides or {})
    for section, updates in sections.items():
        base = values.get(section)
        if isinstance(base, str):
            base = load_yaml_text(base)
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
    for output in outputs:
        for name in _OUTPUT_FIELDS:
            value = getattr(output, name, None)
            if isinstance(value, str) and not value.strip():
                raise ValueError(
                    f"--{name} is empty, which would write into the current folder; give a path such as "
                    f"--{name} outputs/my-run."
                )
        if isinstance(getattr(output, "output_dir", None), str):
            _check_output_dir(output.output_dir)
        seed = getattr(output, "seed", None)
        if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
            raise ValueError(f"--seed {seed} is out of range; give an integer from 0 to 2**32 - 1 (e.g. 42).")
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
    if cfg.base == SMOLLM2:
        smollm2_gguf_path()  # its packages, checked before the catalogue and the SIDs are built
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    base = "" if cfg.base == SCRATCH else f" on {cfg.base}"
    sys.stdout.write(f"hf-semtok demo ({'quick' if command.quick else 'full'}) -> {cfg.output_dir}{base}\n")
    with hold_output_dir(cfg.output_dir, what="hf-semtok demo"):  # one run per output_dir
        run_demo(cfg, out=sys.stdout)
    return 0


def _repair(argv: Sequence[str]) -> int:
    """`hf-semtok repair DIR [--yes]`: show what completing the interrupted saves in DIR would do, then do it."""
    from hf_semtok.io_utils import recover_directory, repair_plan

    parser = argparse.ArgumentParser(
        prog="hf-semtok repair",
        description="Complete saves into a folder that were interrupted after their commit point, and remove "
        "what killed saves left. Loads never do this: they only read. The plan is shown first.",
    )
    parser.add_argument("directory", help="The folder a save was interrupted in.")
    parser.add_argument("--yes", action="store_true", help="Do it without asking.")
    args = parser.parse_args(list(argv))
    if not os.path.isdir(args.directory):
        parser.error(f"{args.directory!r} is not a folder.")
    try:
        plan = repair_plan(args.directory)
    except ValueError as err:  # a damaged manifest: the message names it and the fix
        sys.stderr.write(f"hf-semtok repair: {err}\n")
        return 1
    if not plan:
        sys.stdout.write(f"{args.directory}: nothing to repair.\n")
        return 0
    sys.stdout.write(
        f"In {args.directory}, hf-semtok repair will:\n" + "".join(f"  - {line}\n" for line in plan)
    )
    if not args.yes:
        if not sys.stdin.isatty():
            sys.stderr.write("Not a terminal: pass --yes to go ahead.\n")
            return 1
        if input("Go ahead? [y/N] ").strip().lower() not in ("y", "yes"):
            sys.stdout.write("Nothing changed.\n")
            return 1
    try:
        recover_directory(args.directory)
    except (ValueError, OSError) as err:
        sys.stderr.write(f"hf-semtok repair: {err}\n")
        return 1
    left = [line for line in repair_plan(args.directory) if line.startswith("leave ")]
    if left:
        sys.stderr.write(
            f"hf-semtok repair: {len(left)} interrupted save(s) could not be completed (see above) and were left as "
            "they are; delete their manifests by hand, or save again.\n"
        )
        return 1
    sys.stdout.write("Done.\n")
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
    sub.add_parser(
        "repair",
        add_help=False,
        help="Complete an interrupted save into a folder, after showing what it will do (`repair --help`).",
    )
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "demo":
        return _demo(rest)
    if args.command == "repair":
        return _repair(rest)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
