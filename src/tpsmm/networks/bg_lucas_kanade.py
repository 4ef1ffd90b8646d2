"""A background motion estimate without weights: robust Lucas-Kanade on the whole frame.

Ours, not the reference's (``bg_predictor_params.kind: lucas_kanade``). The
reference's :class:`~tpsmm.networks.BGMotionPredictor` is a ResNet-18 that
regresses the affine transform from the stacked pair. When the camera moves by
a pixel or less between frames, it learns the identity: on the synthetic demo
data it stayed at the identity through its whole training, and in one-off
experiments it did not get below the identity's error even when trained on
the true camera motion directly, although the training loss's gradient with
respect to the transform pointed at the true camera motion (demo MODEL_CARD).
This module measures the motion instead: Gauss-Newton on the photometric
error of the warped source, with robust weights so that the moving character
does not count as background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.geometry import apply_projective, make_coordinate_grid

# Largest translation (in grid units, 2 = the frame) and log-scale an estimate
# may have; beyond them it is taken as a failure and replaced by the identity.
MAX_SHIFT = 0.25
MAX_LOG_SCALE = 0.3


class LucasKanadeBGMotion(nn.Module):
    """``source, driving: (B, C, H, W)`` -> ``(B, 3, 3)`` affine, last row [0, 0, 1].

    Same convention as the learnt predictor: the transform maps a driving
    frame's grid coordinates (x, y in [-1, 1]) to where the same background
    point is in the source, so ``grid_sample(source, A @ grid)`` ~ driving.
    Starts at the identity and takes ``iterations`` Gauss-Newton steps on
    sum_pixels w * |driving - warped source|^2 over the six affine
    parameters, ``w`` a Geman-McClure weight of each pixel's residual at a
    scale of 1.48 x its median (outliers, i.e. the character, fade out). Not
    differentiable and has no parameters: it is computed in float32 under
    ``no_grad`` whatever the autocast.
    """

    def __init__(self, iterations: int = 10, border: int = 2, **kwargs):
        super().__init__()
        self.iterations = iterations
        self.border = border

    @torch.no_grad()
    def forward(self, source_image: torch.Tensor, driving_image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(source_image.device.type, enabled=False):
            return self._estimate(source_image.float(), driving_image.float())

    def _estimate(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = source.shape
        grid = make_coordinate_grid((height, width)).to(source)
        x, y = grid[..., 0], grid[..., 1]
        inside = torch.zeros(height, width, dtype=source.dtype, device=source.device)
        inside[self.border:height - self.border, self.border:width - self.border] = 1
        # Central differences, in intensity per grid unit.
        kernel = torch.tensor([-0.5, 0.0, 0.5], dtype=source.dtype, device=source.device)
        kernel_x = kernel.view(1, 1, 1, 3).expand(channels, 1, 1, 3) * (width - 1) / 2
        kernel_y = kernel.view(1, 1, 3, 1).expand(channels, 1, 3, 1) * (height - 1) / 2
        eye = torch.eye(3, dtype=source.dtype, device=source.device)
        affine = eye.repeat(batch, 1, 1)
        for _ in range(self.iterations):
            warped = F.grid_sample(source, apply_projective(affine, grid), align_corners=True,
                                   padding_mode="border")
            grad_x = F.conv2d(F.pad(warped, (1, 1, 0, 0), mode="replicate"), kernel_x,
                              groups=channels)
            grad_y = F.conv2d(F.pad(warped, (0, 0, 1, 1), mode="replicate"), kernel_y,
                              groups=channels)
            residual = driving - warped
            # d warped / d (a11, a12, a13, a21, a22, a23): (B, C, H, W, 6)
            jacobian = torch.stack([grad_x * x, grad_x * y, grad_x,
                                    grad_y * x, grad_y * y, grad_y], dim=-1)
            error = residual.abs().sum(dim=1, keepdim=True)
            scale = 1.4826 * error.flatten(1).median(dim=1).values.view(batch, 1, 1, 1) + 1e-3
            weight = inside / (1 + (error / (2 * scale)) ** 2)
            weighted = (jacobian * weight.unsqueeze(-1)).view(batch, -1, 6)
            normal = weighted.transpose(1, 2) @ jacobian.view(batch, -1, 6)
            normal = normal + 1e-6 * torch.eye(6, dtype=source.dtype, device=source.device)
            rhs = weighted.transpose(1, 2) @ residual.reshape(batch, -1, 1)
            step = torch.linalg.solve(normal, rhs).view(batch, 2, 3)
            affine = affine + F.pad(step, (0, 0, 0, 1))  # the last row stays [0, 0, 1]
        return torch.where(_plausible(affine).view(batch, 1, 1), affine, eye)


def _plausible(affine: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) affine -> (B,) bool: finite, a small shift and a scale near 1, no flip."""
    finite = torch.isfinite(affine).flatten(1).all(dim=1)
    shift = affine[:, :2, 2].abs().amax(dim=1) <= MAX_SHIFT
    determinant = torch.linalg.det(torch.nan_to_num(affine[:, :2, :2]))
    scale = determinant.clamp_min(1e-6).log().abs() / 2 <= MAX_LOG_SCALE
    return finite & shift & scale & (determinant > 0)
