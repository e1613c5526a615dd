"""Atomic writes, and saves that own only their files.

[`atomic_write`] replaces one file. [`save_file_set`] commits a set of files (a model, a tokenizer, a training
result) into a folder in one step and touches nothing else in it: a kill at any instant leaves the old set or the
new one, loadable, and the folder's other files, sub-folders and mounted volumes stay as they are. Loaders read a
set through [`open_file_set`], which checks it against its manifest. Both come from
`hf_semtok.tokenizer.file_sets` (standard library only, so the tokenizer saved as remote code uses them too); see
its docstring for the design. Files get the usual `umask`-respecting modes, so saved results can be read by other
users and by serving containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hf_semtok.tokenizer.file_sets import (
    FileSet,
    FileSetError,
    atomic_write,
    check_save_target,
    current_umask,
    manifest_name,
    open_file_set,
    read_manifests,
    recover_file_sets,
    register_file_names,
    repair_plan,
    save_file_set,
)

__all__ = [
    "FileSet",
    "FileSetError",
    "require_input_file",
    "atomic_directory",
    "atomic_write",
    "check_save_target",
    "manifest_name",
    "open_file_set",
    "read_manifests",
    "recover_directory",
    "recover_file_sets",
    "register_file_names",
    "repair_plan",
    "save_file_set",
    "write_json_atomic",
    "write_text_atomic",
]

logger = logging.getLogger(__name__)

_current_umask = current_umask  # the name earlier releases used


def require_input_file(path: str | os.PathLike, what: str, hint: str) -> Path:
    """Check that `path` names a regular file the library can read, before anything opens it.

    Args:
        path: The file a user passed.
        what: What the file is, for the message (e.g. `"Embedding file"`).
        hint: How to fix it, appended to the message (e.g. `"name a .npy or .safetensors file"`).

    Returns:
        `path` as a `Path`.

    Raises:
        ValueError: The path does not exist, is a folder, is not a regular file (a pipe, socket or device: reading
            one could block forever) or cannot be looked up (a name too long, a file where a folder should be).
            The message names the path, says which, and ends with `hint`.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a regular file is a regular file
    except FileNotFoundError:
        where = "does not exist"
    except OSError as error:  # ENAMETOOLONG, ENOTDIR, ELOOP, EACCES
        where = f"cannot be looked up ({error.strerror})"
    else:
        if stat.S_ISREG(mode):
            return path
        where = "is a folder" if stat.S_ISDIR(mode) else "is not a regular file (a pipe, socket or device)"
    raise ValueError(f"{what} {str(path)!r} {where}; {hint}.")


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` (UTF-8) to `path` atomically (see [`atomic_write`])."""
    data = text.encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def write_json_atomic(data: Any, path: str | os.PathLike, indent: int | None = None) -> None:
    """Write `data` as JSON to `path` atomically (see [`atomic_write`])."""
    write_text_atomic(json.dumps(data, indent=indent), path)


@contextlib.contextmanager
def atomic_directory(
    target: str | os.PathLike, keep: Callable[[str], bool] | None = None, kind: str = "directory"
) -> Iterator[Path]:
    """Save the files written in the block into `target` as one set: [`save_file_set`]`(target, kind)`.

    Earlier releases replaced the whole folder `target` with the block's files (and deleted everything else in
    it). Now the files written in the block replace only the files of the previous save of the same `kind` into
    `target`; every other entry of `target` stays. New code should call [`save_file_set`] with a `kind` of its
    own.

    Args:
        target (`str` or `os.PathLike`): The folder to save into (not the filesystem root).
        keep: Deprecated and ignored: nothing that the save did not write is ever removed.
        kind (`str`): Names the set (its manifest); saves of other kinds into `target` are left alone.

    Yields:
        `Path`: the staging folder to write into.
    """
    if keep is not None:
        warnings.warn(
            "atomic_directory(keep=...) is deprecated and ignored: a save now keeps every file it did not write.",
            DeprecationWarning,
            stacklevel=3,
        )
    with save_file_set(target, kind) as staging:
        yield staging


def _glob_escape(name: str) -> str:
    """Escape `name` for `Path.glob` (brackets, `*` and `?` match literally)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def recover_directory(target: str | os.PathLike) -> Path:
    """Complete or clean up interrupted saves into `target`; return `target` (absolute).

    Saves into `target` that were killed after their commit point are completed, and staging folders of saves
    killed before it are removed ([`recover_file_sets`]); saves and loads do this themselves. It also repairs
    what a killed save of an earlier release (which swapped the whole folder) may have left beside `target`:
    leftover `.{name}.tmp-*` folders are removed, and a missing `target` is moved back from `.{name}.old-*`.

    Raises:
        ValueError: `target` is the filesystem root or a file.
    """
    target = check_save_target(target)
    parent = target.parent
    if parent.is_dir():
        name = _glob_escape(target.name)
        olds = sorted(parent.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime)
        if olds and not target.exists():
            restored = olds.pop()  # the newest previous version
            os.rename(restored, target)
            logger.warning("Restored %s from %s left by an interrupted save.", target, restored.name)
        for leftover in [*olds, *parent.glob(f".{name}.tmp-*"), *parent.glob(f"..{name}.tmp-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
    recover_file_sets(target)
    return target
