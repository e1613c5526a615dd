"""File operations inside a folder that never follow a link: the only way saves write, move and delete.

A save writes into a target folder it was given. Every path below the target is walked one component at a time
through folder file descriptors opened with `O_NOFOLLOW`, so a symlink planted anywhere under the target (a Hub
repository cloned with `git` restores them) can never redirect a write, a move or a delete outside the folder
(git's rule for the work tree). A link where a save must write or delete is a clear error, never a silent skip.

Reads are bounded too: [`read_regular`] reads only regular files (never a FIFO or a device, which would hang or
never end), up to a size cap.

Part of the tokenizer package that ships beside every saved tokenizer: it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "LinkError",
    "check_regular_files",
    "hash_regular",
    "open_folder",
    "read_regular",
    "regular_stat",
    "remove_if_unchanged",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CHUNK = 1 << 20


class LinkError(ValueError):
    """A save would write or delete through a symbolic link (or a non-folder) below its target folder."""


def _open_child(parent_fd: int, name: str, create: bool, root: Path, rel: str, what: str) -> int:
    """Open the sub-folder `name` of `parent_fd` without following a link (creating it when `create`)."""
    try:
        return os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        return _open_child(parent_fd, name, False, root, rel, what)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            kind = "a symbolic link" if _is_link(parent_fd, name) else "not a folder"
            raise LinkError(
                f"Cannot {what} {rel!r} in {root}: {name!r} on its path is {kind}. hf_semtok never writes or "
                "deletes through links inside a save folder; remove the link (or the file) or save into another "
                "folder."
            ) from err
        raise


def _is_link(parent_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def open_folder(root: Path, rel_dir: str = "", *, create: bool = False, what: str = "write") -> Iterator[int]:
    """A file descriptor of the folder `rel_dir` below `root`, reached without following any link below `root`.

    `root` itself is opened as given (the caller chose it; a link to a folder is fine there). Every component of
    `rel_dir` must be a real folder; missing ones are created with `create`.

    Raises:
        LinkError: a component of `rel_dir` is a symlink or not a folder.
        FileNotFoundError: a component is missing and `create` is false.
    """
    fds = [os.open(root, os.O_RDONLY | _DIRECTORY)]
    try:
        for name in [p for p in rel_dir.split("/") if p]:
            fds.append(_open_child(fds[-1], name, create, root, rel_dir, what))
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def regular_stat(dir_fd: int, name: str) -> os.stat_result | None:
    """`lstat` of `name` in `dir_fd` (`None` when nothing has that name)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_regular(name: str, dir_fd: int | None) -> int:
    """Open a regular file for reading without following a final link and without blocking on a FIFO."""
    fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    return fd


def hash_regular(dir_fd: int, name: str) -> tuple[int, str] | None:
    """Size and SHA-256 of the regular file `name` in `dir_fd`; `None` when it is missing, a link or not a regular
    file."""
    try:
        fd = _open_regular(name, dir_fd)
    except OSError:
        return None
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


def remove_if_unchanged(root: Path, rel: str, meta: Mapping[str, Any]) -> bool:
    """Delete the file `rel` below `root` only when it is a regular file, reached without links, whose size and
    SHA-256 are still `meta`'s (the bytes a save wrote). Empty folders left behind are removed too.

    Returns:
        Whether the file was deleted (`False`: missing, a link, changed since, or on a path through a link).
    """
    parent, _, name = rel.rpartition("/")
    try:
        with open_folder(root, parent, what="delete") as dir_fd:
            found = hash_regular(dir_fd, name)
            if found is None or found != (meta.get("size"), meta.get("sha256")):
                return False
            os.unlink(name, dir_fd=dir_fd)
    except (LinkError, FileNotFoundError, NotADirectoryError):
        return False
    _prune_empty(root, parent)
    return True


def _prune_empty(root: Path, rel_dir: str) -> None:
    """Remove the folders of `rel_dir` (deepest first) while they are empty; never a link or a mount point."""
    parts = [p for p in rel_dir.split("/") if p]
    while parts:
        parent, name = "/".join(parts[:-1]), parts[-1]
        try:
            with open_folder(root, parent, what="delete") as dir_fd:
                if os.path.ismount(root / rel_dir):
                    return
                os.rmdir(name, dir_fd=dir_fd)  # fails on a non-empty folder and on a link
        except OSError:
            return
        parts.pop()


def read_regular(path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """The bytes of `path`, which must be a regular file (a link to one is fine) of at most `max_bytes`.

    Raises:
        ValueError: `path` is a FIFO, a device, a folder or another special file, or larger than `max_bytes`.
        FileNotFoundError: `path` does not exist.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"{path}: the {what} must be a regular file, and it is a "
            f"{'folder' if stat.S_ISDIR(st.st_mode) else 'special file (FIFO, device or socket)'}. Replace it "
            "with the file a save wrote."
        )
    if st.st_size > max_bytes:
        raise ValueError(
            f"{path}: the {what} is {st.st_size:,} bytes, more than the {max_bytes:,} bytes such a file can be. "
            "It was not written by hf_semtok; replace it with the file a save wrote."
        )
    fd = os.open(path, os.O_RDONLY | _NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
            raise ValueError(f"{path}: the {what} must be a regular file.")
        chunks = []
        total = 0
        while chunk := os.read(fd, _CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise ValueError(f"{path}: the {what} grew past {max_bytes:,} bytes while it was read.")
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def check_regular_files(
    folder: str | os.PathLike, what: str, names: Iterable[str], max_bytes: Mapping[str, int] | None = None
) -> None:
    """Refuse a saved folder where one of the files a load reads (`names`, relative to `folder`; a name ending in
    `/` stands for every entry of that sub-folder) is a FIFO, a device or a socket, or a link to one: reading it
    would hang or never end. Other entries of the folder (the user's own) are not looked at.

    With `max_bytes` (name -> the largest size that file can have), a larger one is refused before anything reads
    it (a planted huge or sparse file would otherwise be read whole into memory).

    Raises:
        ValueError: naming the entry.
    """
    folder = Path(folder)
    caps = dict(max_bytes or {})
    paths = []
    for name in names:
        if name.endswith("/"):
            sub = folder / name
            if sub.is_dir() and not sub.is_symlink():
                paths.extend(Path(e.path) for e in os.scandir(sub))
        else:
            paths.append(folder / name)
    for path in paths:
        try:
            st = os.stat(path)  # through a link: what a reader would open
        except OSError:
            continue  # missing or dangling: the loader names a missing file itself
        cap = caps.get(path.relative_to(folder).as_posix())
        if cap is not None and stat.S_ISREG(st.st_mode) and st.st_size > cap:
            raise ValueError(
                f"{path}: is {st.st_size:,} bytes, more than the {cap:,} bytes a saved {what}'s file of that name "
                "can be; it was not written by save_pretrained(). Replace it with the file a save wrote."
            )
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            link = ", through a link" if path.is_symlink() else ""
            raise ValueError(
                f"{path}: is a special file (a FIFO, a device or a socket{link}), not a regular file; a saved "
                f"{what} holds only regular files, and reading this one would hang or never end. Remove it, or load "
                "a folder written by save_pretrained()."
            )
