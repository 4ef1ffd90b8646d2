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

import contextlib
import itertools
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import av
import numpy as np
from PIL import Image

from tpsmm.data.images import IMAGE_SUFFIXES, load_image_uint8
from tpsmm.errors import InputError, OutputError
from tpsmm.files import temporary_sibling, temporary_sibling_dir

DEFAULT_FPS = 25.0
"""Frame rate of frame directories and strips, which do not store one (the FOMM datasets' rate)."""

GIF_DEFAULT_DELAY = 0.1
"""Seconds per GIF frame when the file gives none, as browsers do."""

_H264_SUFFIXES = (".mp4", ".mov", ".mkv")
_UNWRITABLE_SUFFIXES = (*IMAGE_SUFFIXES, ".avi", ".webm")
_FRAME_FILE = re.compile(r"\d{6,}\.png")


def _reason(error: Exception) -> str:
    """The human part of an FFmpeg or OS error, on one line."""
    return str(getattr(error, "strerror", None) or error).replace("\n", " ")


def _natural_key(name: str) -> list[str | int]:
    """Sort key under which ``2.png`` comes before ``10.png``."""
    # re.split with a group alternates text and digits, so items at equal positions compare.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise InputError(f"{path}: not a readable video ({_reason(error)})") from None


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")


def has_audio(path: str | Path) -> bool:
    """Whether ``path`` has an audio stream (frame directories and images have none)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return False
    with _open_input(path) as container:
        return bool(container.streams.audio)


# --------------------------------------------------------------------------- reading


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
        with _open_input(path) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            self._header_frames = stream.frames
            rate = stream.average_rate or stream.guessed_rate
            audio = bool(container.streams.audio)
            is_gif = container.format.name == "gif"
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
        with _open_input(self.path) as container:
            stream = container.streams.video[0]
            try:
                for packet in container.demux(stream):
                    # The last packet is an empty end marker; discarded ones are never shown.
                    if packet.size and not packet.is_discard:
                        pts.append(packet.pts)
                        ticks += packet.duration or 0
            except av.FFmpegError as error:
                raise InputError(
                    f"{self.path}: reading failed at packet {len(pts)} ({_reason(error)})"
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
        with _open_input(self.path) as container:
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
                    f"{self.path}: decoding failed at frame {count} ({_reason(error)})"
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
    _check_exists(path)
    if path.is_dir():
        return _FrameDirReader(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _StripReader(path, frame_shape)
    return _ContainerReader(path)


# --------------------------------------------------------------------------- writing


def _frame_rate(fps: float | Fraction) -> Fraction:
    """An exact rate: 30000/1001 given as the float 29.97002997... comes back as 30000/1001."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(float(fps)).limit_denominator(1001)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{path}: cannot create folder {path.parent} ({_reason(error)})"
        ) from None


def _temporary_file(path: Path) -> Path:
    """Create an empty hidden file beside ``path``, keeping its suffix (FFmpeg picks by it)."""
    _make_parent(path)
    try:
        handle, name = temporary_sibling(path, suffix=path.suffix)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({_reason(error)})") from None
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
            raise OutputError(f"{self.path}: writing failed ({_reason(error)})") from None
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
            raise OutputError(f"{self.path}: writing failed ({_reason(error)})") from None
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


class _EncodingWriter(VideoWriter):
    """A writer that encodes one video stream into one file with PyAV."""

    def __init__(self, path: Path, codec: str, rate: Fraction, options: dict[str, str]) -> None:
        super().__init__(path, _temporary_file(path))
        try:
            self._container = av.open(str(self._temporary), mode="w", options=options)
        except (av.FFmpegError, OSError) as error:
            self._temporary.unlink(missing_ok=True)
            raise OutputError(f"{path}: cannot write ({_reason(error)})") from None
        self._stream = self._container.add_stream(codec, rate=rate)

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


class _AudioTrack:
    """Re-encodes the audio of a source file to AAC in an output container, in step with it.

    Source sample ``s`` seconds after the start of the source file lands at ``s - start``
    in the output; samples before ``start`` or after the end given to :meth:`finish` are cut.
    Mono stays mono; anything else becomes stereo.
    """

    def __init__(self, source: Path, start: float, output: av.container.OutputContainer) -> None:
        with _open_input(source) as container:
            stream = container.streams.audio[0]
            self._rate = stream.sample_rate
            self._layout = "mono" if stream.channels == 1 else "stereo"
        self._source = source
        self._output = output
        self._stream = output.add_stream("aac", rate=self._rate)
        self._stream.layout = self._layout
        self._chunks = self._decode(round(start * self._rate))
        self._pending: tuple[int, np.ndarray] | None = None

    def _decode(self, skip: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(output sample index, float32 samples (channels, n))`` chunks of the source."""
        resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self._rate)
        with _open_input(self._source) as container:
            origin = (container.start_time or 0) / av.time_base
            position = None
            try:
                for frame in itertools.chain(container.decode(audio=0), [None]):
                    if position is None and frame is not None:
                        time = origin if frame.time is None else frame.time
                        position = round((time - origin) * self._rate) - skip
                    for chunk in resampler.resample(frame):
                        samples = chunk.to_ndarray()
                        yield position, samples
                        position += samples.shape[1]
            except av.FFmpegError as error:
                raise InputError(
                    f"{self._source}: audio decoding failed ({_reason(error)})"
                ) from None

    def copy_until(self, seconds: float, trim: bool = False) -> None:
        """Encode the source audio up to ``seconds`` of output.

        A chunk that reaches past ``seconds`` waits for a later call, unless ``trim`` cuts it.
        """
        end = round(seconds * self._rate)
        while True:
            if self._pending is None:
                self._pending = next(self._chunks, None)
                if self._pending is None:
                    return
            position, samples = self._pending
            if position >= end or (position + samples.shape[1] > end and not trim):
                return
            self._pending = None
            first, last = max(0, -position), min(samples.shape[1], end - position)
            if first < last:
                self._encode(samples[:, first:last], position + first)

    def _encode(self, samples: np.ndarray, pts: int) -> None:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples), format="fltp", layout=self._layout
        )
        frame.sample_rate = self._rate
        frame.pts = pts
        frame.time_base = Fraction(1, self._rate)
        self._output.mux(self._stream.encode(frame))

    def finish(self, seconds: float) -> None:
        """Encode the audio up to ``seconds``, cutting the rest, and flush the encoder."""
        self.copy_until(seconds, trim=True)
        self._output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._chunks.close()


class _H264Writer(_EncodingWriter):
    """H.264 (libx264, CRF 18, yuv420p) in ``.mp4``, ``.mov`` or ``.mkv``, with AAC audio if asked.

    yuv420p needs even sizes, so odd ones get their last row or column repeated once.
    """

    def __init__(
        self, path: Path, rate: Fraction, audio_from: Path | None, audio_start: float
    ) -> None:
        # faststart puts the index first, so that players and readers of a cut file can start.
        options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov") else {}
        super().__init__(path, "libx264", rate, options)
        self._rate = rate
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "18"}
        self._audio = None
        if audio_from is not None:
            try:
                self._audio = _AudioTrack(audio_from, audio_start, self._container)
            except BaseException:
                self._discard()
                raise

    def _write(self, frames: np.ndarray) -> None:
        _, height, width, _ = frames.shape
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        self._set_size(*frames.shape[1:3])
        for offset, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = self.frames_written + offset
            frame.time_base = 1 / self._rate
            self._encode(frame)
        if self._audio is not None:
            # Interleave: audio up to where the video now ends.
            self._audio.copy_until((self.frames_written + len(frames)) / self._rate)

    def _finish(self) -> None:
        if self._audio is not None:
            self._audio.finish(self.frames_written / self._rate)
        super()._finish()

    def _discard(self) -> None:
        if self._audio is not None:
            self._audio.close()
        super()._discard()


class _GifWriter(_EncodingWriter):
    """Animated GIF through FFmpeg's encoder, streamed frame by frame.

    Each frame gets its own 256-colour palette (Pillow's median cut). GIF delays are whole
    hundredths of a second; they are rounded so that the average frame rate is kept.
    """

    def __init__(self, path: Path, rate: Fraction) -> None:
        super().__init__(path, "gif", Fraction(100), {})
        self._rate = rate
        self._stream.pix_fmt = "pal8"
        self._last_pts = -1

    def _write(self, frames: np.ndarray) -> None:
        self._set_size(*frames.shape[1:3])
        for index, array in enumerate(frames, start=self.frames_written):
            frame = av.VideoFrame.from_ndarray(_quantize(array), format="pal8")
            # Times in hundredths of a second, kept strictly increasing above 100 fps.
            frame.pts = max(round(index * 100 / self._rate), self._last_pts + 1)
            frame.time_base = Fraction(1, 100)
            self._last_pts = frame.pts
            # The encoder returns this frame's packet at once; its duration is the delay that
            # the muxer gives the last frame (the others' come from the next timestamp).
            for packet in self._stream.encode(frame):
                packet.duration = max(round((index + 1) * 100 / self._rate) - frame.pts, 1)
                self._container.mux(packet)


def _quantize(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` RGB -> ``(H, W)`` palette indices and a ``(256, 4)`` ARGB palette."""
    indexed = Image.fromarray(frame).quantize(256)
    colours = np.asarray(indexed.getpalette(), dtype=np.uint8).reshape(-1, 3)
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255
    palette[: len(colours), 1:] = colours
    return np.asarray(indexed), palette


class _FrameDirWriter(VideoWriter):
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
        try:
            temporary = temporary_sibling_dir(path)
        except OSError as error:
            raise OutputError(f"{path}: cannot write ({_reason(error)})") from None
        super().__init__(path, temporary)

    def _write(self, frames: np.ndarray) -> None:
        for offset, frame in enumerate(frames):
            Image.fromarray(frame).save(self._temporary / f"{self.frames_written + offset:06d}.png")

    def _finish(self) -> None:
        """Nothing to flush: every frame is a finished file."""

    def _commit(self) -> None:
        if self.path.exists():
            old = self._temporary.with_name(self._temporary.name + "-old")
            self.path.rename(old)
            self._temporary.rename(self.path)
            shutil.rmtree(old)
        else:
            self._temporary.rename(self.path)

    def _discard(self) -> None:
        shutil.rmtree(self._temporary, ignore_errors=True)


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
    rate = _frame_rate(fps)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix not in (*_H264_SUFFIXES, ".gif", *_UNWRITABLE_SUFFIXES):
        return _FrameDirWriter(path)
    if suffix in _UNWRITABLE_SUFFIXES:
        raise OutputError(
            f"{path}: cannot write {suffix} files; use .mp4, .mov, .mkv, .gif or a directory"
        )
    if suffix == ".gif":
        return _GifWriter(path, rate)
    audio = Path(audio_from) if audio_from is not None and has_audio(audio_from) else None
    return _H264Writer(path, rate, audio, audio_start)
