"""Subject boxes and the crop geometry of the training data.

The published models saw their subject framed one way (``../shared/notes`` in the repo,
from the FOMM family's preprocessing): a box around the subject (the union of its boxes over
a tube of frames), enlarged by a margin on each side, the shorter side enlarged more so that
the window is square, then scaled to the model size. :func:`crop_window` is that rule. A
window that leaves the image is padded, never shifted, so the subject stays centred as in
training (:func:`tpsmm.data.images.take_box` pads with black).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tpsmm.data.images import Box


@dataclass(frozen=True)
class Rect:
    """A box in pixels, ``x0 <= x1`` and ``y0 <= y1``, as float (detectors work at a reduced
    size and are scaled back)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def scaled(self, factor: float) -> Rect:
        """The box in an image ``factor`` times as large."""
        return Rect(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor)

    def iou(self, other: Rect) -> float:
        """Intersection over union, in [0, 1]."""
        inner = Rect(max(self.x0, other.x0), max(self.y0, other.y0),
                     min(self.x1, other.x1), min(self.y1, other.y1))
        if inner.width <= 0 or inner.height <= 0:
            return 0.0
        return inner.area / (self.area + other.area - inner.area)

    def contains(self, other: Rect) -> bool:
        return (self.x0 <= other.x0 and self.y0 <= other.y0
                and other.x1 <= self.x1 and other.y1 <= self.y1)


def union(rects: Iterable[Rect]) -> Rect:
    """The smallest box holding every one of ``rects`` (at least one)."""
    rects = list(rects)
    if not rects:
        raise ValueError("union of no boxes")
    return Rect(min(r.x0 for r in rects), min(r.y0 for r in rects),
                max(r.x1 for r in rects), max(r.y1 for r in rects))


def crop_window(subject: Rect, margin: float, lift: float = 0.0) -> Box:
    """The square window the training data would have cut around ``subject``.

    Args:
        subject: the subject's box (for a video, the union over its tube).
        margin: added on each side, as a fraction of the box's width (left and right) and
            height (top and bottom); then the shorter side grows to make a square.
        lift: moves the window's centre up by this fraction of its side (for detectors whose
            box sits low on the subject, e.g. a face box from the eyebrows to the chin).

    Returns:
        A square :class:`~tpsmm.data.images.Box` of integer pixels; it may reach outside the
        image (padded when cut).
    """
    side = max(subject.width, subject.height) * (1 + 2 * margin)
    side = max(round(side), 1)
    centre_x, centre_y = subject.centre
    centre_y -= lift * side
    return Box(top=round(centre_y - side / 2), left=round(centre_x - side / 2),
               height=side, width=side)


_BOX_PATTERN = re.compile(r"box:(\d+),(\d+),(\d+),(\d+)")


def parse_box(text: str) -> Rect:
    """``box:X,Y,W,H`` (pixels, top-left corner, width, height) -> a :class:`Rect`.

    Raises:
        ValueError: not of that form, or an empty box.
    """
    match = _BOX_PATTERN.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not box:X,Y,W,H (pixels, e.g. box:120,40,256,256)")
    x, y, width, height = map(int, match.groups())
    if width == 0 or height == 0:
        raise ValueError(f"{text!r}: the box is empty")
    return Rect(x, y, x + width, y + height)
