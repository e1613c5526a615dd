"""Atomic writes: a reader sees the old file (or directory) or the new one, never half of one, even if the
writer is killed.

[`atomic_write`] replaces one file; [`atomic_directory`] replaces a whole directory (a model, a tokenizer, a
training result) in one step. Both leave files with the usual `umask`-respecting modes, so saved results can
be read by other users and by serving containers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_directory", "atomic_write", "recover_directory", "write_json_atomic", "write_text_atomic"]

logger = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2  # from <linux/fs.h>
_AT_FDCWD = -100
# `renameat2` system call numbers, used when the C library has no wrapper (glibc < 2.28).
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "arm64": 276, "i686": 353, "i386": 353, "ppc64le": 357}


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (`/proc/self/status`)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _load_renameat2() -> Callable[[bytes, bytes, int], int] | None:
    """Return `renameat2(old, new, flags) -> 0 | -1` from the C library, or None off Linux / without it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    wrapper = getattr(libc, "renameat2", None)
    if wrapper is not None:
        wrapper.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        wrapper.restype = ctypes.c_int
        return lambda old, new, flags: wrapper(_AT_FDCWD, old, _AT_FDCWD, new, flags)
    number = _SYS_RENAMEAT2.get(platform.machine())
    syscall = getattr(libc, "syscall", None)
    if number is None or syscall is None:
        return None
    syscall.restype = ctypes.c_long
    return lambda old, new, flags: syscall(
        ctypes.c_long(number),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(old),
        ctypes.c_int(_AT_FDCWD),
        ctypes.c_char_p(new),
        ctypes.c_uint(flags),
    )


_renameat2 = _load_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` in one system call. Returns False where the kernel or filesystem cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(os.fsencode(a), os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, f"renameat2(RENAME_EXCHANGE) failed: {os.strerror(err)}", str(a), None, str(b))


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(handle)` on a temporary file beside `path` (binary mode), then rename it onto `path`.

    The folder is created if needed. The file gets mode `0o666 & ~umask` (as `open` would give it). On any
    failure the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files
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


def _resolve_target(target: str | os.PathLike) -> Path:
    target = Path(target)
    if target.is_symlink():
        if not target.is_dir():
            raise ValueError(
                f"Cannot save into {target}: it is a symlink to {os.readlink(target)!r}, which is not a "
                "directory. Remove the link or point it at a directory."
            )
        target = target.resolve()  # replace the directory the link points to; the link itself stays
    if target.exists() and not target.is_dir():
        raise ValueError(
            f"Cannot save a directory to {target}: a file of that name exists. Remove it or choose another path."
        )
    return Path(os.path.abspath(target))


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # a leftover that cannot be removed must not block the save
        logger.warning("Could not remove %s: %s", path, exc)


def recover_directory(target: str | os.PathLike) -> Path:
    """Repair what a killed [`atomic_directory`] save may have left beside `target`; return `target`.

    Leftover temporary directories (`.{name}.tmp-*`) are removed. Where the save ran without
    `renameat2(RENAME_EXCHANGE)` and was killed between its two renames, `target` is missing and the previous
    version waits at `.{name}.old-*`: it is moved back. A loader may call this before reading a directory that
    such a save could have been writing; [`atomic_directory`] calls it itself.

    Do not call it while another process is saving to `target`: it would remove that save's temporary directory.
    """
    target = _resolve_target(target)
    parent = target.parent
    if not parent.is_dir():
        return target
    olds = sorted(parent.glob(f".{_glob_escape(target.name)}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not target.exists():
        restored = olds.pop()  # the newest previous version
        os.rename(restored, target)
        logger.warning("Restored %s from %s left by an interrupted save.", target, restored.name)
    name = _glob_escape(target.name)
    # `..{name}.tmp-*`: temporaries of a save nested inside one of ours (e.g. a tokenizer saved into it).
    for leftover in [*olds, *parent.glob(f".{name}.tmp-*"), *parent.glob(f"..{name}.tmp-*")]:
        _remove_tree(leftover)
    return target


def _glob_escape(name: str) -> str:
    """Escape `name` for `Path.glob` (brackets, `*` and `?` match literally)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
    return dst


def _carry_over(old: Path, new: Path, keep: Callable[[str], bool]) -> None:
    """Bring the entries of `old` that `new` lacks and `keep` accepts into `new` (hard links where possible)."""
    with os.scandir(old) as entries:
        for entry in entries:
            dst = new / entry.name
            if os.path.lexists(dst) or not keep(entry.name):
                continue
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), dst)
            elif entry.is_dir():
                shutil.copytree(entry.path, dst, symlinks=True, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry.path, str(dst))


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Build a directory in a temporary sibling and make it `target` in one step.

    ```python
    with atomic_directory("outputs/rqvae") as tmp:
        model.save_pretrained(tmp)
        table.to_json(tmp / "sid_table.json")
    ```

    Write every file of the new version into the yielded directory (a hidden sibling of `target`,
    `.{name}.tmp-XXXX`, on the same filesystem). When the block ends normally it replaces `target`: on Linux
    the two directories are swapped with one `renameat2(RENAME_EXCHANGE)` call and the old tree is then
    deleted, so a process killed at any instant leaves `target` as either the complete old version or the
    complete new one, never a mix, never missing. Where that call is unavailable (not Linux, kernels before
    3.15, filesystems without it), `target` is renamed to `.{name}.old-XXXX` and the new directory renamed
    onto `target`: a kill between those two renames leaves `target` missing for a moment, and the next
    `atomic_directory` (or [`recover_directory`]) on that path moves the old version back.

    If the block raises, the temporary directory is removed and `target` is untouched. Leftover temporary
    directories of an earlier, killed save are removed when the next save starts. New directories get mode
    `0o777 & ~umask`. The parent folder is created if needed.

    A `target` that is a symlink to a directory saves into the directory it points to (the link stays). Saves
    into one `target` from two processes at once are not supported: one may remove the other's temporary
    directory, which then fails (`target` stays consistent). Durability against power loss is not attempted
    (files are not fsynced).

    Args:
        target (`str` or `os.PathLike`):
            The directory to create or replace.
        keep (`Callable[[str], bool]`, *optional*):
            Called with the name of each top-level entry of the existing `target` that the new version did not
            write; entries it accepts are carried into the new version (hard-linked where possible, else
            copied). Use it when the save adds to a directory, e.g. a tokenizer saved into a model's folder
            keeps the model files. By default nothing is carried over.

    Yields:
        `Path`: the temporary directory to write into.

    Raises:
        ValueError: if `target` is an existing file, or a symlink to something that is not a directory.
    """
    target = recover_directory(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700 directories
        yield tmp
        if keep is not None and target.is_dir():
            _carry_over(target, tmp, keep)
        if not target.exists():
            os.rename(tmp, target)
            return
        if _exchange(tmp, target):
            _remove_tree(tmp)  # now holds the previous version
            return
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        _remove_tree(old)
    except BaseException:
        _remove_tree(tmp)
        raise
