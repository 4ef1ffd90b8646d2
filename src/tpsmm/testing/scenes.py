"""Videos in which a subject moves inside a larger frame, with the truth known: for the
crop and paste-back tests, ``benchmarks/crop.py`` and the README's picture.

- :func:`moving_head`: the real face of scikit-image's astronaut photo (NASA, public
  domain), moved over a still photo background, with scene cuts and frames without it;
- :func:`character_in_scene`: a synthetic character clip (:mod:`tpsmm.data.synthetic`)
  shown in a window of a larger still scene, the ground truth for paste-back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tpsmm.data.synthetic import render_video
from tpsmm.framing.boxes import Rect

# The astronaut's head (hair to chin, ear to ear) in scikit-image's 512x512 photo.
ASTRONAUT_HEAD = (120, 20, 320, 240)  # x0, y0, x1, y1


def _photo(name: str) -> np.ndarray:
    from skimage import data  # a test dependency (the dev extra), not the package's

    return getattr(data, name)()


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


@dataclass(frozen=True)
class Shot:
    """One continuous shot of :func:`moving_head`.

    Attributes:
        background: a scikit-image photo's name (``coffee``, ``chelsea``...).
        frames: its length.
        start, step: the head's top-left corner in the first frame and its motion per
            frame, in pixels (x, y).
        hidden: frames of the shot (counted from its start) without the head.
    """

    background: str
    frames: int
    start: tuple[int, int]
    step: tuple[float, float] = (0.0, 0.0)
    hidden: range = range(0)


def moving_head(shots: list[Shot], height: int = 240, width: int = 320,
                head_width: int = 100) -> tuple[np.ndarray, list[Rect | None]]:
    """The astronaut's head moving over still backgrounds, one per shot.

    Returns:
        ``(T, height, width, 3)`` uint8 frames, and per frame the head's true box (None
        where it is hidden).
    """
    x0, y0, x1, y1 = ASTRONAUT_HEAD
    head_height = round(head_width * (y1 - y0) / (x1 - x0))
    head = _resized(_photo("astronaut")[y0:y1, x0:x1], head_width, head_height)
    frames, boxes = [], []
    for shot in shots:
        background = _resized(_photo(shot.background), width, height)
        for t in range(shot.frames):
            frame = background.copy()
            if t in shot.hidden:
                boxes.append(None)
            else:
                left = round(shot.start[0] + shot.step[0] * t)
                top = round(shot.start[1] + shot.step[1] * t)
                frame[top : top + head_height, left : left + head_width] = head
                boxes.append(Rect(left, top, left + head_width, top + head_height))
            frames.append(frame)
    return np.stack(frames), boxes


CHARACTER_SIZE, CHARACTER_LEFT, CHARACTER_TOP = 64, 96, 48
CHARACTER_BOX = f"box:{CHARACTER_LEFT},{CHARACTER_TOP},{CHARACTER_SIZE},{CHARACTER_SIZE}"
"""Where :func:`character_in_scene` shows its character by default, as ``--crop`` takes it."""


def character_in_scene(num_frames: int, size: int = CHARACTER_SIZE, height: int = 160,
                       width: int = 224, left: int = CHARACTER_LEFT, top: int = CHARACTER_TOP,
                       seed: int = 0, identity: int = 0) -> np.ndarray:
    """A synthetic character clip of ``size`` pixels shown at ``(left, top)`` in a still
    photo (scikit-image's coffee) of ``height`` x ``width``: ``(T, height, width, 3)``
    uint8. The character's own frame is the box ``box:left,top,size,size``."""
    clip = render_video(seed=seed, size=size, num_frames=num_frames, identity=identity).frames
    scene = np.repeat(_resized(_photo("coffee"), width, height)[None], num_frames, axis=0)
    scene[:, top : top + size, left : left + size] = clip
    return scene
