"""One run per output folder: an `flock` on a small lock file inside `output_dir`, held for the whole run.

A second run into a folder in use (the same command typed twice, or a relaunch while the workers of a killed
`accelerate launch` still train) is refused at its start with [`OutputDirInUseError`], which names the folder
and the process holding it. The operating system releases the lock when its holder exits, however it exits, so
a killed run never leaves a stale lock behind. Under `torchrun` / `accelerate launch` only the main process
(`RANK` 0) takes the lock: the other ranks of the same run share the folder with it.

While the run lasts, the lock file holds its process id and host (for the message of a refused run); it is
deleted when the run ends. Where `fcntl.flock` is unavailable (not POSIX) or the file system refuses it, runs are
not locked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from hf_semtok.tokenizer.safe_paths import LinkError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["RUN_LOCK_FILE", "OutputDirInUseError", "hold_output_dir"]

logger = logging.getLogger(__name__)

#: Name of the lock file a run holds inside its `output_dir`.
RUN_LOCK_FILE = ".hf_semtok_run.lock"

_HELD: set[str] = set()
_HELD_GUARD = threading.Lock()


class OutputDirInUseError(RuntimeError):
    """Another run (another process, or this one) is writing into the same `output_dir`."""


def _holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "another process"
    return text or "another process"


def _main_process() -> bool:
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def _acquire(lock_path: Path) -> int | None:
    """An fd holding the exclusive lock on `lock_path`; None where locks are unsupported.

    A run deletes its lock file when it ends (while still holding it). A process that opened the file just before
    that and locks it afterwards holds a deleted file, so the lock is only taken once the locked file is the one at
    `lock_path` (the usual protocol for lock files that get removed).
    """
    while True:
        try:  # never through a link: the lock file is truncated and written
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as err:
            if err.errno == errno.EISDIR:
                raise LinkError(
                    f"{lock_path} is a folder where a run keeps its lock file; remove it, or give the run another "
                    "output_dir."
                ) from None
            if err.errno == errno.ELOOP:
                raise LinkError(
                    f"{lock_path} is a symbolic link; a run writes its lock file there and never through a link. "
                    "Remove the link, or give the run another output_dir."
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LinkError(
                f"{lock_path} is not a regular file; remove it, or give the run another output_dir."
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            logger.warning("Cannot lock %s (%s); running without a run lock.", lock_path, err)
            return None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the file was deleted (its run ended) between our open and lock: lock the new one


@contextlib.contextmanager
def hold_output_dir(output_dir: str | os.PathLike, what: str = "run") -> Iterator[Path]:
    """Create `output_dir` if needed and hold its run lock until the block ends.

    The lock file is deleted when the block ends, and a folder this call created is removed again if the run left
    nothing else in it (a run refused for bad input leaves no empty folder behind).

    Args:
        output_dir: The folder the run writes into.
        what: What holds the folder, for the lock file and the messages (e.g. `"cpt stage (full)"`).

    Yields:
        The folder, as a `Path`.

    Raises:
        OutputDirInUseError: Another run holds the folder; the message names it, its lock file and the holder.
    """
    path = Path(output_dir)
    if not _main_process():
        yield path
        return
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    lock_path = path / RUN_LOCK_FILE
    with _HELD_GUARD:
        if key in _HELD:
            raise OutputDirInUseError(
                f"output_dir {str(path)!r} is already in use by another run in this process; give each run its "
                "own output_dir."
            )
        _HELD.add(key)
    fd = None
    try:
        if fcntl is not None:
            try:
                fd = _acquire(lock_path)
            except OSError:
                raise OutputDirInUseError(
                    f"output_dir {str(path)!r} is in use by another run ({_holder(lock_path)}), which holds "
                    f"{str(lock_path)!r}. Two runs into one folder would overwrite each other's checkpoints and "
                    "outputs: wait for that run to end, stop it (after a killed `accelerate launch`, its worker "
                    "processes may still be training), or give this run another output_dir."
                ) from None
            if fd is not None:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {what}\n".encode())
        yield path
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)  # while still held: see `_acquire`
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    path.rmdir()  # only if empty: the run wrote nothing
        with _HELD_GUARD:
            _HELD.discard(key)
