"""Coordinate grids and homogeneous coordinates.

Coordinates are normalised to [-1, 1] with the last dimension in (x, y)
order, the ``align_corners=True`` convention of ``F.grid_sample``: pixel
column j of a width-w image sits at x = 2 j / (w - 1) - 1.
"""

from __future__ import annotations

import torch


def make_coordinate_grid(
    spatial_size: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The identity sampling grid.

    Returns ``grid: (h, w, 2)``, ``grid[i, j] = (x_j, y_i)`` in [-1, 1].
    """
    h, w = spatial_size
    x = torch.arange(w, dtype=dtype, device=device)
    y = torch.arange(h, dtype=dtype, device=device)
    # Same operation order as the reference, so grids agree to the last bit.
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    return torch.stack([x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)], dim=-1)


def to_homogeneous(coordinates: torch.Tensor) -> torch.Tensor:
    """``(..., 2) -> (..., 3)`` by appending a 1."""
    return torch.cat([coordinates, torch.ones_like(coordinates[..., :1])], dim=-1)


def from_homogeneous(coordinates: torch.Tensor) -> torch.Tensor:
    """``(..., 3) -> (..., 2)`` by dividing by the last component."""
    return coordinates[..., :2] / coordinates[..., 2:3]


def apply_projective(matrix: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Push a grid through a batch of 3x3 projective matrices.

    ``matrix: (B, 3, 3)``, ``grid: (h, w, 2)`` -> ``(B, h, w, 2)``: each point
    p becomes M [p, 1] divided by its third component.
    """
    h, w, _ = grid.shape
    points = to_homogeneous(grid).view(1, h * w, 3, 1)
    moved = torch.matmul(matrix.view(-1, 1, 3, 3), points).squeeze(-1)
    return from_homogeneous(moved).view(-1, h, w, 2)


def keypoint_heatmaps(
    kp: torch.Tensor, spatial_size: tuple[int, int], kp_variance: float
) -> torch.Tensor:
    """Unnormalised Gaussians centred on keypoints.

    ``kp: (B, N, 2)`` in [-1, 1] -> ``(B, N, h, w)`` with
    exp(-0.5 |p - kp|^2 / kp_variance) on the grid of ``spatial_size``.
    """
    grid = make_coordinate_grid(spatial_size, kp.dtype, kp.device)
    difference = grid.view(1, 1, *grid.shape) - kp.view(*kp.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (difference**2).sum(-1) / kp_variance)
