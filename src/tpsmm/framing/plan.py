"""How the animator frames its inputs: the source's window, the driving video's tubes.

Without a detector both are fitted whole (``--fit crop|pad|stretch``), the driving video as
one tube. With one, the source is cut at the window around its surest subject, and the
driving video at its tubes' windows (:mod:`tpsmm.framing.tubes`), after one pass over it to
find the subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from tpsmm.config import Config
from tpsmm.data.images import Box, fit, resize, take_box
from tpsmm.data.video import VideoReader
from tpsmm.errors import InputError, MissingExtraError
from tpsmm.framing.boxes import Rect, crop_window
from tpsmm.framing.detectors import Detector, FixedBox, make_detector
from tpsmm.framing.tubes import Tube, cover, find_tubes, scan_video
from tpsmm.progress import ProgressCallback

CROP_CHOICES = ("auto", "none", "face", "body", "upper-body", "box:X,Y,W,H")
# The subject each published dataset was cropped around, by the name of its config or its
# data folder (a training run's config keeps the data folder's name).
_DATASET_SUBJECTS = {"vox": "face", "taichi": "body", "ted": "upper-body", "mgif": None}


def default_subject(config: Config) -> str | None:
    """The subject the config's training data were cropped around (vox: face, taichi: body,
    ted: upper-body), or None (mgif, synthetic data, unknown datasets: no crop)."""
    names = (config.name, str(config.get("dataset_params", {}).get("root_dir", "")))
    for dataset, subject in _DATASET_SUBJECTS.items():
        if any(dataset in Path(name).name.lower() for name in names):
            return subject
    return None


def resolve_crop(crop: str | Detector | None,
                 config: Config) -> tuple[Detector | None, str | None]:
    """``--crop``'s value -> the detector to frame with (None: fit whole), and a note for
    the user when ``auto`` had to fall back.

    ``auto`` takes the config's subject (:func:`default_subject`); if its detector's package
    is missing, the note says so and how to install it, and the inputs are fitted whole.

    Raises:
        MissingExtraError: an explicit subject whose package is missing.
        ValueError: an unknown choice or a malformed box.
    """
    if crop is None or isinstance(crop, Detector):
        return crop, None
    if crop == "none":
        return None, None
    if crop == "auto":
        subject = default_subject(config)
        if subject is None:
            return None, None
        try:
            return make_detector(subject), None
        except MissingExtraError as error:
            return None, f"--crop auto: {error}; fitting the whole frames instead"
    return make_detector(crop), None


def _check_inside(rect: Rect, height: int, width: int, where: object) -> None:
    if not rect.iou(Rect(0, 0, width, height)) > 0:
        raise InputError(f"{where}: the box {rect.x0:g},{rect.y0:g} to {rect.x1:g},{rect.y1:g} "
                         f"lies outside the {width}x{height} image")


def source_window(image: np.ndarray, detector: Detector, where: object) -> Box:
    """The window around the surest subject in ``image: (H, W, 3)`` uint8.

    Raises:
        InputError: no subject found, or a given box outside the image.
    """
    found = detector(image)
    if not found:
        raise InputError(f"{where}: no {detector.subject} found in the source image; give its "
                         "box with --crop box:X,Y,W,H, or animate it whole with --crop none")
    _check_inside(found[0].rect, *image.shape[:2], where)
    return crop_window(found[0].rect, detector.margin, detector.lift)


def cut(images: torch.Tensor, window: Box, size: int) -> torch.Tensor:
    """``images: (B, 3, H, W)`` -> the window scaled to ``(B, 3, size, size)`` (padded with
    black where it leaves the image)."""
    return resize(take_box(images, window), size, size)


@dataclass(frozen=True)
class VideoFraming:
    """How each frame of a driving video becomes a model-sized frame.

    Attributes:
        tubes: runs of frames framed alike, covering the video in order (one tube when the
            frames are fitted whole).
        windows: per tube, its window, or None to fit the frames whole with ``fit_mode``.
        fit_mode: ``crop``, ``pad`` or ``stretch``.
    """

    tubes: list[Tube]
    windows: list[Box | None]
    fit_mode: str = "crop"

    @classmethod
    def whole(cls, num_frames: int, fit_mode: str) -> VideoFraming:
        return cls([Tube(0, num_frames, Rect(0, 0, 0, 0), 0)], [None], fit_mode)

    @classmethod
    def find(cls, reader: VideoReader, detector: Detector,
             progress: bool | ProgressCallback = False) -> VideoFraming:
        """One pass over ``reader`` to find the subject's tubes (a given box: one tube).

        Raises:
            InputError: the subject is found in no frame, or a given box lies outside the
                frames.
        """
        height, width = reader.size
        if isinstance(detector, FixedBox):
            _check_inside(detector.rect, height, width, reader.path)
            tubes = [Tube(0, reader.num_frames, detector.rect, reader.num_frames)]
        else:
            tubes = cover(find_tubes(scan_video(reader, detector, progress=progress)),
                          reader.num_frames)
        if not tubes:
            raise InputError(f"{reader.path}: no {detector.subject} found in any frame of the "
                             "driving video; give its box with --crop box:X,Y,W,H or use "
                             "--crop none")
        return cls(tubes, [crop_window(t.subject, detector.margin, detector.lift) for t in tubes])

    @cached_property
    def _starts(self) -> np.ndarray:
        return np.array([tube.start for tube in self.tubes])

    def tube_of(self, frame: int) -> int:
        """The index of the tube that holds frame ``frame``."""
        return int(np.searchsorted(self._starts, frame, side="right")) - 1

    def frame(self, frames: torch.Tensor, first: int,
              size: int) -> tuple[torch.Tensor, list[tuple[int, slice]]]:
        """Frames ``first, first + 1, ...`` of the video, ``(B, 3, H, W)`` in [0, 1] ->
        ``(B, 3, size, size)`` framed by their tubes, and the batch's runs of frames from
        one tube, as ``(tube index, rows)`` in order (tubes are contiguous runs of frames)."""
        last = first + len(frames)
        runs = []
        for tube_id in range(self.tube_of(first), self.tube_of(last - 1) + 1):
            # The next tube's start ends this one; the last takes every frame left (a
            # video may hold more frames than its header counted).
            stop = self.tubes[tube_id + 1].start if tube_id + 1 < len(self.tubes) else last
            runs.append((tube_id, slice(max(self.tubes[tube_id].start, first) - first,
                                        min(stop, last) - first)))
        framed = [fit(frames[rows], size, self.fit_mode) if self.windows[tube_id] is None
                  else cut(frames[rows], self.windows[tube_id], size)
                  for tube_id, rows in runs]
        return torch.cat(framed), runs
