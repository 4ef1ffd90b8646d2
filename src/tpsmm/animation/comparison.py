"""The comparison video's frames: source | driving | result, keypoints drawn on the first
two, so one can see what the model tracked."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tpsmm.training.visualizer import draw_keypoints


def compose_comparison(source: torch.Tensor, kp_source: torch.Tensor, driving: torch.Tensor,
                       kp_driving: torch.Tensor, generated: torch.Tensor,
                       scale: int = 1) -> np.ndarray:
    """Side-by-side frames: source | driving | result, keypoints on the first two.

    Args:
        source: (1, 3, S, S) in [0, 1]; ``kp_source``: (1, N, 2) in [-1, 1].
        driving, generated: (B, 3, S, S) in [0, 1]; ``kp_driving``: (B, N, 2).
        scale: display magnification of each panel.

    Returns:
        (B, S*scale, 3*S*scale, 3) uint8.
    """
    batch = driving.shape[0]
    size = (driving.shape[-2] * scale, driving.shape[-1] * scale)

    def panel(images: torch.Tensor) -> np.ndarray:
        images = F.interpolate(images.float().cpu(), size=size, mode="bilinear",
                               align_corners=False).clamp(0, 1)
        return images.permute(0, 2, 3, 1).numpy()

    radius = max(2, scale)
    left = draw_keypoints(panel(source), kp_source.float().cpu().numpy(), radius)
    middle = draw_keypoints(panel(driving), kp_driving.float().cpu().numpy(), radius)
    row = np.concatenate([np.repeat(left, batch, axis=0), middle, panel(generated)], axis=2)
    return (row * 255).round().astype(np.uint8)
