"""Saves that own only their files: a set of files committed into a folder in one step, with a manifest.

A save writes its files into a private staging folder *inside* the target folder (`.hf_semtok_tmp-XXXXXXXX`),
then commits them: it writes a small manifest (`.hf_semtok_manifest.<kind>[.<prefix>].json`: the file names with
their sizes and SHA-256) and moves each staged file onto its name. Nothing else in the folder is touched: the
files of other kinds, the user's own files, sub-folders and mounted volumes stay as they are. The target folder
itself is never renamed, so it may be a mount point, `.`, or a name of any valid length.

The commit is crash-safe. The new manifest is first written with a `pending` entry (the staging folder and the
files of the previous version to delete); its atomic rename is the commit point. The staged files are then moved
into place, the old files of the same kind deleted, and the manifest rewritten without `pending`. A save killed
before the commit point leaves the old version untouched (and a staging folder that the next save removes); one
killed after it leaves a pending manifest that the next save or load completes ("rolls forward"). Readers go
through [`open_file_set`]: it completes an interrupted commit, holds a shared lock on the folder while the caller
reads (a commit takes the exclusive lock only for its renames), and checks every file of the set against the
manifest. A reader therefore sees the complete old set or the complete new set, never a mix.

A save deletes only files that an earlier manifest of the same kind (and prefix) named. A folder saved by an older
release has no manifest: a save then replaces the files it writes and may delete only the names its caller lists
as its own (`legacy_files`). Saves nest: a save whose target is inside another save's staging folder (e.g. the
tokenizer saved within an LM stage's output) writes straight into it, and the outer manifest records the inner
save's files as a *part* of its own kind, so a later save of that kind finds and replaces them.

This module is part of the tokenizer package that ships beside every saved tokenizer, so it imports only the
standard library. Locks use `fcntl.flock` (POSIX); where it is unavailable, saves and loads still work, but two
processes saving into one folder at the same time are not coordinated.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = [
    "MANIFEST_PREFIX",
    "atomic_write",
    "STAGING_PREFIX",
    "FileSet",
    "FileSetError",
    "check_save_target",
    "current_umask",
    "manifest_name",
    "open_file_set",
    "read_manifests",
    "recover_file_sets",
    "save_file_set",
]

logger = logging.getLogger(__name__)

#: Manifests are `.hf_semtok_manifest.<kind>.json`, or `.hf_semtok_manifest.<kind>.<prefix>.json` for a save with
#: a file-name prefix (`tokenizer.save_pretrained(d, filename_prefix="p")`).
MANIFEST_PREFIX = ".hf_semtok_manifest."
#: Staging folders (and temporary manifests) of saves in progress: `.hf_semtok_tmp-` + 8 random characters.
STAGING_PREFIX = ".hf_semtok_tmp-"
_FORMAT = "hf_semtok.file_set"
_VERSION = 1
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_STAGING_RE = re.compile(r"^\.hf_semtok_tmp-[A-Za-z0-9_]{8}$")
_CHUNK = 1 << 20
#: How long a save or load waits for the folder's lock before it gives up (another process's save or load).
LOCK_TIMEOUT_S = 600.0

PartKey = tuple[str, "str | None"]


class FileSetError(ValueError):
    """A saved file set cannot be trusted or completed: a file differs from its manifest, a manifest is damaged,
    or an interrupted save cannot be completed (e.g. a read-only folder)."""


def current_umask() -> int:
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


def manifest_name(kind: str, prefix: str | None = None) -> str:
    """The manifest file name of saves of `kind` (with `prefix`, for saves with a file-name prefix).

    Raises:
        ValueError: `kind` is not a short lower-case identifier, or `prefix` is empty or holds a path separator.
    """
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise ValueError(
            f"A file-set kind is a short lower-case identifier such as 'tokenizer'; got {kind!r}."
        )
    if prefix is None:
        return f"{MANIFEST_PREFIX}{kind}.json"
    if not isinstance(prefix, str) or not prefix or "/" in prefix or os.sep in prefix or "\0" in prefix:
        raise ValueError(
            f"filename_prefix must be a non-empty string without path separators; got {prefix!r}."
        )
    name = f"{MANIFEST_PREFIX}{kind}.{prefix}.json"
    if len(name.encode("utf-8", "surrogateescape")) > 200:  # keep well under NAME_MAX (255 bytes)
        digest = hashlib.sha256(prefix.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = f"{MANIFEST_PREFIX}{kind}.{digest}.json"
    return name


def check_save_target(directory: str | os.PathLike) -> Path:
    """The absolute folder a save into `directory` writes to; a symlink to a folder gives the folder it names.

    Raises:
        ValueError: `directory` is the filesystem root, an existing file, or a symlink to something that is not a
            folder.
    """
    path = Path(directory)
    if path.is_symlink():
        if not path.is_dir():
            raise ValueError(
                f"Cannot save into {path}: it is a symlink to {os.readlink(path)!r}, which is not a directory. "
                "Remove the link or point it at a directory."
            )
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"Cannot save into {path}: a file of that name exists. Remove it or choose another path."
        )
    absolute = Path(os.path.abspath(path))
    real = os.path.realpath(absolute)
    if os.path.dirname(real) == real:
        raise ValueError(
            f"Refusing to save into the filesystem root {str(absolute)!r}: a save writes its files into the folder "
            "it is given. Pass a folder of its own, e.g. ./outputs/model."
        )
    return absolute


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(handle)` on a temporary file beside `path` (binary mode), then rename it onto `path`.

    A reader sees the old file or the new one, never part of one, even if the writer is killed. The folder is
    created if needed; the temporary name is short (`.hf_semtok_write-XXXXXXXX`), so any valid `path` works. The
    file is fsynced before the rename and gets mode `0o666 & ~umask` (as `open` would give it). On any failure
    the temporary file is removed and `path` is untouched.

    Args:
        path: The file to create or replace.
        write: Writes the new content to the binary handle it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hf_semtok_write-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            _fsync_fd(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as err:  # a filesystem without fsync: durability is its own business
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


# ----------------------------------------------------------------------------------------------------------
# Locks
# ----------------------------------------------------------------------------------------------------------
_THREAD = threading.local()


def _held_shared() -> dict[str, int]:
    held = getattr(_THREAD, "shared", None)
    if held is None:
        held = _THREAD.shared = {}
    return held


class _FolderLock:
    """`flock` on a folder: shared for readers, exclusive for a commit. A no-op where `flock` is unavailable."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = os.path.realpath(directory)
        self.fd: int | None = None
        self.mode: int | None = None
        self.supported = fcntl is not None

    def __enter__(self) -> _FolderLock:
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
        if fcntl is not None:
            self._flock(fcntl.LOCK_SH, "reading")

    def exclusive(self) -> None:
        if fcntl is not None:
            if self.mode == fcntl.LOCK_SH:
                self.release()
            self._flock(fcntl.LOCK_EX, "saving")

    def release(self) -> None:
        if self.supported and self.fd is not None and self.mode is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            if self.mode == fcntl.LOCK_SH:
                _held_shared()[self.key] -= 1
        self.mode = None


def _hold_staging(path: Path) -> int | None:
    """Lock a staging folder for the life of its save: the lock marks it as in use by a live process."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass
    return fd


def _staging_is_dead(path: Path) -> bool:
    """Whether no live save uses the staging folder `path` (its lock is free, or it is not this process's own)."""
    with _ACTIVE_LOCK:
        if os.path.realpath(path) in _ACTIVE:
            return False
    if fcntl is None:
        return True  # without locks, one process per folder at a time is assumed (see the module docstring)
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


# ----------------------------------------------------------------------------------------------------------
# Manifests
# ----------------------------------------------------------------------------------------------------------
def _check_relpath(name: Any, source: Path) -> str:
    """A file name of a manifest: relative, normalised, inside the folder, not one of ours."""
    parts = name.split("/") if isinstance(name, str) else []
    if (
        not parts
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or any(p in ("", ".", "..") for p in parts)
        or parts[0].startswith((MANIFEST_PREFIX, STAGING_PREFIX))
    ):
        raise FileSetError(
            f"{source}: names the file {name!r}, which is not a plain path inside the folder. The manifest is "
            "damaged or was not written by hf_semtok; delete it to load the files as they are."
        )
    return name


def _check_manifest(data: Any, source: Path) -> dict[str, Any]:
    bad = f"{source}: is not a valid hf_semtok file-set manifest"
    hint = "The file is damaged or was edited; delete it to load the files as they are, then save again."
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("parts"), list):
        raise FileSetError(f"{bad}. {hint}")
    if data.get("version") != _VERSION:
        raise FileSetError(
            f"{source}: manifest version {data.get('version')!r}; this hf_semtok reads version {_VERSION}. "
            "Upgrade hf_semtok, or delete the manifest to load the files as they are."
        )
    seen: set[str] = set()
    for part in data["parts"]:
        if (
            not isinstance(part, dict)
            or not isinstance(part.get("kind"), str)
            or not (part.get("prefix") is None or isinstance(part.get("prefix"), str))
            or not isinstance(part.get("files"), dict)
        ):
            raise FileSetError(f"{bad} (a part is malformed). {hint}")
        for name, meta in part["files"].items():
            _check_relpath(name, source)
            if (
                not isinstance(meta, dict)
                or not isinstance(meta.get("size"), int)
                or not isinstance(meta.get("sha256"), str)
            ):
                raise FileSetError(f"{bad} (entry {name!r} has no size and sha256). {hint}")
            if name in seen:
                raise FileSetError(f"{bad} (file {name!r} is named twice). {hint}")
            seen.add(name)
    pending = data.get("pending")
    if pending is not None:
        if (
            not isinstance(pending, dict)
            or not isinstance(pending.get("staging"), str)
            or not _STAGING_RE.match(pending["staging"])
            or not isinstance(pending.get("obsolete"), list)
        ):
            raise FileSetError(f"{bad} (its 'pending' entry is malformed). {hint}")
        for name in pending["obsolete"]:
            _check_relpath(name, source)
    return data


def read_manifests(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every file-set manifest in `directory`: `{file name: manifest}` (empty when there is none).

    Raises:
        FileSetError: a manifest is unreadable or malformed (naming it).
    """
    directory = Path(directory)
    found: dict[str, dict[str, Any]] = {}
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if not (entry.name.startswith(MANIFEST_PREFIX) and entry.name.endswith(".json")):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        path = directory / entry.name
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise FileSetError(
                f"{path}: cannot read this file-set manifest ({err}). Delete it to load the files as they are, "
                "then save again."
            ) from err
        found[entry.name] = _check_manifest(data, path)
    return found


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _write_manifest(directory: Path, name: str, data: Mapping[str, Any]) -> None:
    """Write a manifest atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
    tmp = directory / f"{STAGING_PREFIX}{secrets.token_hex(4)}.json"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            _fsync_fd(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _remove_manifest(directory: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / name)
    _fsync_dir(directory)


def _hash_file(path: Path, fsync: bool = False) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if fsync:
            _fsync_fd(fd)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Committing and completing saves
# ----------------------------------------------------------------------------------------------------------
def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # a leftover that cannot be removed must not block the save
        logger.warning("Could not remove %s: %s", path, exc)


def _place(src: Path, dst: Path) -> None:
    """Move the staged `src` onto `dst` in one step (a copy and a rename where `dst` is on another filesystem,
    e.g. a volume mounted inside the folder)."""
    try:
        os.replace(src, dst)
        return
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
    tmp = dst.parent / f"{STAGING_PREFIX}{secrets.token_hex(4)}.part"
    try:
        shutil.copyfile(src, tmp, follow_symlinks=False)
        shutil.copymode(src, tmp)
        _hash_file(tmp, fsync=True)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.unlink(src)


def _prune_empty_dirs(start: Path, root: Path) -> None:
    """Remove `start` and its parents up to `root` (excluded) while they are empty folders (never a mount)."""
    current = start
    while current != root and root in current.parents:
        if os.path.ismount(current):
            return
        try:
            os.rmdir(current)
        except OSError:
            return
        current = current.parent


def _roll_forward(directory: Path, name: str, data: dict[str, Any]) -> None:
    """Finish the commit of a pending manifest: staged files into place, old ones deleted, `pending` dropped."""
    pending = data["pending"]
    staging = directory / pending["staging"]
    for part in data["parts"]:
        for rel in part["files"]:
            src = staging / rel
            if os.path.lexists(src):
                dst = directory / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                _place(src, dst)
    named = {rel for part in data["parts"] for rel in part["files"]}
    for rel in pending["obsolete"]:
        if rel in named:
            continue
        path = directory / rel
        if path.is_symlink() or path.is_file():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            _prune_empty_dirs(path.parent, directory)
    _fsync_dir(directory)
    done = {k: v for k, v in data.items() if k != "pending"}
    _write_manifest(directory, name, done)
    _remove_tree(staging)


def _settle(directory: Path) -> list[str]:
    """With the folder's exclusive lock held: complete pending commits, remove what dead saves left."""
    done = []
    for name, data in read_manifests(directory).items():
        if data.get("pending") is not None:
            _roll_forward(directory, name, data)
            logger.warning(
                "Completed a save into %s that was interrupted after its commit point (%s).", directory, name
            )
            done.append(name)
    with os.scandir(directory) as entries:
        leftovers = [e for e in entries if e.name.startswith(STAGING_PREFIX)]
    for entry in leftovers:
        path = directory / entry.name
        if entry.is_dir(follow_symlinks=False):
            if _STAGING_RE.match(entry.name) and _staging_is_dead(path):
                _remove_tree(path)
                done.append(entry.name)
        elif entry.name.endswith((".json", ".part")):  # a temporary manifest of a dead commit
            try:
                os.unlink(path)
                done.append(entry.name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("Could not remove %s: %s", path, exc)
    return done


def recover_file_sets(directory: str | os.PathLike) -> list[str]:
    """Complete the saves into `directory` that were interrupted after their commit point, and remove the staging
    folders of saves killed before it. Saves and loads do this themselves; call it to tidy a folder by hand.

    Returns:
        The manifests completed and the leftovers removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    with _FolderLock(directory) as lock:
        lock.exclusive()
        return _settle(directory)


@dataclass
class _Staging:
    """A save in progress: its staging folder and the parts (kind, prefix) of the files written into it."""

    path: Path
    key: PartKey
    parts: dict[PartKey, set[str]] = field(default_factory=dict)
    legacy: dict[PartKey, Callable[[str], bool] | Collection[str]] = field(default_factory=dict)
    committed: bool = False

    def record(
        self, key: PartKey, files: set[str], legacy_files: Callable[[str], bool] | Collection[str] | None
    ) -> None:
        for other in self.parts.values():
            other -= files  # the last save to write a file owns it
        self.parts.setdefault(key, set()).update(files)
        if legacy_files is not None:
            self.legacy.setdefault(key, legacy_files)


_ACTIVE: dict[str, _Staging] = {}
_ACTIVE_LOCK = threading.Lock()


def _active_staging(real: str) -> tuple[_Staging, str] | None:
    with _ACTIVE_LOCK:
        for root, staging in _ACTIVE.items():
            if real == root or real.startswith(root + os.sep):
                return staging, os.path.relpath(real, root)
    return None


def _listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """`{relative path: (inode, size, mtime_ns)}` of the files (and links) under `root`."""
    found = {}
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(current, d)))]:
            st = os.lstat(os.path.join(current, name))
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            found[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def _legacy_match(legacy_files: Callable[[str], bool] | Collection[str] | None, name: str) -> bool:
    if legacy_files is None:
        return False
    if callable(legacy_files):
        return bool(legacy_files(name))
    return name in legacy_files


def _commit(target: Path, staging: _Staging, manifest: str) -> None:
    files = _listing(staging.path)
    mode = 0o666 & ~current_umask()
    owner: dict[str, PartKey] = {}
    for key, names in staging.parts.items():
        for rel in names:
            owner[rel] = key
    parts: dict[PartKey, dict[str, dict[str, Any]]] = {staging.key: {}}
    for rel in sorted(files):
        path = staging.path / rel
        if path.is_symlink() or not path.is_file():
            raise ValueError(
                f"Cannot save {rel!r} into {target}: only regular files can be saved, and it is a link or a "
                "special file."
            )
        if rel.split("/")[0].startswith((MANIFEST_PREFIX, STAGING_PREFIX)):
            raise ValueError(
                f"Cannot save {rel!r} into {target}: names starting with {STAGING_PREFIX!r} or "
                f"{MANIFEST_PREFIX!r} are reserved for hf_semtok's saves."
            )
        st = path.stat()
        # Files written through mkstemp (safetensors, tempfile) are 0600: give them the modes `open` would.
        os.chmod(path, mode | (st.st_mode & 0o111 & ~current_umask()))
        size, digest = _hash_file(path, fsync=True)
        parts.setdefault(owner.get(rel, staging.key), {})[rel] = {"size": size, "sha256": digest}
        dst = target / rel
        for parent in [dst, *dst.parents]:
            if parent == target:
                break
            if parent != dst and (parent.is_file() or (parent.is_symlink() and not parent.is_dir())):
                raise ValueError(f"Cannot save {rel!r} into {target}: {parent} is a file, not a folder.")
            if parent == dst and parent.is_dir() and not parent.is_symlink():
                raise ValueError(f"Cannot save {rel!r} into {target}: {dst} is a folder. Move it away first.")
    for current, _, _ in os.walk(staging.path):
        _fsync_dir(Path(current))
    with _FolderLock(target) as lock:
        lock.exclusive()
        _settle(target)
        manifests = read_manifests(target)
        new_names = {rel for names in parts.values() for rel in names}
        mine = set(parts)
        claimed_keys = set()
        obsolete: set[str] = set()
        rewrites: dict[str, dict[str, Any] | None] = {}
        for name, data in manifests.items():
            kept = []
            changed = False
            for part in data["parts"]:
                key = (part["kind"], part["prefix"])
                claimed_keys.add(key)
                if name == manifest or key in mine:
                    obsolete |= set(part["files"]) - new_names
                    changed = True
                    continue
                files_left = {rel: meta for rel, meta in part["files"].items() if rel not in new_names}
                changed |= len(files_left) != len(part["files"])
                kept.append({**part, "files": files_left})
            if name != manifest and changed:
                rewrites[name] = {**data, "parts": kept} if any(p["files"] for p in kept) else None
        remaining = [rewrites.get(name, data) for name, data in manifests.items() if name != manifest]
        claimed = {
            rel for data in remaining if data is not None for part in data["parts"] for rel in part["files"]
        }
        for key, legacy_files in staging.legacy.items():  # a part saved before manifests existed
            if key in claimed_keys or key not in parts:
                continue
            for rel in _listing_top(target):
                if rel not in new_names and rel not in claimed and _legacy_match(legacy_files, rel):
                    obsolete.add(rel)
        data = {
            "format": _FORMAT,
            "version": _VERSION,
            "kind": staging.key[0],
            "prefix": staging.key[1],
            "commit": secrets.token_hex(8),
            "parts": [
                {"kind": key[0], "prefix": key[1], "files": dict(sorted(files_of.items()))}
                for key, files_of in parts.items()
            ],
            "pending": {"staging": staging.path.name, "obsolete": sorted(obsolete)},
        }
        for name, rewritten in rewrites.items():  # others give up the files this save takes over
            if rewritten is None:
                _remove_manifest(target, name)
            else:
                _write_manifest(target, name, rewritten)
        _write_manifest(target, manifest, data)  # the commit point
        staging.committed = True
        _roll_forward(target, manifest, data)


def _listing_top(directory: Path) -> list[str]:
    """Names of the plain files directly in `directory` (legacy files are never in sub-folders)."""
    with os.scandir(directory) as entries:
        return sorted(e.name for e in entries if e.is_file(follow_symlinks=False))


@contextlib.contextmanager
def save_file_set(
    directory: str | os.PathLike,
    kind: str,
    *,
    prefix: str | None = None,
    legacy_files: Callable[[str], bool] | Collection[str] | None = None,
) -> Iterator[Path]:
    """Write a set of files into `directory` as one atomic step that touches nothing else.

    ```python
    with save_file_set("outputs/rqvae", "rqvae_training") as staging:
        model.save_pretrained(staging)
        (staging / "notes.txt").write_text("...")
    ```

    Write the files into the yielded staging folder (inside `directory`, so on its filesystem). When the block
    ends normally they are committed (see the module docstring): they replace the files of the previous save of
    the same `kind` and `prefix`, files of that previous save that this one did not write are deleted, and every
    other entry of `directory` stays. A save killed at any instant leaves the old set or the new one loadable. If
    the block raises, the staging folder is removed and `directory` is untouched. Files get the modes `open`
    gives them (`0o666 & ~umask`); `directory` is created if needed.

    A save whose `directory` is inside another save's staging folder (in this process) writes straight into it:
    its files become a part of the outer save, recorded with their own `kind` and `prefix`.

    Args:
        directory (`str` or `os.PathLike`):
            The folder to save into: a new or existing folder, a mount point, `.`; not the filesystem root. A
            symlink to a folder saves into the folder it names.
        kind (`str`):
            What is saved (`"tokenizer"`, `"rqvae"`, ...): names the manifest and scopes what the save may delete.
        prefix (`str`, *optional*):
            The file-name prefix of the save, when it has one: saves with different prefixes coexist.
        legacy_files (`Callable[[str], bool]` or a collection of names, *optional*):
            For a folder saved before manifests existed (no manifest of this kind): the names of its top-level
            files this save may delete when it does not rewrite them. By default none are deleted.

    Yields:
        `Path`: the staging folder to write into.

    Raises:
        ValueError: `directory` is the filesystem root, a file, or a link to one; or a file cannot be placed (a
            folder of the same name is in the way).
        FileSetError: a manifest in `directory` is damaged.
    """
    manifest = manifest_name(kind, prefix)
    target = check_save_target(directory)
    nested = _active_staging(os.path.realpath(target))
    if nested is not None:
        outer, _ = nested
        target.mkdir(parents=True, exist_ok=True)
        before = _listing(outer.path)
        yield target
        after = _listing(outer.path)
        changed = {rel for rel, st in after.items() if before.get(rel) != st}
        outer.record((kind, prefix), changed, legacy_files)
        return
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    staging_path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
    staging = _Staging(staging_path, (kind, prefix))
    if legacy_files is not None:
        staging.legacy[(kind, prefix)] = legacy_files
    staging_fd = _hold_staging(staging_path)
    real = os.path.realpath(staging_path)
    with _ACTIVE_LOCK:
        _ACTIVE[real] = staging
    try:
        os.chmod(staging_path, 0o777 & ~current_umask())
        yield staging_path
        _commit(target, staging, manifest)
    except BaseException:
        if not staging.committed:
            _remove_tree(staging_path)
            if created:  # a failed save into a new folder leaves nothing behind (rmdir: only if empty)
                with contextlib.suppress(OSError):
                    os.rmdir(target)
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(real, None)
        if staging_fd is not None:
            os.close(staging_fd)


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileSet:
    """A committed set of files in a folder, as its manifest names them (see [`open_file_set`]).

    Attributes:
        directory: The folder.
        manifest: The manifest's file name.
        kind, prefix: The part of the manifest this set is.
        files: `{relative name: {"size": int, "sha256": str}}`.
        commit: The manifest's commit id (changes with every save).
    """

    directory: Path
    manifest: str
    kind: str
    prefix: str | None
    files: Mapping[str, Mapping[str, Any]]
    commit: str | None = None

    def __contains__(self, name: object) -> bool:
        return name in self.files

    def path(self, name: str) -> Path:
        """The path of the file `name` of the set."""
        return self.directory / name

    def read_bytes(self, name: str) -> bytes:
        """The bytes of the file `name` of the set (read them inside the [`open_file_set`] block)."""
        return self.path(name).read_bytes()

    def is_current(self) -> bool:
        """Whether the manifest still records this set's commit, complete: no save has committed into the
        folder since the set was opened. (Always true inside [`open_file_set`] where `flock` works; where it does
        not, check it after reading and read again when it is false.)"""
        try:
            with open(self.directory / self.manifest, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("commit") == self.commit and data.get("pending") is None

    def problems(self) -> list[str]:
        """How the files on disk differ from the manifest (size or SHA-256; missing files): one line each."""
        found = []
        for name, meta in self.files.items():
            try:
                size, digest = _hash_file(self.path(name))
            except FileNotFoundError:
                found.append(f"{self.path(name)} is missing")
                continue
            if size != meta["size"] or digest != meta["sha256"]:
                found.append(f"{self.path(name)} differs from what the save wrote")
        return found


def _mismatch_message(file_set: FileSet, problems: list[str]) -> str:
    return (
        f"{'; '.join(problems)} (per the manifest {file_set.directory / file_set.manifest}): the {file_set.kind} "
        f"files were changed after the save, by hand or by another program. Save the {file_set.kind} again, or "
        f"delete {file_set.manifest} to use the files as they are."
    )


@contextlib.contextmanager
def open_file_set(
    directory: str | os.PathLike, kind: str, prefix: str | None = None, on_mismatch: str = "warn"
) -> Iterator[FileSet | None]:
    """Hold a consistent view of the files of the last `kind` save in `directory` while the block reads them.

    An interrupted save is completed first (which needs write access to `directory`). Then a shared lock on the
    folder keeps every save of this library from committing until the block ends, so the files read in the block
    are the complete set of one save, and each file is checked against the manifest. A file that differs while no
    save is committing was changed by hand or by another program: with `on_mismatch="warn"` it is logged and read
    as it is (the caller's own checks then name anything invalid in it), with `"raise"` it is an error.

    Where `flock` is unavailable, a save that is committing is waited for (up to 10 s) and a set that changes
    while it is checked is checked again.

    Args:
        directory: The folder.
        kind, prefix: Which part to read (as given to [`save_file_set`]; a part of a larger save is found too).
        on_mismatch: `"warn"` (default) or `"raise"`.

    Yields:
        The [`FileSet`], or `None` when no manifest names a part of that kind (a folder saved by an older release
        or by another program: read its files as they are).

    Raises:
        FileSetError: a manifest is damaged, two manifests claim the part, an interrupted save cannot be
            completed, or (with `on_mismatch="raise"`) a file differs from the manifest.
    """
    if on_mismatch not in ("warn", "raise"):
        raise ValueError(f"on_mismatch must be 'warn' or 'raise'; got {on_mismatch!r}.")
    directory = Path(directory)
    if not directory.is_dir():
        yield None
        return
    with _FolderLock(directory) as lock:
        lock.shared()
        for attempt in range(3):
            manifests = _settled_manifests(directory, lock)
            file_set = _find_part(directory, manifests, kind, prefix)
            if file_set is None:
                yield None
                return
            problems = file_set.problems()
            if not problems:
                break
            if (
                lock.supported
                or attempt == 2
                or _find_part(directory, read_manifests(directory), kind, prefix) == file_set
            ):
                message = _mismatch_message(file_set, problems)
                if on_mismatch == "raise":
                    raise FileSetError(message)
                logger.warning("%s", message)
                break
        yield file_set


def _settled_manifests(directory: Path, lock: _FolderLock) -> dict[str, dict[str, Any]]:
    """The manifests of `directory` once no commit is pending (completing a dead one)."""
    manifests = read_manifests(directory)
    if not any(d.get("pending") is not None for d in manifests.values()):
        return manifests
    if not lock.supported:  # a live save may be committing: give it time before completing it
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            again = read_manifests(directory)
            if again != manifests:
                manifests = again
                if not any(d.get("pending") is not None for d in manifests.values()):
                    return manifests
                deadline = time.monotonic() + 10.0
    try:
        lock.exclusive()
        _settle(directory)
    except OSError as err:
        raise FileSetError(
            f"{directory}: holds a save that was interrupted after its commit point, and it cannot be completed "
            f"({err}). Give this process write access to the folder and load again, or run "
            "hf_semtok.io_utils.recover_directory() on it."
        ) from err
    finally:
        lock.shared()
    return read_manifests(directory)


def _find_part(
    directory: Path, manifests: Mapping[str, Mapping[str, Any]], kind: str, prefix: str | None
) -> FileSet | None:
    found = [
        (name, data, part)
        for name, data in manifests.items()
        for part in data["parts"]
        if part["kind"] == kind and part["prefix"] == prefix
    ]
    if not found:
        return None
    if len(found) > 1:
        raise FileSetError(
            f"{directory}: the manifests {[n for n, _, _ in found]} both claim the {kind} files. One was copied in "
            "from elsewhere; delete the stale one, or save the files again."
        )
    name, data, part = found[0]
    return FileSet(directory, name, kind, prefix, dict(part["files"]), data.get("commit"))
