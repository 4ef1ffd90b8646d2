"""Animated GIF output, streamed frame by frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tpsmm.data.video.writing import EncodingWriter


class GifWriter(EncodingWriter):
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
