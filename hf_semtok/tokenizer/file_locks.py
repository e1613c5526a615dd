"""Who may touch a folder when: folder locks, staging folders, and the saves in progress in this process.

Readers hold a shared `flock` on the folder they read; a commit takes the exclusive lock only for its renames
([`FolderLock`]). A save's staging folder carries an exclusive lock for the life of the save, so another process
can tell a live save from one that was killed ([`staging_is_dead`]). Saves in progress in this process are
registered ([`staging_in_use`]) so that a save into a folder inside another save's staging folder nests into it
([`active_staging`]). The commit protocol that uses them is in `file_sets.py` (the public entry point).

Part of the tokenizer package that ships beside every saved tokenizer: it imports only the standard library.
Locks use `fcntl.flock` (POSIX); where it is unavailable they are no-ops (see `file_sets.py`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = [
    "LOCK_TIMEOUT_S",
    "FolderLock",
    "PartKey",
    "Staging",
    "active_staging",
    "hold_staging",
    "listing",
    "staging_in_use",
    "staging_is_dead",
]

logger = logging.getLogger(__name__)

#: How long a save or load waits for the folder's lock before it gives up (another process's save or load).
LOCK_TIMEOUT_S = 600.0

#: A part of a save: its kind and file-name prefix.
PartKey = tuple[str, "str | None"]

_THREAD = threading.local()


def _held_shared() -> dict[str, int]:
    held = getattr(_THREAD, "shared", None)
    if held is None:
        held = _THREAD.shared = {}
    return held


class FolderLock:
    """`flock` on a folder: shared for readers, exclusive for a commit. A no-op where `flock` is unavailable."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = os.path.realpath(directory)
        self.fd: int | None = None
        self.mode: int | None = None
        self.supported = fcntl is not None

    def __enter__(self) -> FolderLock:
        if self.supported:
            try:
                self.fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                self.supported = False
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _flock(self, mode: int, what: str) -> None:
        if not self.supported or self.mode == mode:
            return
        if mode == fcntl.LOCK_EX and _held_shared().get(self.key):
            raise RuntimeError(
                f"Cannot save into {self.directory} while this thread is loading from it (open_file_set); finish "
                "the load first."
            )
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        warned = False
        while True:
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    logger.debug("No folder lock on %s (%s); continuing without one.", self.directory, err)
                    self.supported = False
                    return
            if not warned and time.monotonic() > deadline - LOCK_TIMEOUT_S + 10:
                logger.warning(
                    "Waiting for another process's save or load in %s to finish (%s).", self.directory, what
                )
                warned = True
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Waited {LOCK_TIMEOUT_S:.0f} s for another process's save or load in {self.directory} to "
                    f"finish ({what}). Check for a hung process that holds the folder."
                )
            time.sleep(0.02)
        if self.mode == fcntl.LOCK_SH:
            _held_shared()[self.key] -= 1
        self.mode = mode
        if mode == fcntl.LOCK_SH:
            _held_shared()[self.key] = _held_shared().get(self.key, 0) + 1

    def shared(self) -> None:
        """Take the shared (reading) lock, waiting for a commit in progress."""
        if fcntl is not None:
            self._flock(fcntl.LOCK_SH, "reading")

    def exclusive(self) -> None:
        """Take the exclusive (committing) lock, giving up a shared one first."""
        if fcntl is not None:
            if self.mode == fcntl.LOCK_SH:
                self.release()
            self._flock(fcntl.LOCK_EX, "saving")

    def release(self) -> None:
        """Give up the lock held, if any."""
        if self.supported and self.fd is not None and self.mode is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            if self.mode == fcntl.LOCK_SH:
                _held_shared()[self.key] -= 1
        self.mode = None


# ----------------------------------------------------------------------------------------------------------
# Staging folders
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Staging:
    """A save in progress: its staging folder and the parts (kind, prefix) of the files written into it."""

    path: Path
    key: PartKey
    parts: dict[PartKey, set[str]] = field(default_factory=dict)
    committed: bool = False

    def record(self, key: PartKey, files: set[str]) -> None:
        """File `files` (written by a nested save of `key`) under that part of this save."""
        for other in self.parts.values():
            other -= files  # the last save to write a file owns it
        self.parts.setdefault(key, set()).update(files)


_ACTIVE: dict[str, Staging] = {}
_ACTIVE_LOCK = threading.Lock()


def hold_staging(path: Path) -> int | None:
    """Lock a staging folder for the life of its save: the lock marks it as in use by a live process.

    Call it while holding the folder's exclusive lock, right after creating `path`, so no other process can take
    the new folder for a dead save's leftover.

    Raises:
        OSError: the staging folder cannot be locked (the save must not go on unmarked).
    """
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise OSError(
            err.errno,
            f"Cannot lock the staging folder {path} of a save ({err.strerror}); the save is aborted",
        ) from err
    return fd


@contextlib.contextmanager
def staging_in_use(staging: Staging, staging_fd: int | None) -> Iterator[None]:
    """Mark `staging` as in use while the block runs: locked for other processes (by `staging_fd`, from
    [`hold_staging`]), registered for this one."""
    real = os.path.realpath(staging.path)
    with _ACTIVE_LOCK:
        _ACTIVE[real] = staging
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(real, None)
        if staging_fd is not None:
            os.close(staging_fd)


def staging_is_dead(path: Path) -> bool:
    """Whether no live save uses the staging folder `path` (its lock is free, or it is not this process's own)."""
    with _ACTIVE_LOCK:
        if os.path.realpath(path) in _ACTIVE:
            return False
    if fcntl is None:
        return True  # without locks, one process per folder at a time is assumed (see file_sets.py)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        return err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)
    return True


def active_staging(real: str) -> tuple[Staging, str] | None:
    """The save in progress in this process whose staging folder holds the real path `real`, and `real`
    relative to it; `None` when there is none."""
    with _ACTIVE_LOCK:
        for root, staging in _ACTIVE.items():
            if real == root or real.startswith(root + os.sep):
                return staging, os.path.relpath(real, root)
    return None


# ----------------------------------------------------------------------------------------------------------
# Folder listings
# ----------------------------------------------------------------------------------------------------------
def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """`{relative path: (inode, size, mtime_ns)}` of the files (and links) under `root`."""
    found = {}
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(current, d)))]:
            st = os.lstat(os.path.join(current, name))
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            found[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found
