"""The files on disk of a file-set save: atomic single-file writes, hashes, and the manifest format.

A manifest (`.hf_semtok_manifest.<kind>[.<prefix>].json`) names the files of one save with their sizes and
SHA-256, in *parts* (one per kind and prefix of the saves it holds), and, while a commit is in progress, a
`pending` entry (the staging folder and the files of the previous version to delete). This module reads, checks
and writes manifests (each write atomic and fsynced) and describes a committed set as a [`FileSet`]. The commit
protocol that uses them is in `file_sets.py` (the public entry point); the folder locks are in `file_locks.py`.

Part of the tokenizer package that ships beside every saved tokenizer: it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .safe_paths import read_regular

__all__ = [
    "MANIFEST_PREFIX",
    "STAGING_PREFIX",
    "STAGING_RE",
    "FileSet",
    "FileSetError",
    "atomic_write",
    "current_umask",
    "find_part",
    "fsync_dir",
    "hash_file",
    "manifest_name",
    "mismatch_message",
    "new_manifest",
    "read_manifests",
    "remove_manifest",
    "write_manifest",
]

#: Manifests are `.hf_semtok_manifest.<kind>.json`, or `.hf_semtok_manifest.<kind>.<prefix>.json` for a save with
#: a file-name prefix (`tokenizer.save_pretrained(d, filename_prefix="p")`).
MANIFEST_PREFIX = ".hf_semtok_manifest."
#: Staging folders (and temporary manifests) of saves in progress: `.hf_semtok_tmp-` + 8 random characters.
STAGING_PREFIX = ".hf_semtok_tmp-"
#: The name of a staging folder that `tempfile.mkdtemp(prefix=STAGING_PREFIX)` makes.
STAGING_RE = re.compile(r"^\.hf_semtok_tmp-[A-Za-z0-9_]{8}$")
_FORMAT = "hf_semtok.file_set"
_VERSION = 1
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CHUNK = 1 << 20
#: A manifest larger than this, or naming more files, was not written by hf_semtok (a tokenizer names ~20).
MAX_MANIFEST_BYTES = 64 << 20
MAX_MANIFEST_FILES = 100_000
#: How many differing files a check names before it stops looking.
_MAX_PROBLEMS = 20


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


# ----------------------------------------------------------------------------------------------------------
# Atomic single-file writes, fsync and hashes
# ----------------------------------------------------------------------------------------------------------
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
    if path.is_dir():
        raise ValueError(f"Cannot write the file {str(path)!r}: it is a folder. Give a file path inside it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hf_semtok_write-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            fsync_fd(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_fd(fd: int) -> None:
    """`os.fsync(fd)`, where the filesystem supports it."""
    try:
        os.fsync(fd)
    except OSError as err:  # a filesystem without fsync: durability is its own business
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def fsync_dir(directory: Path) -> None:
    """Make the renames in `directory` durable, where the filesystem allows a folder's fsync."""
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


def hash_file(path: Path, fsync: bool = False) -> tuple[int, str]:
    """The size and SHA-256 (hex) of the file `path`, read in chunks; with `fsync`, the file is fsynced too."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileSetError(
            f"{path} is not a regular file (a FIFO, a device or a folder); it cannot be hashed."
        )
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if fsync:
            fsync_fd(fd)
    finally:
        os.close(fd)
    return size, digest.hexdigest()


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
    if sum(
        len(p["files"]) for p in data["parts"] if isinstance(p, dict) and isinstance(p.get("files"), dict)
    ) > (MAX_MANIFEST_FILES):
        raise FileSetError(f"{bad} (it names more than {MAX_MANIFEST_FILES:,} files). {hint}")
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
            or not STAGING_RE.match(pending["staging"])
            or not isinstance(pending.get("obsolete"), (list, dict))
            or len(pending["obsolete"]) > MAX_MANIFEST_FILES
        ):
            raise FileSetError(f"{bad} (its 'pending' entry is malformed). {hint}")
        for name in pending["obsolete"]:
            _check_relpath(name, source)
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` refusing a key given twice (a JSON reader would silently keep the last one)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {twice!r} appears twice in one object")
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
            raw = read_regular(path, MAX_MANIFEST_BYTES, "file-set manifest")
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
        except (OSError, ValueError, RecursionError) as err:
            raise FileSetError(
                f"{path}: cannot read this file-set manifest ({err}). Delete it to load the files as they are, "
                "then save again."
            ) from err
        found[entry.name] = _check_manifest(data, path)
    return found


def new_manifest(
    key: tuple[str, str | None], parts: Mapping[Any, Mapping[str, Any]], pending: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest of a save of `key` (kind, prefix) holding `parts` (`{(kind, prefix): {name: meta}}`), with its
    `pending` entry (staging folder name, obsolete files with their sizes and hashes).

    The commit id is a hash of the parts, so two saves of the same files write byte-identical manifests (a
    content-addressed cache, `git diff` or the Hub see no change where there is none)."""
    listed = [
        {"kind": part[0], "prefix": part[1], "files": dict(sorted(files_of.items()))}
        for part, files_of in sorted(parts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]
    canonical = json.dumps([key[0], key[1], listed], sort_keys=True, ensure_ascii=False)
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "kind": key[0],
        "prefix": key[1],
        "commit": hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()[:16],
        "parts": listed,
        "pending": dict(pending),
    }


def write_manifest(directory: Path, name: str, data: Mapping[str, Any]) -> None:
    """Write a manifest atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
    tmp = directory / f"{STAGING_PREFIX}{secrets.token_hex(4)}.json"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            fsync_fd(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def remove_manifest(directory: Path, name: str) -> None:
    """Delete the manifest `name` of `directory` (durably; a missing one is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / name)
    fsync_dir(directory)


# ----------------------------------------------------------------------------------------------------------
# A committed set, as its manifest names it
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
            if len(found) >= _MAX_PROBLEMS:
                found.append(f"and possibly more of its {len(self.files):,} files")
                break
            try:
                st = os.stat(self.path(name))
            except (FileNotFoundError, NotADirectoryError):
                found.append(f"{self.path(name)} is missing")
                continue
            except OSError as err:
                found.append(f"{self.path(name)} cannot be read ({err.strerror})")
                continue
            if not stat.S_ISREG(st.st_mode):
                found.append(f"{self.path(name)} is not a regular file")
                continue
            if st.st_size != meta["size"]:
                found.append(f"{self.path(name)} differs from what the save wrote")
                continue
            size, digest = hash_file(self.path(name))
            if size != meta["size"] or digest != meta["sha256"]:
                found.append(f"{self.path(name)} differs from what the save wrote")
        return found


def mismatch_message(file_set: FileSet, problems: list[str]) -> str:
    """The message for files of `file_set` that differ from its manifest (`problems`, from `FileSet.problems`)."""
    return (
        f"{'; '.join(problems)} (per the manifest {file_set.directory / file_set.manifest}): the {file_set.kind} "
        f"files were changed after the save, by hand or by another program. Save the {file_set.kind} again, or "
        f"delete {file_set.manifest} to use the files as they are."
    )


def find_part(
    directory: Path, manifests: Mapping[str, Mapping[str, Any]], kind: str, prefix: str | None
) -> FileSet | None:
    """The [`FileSet`] of the part (`kind`, `prefix`) among `manifests`, or `None` when no manifest names it.

    Raises:
        FileSetError: two manifests claim the part.
    """
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
