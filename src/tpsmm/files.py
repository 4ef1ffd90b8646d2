"""Temporary files and folders for atomic writes, renamed over the target when complete."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_sibling(path: Path, suffix: str = "") -> tuple[int, Path]:
    """Create a hidden empty file in ``path``'s folder; returns (open fd, its path).

    Its permissions are those ``open()`` would give ``path`` (0666 less the umask), not
    ``mkstemp``'s private 0600, so the renamed result is readable like any other file.

    Raises:
        OSError: the folder cannot be written.
    """
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.fchmod(handle, 0o666 & ~_umask())
    return handle, Path(name)


def temporary_sibling_dir(path: Path) -> Path:
    """Create a hidden empty folder beside ``path``, with the permissions ``mkdir`` would
    give (0777 less the umask, not ``mkdtemp``'s 0700).

    Raises:
        OSError: the parent folder cannot be written.
    """
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    folder.chmod(0o777 & ~_umask())
    return folder


def _umask() -> int:
    # The only way to read it is to set it; it is restored at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask
