"""Saves that own only their files: a set of files committed into a folder in one step, with a manifest.

A save writes its files into a private staging folder *inside* the target folder (`.hf_semtok_tmp-XXXXXXXX`),
then commits them: it writes a small manifest (`.hf_semtok_manifest.<kind>[.<prefix>].json`: the file names with
their sizes and SHA-256) and moves each staged file onto its name. Nothing else in the folder is touched: the
files of other kinds, the user's own files, sub-folders and mounted volumes stay as they are. The target folder
itself is never renamed, so it may be a mount point, `.`, or a name of any valid length.

Three rules keep a folder safe from the saves and loads of this library, whatever came with it (a `git clone` or
`snapshot_download` of a Hub repository may bring symlinks and manifests):

- **A load only reads.** [`open_file_set`] never completes, removes or locks anything on disk; a save that was
  interrupted after its commit point is a clear error naming the repair command ([`recover_file_sets`],
  `hf-semtok repair DIR`), which says what it will do before doing it.
- **A save never follows a link** below its target: every write, move and delete walks the path through folder
  descriptors opened with `O_NOFOLLOW` (`safe_paths.py`); a link in the way is an error.
- **A save deletes only bytes it wrote, and replaces only files it owns.** A manifest is data, never an order: a
  file of the previous save of the same kind is deleted only if its bytes still match the manifest's hash, and a
  pending entry found in a folder is never acted on by a save. A file written by another kind of save, or by no
  save, is replaced only with `overwrite=True`.

The commit is crash-safe. The new manifest is first written with a `pending` entry (the staging folder and the
files of the previous version to delete, with their hashes); its atomic rename is the commit point. The staged
files are then moved into place, the old files deleted, and the manifest rewritten without `pending`. A save
killed before the commit point leaves the old version untouched (and a staging folder that the repair removes);
one killed after it leaves a pending manifest that loads refuse until the repair completes it, or a new save of
the same kind replaces it. Readers hold a shared lock on the folder while they read (a commit takes the
exclusive lock only for its renames) and check every file against the manifest, so a reader sees the complete
old set or the complete new set, never a mix. The manifest's commit id is a hash of its content, so two saves of
the same files give byte-identical folders.

A manifest is data, never an order: a save deletes an earlier version's files only among the names its kind can
write ([`register_file_names`]) and only if their bytes are the recorded ones, so a manifest that came with a folder
can narrow what is deleted, never widen it. Files that no manifest names (a folder saved without manifests
included) are foreign: replaced only with `overwrite=True`, never deleted. Saves nest: a save whose target is inside another save's staging folder
(e.g. the tokenizer saved within an LM stage's output) writes straight into it, and the outer manifest records the
inner save's files as a *part* of its own kind, so a later save of that kind finds and replaces them.

This module holds the commit protocol and the public entry points; `manifests.py` holds the manifest format,
atomic single-file writes and hashes, `safe_paths.py` the link-free file operations and `file_locks.py` the folder
locks and the staging folders. All four ship beside every saved tokenizer, so they import only the standard
library. Locks use `fcntl.flock` (POSIX); where it is unavailable, saves and loads still work, but two processes
saving into one folder at the same time are not coordinated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from .file_locks import (
    LOCK_TIMEOUT_S,
    FolderLock,
    PartKey,
    Staging,
    active_staging,
    hold_staging,
    listing,
    staging_in_use,
    staging_is_dead,
)
from .manifests import (
    MANIFEST_PREFIX,
    STAGING_PREFIX,
    STAGING_RE,
    FileSet,
    FileSetError,
    atomic_write,
    current_umask,
    find_part,
    fsync_dir,
    hash_file,
    manifest_name,
    mismatch_message,
    new_manifest,
    read_manifests,
    remove_manifest,
    write_manifest,
)
from .safe_paths import LinkError, hash_regular, open_folder, regular_stat, remove_if_unchanged

__all__ = [
    "LOCK_TIMEOUT_S",
    "MANIFEST_PREFIX",
    "atomic_write",
    "STAGING_PREFIX",
    "FileSet",
    "FileSetError",
    "LinkError",
    "check_can_save",
    "check_save_target",
    "current_umask",
    "manifest_name",
    "open_file_set",
    "read_manifests",
    "recover_file_sets",
    "register_file_names",
    "repair_plan",
    "save_file_set",
]

logger = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: What the deprecated `legacy_files` argument was: names, or a predicate on names.
LegacyFiles = Callable[[str], bool] | Collection[str]

#: Kind -> (prefix -> predicate on relative names): the file names a save of that kind can write (see
#: [`register_file_names`]). Kinds not registered may delete any name their previous manifest lists.
_KIND_NAMES: dict[str, Callable[[str | None], Callable[[str], bool]]] = {}


def register_file_names(kind: str, names_of: Callable[[str | None], Callable[[str], bool]]) -> None:
    """Declare the file names a save of `kind` can write, given its prefix.

    A save, or `hf-semtok repair`, deletes files of an earlier version of `kind` that it does not rewrite only
    among these names, and only if their bytes are the ones the manifest records. So a manifest that came with a
    folder (a clone, a download) can narrow what is deleted, never widen it to a user's `README.md` or `train.py`.

    Args:
        kind: The save's kind (`"tokenizer"`, ...).
        names_of: Given the save's prefix (or `None`), a predicate on relative file names.
    """
    _KIND_NAMES[kind] = names_of


def _may_delete(parts: Collection[PartKey], rel: str) -> bool:
    """Whether one of `parts` (kind, prefix) can have written `rel` (see [`register_file_names`])."""
    return any(kind not in _KIND_NAMES or _KIND_NAMES[kind](prefix)(rel) for kind, prefix in parts)


def _part_keys(data: Mapping[str, Any]) -> list[PartKey]:
    return [(part["kind"], part["prefix"]) for part in data["parts"]]


def check_save_target(directory: str | os.PathLike) -> Path:
    """The absolute folder a save into `directory` writes to; a symlink to a folder gives the folder it names.

    Raises:
        ValueError: `directory` is the filesystem root, an existing file, or a symlink to something that is not a
            folder.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"The folder to save into must be a path (str or os.PathLike); got {type(directory).__name__}."
        )
    if "\0" in os.fspath(directory):
        raise ValueError(f"The folder to save into holds a NUL character: {os.fspath(directory)!r}.")
    if not os.fspath(directory):
        raise ValueError(
            "The folder to save into is empty (''); pass a folder, e.g. './outputs/model' or '.'."
        )
    path = Path(directory)
    try:
        os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as err:  # e.g. [Errno 36]: a name too long for the file system
        hint = {
            errno.ENAMETOOLONG: "Choose a shorter path.",
            errno.ENOTDIR: "A part of the path is a file, not a folder.",
        }.get(err.errno, "Check the path.")
        raise ValueError(f"Cannot save into {str(path)!r}: {err.strerror}. {hint}") from None
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


# ----------------------------------------------------------------------------------------------------------
# Moving and deleting, never through a link
# ----------------------------------------------------------------------------------------------------------
def _remove_own_tree(path: Path) -> None:
    """Remove a staging folder this process created (`shutil.rmtree` never follows links inside it)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # a leftover that cannot be removed must not block the save
        logger.warning("Could not remove %s: %s", path, exc)


def _place(target: Path, staging_name: str, rel: str) -> None:
    """Move the staged file `staging_name/rel` onto `rel` in `target` in one step, walking both paths without
    following links (a copy and a rename where `rel` is on another filesystem, e.g. a mounted volume)."""
    parent, _, name = rel.rpartition("/")
    src_dir = f"{staging_name}/{parent}" if parent else staging_name
    with (
        open_folder(target, src_dir, what="move") as src_fd,
        open_folder(target, parent, create=True, what="write") as dst_fd,
    ):
        found = regular_stat(dst_fd, name)
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise ValueError(f"Cannot save {rel!r} into {target}: it is a folder. Move it away first.")
        try:
            os.replace(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
        tmp = f"{STAGING_PREFIX}{secrets.token_hex(4)}.part"
        src = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=src_fd)
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666, dir_fd=dst_fd)
            try:
                with os.fdopen(out, "wb", closefd=False) as handle:
                    while chunk := os.read(src, 1 << 20):
                        handle.write(chunk)
                    handle.flush()
                    os.fchmod(out, os.fstat(src).st_mode & 0o777)
                    os.fsync(out)
            finally:
                os.close(out)
            os.replace(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dst_fd)
            raise
        finally:
            os.close(src)
        os.unlink(name, dir_fd=src_fd)


def _hash_below(directory: Path, folder: str, rel: str) -> tuple[int, str] | None:
    """Size and SHA-256 of the regular file `folder/rel` below `directory`, walked without following links
    (`None`: missing or not a regular file).

    Raises:
        LinkError: a folder on the way is a link.
    """
    parent, _, base = rel.rpartition("/")
    try:
        with open_folder(directory, "/".join(p for p in (folder, parent) if p), what="move") as fd:
            return hash_regular(fd, base)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _finish(directory: Path, name: str, data: dict[str, Any]) -> list[str]:
    """Finish the commit of the pending manifest `name`: staged files that match it into place, the obsolete files
    whose bytes still match deleted, `pending` dropped. Returns what was kept that the commit meant to delete."""
    pending = data["pending"]
    staging = pending["staging"]
    kept = []
    for part in data["parts"]:
        for rel, meta in part["files"].items():
            staged = _hash_below(directory, staging, rel)
            if staged is None:
                continue  # placed already (or never staged: a file missing is reported at load)
            if staged != (meta["size"], meta["sha256"]):
                raise FileSetError(
                    f"{directory / staging / rel}: differs from what the manifest {name} records; not moving it. "
                    f"Delete {name} and {staging} and save again."
                )
            _place(directory, staging, rel)
    named = {rel for part in data["parts"] for rel in part["files"]}
    obsolete = pending["obsolete"]
    for rel in obsolete:
        if rel in named:
            continue
        if not _may_delete(_part_keys(data), rel):
            kept.append(rel)  # not a name this kind writes: the manifest cannot order its deletion
            continue
        meta = obsolete[rel] if isinstance(obsolete, dict) else None
        if meta is None or not remove_if_unchanged(directory, rel, meta):
            if os.path.lexists(directory / rel):
                kept.append(rel)
    fsync_dir(directory)
    write_manifest(directory, name, {k: v for k, v in data.items() if k != "pending"})
    return kept


def _dead_leftovers(directory: Path) -> list[str]:
    """Staging folders and temporary manifests that saves killed in this folder left (none of a live save)."""
    found = []
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.startswith(STAGING_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                if STAGING_RE.match(entry.name) and staging_is_dead(directory / entry.name):
                    found.append(entry.name)
            elif entry.is_file(follow_symlinks=False) and entry.name.endswith((".json", ".part")):
                found.append(entry.name)
    return found


def _repair_of(
    directory: Path, name: str, data: Mapping[str, Any]
) -> tuple[list[str], list[str], str | None]:
    """What completing the pending manifest `name` would do: the files it would move into place, those it would
    delete, and why it cannot be completed (`None`: it can). Reads only."""
    staging = data["pending"]["staging"]
    path = directory / staging
    if path.is_symlink() or not path.is_dir():
        return [], [], f"its staging folder {staging} is missing or a link"
    if not staging_is_dead(path):
        return [], [], f"its staging folder {staging} is in use by a live save"
    moves = []
    for part in data["parts"]:
        for rel, meta in part["files"].items():
            try:
                staged = _hash_below(directory, staging, rel)
            except LinkError as err:
                return [], [], str(err)
            if staged is None:  # placed already: then the file in place must be the one the manifest records
                try:
                    in_place = _hash_below(directory, "", rel)
                except LinkError:
                    in_place = None
                if in_place != (meta["size"], meta["sha256"]):
                    return [], [], f"{rel} is neither staged in {staging} nor in place as that save wrote it"
                continue
            if staged != (meta["size"], meta["sha256"]):
                return [], [], f"{staging}/{rel} differs from what the manifest records"
            try:
                _check_destination(directory, rel)
            except ValueError as err:  # LinkError included
                return [], [], str(err)
            moves.append(rel)
    named = {rel for part in data["parts"] for rel in part["files"]}
    obsolete = data["pending"]["obsolete"]
    deletes = []
    if isinstance(obsolete, dict):
        for rel, meta in obsolete.items():
            if rel in named or not _may_delete(_part_keys(data), rel):
                continue
            try:
                if _hash_below(directory, "", rel) == (meta["size"], meta["sha256"]):
                    deletes.append(rel)
            except LinkError:
                continue
    return moves, deletes, None


def _names(names: list[str]) -> str:
    return (
        ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        if names
        else "none"
    )


def repair_plan(directory: str | os.PathLike) -> list[str]:
    """What [`recover_file_sets`] would do in `directory`, one line each, naming every file, without doing any of
    it."""
    directory = Path(directory)
    lines = []
    for name, data in read_manifests(directory).items():
        if data.get("pending") is None:
            continue
        moves, deletes, problem = _repair_of(directory, name, data)
        if problem:
            lines.append(
                f"leave {name} as it is: its interrupted save cannot be completed ({problem}). If you did not make "
                "it, it came with the folder: delete it by hand, or save again"
            )
            continue
        lines.append(
            f"complete the interrupted save {name}: move into place {_names(moves)}; delete (files of the version "
            f"it replaced, with the bytes that save recorded) {_names(deletes)}"
        )
    pending_staging = {
        d["pending"]["staging"] for d in read_manifests(directory).values() if d.get("pending")
    }
    for leftover in _dead_leftovers(directory):
        if leftover not in pending_staging:
            lines.append(f"remove {leftover}, left by a save that was killed before its commit point")
    return lines


def recover_file_sets(directory: str | os.PathLike) -> list[str]:
    """Complete the saves into `directory` that were interrupted after their commit point, and remove what saves
    killed before it left (staging folders, temporary manifests).

    This is the explicit repair: loads never change a folder, and saves never complete another save's commit (a
    manifest that came with a cloned folder is data, not an order). It logs what it will do before doing it,
    naming every file (see [`repair_plan`]; `hf-semtok repair DIR` shows the plan and asks first). A pending entry
    is completed only when its staging folder is a real, dead staging folder whose files match the manifest and
    every path is free of links; otherwise it is left as it is. Moves and deletes never follow a link, and a file
    is deleted only if its bytes are the ones the interrupted save recorded.

    Returns:
        The manifests completed and the leftovers removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    with FolderLock(directory) as lock:
        lock.exclusive()
        for line in repair_plan(directory):
            logger.warning("Repairing %s: %s.", directory, line)
        done = []
        for name, data in read_manifests(directory).items():
            if data.get("pending") is None or _repair_of(directory, name, data)[2] is not None:
                continue
            kept = _finish(directory, name, data)
            if kept:
                logger.warning(
                    "%s: kept %s: changed since that save wrote them, or behind a link.", directory, kept
                )
            _remove_staging(directory, data["pending"]["staging"])
            done.append(name)
        pending_staging = {
            d["pending"]["staging"] for d in read_manifests(directory).values() if d.get("pending")
        }
        for leftover in _dead_leftovers(directory):
            if leftover not in pending_staging:
                _remove_staging(directory, leftover)
                done.append(leftover)
        return done


def _remove_staging(directory: Path, name: str) -> None:
    """Remove the leftover `name` of `directory` (a staging folder, never followed if it is a link)."""
    path = directory / name
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    elif path.is_dir():
        _remove_own_tree(path)


# ----------------------------------------------------------------------------------------------------------
# Committing a save
# ----------------------------------------------------------------------------------------------------------
PartFiles = dict[PartKey, dict[str, dict[str, Any]]]


def _check_staged_file(target: Path, rel: str, path: Path) -> None:
    """Refuse a staged file that is not a regular file or that has a name reserved for the saves' own files."""
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


def _check_destination(target: Path, rel: str) -> tuple[int, str] | None:
    """Refuse a file whose place in `target` is a folder, or whose path goes through a link or a file; return the
    size and hash of the file it would replace (`None`: nothing there)."""
    parent, _, name = rel.rpartition("/")
    try:
        with open_folder(target, parent, what="write") as fd:
            found = regular_stat(fd, name)
            if found is None:
                return None
            if stat.S_ISDIR(found.st_mode):
                raise ValueError(
                    f"Cannot save {rel!r} into {target}: {target / rel} is a folder. Move it away first."
                )
            if stat.S_ISLNK(found.st_mode):
                raise LinkError(
                    f"Cannot save {rel!r} into {target}: {target / rel} is a symbolic link. hf_semtok never writes "
                    "through links inside a save folder; remove the link or save into another folder."
                )
            return hash_regular(fd, name) or (-1, "")
    except FileNotFoundError:
        return None


def _hash_staged_files(target: Path, staging: Staging) -> PartFiles:
    """Check every staged file, give it the mode `open` would, fsync and hash it: `{part: {name: meta}}`."""
    files = listing(staging.path)
    mode = 0o666 & ~current_umask()
    owner: dict[str, PartKey] = {}
    for key, names in staging.parts.items():
        for rel in names:
            owner[rel] = key
    parts: PartFiles = {staging.key: {}}
    for rel in sorted(files):
        path = staging.path / rel
        _check_staged_file(target, rel, path)
        st = path.stat()
        # Files written through mkstemp (safetensors, tempfile) are 0600: give them the modes `open` would.
        os.chmod(path, mode | (st.st_mode & 0o111 & ~current_umask()))
        size, digest = hash_file(path, fsync=True)
        parts.setdefault(owner.get(rel, staging.key), {})[rel] = {"size": size, "sha256": digest}
    for current, _, _ in os.walk(staging.path):
        fsync_dir(Path(current))
    return parts


def _describe(key: PartKey) -> str:
    return f"a {key[0]!r} save" + (f" with prefix {key[1]!r}" if key[1] else "")


def _owners(manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, PartKey]]:
    """`{file name: (manifest, part)}` of every file the folder's manifests name."""
    return {
        rel: (name, (part["kind"], part["prefix"]))
        for name, data in manifests.items()
        for part in data["parts"]
        for rel in part["files"]
    }


def _check_owners(
    target: Path,
    key: PartKey,
    manifest: str,
    mine: Collection[PartKey],
    owner_of: Mapping[str, tuple[str, PartKey]],
    new_files: Mapping[str, Mapping[str, Any] | None],
) -> None:
    """One owner per file name: refuse to replace a file of `new_files` that another kind of save, or no save,
    wrote. Files of these parts and identical bytes (`new_files[rel]`, when known) pass.

    Raises:
        FileSetError: naming the file, who wrote it, and `overwrite=True`.
    """
    for rel in sorted(new_files):
        existing = _check_destination(target, rel)
        if existing is None:
            continue
        owner = owner_of.get(rel)
        if owner is not None and (owner[0] == manifest or owner[1] in mine):
            continue
        meta = new_files[rel]
        if meta is not None and existing == (meta["size"], meta["sha256"]):
            continue
        whose = (
            f"written by {_describe(owner[1])} ({owner[0]})"
            if owner
            else "that no hf_semtok save wrote (no manifest in the folder names it)"
        )
        raise FileSetError(
            f"Cannot save {_describe(key)} into {target}: it would replace {rel!r}, {whose}. Save into another "
            "folder (each save owns its file names), or pass overwrite=True to replace it."
        )


def _plan(
    target: Path,
    manifests: Mapping[str, Mapping[str, Any]],
    manifest: str,
    parts: PartFiles,
    staging: Staging,
    overwrite: bool,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any] | None]]:
    """What a save of `parts` into `manifest` does to the folder's other files.

    Returns:
        The files of the previous version of its parts that it does not rewrite, with the size and hash they must
        still have to be deleted; and the other manifests rewritten without the files it takes over (`None`:
        nothing left, remove it).

    Raises:
        FileSetError: a file of this save would replace one written by another kind of save, or by no save, and
            `overwrite` is false.
    """
    new_files = {rel: meta for names in parts.values() for rel, meta in names.items()}
    new_names = set(new_files)
    mine = set(parts)
    owner_of = _owners(manifests)
    if not overwrite:
        _check_owners(target, staging.key, manifest, mine, owner_of, new_files)
    obsolete: dict[str, dict[str, Any]] = {}
    rewrites: dict[str, dict[str, Any] | None] = {}
    for name, data in manifests.items():
        kept = []
        changed = False
        for part in data["parts"]:
            key = (part["kind"], part["prefix"])
            if name == manifest or key in mine:
                if data.get("pending") is None:  # an interrupted save's list is not ours to act on
                    obsolete.update(
                        {
                            r: m
                            for r, m in part["files"].items()
                            if r not in new_names and _may_delete([key], r)
                        }
                    )
                changed = True
                continue
            files_left = {rel: meta for rel, meta in part["files"].items() if rel not in new_names}
            changed |= len(files_left) != len(part["files"])
            kept.append({**part, "files": files_left})
        if name != manifest and changed:
            rewrites[name] = {**data, "parts": kept} if any(p["files"] for p in kept) else None
    return obsolete, rewrites


def check_can_save(
    directory: str | os.PathLike,
    kind: str,
    names: Collection[str],
    *,
    prefix: str | None = None,
    parts: Collection[PartKey] = (),
    overwrite: bool = False,
) -> None:
    """Before long work whose result a save of `kind` will write into `directory`: refuse now, as the save would
    later, when one of `names` is in the way (a file of another kind of save, or of no save, with `overwrite`
    false; a folder; a path through a link). Reads only.

    Args:
        directory: The folder the save will go to (need not exist).
        kind, prefix: The save's kind and prefix.
        names: File names the save will write (relative to `directory`).
        parts: Other parts (kind, prefix) the save will hold (e.g. the tokenizer saved inside an LM stage).
        overwrite: As for [`save_file_set`].

    Raises:
        FileSetError, LinkError, ValueError: as the save would.
    """
    target = check_save_target(directory)
    if not target.is_dir() or overwrite:
        return
    manifest = manifest_name(kind, prefix)
    owners = _owners(read_manifests(target))
    _check_owners(target, (kind, prefix), manifest, {(kind, prefix), *parts}, owners, dict.fromkeys(names))


def _commit(target: Path, staging: Staging, manifest: str, overwrite: bool) -> None:
    """Commit the staged files into `target` (see the module docstring): with the folder's exclusive lock, write
    the pending manifest (the commit point), then finish it."""
    parts = _hash_staged_files(target, staging)
    with FolderLock(target) as lock:
        lock.exclusive()
        manifests = read_manifests(target)
        if os.path.lexists(target / manifest) and manifest not in manifests:
            raise FileSetError(
                f"Cannot save into {target}: {manifest} is there but is not a regular file (a folder or a link), "
                "so this save cannot record its files. Move it away, then save again."
            )
        obsolete, rewrites = _plan(target, manifests, manifest, parts, staging, overwrite)
        data = new_manifest(
            staging.key, parts, {"staging": staging.path.name, "obsolete": dict(sorted(obsolete.items()))}
        )
        for name, rewritten in rewrites.items():  # others give up the files this save takes over
            if rewritten is None:
                remove_manifest(target, name)
            else:
                write_manifest(target, name, rewritten)
        write_manifest(target, manifest, data)  # the commit point
        staging.committed = True
        _finish(target, manifest, data)
        _remove_own_tree(staging.path)
        leftovers = _dead_leftovers(target)
    if leftovers:
        logger.warning(
            "%s holds %d leftover(s) of saves that were killed (%s); run `hf-semtok repair %s` to remove them.",
            target,
            len(leftovers),
            ", ".join(leftovers[:3]),
            target,
        )


@contextlib.contextmanager
def _nested_save(outer: Staging, target: Path, key: PartKey) -> Iterator[Path]:
    """A save into `target` inside the staging folder of `outer`: written in place, recorded as a part of it."""
    target.mkdir(parents=True, exist_ok=True)
    before = listing(outer.path)
    yield target
    after = listing(outer.path)
    changed = {rel for rel, st in after.items() if before.get(rel) != st}
    outer.record(key, changed)


def _unwritable(target: Path, err: OSError) -> OSError:
    """The error of a save that cannot create its folder or its staging folder: the same OSError type, saying so."""
    return type(err)(
        err.errno,
        f"Cannot save into {target}: creating a folder there failed ({err.strerror}). Save into a folder on a "
        "regular filesystem that you can write.",
    )


@contextlib.contextmanager
def _staged_save(target: Path, key: PartKey) -> Iterator[Staging]:
    """A staging folder in `target` for the block, created and locked under the folder's lock (so no other save's
    clean-up can take it); removed (with `target`, if this save created it) when the block raises before the
    commit point."""
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(target, err) from None
    with FolderLock(target) as lock:
        lock.exclusive()
        try:
            staging = Staging(Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target)), key)
        except OSError as err:
            raise _unwritable(target, err) from None
        try:
            staging_fd = hold_staging(staging.path)
        except BaseException:
            _remove_own_tree(staging.path)
            raise
    with staging_in_use(staging, staging_fd):
        try:
            os.chmod(staging.path, 0o777 & ~current_umask())
            yield staging
        except BaseException:
            if not staging.committed:
                _remove_own_tree(staging.path)
                if created:  # a failed save into a new folder leaves nothing behind (rmdir: only if empty)
                    with contextlib.suppress(OSError):
                        os.rmdir(target)
            raise


@contextlib.contextmanager
def save_file_set(
    directory: str | os.PathLike,
    kind: str,
    *,
    prefix: str | None = None,
    legacy_files: LegacyFiles | None = None,
    overwrite: bool = False,
) -> Iterator[Path]:
    """Write a set of files into `directory` as one atomic step that touches nothing else.

    ```python
    with save_file_set("outputs/rqvae", "rqvae_training") as staging:
        model.save_pretrained(staging)
        (staging / "notes.txt").write_text("...")
    ```

    Write the files into the yielded staging folder (inside `directory`, so on its filesystem). When the block
    ends normally they are committed (see the module docstring): they replace the files of the previous save of
    the same `kind` and `prefix`; files of that previous save that this one did not write are deleted if their
    bytes are still the ones it wrote; every other entry of `directory` stays. A save never writes, moves or
    deletes through a symlink below `directory`. A save killed at any instant leaves the old set or the new one.
    If the block raises, the staging folder is removed and `directory` is untouched. Files get the modes `open`
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
        legacy_files (*optional*):
            Deprecated and ignored: files no manifest names are never deleted, and replaced only with
            `overwrite=True`.
        overwrite (`bool`, *optional*, defaults to `False`):
            Replace files of the same name that another kind of save, or no save, wrote. By default such a save
            is refused with a `FileSetError`, so one save never silently replaces another's files.

    Yields:
        `Path`: the staging folder to write into.

    Raises:
        ValueError: `directory` is the filesystem root, a file, or a link to one; or a file cannot be placed (a
            folder of the same name is in the way).
        LinkError: a file's path below `directory` goes through a symlink.
        FileSetError: a manifest in `directory` is damaged, or a file would replace another save's (see
            `overwrite`).
    """
    if legacy_files is not None:
        warnings.warn(
            "save_file_set(legacy_files=...) is deprecated and ignored: files no manifest names are never "
            "deleted, and replaced only with overwrite=True.",
            FutureWarning,
            stacklevel=3,
        )
    manifest = manifest_name(kind, prefix)
    target = check_save_target(directory)
    nested = active_staging(os.path.realpath(target))
    if nested is not None:
        with _nested_save(nested[0], target, (kind, prefix)) as path:
            yield path
        return
    with _staged_save(target, (kind, prefix)) as staging:
        yield staging.path
        _commit(target, staging, manifest, overwrite)


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_file_set(
    directory: str | os.PathLike, kind: str, prefix: str | None = None, on_mismatch: str = "warn"
) -> Iterator[FileSet | None]:
    """Hold a consistent view of the files of the last `kind` save in `directory` while the block reads them.

    A load only reads: it never completes, removes or locks anything on disk, and works on a read-only folder. A
    shared `flock` on the folder (no lock file) keeps every save of this library from committing until the block
    ends, so the files read in the block are the complete set of one save, and each file is checked against the
    manifest. A file that differs while no save is committing was changed by hand or by another program: with
    `on_mismatch="warn"` it is logged and read as it is (the caller's own checks then name anything invalid in
    it), with `"raise"` it is an error. A save that was interrupted after its commit point is an error that names
    the repair command; nothing is rolled forward.

    Args:
        directory: The folder.
        kind, prefix: Which part to read (as given to [`save_file_set`]; a part of a larger save is found too).
        on_mismatch: `"warn"` (default) or `"raise"`.

    Yields:
        The [`FileSet`], or `None` when no manifest names a part of that kind (a folder saved by an older release
        or by another program: read its files as they are).

    Raises:
        FileSetError: a manifest is damaged, two manifests claim the part, the save of the part was interrupted
            after its commit point, or (with `on_mismatch="raise"`) a file differs from the manifest.
    """
    if on_mismatch not in ("warn", "raise"):
        raise ValueError(f"on_mismatch must be 'warn' or 'raise'; got {on_mismatch!r}.")
    directory = Path(directory)
    if not directory.is_dir():
        yield None
        return
    with FolderLock(directory) as lock:
        lock.shared()
        for attempt in range(3):
            manifests = _committed_manifests(directory, lock, kind, prefix)
            file_set = find_part(directory, manifests, kind, prefix)
            if file_set is None:
                yield None
                return
            problems = file_set.problems()
            if not problems:
                break
            if (
                lock.supported
                or attempt == 2
                or find_part(directory, read_manifests(directory), kind, prefix) == file_set
            ):
                message = mismatch_message(file_set, problems)
                if on_mismatch == "raise":
                    raise FileSetError(message)
                logger.warning("%s", message)
                break
        yield file_set


def _committed_manifests(
    directory: Path, lock: FolderLock, kind: str, prefix: str | None
) -> dict[str, dict[str, Any]]:
    """The manifests of `directory`, refusing a pending commit of the part read (never completing it)."""
    manifests = read_manifests(directory)
    if not lock.supported:  # a live save may be committing: give it time to finish
        deadline = time.monotonic() + 10.0
        while _pending_of(manifests, kind, prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
            manifests = read_manifests(directory)
    name = _pending_of(manifests, kind, prefix)
    if name is not None:
        raise FileSetError(
            f"{directory}: the last {kind} save into this folder was interrupted after its commit point (the "
            f"manifest {name} still lists a pending commit from {manifests[name]['pending']['staging']}). Loading "
            f"never changes a folder. Run `hf-semtok repair {directory}` (it shows what it will do first), or "
            f"hf_semtok.io_utils.recover_directory(...), then load again; or save the {kind} again."
        )
    return manifests


def _pending_of(manifests: Mapping[str, Mapping[str, Any]], kind: str, prefix: str | None) -> str | None:
    """The manifest holding the part (`kind`, `prefix`) when its commit is pending."""
    for name, data in manifests.items():
        if data.get("pending") is not None and any(
            p["kind"] == kind and p["prefix"] == prefix for p in data["parts"]
        ):
            return name
    return None
