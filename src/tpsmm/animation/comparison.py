"""The comparison video's frames: source | driving | result, keypoints drawn on the first
two, so one can see what the model tracked."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tpsmm.training.visualizer import draw_keypoints

# Panels are magnified by a whole factor to at least this side (the 64-px demo model's 4x).
MIN_PANEL_SIDE = 256


def panel_scale(size: int) -> int:
    """The magnification of ``size``-pixel panels: the smallest whole factor that reaches
    :data:`MIN_PANEL_SIDE` (1 for models of 256 px and more)."""
    return max(1, -(-MIN_PANEL_SIDE // size))


class Comparison:
    """Composes the comparison frames of one source; the source's panel is drawn once.

    Args:
        source: ``(1, 3, S, S)`` in [0, 1]; ``kp_source``: ``(1, N, 2)`` in [-1, 1].
    """

    def __init__(self, source: torch.Tensor, kp_source: torch.Tensor) -> None:
        self.scale = panel_scale(source.shape[-1])
        self._size = (source.shape[-2] * self.scale, source.shape[-1] * self.scale)
        self._radius = max(2, self.scale)
        self._source = draw_keypoints(self._panel(source), kp_source.float().cpu().numpy(),
                                      self._radius)

    def _panel(self, images: torch.Tensor) -> np.ndarray:
        images = F.interpolate(images.float().cpu(), size=self._size, mode="bilinear",
                               align_corners=False).clamp(0, 1)
        return images.permute(0, 2, 3, 1).numpy()

    def __call__(self, driving: torch.Tensor, kp_driving: torch.Tensor,
                 generated: torch.Tensor) -> np.ndarray:
        """``driving``, ``generated``: ``(B, 3, S, S)`` in [0, 1]; ``kp_driving``:
        ``(B, N, 2)`` -> ``(B, S*scale, 3*S*scale, 3)`` uint8."""
        middle = draw_keypoints(self._panel(driving), kp_driving.float().cpu().numpy(),
                                self._radius)
        row = np.concatenate([np.repeat(self._source, len(driving), axis=0), middle,
                              self._panel(generated)], axis=2)
        return (row * 255).round().astype(np.uint8)
