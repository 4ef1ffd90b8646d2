"""The driving video's sound, carried into an H.264 output in step with its frames."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tpsmm.data.video.media import open_input, reason
from tpsmm.errors import InputError


class AudioTrack:
    """Re-encodes the audio of a source file to AAC in an output container, in step with it.

    Source sample ``s`` seconds after the start of the source file lands at ``s - start``
    in the output; samples before ``start`` or after the end given to :meth:`finish` are cut.
    Mono stays mono; anything else becomes stereo.
    """

    def __init__(self, source: Path, start: float, output: av.container.OutputContainer) -> None:
        with open_input(source) as container:
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
        with open_input(self._source) as container:
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
                    f"{self._source}: audio decoding failed ({reason(error)})"
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

