"""Writing videos: frames go to a hidden temporary output that gets its final name only
when complete, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from abc import ABC, abstractmethod
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from PIL import Image

from tpsmm.data.video.media import reason
from tpsmm.errors import OutputError
from tpsmm.files import remove_stale_siblings, temporary_sibling, temporary_sibling_dir

_FRAME_FILE = re.compile(r"\d{6,}\.png")
_REPLACED = "-old"  # suffix of the frames a frame folder replaces, while they are deleted
# zlib's fastest level: a 256x256 frame took 3.5 ms to write against 15.5 ms at Pillow's
# default of 6, for a file 40% larger (one-off, the golden vox-256 source). At 6 the one
# writing thread alone caps the output near 65 frames/s, under what a GPU makes; on 2 CPU
# cores it took time from the model (OpenVINO bf16, 8 frames: 4.80 -> 4.67 s). The
# synthetic dataset writes its training frames at the same level.
PNG_COMPRESS_LEVEL = 1


def frame_rate(fps: float | Fraction) -> Fraction:
    """An exact rate: 30000/1001 given as the float 29.97002997... comes back as 30000/1001."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(float(fps)).limit_denominator(1001)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{path}: cannot create folder {path.parent} ({reason(error)})"
        ) from None


def temporary_file(path: Path) -> Path:
    """Create an empty hidden file beside ``path``, keeping its suffix (FFmpeg picks by it)."""
    _make_parent(path)
    try:
        handle, name = temporary_sibling(path, suffix=path.suffix)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({reason(error)})") from None
    os.close(handle)
    return name


class VideoWriter(ABC):
    """Writes frames to a temporary output and gives it its final name on success.

    Use as a context manager: leaving the block normally finishes the output and renames it
    to ``path``; leaving it with an exception deletes the temporary output.

    Attributes:
        path: the final output path.
        frames_written: the number of frames written so far.
    """

    def __init__(self, path: Path, temporary: Path) -> None:
        self.path = path
        self.frames_written = 0
        self._temporary = temporary
        self._size: tuple[int, int] | None = None
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        """Append frames, ``(n, H, W, 3)`` ``uint8``, all of the same size."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames (n, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        size = (frames.shape[1], frames.shape[2])
        if self._size is not None and size != self._size:
            raise ValueError(f"frames are {size[0]}x{size[1]}, earlier ones {self._size}")
        self._size = size
        try:
            self._write(frames)
        except (av.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: writing failed ({reason(error)})") from None
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish the output and move it to ``path``; on failure nothing is left behind."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.frames_written:
                raise ValueError(f"{self.path}: no frames were written")
            self._finish()
            self._commit()
        except (av.FFmpegError, OSError) as error:
            self._discard()
            raise OutputError(f"{self.path}: writing failed ({reason(error)})") from None
        except BaseException:
            self._discard()
            raise

    def abort(self) -> None:
        """Stop and delete the temporary output."""
        if not self._closed:
            self._closed = True
            self._discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @abstractmethod
    def _write(self, frames: np.ndarray) -> None:
        """Append validated frames to the temporary output."""

    @abstractmethod
    def _finish(self) -> None:
        """Complete the temporary output."""

    @abstractmethod
    def _discard(self) -> None:
        """Delete the temporary output, complete or not."""

    def _commit(self) -> None:
        os.replace(self._temporary, self.path)


class EncodingWriter(VideoWriter):
    """A writer that encodes one video stream into one file with PyAV."""

    def __init__(self, path: Path, codec: str, rate: Fraction, options: dict[str, str]) -> None:
        super().__init__(path, temporary_file(path))
        try:
            self._container = av.open(str(self._temporary), mode="w", options=options)
        except (av.FFmpegError, OSError) as error:
            self._temporary.unlink(missing_ok=True)
            raise OutputError(f"{path}: cannot write ({reason(error)})") from None
        try:
            self._stream = self._container.add_stream(codec, rate=rate)
        except BaseException as error:
            # Neither the open container nor its temporary file may outlive a failed setup.
            self._discard()
            if isinstance(error, (av.FFmpegError, OSError, ValueError)):
                raise OutputError(f"{path}: cannot write ({reason(error)})") from None
            raise

    def _encode(self, frame: av.VideoFrame | None) -> None:
        self._container.mux(self._stream.encode(frame))

    def _set_size(self, height: int, width: int) -> None:
        if self.frames_written == 0:
            self._stream.height, self._stream.width = height, width

    def _finish(self) -> None:
        self._encode(None)
        self._container.close()

    def _discard(self) -> None:
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.close()
        self._temporary.unlink(missing_ok=True)



class FrameDirWriter(VideoWriter):
    """A directory of PNG frames ``000000.png``, ``000001.png``, ...

    An existing directory is replaced, but only if it holds nothing but such frames (the
    output of an earlier run), so that no other files are ever deleted.
    """

    def __init__(self, path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path}: exists and is not a directory")
        if path.is_dir() and any(not _FRAME_FILE.fullmatch(f.name) for f in path.iterdir()):
            raise OutputError(
                f"{path}: directory holds files other than numbered PNG frames; "
                "choose a new or empty directory"
            )
        _make_parent(path)
        # A run killed between the two renames of _commit left the old frames hidden.
        remove_stale_siblings(path, suffix=_REPLACED)
        try:
            temporary = temporary_sibling_dir(path)
        except OSError as error:
            raise OutputError(f"{path}: cannot write ({reason(error)})") from None
        super().__init__(path, temporary)

    def _write(self, frames: np.ndarray) -> None:
        for offset, frame in enumerate(frames):
            Image.fromarray(frame).save(self._temporary / f"{self.frames_written + offset:06d}.png",
                                        compress_level=PNG_COMPRESS_LEVEL)

    def _finish(self) -> None:
        """Nothing to flush: every frame is a finished file."""

    def _commit(self) -> None:
        if self.path.exists():
            old = self._temporary.with_name(self._temporary.name + _REPLACED)
            self.path.rename(old)
            self._temporary.rename(self.path)
            shutil.rmtree(old)
        else:
            self._temporary.rename(self.path)

    def _discard(self) -> None:
        shutil.rmtree(self._temporary, ignore_errors=True)

