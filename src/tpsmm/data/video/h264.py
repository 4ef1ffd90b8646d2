"""H.264 output (``.mp4``, ``.mov``, ``.mkv``), with the driving video's audio if asked."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tpsmm.data.video.audio import AudioTrack
from tpsmm.data.video.writing import EncodingWriter


class H264Writer(EncodingWriter):
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
                self._audio = AudioTrack(audio_from, audio_start, self._container)
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

