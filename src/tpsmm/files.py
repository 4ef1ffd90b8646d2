"""Temporary files and folders for atomic writes, renamed over the target when complete.

A temporary sibling of ``name`` is the hidden ``.name.tmp-<random>`` in the same folder, so
that the rename cannot cross file systems. A process killed before the rename leaves one
behind; :func:`remove_stale_siblings` deletes those of a target whose writer owns it.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_ATTEMPTS = 100


def _create_unique(path: Path, suffix: str, create: Callable[[Path], object]):
    for _ in range(_ATTEMPTS):
        name = path.parent / f".{path.name}.tmp-{secrets.token_hex(6)}{suffix}"
        try:
            return create(name), name
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def temporary_sibling(path: Path, suffix: str = "") -> tuple[int, Path]:
    """Create a hidden empty file in ``path``'s folder; returns (open fd, its path).

    It is created with mode 0666 and the kernel applies the umask, so the renamed result
    has the permissions any new file would (``mkstemp`` gives a private 0600, and reading
    the umask means setting it process-wide, which races with other threads).

    Raises:
        OSError: the folder cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return _create_unique(path, suffix, lambda name: os.open(name, flags, 0o666))


def temporary_sibling_dir(path: Path) -> Path:
    """Create a hidden empty folder beside ``path`` with the permissions ``mkdir`` gives
    (0777 less the umask, applied by the kernel).

    Raises:
        OSError: the parent folder cannot be written.
    """
    _, folder = _create_unique(path, "", lambda name: os.mkdir(name, 0o777))
    return folder


def remove_stale_siblings(path: Path, suffix: str = "") -> None:
    """Delete the temporary siblings of ``path`` (files or folders) that a killed writer
    left, e.g. ``.last.pth.tar.tmp-3f2a...``. Call it only where no other writer of
    ``path`` can be at work (a run folder its run owns)."""
    pattern = f".{glob.escape(path.name)}.tmp-*{glob.escape(suffix)}"
    for stale in path.parent.glob(pattern):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> None:
    """:func:`remove_stale_siblings` for every target in ``folder``, which one owner writes."""
    for stale in folder.glob(".*.tmp-*"):
        remove_stale_siblings(stale.parent / stale.name[1:].split(".tmp-", 1)[0])


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary sibling of ``path`` opened for binary writing, flush it
    to the disk, then rename it to ``path``; on any failure nothing is left.

    Raises:
        OSError: the folder cannot be written.
    """
    handle, temporary = temporary_sibling(path)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
