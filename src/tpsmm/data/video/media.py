"""Opening media files with FFmpeg (PyAV): errors as one line, and what a file holds."""

from __future__ import annotations

from pathlib import Path

import av

from tpsmm.data.images import IMAGE_SUFFIXES
from tpsmm.errors import InputError


def reason(error: Exception) -> str:
    """The human part of an FFmpeg or OS error, on one line."""
    return str(getattr(error, "strerror", None) or error).replace("\n", " ")


def open_input(path: Path) -> av.container.InputContainer:
    """Open ``path`` for reading, or raise :class:`InputError` naming it."""
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"{path}: not a readable video ({reason(error)})") from None


def check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")


def has_audio(path: str | Path) -> bool:
    """Whether ``path`` has an audio stream (frame directories and images have none)."""
    path = Path(path)
    check_exists(path)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return False
    with open_input(path) as container:
        return bool(container.streams.audio)


# --------------------------------------------------------------------------- reading


def gif_is_cut(path: Path) -> bool:
    """Whether a GIF file lacks its trailer byte: it was cut short. FFmpeg then reads the
    frames before the cut and stops without a word, as if the animation were shorter."""
    with open(path, "rb") as file:
        file.seek(0, 2)
        if file.tell() == 0:
            return True
        file.seek(-1, 2)
        return file.read(1) != b";"
