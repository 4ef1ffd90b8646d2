"""Paste-back: the animated crop scaled back onto its window in the full source image.

The crop is blended in with a feathered mask (1 inside, falling to 0 over the window's
outer ``feather`` fraction by a raised cosine), so the model's redrawn background meets the
photo without a seam; every pixel outside the mask is exactly the source's.
"""

from __future__ import annotations

import numpy as np
import torch

from tpsmm.data.images import Box, resize, to_tensor, to_uint8


def feather_mask(side: int, feather: float) -> np.ndarray:
    """``(side, side)`` float32 in [0, 1]: 1 in the middle, a raised-cosine ramp of
    ``feather * side`` pixels down towards each edge, > 0 on every pixel of the window."""
    ramp = max(feather * side, 1.0)
    centres = np.arange(side, dtype=np.float64) + 0.5
    distance = np.minimum(centres, side - centres) / ramp  # to the nearest edge, in ramps
    profile = 0.5 - 0.5 * np.cos(np.pi * np.clip(distance, 0.0, 1.0))
    return np.outer(profile, profile).astype(np.float32)


def output_size(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    """The source's size, scaled down (aspect kept) so that its longer side is at most
    ``max_size``."""
    if max_size is None or max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    return max(round(height * scale), 1), max(round(width * scale), 1)


class PasteBack:
    """Pastes animated crops into the source image.

    Args:
        source: ``(H, W, 3)`` uint8, the full source image.
        window: the square window the crop was cut from, in the source's pixels (it may
            reach outside the image: that part is dropped).
        feather: the mask's ramp, as a fraction of the window's side.
        max_size: cap on the output's longer side (the source is scaled down first).
    """

    def __init__(self, source: np.ndarray, window: Box, feather: float = 0.1,
                 max_size: int | None = None) -> None:
        height, width = output_size(*source.shape[:2], max_size)
        scale = height / source.shape[0]
        if (height, width) != source.shape[:2]:
            source = to_uint8(resize(to_tensor(source[None]), height, width))[0]
        self.background = source
        side = max(round(window.height * scale), 1)
        top, left = round(window.top * scale), round(window.left * scale)
        self.side = side
        # The window's part inside the image, in the image and in the window.
        self._rows = slice(max(top, 0), min(top + side, height))
        self._cols = slice(max(left, 0), min(left + side, width))
        self._inner = (slice(self._rows.start - top, self._rows.stop - top),
                       slice(self._cols.start - left, self._cols.stop - left))
        self.mask = feather_mask(side, feather)[self._inner][..., None]
        self._base = self.background[self._rows, self._cols].astype(np.float32)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the output frames."""
        return self.background.shape[0], self.background.shape[1]

    def __call__(self, crops: torch.Tensor) -> np.ndarray:
        """``crops: (B, 3, S, S)`` in [0, 1] -> ``(B, H, W, 3)`` uint8 full frames."""
        scaled = to_uint8(resize(crops.float().cpu(), self.side, self.side))
        inside = scaled[:, self._inner[0], self._inner[1]].astype(np.float32)
        blended = self._base + (inside - self._base) * self.mask
        frames = np.repeat(self.background[None], len(crops), axis=0)
        frames[:, self._rows, self._cols] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return frames
