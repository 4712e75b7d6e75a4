"""File helpers shared by the stages that publish folders of outputs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


def replace_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """Write a folder aside with ``fill(tmp)``, then swap it in for ``target``.

    Readers never see half of it, and when ``fill`` fails the previous ``target`` is left untouched.
    """
    replace_all({target: fill})
    return target


def replace_all(folders: Mapping[Path, Callable[[Path], None]], files: Mapping[Path, bytes] | None = None,
                hook: Callable[[str, Path | None], None] | None = None) -> None:
    """Replace several folders and files together: all of them, or (on any failure) none.

    Every folder is first written aside by its ``fill(tmp)`` and every file's bytes are written aside, each
    beside its target (same file system, so a rename is atomic). Then they are swapped in one by one, the old
    version moved aside first; if anything fails, before or during the swaps, the targets already swapped are put
    back and the error is raised. On success the old versions are deleted.

    ``hook(event, target)``, for tests that inject failures, runs with ``("staged", None)`` once everything is
    written aside and with ``("swapped", target)`` after each swap.
    """
    staged: dict[Path, Path] = {}
    try:
        for target, fill in folders.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            staged[target] = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            staged[target].chmod(0o777 & ~umask())  # mkdtemp makes it private; published folders are not
            fill(staged[target])
        for target, data in (files or {}).items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
            staged[target] = Path(tmp)
            staged[target].chmod(0o666 & ~umask())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if hook is not None:
            hook("staged", None)
        swapped: list[tuple[Path, Path | None]] = []
        try:
            for target, tmp in staged.items():
                backup = None
                if target.exists():
                    backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
                    os.replace(target, backup)
                swapped.append((target, backup))
                os.replace(tmp, target)
                if hook is not None:
                    hook("swapped", target)
        except BaseException:
            for target, backup in reversed(swapped):
                _remove(target)
                if backup is not None:
                    os.replace(backup, target)
            raise
        for _, backup in swapped:
            if backup is not None:
                _remove(backup)
    finally:
        for tmp in staged.values():
            _remove(tmp)


def replace_file(target: Path, data: bytes) -> None:
    """Replace one file by ``data`` with one atomic rename and no backup of the old version: after any stop the
    file is the old one or the new one, and no copy of the old bytes is left beside it (what an erasure needs). A
    stop before the rename can leave the new bytes in a hidden ``.<name>-*`` file beside it."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _remove(Path(tmp))
        raise
    fsync_path(target.parent)


def fsync_path(path: Path) -> None:
    """Flush a file or a folder (its entries: renames, new files) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """An exclusive lock on ``lock_file`` (created if missing) for the block; held until the block ends or the
    process does (``kill -9`` included: the kernel lets go of it)."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
