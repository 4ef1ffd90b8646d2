"""How driving keypoints become the keypoints the source is animated with.

The three modes of the reference demo (SPEC section 7):

- ``standard``: the driving keypoints as they are;
- ``relative``: the source keypoints moved by the driving motion since the
  first driving frame, scaled by sqrt(area ratio) of the convex hulls of
  the source and first-frame keypoints;
- ``avd``: the AVD network's keypoints, identity of the source, pose of
  the driving frame.
"""

from __future__ import annotations

import numpy as np
import torch


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of ``points: (N, 2)`` (Andrew's monotone chain).

    Equal to ``scipy.spatial.ConvexHull(points).volume`` in 2-D, which the
    reference uses; 0 for degenerate (collinear) points.
    """
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))

    def half(sequence: list[tuple[float, float]]) -> list[tuple[float, float]]:
        hull: list[tuple[float, float]] = []
        for p in sequence:
            while len(hull) >= 2:
                (ax, ay), (bx, by) = hull[-2], hull[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                hull.pop()
            hull.append(p)
        return hull

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    x = np.array([p[0] for p in hull])
    y = np.array([p[1] for p in hull])
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def relative_scale(kp_source: torch.Tensor, kp_driving_initial: torch.Tensor) -> float:
    """sqrt(hull area of source kp) / sqrt(hull area of first driving kp).

    ``kp_*: (B, N, 2)``; like the reference, only batch item 0 is used.
    """
    source_area = convex_hull_area(kp_source[0].detach().float().cpu().numpy())
    driving_area = convex_hull_area(kp_driving_initial[0].detach().float().cpu().numpy())
    return float(np.sqrt(source_area) / np.sqrt(driving_area))


def relative_kp(kp_source: torch.Tensor, kp_driving: torch.Tensor,
                kp_driving_initial: torch.Tensor, scale: float) -> torch.Tensor:
    """kp_source + (kp_driving - kp_driving_initial) * scale, all ``(B, N, 2)``."""
    return kp_source + (kp_driving - kp_driving_initial) * scale
