"""Thin-plate splines (TPS), as the TPSMM reference computes them.

Two kinds are used:

- :class:`KeypointTPS` (Eq. 2 of the paper): K splines, one per group of 5
  keypoints, fitted so that *driving* keypoints map onto *source*
  keypoints. Applied to driving-frame coordinates it gives where to sample
  the source: a backward warp.
- :class:`RandomTPS`: the random deformation of the equivariance loss.

Both use the radial kernel U(r) = r^2 log(r^2 + 1e-9) ("r^2 log r^2", not
r^2 log r). The keypoint system adds a ridge of 0.01 to the whole diagonal
of the 8x8 matrix L, including its affine block, and is solved with an
explicit inverse in fp32. That is what the published checkpoints were
trained with, so TPS(kp, kp) is *not* the identity (about 4e-4 error at the
control points, up to ~0.17 away from them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tpsmm.geometry.grid import make_coordinate_grid

RIDGE = 0.01
LOG_EPS = 1e-9


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors as fp32; fp32 and fp64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def radial_kernel(squared_distance: torch.Tensor) -> torch.Tensor:
    """U as a function of the squared distance: d2 * log(d2 + 1e-9)."""
    return squared_distance * torch.log(squared_distance + LOG_EPS)


def _squared_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``points: (..., P, 2)``, ``centres: (..., N, 2)`` -> ``(..., P, N)``."""
    return ((points.unsqueeze(-2) - centres.unsqueeze(-3)) ** 2).sum(-1)


def solve_tps(
    control_points: torch.Tensor, targets: torch.Tensor, ridge: float = RIDGE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit K thin-plate splines.

    ``control_points, targets: (B, K, N, 2)`` in [-1, 1].

    Returns ``affine: (B, K, 2, 3)`` (columns: coefficients of x, y, 1) and
    ``weights: (B, K, N, 2)`` (the RBF weights). Always computed in fp32,
    whatever autocast says: the solve is ill-conditioned in half precision.
    """
    with torch.autocast(control_points.device.type, enabled=False):
        control_points = at_least_fp32(control_points)
        targets = at_least_fp32(targets)
        batch, groups, n, _ = control_points.shape
        # Distance through a norm and then squared, as the reference does.
        distance = torch.norm(control_points.unsqueeze(-2) - control_points.unsqueeze(-3), dim=-1)
        kernel = radial_kernel(distance**2)
        p = torch.cat([control_points, control_points.new_ones(batch, groups, n, 1)], dim=-1)
        top = torch.cat([kernel, p], dim=-1)
        bottom = torch.cat([p.transpose(-1, -2), p.new_zeros(batch, groups, 3, 3)], dim=-1)
        system = torch.cat([top, bottom], dim=-2)
        system = system + ridge * torch.eye(n + 3, dtype=system.dtype, device=system.device)
        rhs = torch.cat([targets, targets.new_zeros(batch, groups, 3, 2)], dim=-2)
        # An explicit inverse, not solve(): the checkpoints were trained with it.
        params = torch.matmul(inverse(system), rhs)
    return params[:, :, n:, :].transpose(-1, -2), params[:, :, :n, :]


def inverse(matrix: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.inv`` of ``(..., n, n)``, or, while exporting to ONNX (which has no
    inverse operator), :func:`gauss_jordan_inverse`."""
    if torch.onnx.is_in_onnx_export():
        return gauss_jordan_inverse(matrix)
    return torch.linalg.inv(matrix)


def gauss_jordan_inverse(matrix: torch.Tensor) -> torch.Tensor:
    """The inverse of ``(..., n, n)`` by Gauss-Jordan elimination with partial pivoting,
    unrolled over the n columns with ordinary tensor operations, so that it exports to any
    ONNX runtime (the TPS systems are 8x8).

    Partial pivoting as LAPACK's inverse does: the two agree to fp32 rounding (measured on
    the golden TPS systems: within 3e-7 of the largest entry; tests/test_export.py).
    """
    n = matrix.shape[-1]
    rows = torch.arange(n, device=matrix.device)
    identity = torch.eye(n, dtype=matrix.dtype, device=matrix.device)
    augmented = torch.cat([matrix, identity.expand_as(matrix)], dim=-1)  # (..., n, 2n)
    for k in range(n):
        # The row at or below k with the largest entry in column k goes to row k.
        candidates = torch.where(rows >= k, augmented[..., k].abs(), -1.0)
        pivot = (rows == candidates.argmax(dim=-1, keepdim=True)).to(matrix.dtype)  # (..., n)
        current = identity[k]
        swap = (identity - current[:, None] * current - pivot.unsqueeze(-1) * pivot.unsqueeze(-2)
                + current[:, None] * pivot.unsqueeze(-2) + pivot.unsqueeze(-1) * current)
        # When the pivot is row k itself the four outer products cancel to the identity.
        swap = torch.where((pivot * current).sum(-1, keepdim=True).unsqueeze(-1) > 0,
                           identity, swap)
        augmented = torch.matmul(swap, augmented)
        row = augmented[..., k : k + 1, :] / augmented[..., k : k + 1, k : k + 1]
        eliminated = augmented - augmented[..., :, k : k + 1] * row
        augmented = torch.where((rows == k).unsqueeze(-1), row, eliminated)
    return augmented[..., n:]


@dataclass
class KeypointTPS:
    """K splines from driving keypoints to source keypoints.

    ``control_points: (B, K, 5, 2)`` (driving), ``affine: (B, K, 2, 3)``,
    ``weights: (B, K, 5, 2)``.
    """

    control_points: torch.Tensor
    affine: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def fit(cls, kp_driving: torch.Tensor, kp_source: torch.Tensor) -> KeypointTPS:
        """``kp_driving, kp_source: (B, K*5, 2)`` in [-1, 1]."""
        batch = kp_driving.shape[0]
        kp_driving = at_least_fp32(kp_driving).reshape(batch, -1, 5, 2)
        kp_source = at_least_fp32(kp_source).reshape(batch, -1, 5, 2)
        affine, weights = solve_tps(kp_driving, kp_source)
        return cls(kp_driving, affine, weights)

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """``coordinates: (1, P, 2)`` -> ``(B, K, P, 2)`` in source space."""
        points = coordinates.to(self.affine.dtype).unsqueeze(1)
        moved = torch.matmul(points, self.affine[..., :2].transpose(-1, -2))
        moved = moved + self.affine[..., 2].unsqueeze(-2)
        kernel = radial_kernel(_squared_distances(points, self.control_points))
        return moved + torch.matmul(kernel, self.weights)

    def warp_grid(self, spatial_size: tuple[int, int]) -> torch.Tensor:
        """Sampling grids ``(B, K, h, w, 2)`` over a frame of ``spatial_size``."""
        h, w = spatial_size
        grid = make_coordinate_grid((h, w), self.affine.dtype, self.affine.device)
        warped = self.warp_coordinates(grid.view(1, h * w, 2))
        return warped.view(*warped.shape[:2], h, w, 2)


@dataclass
class RandomTPS:
    """A random smooth deformation for the equivariance loss.

    ``affine: (B, 2, 3)`` = identity + N(0, sigma_affine);
    ``control_points: (G*G, 2)``, a regular grid over [-1, 1];
    ``weights: (B, 1, G*G)`` ~ N(0, sigma_tps). The RBF part is one scalar
    per point, added to both x and y (as in the reference).
    """

    affine: torch.Tensor
    control_points: torch.Tensor
    weights: torch.Tensor

    @classmethod
    def sample(
        cls,
        batch: int,
        sigma_affine: float,
        sigma_tps: float,
        points_tps: int,
        generator: torch.Generator | None = None,
    ) -> RandomTPS:
        """Draw on the CPU (like the reference's global-RNG draws)."""
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        weights = torch.randn(batch, 1, points_tps**2, generator=generator) * sigma_tps
        control_points = make_coordinate_grid((points_tps, points_tps)).view(-1, 2)
        return cls(noise + torch.eye(2, 3), control_points, weights)

    def to(self, device: torch.device | str) -> RandomTPS:
        return RandomTPS(self.affine.to(device), self.control_points.to(device),
                         self.weights.to(device))

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """``coordinates: (B or 1, P, 2)`` -> ``(B, P, 2)``."""
        coordinates = at_least_fp32(coordinates)
        moved = torch.matmul(coordinates, self.affine[:, :, :2].transpose(-1, -2))
        moved = moved + self.affine[:, :, 2].unsqueeze(1)
        kernel = radial_kernel(_squared_distances(coordinates, self.control_points))
        return moved + (kernel * self.weights).sum(-1, keepdim=True)

    def warp_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """Deform ``frame: (B, C, H, W)``, reflecting at the borders."""
        _, _, h, w = frame.shape
        grid = make_coordinate_grid((h, w), self.affine.dtype, frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(-1, h, w, 2).to(frame.dtype)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=True)
