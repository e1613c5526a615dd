"""Atomic file writes: a reader sees the old file or the new one, never half of one, even if the writer dies."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "write_json_atomic", "write_text_atomic"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(handle)` on a temporary file beside `path` (binary mode), then rename it onto `path`.

    The folder is created if needed. On any failure the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results and caches are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` (UTF-8) to `path` atomically (see [`atomic_write`])."""
    data = text.encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def write_json_atomic(data: Any, path: str | os.PathLike, indent: int | None = None) -> None:
    """Write `data` as JSON to `path` atomically (see [`atomic_write`])."""
    write_text_atomic(json.dumps(data, indent=indent), path)
