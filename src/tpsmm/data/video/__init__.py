"""Reading and writing videos, streamed frame by frame.

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; batches are ``(n, H, W, 3)``.

Readers (:func:`open_video`) accept a video file that FFmpeg can read (``.mp4``, ``.mov``,
``.avi``, ``.mkv``, ``.webm``, an animated ``.gif``, ...), a directory of frame images, or a
horizontal strip image with the frames side by side (the layout of the FOMM datasets).
Writers (:func:`open_writer`) produce H.264 ``.mp4`` / ``.mov`` / ``.mkv`` (with the audio of
another file if asked), animated ``.gif`` or a directory of numbered PNG frames, and only show
the output under its final name once it is complete.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from tpsmm.data.images import IMAGE_SUFFIXES
from tpsmm.data.video.gif import GifWriter
from tpsmm.data.video.h264 import H264Writer
from tpsmm.data.video.media import has_audio
from tpsmm.data.video.reading import DEFAULT_FPS, VideoReader, open_video
from tpsmm.data.video.writing import FrameDirWriter, VideoWriter, frame_rate
from tpsmm.errors import OutputError

__all__ = ["DEFAULT_FPS", "VideoReader", "VideoWriter", "has_audio", "open_video", "open_writer"]

_H264_SUFFIXES = (".mp4", ".mov", ".mkv")
_UNWRITABLE_SUFFIXES = (*IMAGE_SUFFIXES, ".avi", ".webm")


def open_writer(
    path: str | Path,
    fps: float | Fraction,
    audio_from: str | Path | None = None,
    audio_start: float = 0.0,
) -> VideoWriter:
    """Open a video output, chosen by the path.

    Args:
        path: ``.mp4``, ``.mov`` or ``.mkv`` for H.264; ``.gif`` for an animated GIF; an
            existing directory or any other path for a directory of numbered PNG frames.
        fps: frames per second, kept exactly for rates like 30000/1001.
        audio_from: a file whose audio, if it has any, goes into ``.mp4``/``.mov``/``.mkv``
            output, re-encoded to AAC and cut to the length of the video. Ignored for GIFs
            and frame directories, which cannot hold audio.
        audio_start: seconds into ``audio_from`` where the output's audio starts.

    Raises:
        OutputError: the output cannot be written there (checked before returning).
        InputError: ``audio_from`` is missing or unreadable.
    """
    path = Path(path)
    rate = frame_rate(fps)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix not in (*_H264_SUFFIXES, ".gif", *_UNWRITABLE_SUFFIXES):
        return FrameDirWriter(path)
    if suffix in _UNWRITABLE_SUFFIXES:
        raise OutputError(
            f"{path}: cannot write {suffix} files; use .mp4, .mov, .mkv, .gif or a directory"
        )
    if suffix == ".gif":
        return GifWriter(path, rate)
    audio = Path(audio_from) if audio_from is not None and has_audio(audio_from) else None
    return H264Writer(path, rate, audio, audio_start)
