"""A video's subject followed in tubes: runs of frames cropped with one fixed window.

The training clips were cut this way (FOMM's ``crop-video.py``; facts in the repo's
``../shared/notes``): a tube goes on while the subject's box keeps an IoU of at least 0.25
with the tube's first box; its window is the union of its boxes, framed by
:func:`~tpsmm.framing.boxes.crop_window`. So inside a tube the window does not move at all
(no jitter), and the subject's own motion stays visible in the crop, as in training.

A tube ends where the subject leaves its first box, at a scene cut, or when the subject is
not found for more than ``max_gap`` frames (a short gap, a blink of the detector, is
bridged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tpsmm.data.video import VideoReader
from tpsmm.framing.boxes import Rect, union
from tpsmm.framing.detectors import Detection
from tpsmm.progress import Progress, ProgressCallback

# Tubes as the training data were cut (crop-video.py's --iou_with_initial).
MIN_IOU_WITH_FIRST = 0.25
# Mean absolute difference of consecutive frames' 32x32 grey thumbnails, in [0, 1], above
# which a new shot starts. benchmarks/crop.py measures it on three shots of a 100-px head
# moving over photos (320x240): motion within a shot up to 0.011, the head appearing or
# vanishing up to 0.047, cuts between photos at least 0.220.
SCENE_CUT_THRESHOLD = 0.12
THUMBNAIL_SIZE = 32


@dataclass(frozen=True)
class Tube:
    """Frames ``start`` to ``stop - 1`` in which the subject was followed.

    Attributes:
        subject: the union of the subject's boxes over the tube, in pixels.
        found: the frames in which it was detected (the others were bridged).
    """

    start: int
    stop: int
    subject: Rect
    found: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Scan:
    """What one pass over a video found.

    Attributes:
        detections: per frame, the detections best first (empty: not found).
        cuts: per frame, whether a new shot starts there (frame 0 never).
    """

    detections: list[list[Detection]]
    cuts: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.detections)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """``frame: (H, W, 3)`` uint8 -> ``(32, 32)`` float32 grey in [0, 1], for cut detection."""
    grey = Image.fromarray(frame).convert("L").resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE),
                                                      Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32) / 255


def scan_video(reader: VideoReader, detector: Callable[[np.ndarray], list[Detection]],
               batch_size: int = 8, progress: bool | ProgressCallback = False) -> Scan:
    """Detect the subject in every frame of ``reader`` and find its scene cuts.

    Raises:
        InputError: a frame cannot be decoded.
    """
    detections: list[list[Detection]] = []
    cuts: list[bool] = []
    previous = None
    with Progress("find subject", reader.num_frames, progress) as bar:
        for batch in reader.iter_batches(batch_size):
            for frame in batch:
                detections.append(detector(frame))
                small = thumbnail(frame)
                cuts.append(previous is not None
                            and float(np.abs(small - previous).mean()) > SCENE_CUT_THRESHOLD)
                previous = small
            bar.update(len(batch))
    return Scan(detections, cuts)


def find_tubes(scan: Scan, max_gap: int = 12) -> list[Tube]:
    """Group the frames in which the subject was found into tubes, in order.

    In each frame the detection that continues the current tube (IoU with its first box
    >= 0.25; the surest of those) is followed; when none does, the surest detection starts a
    new tube. Frames where nothing was found are bridged when at most ``max_gap`` in a row.

    Returns:
        The tubes, covering only the frames from a tube's first detection to its last.
    """
    tubes: list[Tube] = []
    boxes: list[Rect] = []
    start = last_seen = 0

    def close() -> None:
        if boxes:
            tubes.append(Tube(start, last_seen + 1, union(boxes), len(boxes)))
            boxes.clear()

    for index, found in enumerate(scan.detections):
        if (scan.cuts and scan.cuts[index]) or (boxes and index - last_seen - 1 > max_gap):
            close()
        if not found:
            continue
        following = [d for d in found if boxes and d.rect.iou(boxes[0]) >= MIN_IOU_WITH_FIRST]
        if not following:
            close()
            start = index
        boxes.append((following or found)[0].rect)
        last_seen = index
    close()
    return tubes


def cover(tubes: Sequence[Tube], num_frames: int) -> list[Tube]:
    """The tubes stretched to cover every frame, for animation: frames before the first tube
    join it; frames between two tubes (subject lost, or a shot without it) join the tube
    before them, whose window they keep."""
    if not tubes:
        return []
    stops = [t.start for t in tubes[1:]] + [num_frames]
    return [Tube(0 if i == 0 else t.start, stop, t.subject, t.found)
            for i, (t, stop) in enumerate(zip(tubes, stops, strict=True))]
