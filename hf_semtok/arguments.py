"""`arg`: the one way the library and the recipes declare an option, a dataclass field with its `--help` text.

Every argument class (`LMStageArguments`, `SIDStageConfig`, `DatasetArguments`, `DemoConfig`, the recipes' own)
is parsed by `transformers.HfArgumentParser` (through `hf_semtok.cli.parse_args_with_config`), which prints the
`help` metadata of each field. Write the help once, here-style, beside the field:

    codebook_sizes: list[int] = arg("Codes per SID level.", [256, 256, 256])
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

__all__ = ["arg"]


def arg(help: str, default: Any = None, **kwargs: Any) -> Any:
    """A dataclass field with `help` as its `--help` text.

    Args:
        help: What the option does, shown by `--help`.
        default: Its default. A list, tuple or dict default is copied for every instance (`default_factory`).
        **kwargs: Other `dataclasses.field` arguments (e.g. `default_factory`, `repr`).

    Returns:
        The `dataclasses.Field`.
    """
    metadata = {"help": help}
    if "default_factory" in kwargs:
        return field(metadata=metadata, **kwargs)
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)
