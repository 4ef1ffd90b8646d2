"""Reading videos lazily: video files, animated GIFs, frame folders and frame strips.

Frames are RGB ``uint8`` arrays of shape ``(H, W, 3)``; batches are ``(n, H, W, 3)``.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from tpsmm.data.images import IMAGE_SUFFIXES, load_image_uint8
from tpsmm.data.video.media import check_exists, gif_is_cut, open_input, reason
from tpsmm.errors import InputError

DEFAULT_FPS = 25.0
"""Frame rate of frame directories and strips, which do not store one (the FOMM datasets' rate)."""

GIF_DEFAULT_DELAY = 0.1
"""Seconds per GIF frame when the file gives none, as browsers do."""



def _natural_key(name: str) -> list[str | int]:
    """Sort key under which ``2.png`` comes before ``10.png``."""
    # re.split with a group alternates text and digits, so items at equal positions compare.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]



class VideoReader(ABC):
    """A video source, read lazily: nothing is decoded until frames are asked for.

    Attributes:
        path: the file or directory read.
        fps: frames per second.
        size: ``(height, width)`` of the frames.
        has_audio: whether the source has an audio stream.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int], has_audio: bool) -> None:
        self.path = path
        self.fps = fps
        self.size = size
        self.has_audio = has_audio

    @property
    @abstractmethod
    def num_frames(self) -> int:
        """The number of frames."""

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the frames in order, each ``(H, W, 3)`` ``uint8``.

        Raises:
            InputError: after the last frame that could be read, if reading fails.
        """

    @abstractmethod
    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Read the frames at ``indices`` (any order, repeats allowed), decoding only what needed.

        Returns:
            ``(len(indices), H, W, 3)`` ``uint8``.
        """

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Yield the frames in batches of ``(n, H, W, 3)`` ``uint8``, ``n <= batch_size``.

        Only one batch is held at a time. If reading fails, the frames read before the
        failure are yielded first, then the error is raised.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        batch: list[np.ndarray] = []
        try:
            for frame in self:
                batch.append(frame)
                if len(batch) == batch_size:
                    yield np.stack(batch)
                    batch = []
        except InputError:
            if batch:
                yield np.stack(batch)
            raise
        if batch:
            yield np.stack(batch)

    def _stack(self, frames: list[np.ndarray]) -> np.ndarray:
        """``(n, H, W, 3)`` from ``n`` frames, including ``n == 0``."""
        return np.stack(frames) if frames else np.empty((0, *self.size, 3), dtype=np.uint8)

    def _check_indices(self, indices: Sequence[int], count: int) -> list[int]:
        indices = list(indices)
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise IndexError(f"{self.path}: frame {bad[0]} out of range (it has {count} frames)")
        return indices


class _FrameDirReader(VideoReader):
    """A directory of frame images, in natural order of their names; hidden files are skipped."""

    def __init__(self, path: Path) -> None:
        files = [
            file
            for file in path.iterdir()
            if file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith(".")
        ]
        if not files:
            raise InputError(f"{path}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in folder")
        self._files = sorted(files, key=lambda file: _natural_key(file.name))
        first = load_image_uint8(self._files[0])
        super().__init__(path, DEFAULT_FPS, first.shape[:2], has_audio=False)

    @property
    def num_frames(self) -> int:
        return len(self._files)

    def _load(self, file: Path) -> np.ndarray:
        frame = load_image_uint8(file)
        if frame.shape[:2] != self.size:
            height, width = self.size
            raise InputError(
                f"{file}: frame is {frame.shape[0]}x{frame.shape[1]}, "
                f"but the first frame is {height}x{width}"
            )
        return frame

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self._load(file) for file in self._files)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        indices = self._check_indices(indices, len(self._files))
        return self._stack([self._load(self._files[i]) for i in indices])


class _StripReader(VideoReader):
    """One image holding the frames side by side: ``(H, T * W, 3)`` for ``T`` frames ``H x W``.

    The frame size is ``frame_shape[:2]``, or square frames of the image height if not given.
    The strip is a single image, so it is decoded whole and kept (strips are small).
    """

    def __init__(self, path: Path, frame_shape: tuple[int, int] | None) -> None:
        strip = load_image_uint8(path)
        height, width = strip.shape[:2]
        frame_height, frame_width = frame_shape[:2] if frame_shape else (height, height)
        if height != frame_height or width % frame_width:
            raise InputError(
                f"{path}: a {height}x{width} image is not a strip of "
                f"{frame_height}x{frame_width} frames side by side"
            )
        # (H, T*W, 3) -> (T, H, W, 3)
        self._frames = strip.reshape(height, -1, frame_width, 3).transpose(1, 0, 2, 3)
        super().__init__(path, DEFAULT_FPS, (height, frame_width), has_audio=False)

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (frame.copy() for frame in self._frames)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        indices = self._check_indices(indices, len(self._frames))
        return self._frames[indices]


class _PacketIndex(NamedTuple):
    count: int
    pts: list[int] | None  # presentation timestamps in order; None if some packet lacks one
    seconds: float  # total duration of the packets


class _ContainerReader(VideoReader):
    """A video file read with PyAV (FFmpeg).

    ``num_frames`` is the count in the file header, or, when the header has none (``.mkv``,
    ``.webm``, ...), the number of video packets, counted without decoding on first use.
    GIF frame rates come from the frame durations; others from the stream's average rate.
    Frames are turned upright when the file has a rotation (as phones record).
    """

    def __init__(self, path: Path) -> None:
        with open_input(path) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            self._header_frames = stream.frames
            rate = stream.average_rate or stream.guessed_rate
            audio = bool(container.streams.audio)
            is_gif = container.format.name == "gif"
        if is_gif and gif_is_cut(path):
            raise InputError(f"{path}: the GIF is cut short (no trailer after its last frame)")
        self.path = path  # used by the decoding below, before the base class sets it
        frames = iter(self)
        first = next(frames, None)  # proves that the file decodes, and gives the upright size
        frames.close()
        if first is None:
            raise InputError(f"{path}: no frames")
        if is_gif:
            seconds = self._packets.seconds
            fps = self._packets.count / seconds if seconds else 1 / GIF_DEFAULT_DELAY
        else:
            fps = float(rate) if rate else DEFAULT_FPS
        super().__init__(path, fps, first.shape[:2], audio)

    @cached_property
    def num_frames(self) -> int:
        return self._header_frames or self._packets.count

    @cached_property
    def _packets(self) -> _PacketIndex:
        """Read every video packet, without decoding, to count and time them."""
        pts: list[int | None] = []
        ticks = 0
        with open_input(self.path) as container:
            stream = container.streams.video[0]
            try:
                for packet in container.demux(stream):
                    # The last packet is an empty end marker; discarded ones are never shown.
                    if packet.size and not packet.is_discard:
                        pts.append(packet.pts)
                        ticks += packet.duration or 0
            except av.FFmpegError as error:
                raise InputError(
                    f"{self.path}: reading failed at packet {len(pts)} ({reason(error)})"
                ) from None
            seconds = float(ticks * stream.time_base)
        if None in pts:
            return _PacketIndex(len(pts), None, seconds)
        return _PacketIndex(len(pts), sorted(pts), seconds)

    def _decoded(self, seek_pts: int | None = None) -> Iterator[av.VideoFrame]:
        """Decode from the start, or from the keyframe at or before ``seek_pts``.

        Raises:
            InputError: after the last frame that decodes, naming the failing frame (counted
                from the start of decoding).
        """
        with open_input(self.path) as container:
            # No frame threading: it would be faster, but FFmpeg then drops decoding errors.
            stream = container.streams.video[0]
            count = 0
            try:
                if seek_pts is not None:
                    container.seek(seek_pts, stream=stream)
                for frame in container.decode(stream):
                    yield frame
                    count += 1
            except av.FFmpegError as error:
                raise InputError(
                    f"{self.path}: decoding failed at frame {count} ({reason(error)})"
                ) from None

    @staticmethod
    def _to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
        # A fixed size keeps frames stackable should the stream change resolution.
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
        turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90 turns
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        frames = self._decoded()
        first = next(frames, None)
        if first is None:
            return
        for frame in itertools.chain([first], frames):
            yield self._to_rgb(frame, first.width, first.height)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        indices = self._check_indices(indices, self.num_frames)
        wanted = set(indices)
        pts = self._packets.pts
        found = {}
        if pts and wanted and max(wanted) < len(pts):
            found = self._read_by_seeking(wanted, pts)
        if len(found) < len(wanted):
            # Seeking was not exact for this file (no timestamps, inexact seeks, a decoding
            # error): decode from the start, which also reports errors with exact frame numbers.
            found = self._read_from_start(wanted)
        missing = wanted - found.keys()
        if missing:
            raise InputError(f"{self.path}: frame {min(missing)} is missing (the file ends early)")
        return self._stack([found[i] for i in indices])

    def _read_by_seeking(self, wanted: set[int], pts: list[int]) -> dict[int, np.ndarray]:
        """Map frames to timestamps, seek to the keyframe before the first, decode forward."""
        index_of = {pts[i]: i for i in wanted}
        last = max(index_of)
        found: dict[int, np.ndarray] = {}
        with (
            contextlib.suppress(InputError),
            contextlib.closing(self._decoded(min(index_of))) as frames,
        ):
            for frame in frames:
                if frame.pts in index_of:
                    found[index_of[frame.pts]] = self._to_rgb(frame, frame.width, frame.height)
                if frame.pts is None or frame.pts >= last:
                    break
        return found

    def _read_from_start(self, wanted: set[int]) -> dict[int, np.ndarray]:
        found = {}
        with contextlib.closing(iter(self)) as frames:
            for index, frame in zip(range(max(wanted) + 1), frames, strict=False):
                if index in wanted:
                    found[index] = frame
        return found


def open_video(path: str | Path, frame_shape: tuple[int, int] | None = None) -> VideoReader:
    """Open a video file, an animated GIF, a directory of frame images or a frame strip.

    Args:
        path: the source. A directory is read as frames sorted naturally by name; an image
            file (``.png``, ``.jpg``, ...) as a horizontal strip of frames.
        frame_shape: ``(height, width)`` of the frames of a strip; only used for strips.

    Raises:
        InputError: the path is missing, unreadable, not a video, or has no frames.
    """
    path = Path(path)
    check_exists(path)
    if path.is_dir():
        return _FrameDirReader(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _StripReader(path, frame_shape)
    return _ContainerReader(path)
