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

This module holds the commit protocol and the public entry points; `manifests.py` holds the manifest format,
atomic single-file writes and hashes, and `file_locks.py` the folder locks and the staging folders. The three are
part of the tokenizer package that ships beside every saved tokenizer, so they import only the standard library.
Locks use `fcntl.flock` (POSIX); where it is unavailable, saves and loads still work, but two processes saving
into one folder at the same time are not coordinated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from .file_locks import (
    LOCK_TIMEOUT_S,
    FolderLock,
    PartKey,
    Staging,
    active_staging,
    legacy_match,
    listing,
    listing_top,
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

__all__ = [
    "LOCK_TIMEOUT_S",
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

#: What a save's nested or legacy file list may be: names, or a predicate on names.
LegacyFiles = Callable[[str], bool] | Collection[str]


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


# ----------------------------------------------------------------------------------------------------------
# Completing commits
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
        hash_file(tmp, fsync=True)
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
    fsync_dir(directory)
    done = {k: v for k, v in data.items() if k != "pending"}
    write_manifest(directory, name, done)
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
            if STAGING_RE.match(entry.name) and staging_is_dead(path):
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
    with FolderLock(directory) as lock:
        lock.exclusive()
        return _settle(directory)


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


def _check_destination(target: Path, rel: str) -> None:
    """Refuse a file whose place in `target` is a folder, or whose parent folders are files."""
    dst = target / rel
    for parent in [dst, *dst.parents]:
        if parent == target:
            break
        if parent != dst and (parent.is_file() or (parent.is_symlink() and not parent.is_dir())):
            raise ValueError(f"Cannot save {rel!r} into {target}: {parent} is a file, not a folder.")
        if parent == dst and parent.is_dir() and not parent.is_symlink():
            raise ValueError(f"Cannot save {rel!r} into {target}: {dst} is a folder. Move it away first.")


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
        _check_destination(target, rel)
    for current, _, _ in os.walk(staging.path):
        fsync_dir(Path(current))
    return parts


def _take_over(
    manifests: Mapping[str, Mapping[str, Any]], manifest: str, parts: PartFiles
) -> tuple[set[str], dict[str, dict[str, Any] | None], set[PartKey]]:
    """What a save of `parts` into `manifest` takes over from the folder's `manifests`.

    Returns:
        The files of the previous version of its parts that it does not rewrite (to delete), the other manifests
        rewritten without the files it takes over (`None`: nothing left, remove it), and every part the manifests
        claim.
    """
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
    return obsolete, rewrites, claimed_keys


def _legacy_obsolete(
    target: Path,
    staging: Staging,
    parts: PartFiles,
    remaining: list[Mapping[str, Any] | None],
    claimed_keys: set[PartKey],
) -> set[str]:
    """The files of a part saved before manifests existed that this save may delete (see `legacy_files`): named
    by the part's `legacy_files`, not rewritten, and claimed by none of the `remaining` manifests."""
    new_names = {rel for names in parts.values() for rel in names}
    claimed = {
        rel for data in remaining if data is not None for part in data["parts"] for rel in part["files"]
    }
    obsolete = set()
    for key, legacy_files in staging.legacy.items():
        if key in claimed_keys or key not in parts:
            continue
        for rel in listing_top(target):
            if rel not in new_names and rel not in claimed and legacy_match(legacy_files, rel):
                obsolete.add(rel)
    return obsolete


def _commit(target: Path, staging: Staging, manifest: str) -> None:
    """Commit the staged files into `target` (see the module docstring): with the folder's exclusive lock, write
    the pending manifest (the commit point), then roll it forward."""
    parts = _hash_staged_files(target, staging)
    with FolderLock(target) as lock:
        lock.exclusive()
        _settle(target)
        manifests = read_manifests(target)
        obsolete, rewrites, claimed_keys = _take_over(manifests, manifest, parts)
        remaining = [rewrites.get(name, data) for name, data in manifests.items() if name != manifest]
        obsolete |= _legacy_obsolete(target, staging, parts, remaining, claimed_keys)
        data = new_manifest(staging.key, parts, {"staging": staging.path.name, "obsolete": sorted(obsolete)})
        for name, rewritten in rewrites.items():  # others give up the files this save takes over
            if rewritten is None:
                remove_manifest(target, name)
            else:
                write_manifest(target, name, rewritten)
        write_manifest(target, manifest, data)  # the commit point
        staging.committed = True
        _roll_forward(target, manifest, data)


@contextlib.contextmanager
def _nested_save(
    outer: Staging, target: Path, key: PartKey, legacy_files: LegacyFiles | None
) -> Iterator[Path]:
    """A save into `target` inside the staging folder of `outer`: written in place, recorded as a part of it."""
    target.mkdir(parents=True, exist_ok=True)
    before = listing(outer.path)
    yield target
    after = listing(outer.path)
    changed = {rel for rel, st in after.items() if before.get(rel) != st}
    outer.record(key, changed, legacy_files)


@contextlib.contextmanager
def _staged_save(target: Path, key: PartKey, legacy_files: LegacyFiles | None) -> Iterator[Staging]:
    """A staging folder in `target` for the block; removed (with `target`, if this save created it) when the
    block raises before the commit point."""
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    staging = Staging(Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target)), key)
    if legacy_files is not None:
        staging.legacy[key] = legacy_files
    with staging_in_use(staging):
        try:
            os.chmod(staging.path, 0o777 & ~current_umask())
            yield staging
        except BaseException:
            if not staging.committed:
                _remove_tree(staging.path)
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
    nested = active_staging(os.path.realpath(target))
    if nested is not None:
        with _nested_save(nested[0], target, (kind, prefix), legacy_files) as path:
            yield path
        return
    with _staged_save(target, (kind, prefix), legacy_files) as staging:
        yield staging.path
        _commit(target, staging, manifest)


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------
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
    with FolderLock(directory) as lock:
        lock.shared()
        for attempt in range(3):
            manifests = _settled_manifests(directory, lock)
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


def _settled_manifests(directory: Path, lock: FolderLock) -> dict[str, dict[str, Any]]:
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
