"""The optional parts of hf_semtok (the extras of `pyproject.toml`), checked when a command starts.

A command that needs an optional package checks for it first, with [`require_extra`], so a missing package stops
it at once with the `pip install` line to run, not after an hour of work at the step that imports it. The check
looks the packages up without importing them.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["EXTRAS", "missing_packages", "require_extra"]

#: Extra name -> the modules it provides (import names), as declared in `pyproject.toml`.
EXTRAS: dict[str, tuple[str, ...]] = {
    "text": ("sentence_transformers",),
    "bench": ("matplotlib", "sentence_transformers"),
    "ray": ("ray", "pyarrow"),
    "smollm2": ("gguf",),
    "serving": ("llguidance", "xgrammar"),
}


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: imports of it are blocked
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_packages(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The modules of `modules` that cannot be imported here."""
    return [module for module in modules if not _installed(module)]


def require_extra(extra: str, needed_for: str, modules: tuple[str, ...] | list[str] | None = None) -> None:
    """Fail now, with the install command, when a package of the extra `extra` is missing.

    Args:
        extra: A key of [`EXTRAS`] (e.g. `"bench"`).
        needed_for: What needs it, for the message (e.g. `"benchmarks/amazon.py (its plot)"`).
        modules: The extra's modules this command needs (default: all of them).

    Raises:
        ValueError: `extra` is not a known extra.
        ImportError: A module is missing; the message names it and `pip install "hf-semtok[extra]"`.
    """
    if extra not in EXTRAS:
        raise ValueError(f"Unknown extra {extra!r}; known extras: {', '.join(EXTRAS)}.")
    missing = missing_packages(EXTRAS[extra] if modules is None else modules)
    if missing:
        raise ImportError(
            f"{needed_for} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed. "
            f'Install the "{extra}" extra first: pip install "hf-semtok[{extra}]" '
            f'(from a checkout: pip install -e ".[{extra}]").'
        )
