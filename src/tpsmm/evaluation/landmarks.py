"""Landmark evaluation on the synthetic dataset, without an external pose model.

The characters of :mod:`tpsmm.data.synthetic` carry markers in reserved, fully
saturated hues while everything else stays below a low chroma, so a generated
frame's landmarks are found by colour: :func:`detect_markers`. The metrics follow
the pose-detector evaluation of FOMM/TPSMM (``cmp_with_missing``):

* :func:`akd` - average keypoint distance: mean of |gt - gen| over the x and y
  coordinates of every (frame, landmark) found in both, in pixels.
* :func:`mkr` - missing keypoint rate: of the (frame, landmark) pairs found in the
  ground truth, the fraction not found in the generated frames.

Both pool all frames and landmarks of the arrays they are given (they do not first
average per frame), so every detected landmark weighs the same.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tpsmm.data.synthetic import MARKER_HUES, MAX_TEXTURE_CHROMA
from tpsmm.errors import InputError

#: Default chroma threshold in [0, 1]: clearly above any non-marker colour
#: (MAX_TEXTURE_CHROMA) yet reached by a marker blended half-and-half with its
#: surroundings, as in blurred model outputs.
MIN_CHROMA = MAX_TEXTURE_CHROMA + 0.14
#: Default minimum blob area as a fraction of the frame area (about half the
#: smallest marker disc: 2 pixels at 64x64, 8 at 128x128).
MIN_AREA_FRACTION = 0.0005


def _hue_chroma(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360) and chroma (max - min channel) in [0, 1], each (H, W)."""
    rgb = frame.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = high - low
    safe = np.where(chroma > 0, chroma, 1.0)
    sector = np.where(
        high == r,
        ((g - b) / safe) % 6.0,
        np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    return sector * 60.0, chroma


def detect_markers(
    frame: np.ndarray,
    min_chroma: float = MIN_CHROMA,
    hue_tolerance: float = 15.0,
    min_area: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the synthetic characters' markers in one frame.

    A pixel belongs to marker k when its chroma is at least ``min_chroma`` and its
    hue is within ``hue_tolerance`` degrees of ``MARKER_HUES[k]``. Of the 8-connected
    blobs of each marker, the one with the largest total chroma wins if it has at
    least ``min_area`` pixels; its chroma-weighted centroid is the landmark
    (chroma is proportional to marker coverage, so blur does not bias it).

    Args:
        frame: (H, W, 3) uint8 RGB.
        min_chroma: chroma threshold in [0, 1].
        hue_tolerance: degrees, at most half the hue spacing (18 for 10 markers).
        min_area: pixels; default ``max(2, round(MIN_AREA_FRACTION * H * W))``.

    Returns:
        points (M, 2) float32 pixel (x, y) with pixel centres at integers (zero where
        not found) and found (M,) bool.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    count = len(MARKER_HUES)
    if min_area is None:
        min_area = max(2, round(MIN_AREA_FRACTION * frame.shape[0] * frame.shape[1]))
    hue, chroma = _hue_chroma(frame)
    step = 360.0 / count
    nearest = np.rint(hue / step).astype(np.int64) % count
    offset = np.abs((hue - nearest * step + 180.0) % 360.0 - 180.0)
    candidate = (chroma >= min_chroma) & (offset <= hue_tolerance)
    points = np.zeros((count, 2), dtype=np.float32)
    found = np.zeros(count, dtype=bool)
    for k in np.unique(nearest[candidate]):
        labels, blobs = ndimage.label(candidate & (nearest == k), structure=np.ones((3, 3)))
        index = np.arange(1, blobs + 1)
        best = int(np.argmax(ndimage.sum_labels(chroma, labels, index))) + 1
        if np.count_nonzero(labels == best) >= min_area:
            y, x = ndimage.center_of_mass(chroma, labels, best)
            points[k] = (x, y)
            found[k] = True
    return points, found


def detect_video_markers(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`detect_markers` on each of (T, H, W, 3) uint8 frames.

    Returns:
        points (T, M, 2) float32 and found (T, M) bool.
    """
    results = [detect_markers(frame) for frame in frames]
    count = len(MARKER_HUES)
    points = np.array([p for p, _ in results], dtype=np.float32).reshape(len(frames), count, 2)
    found = np.array([f for _, f in results], dtype=bool).reshape(len(frames), count)
    return points, found


def akd(
    kp_gt: np.ndarray, found_gt: np.ndarray, kp_gen: np.ndarray, found_gen: np.ndarray
) -> float:
    """Average keypoint distance in pixels: mean |kp_gt - kp_gen| over x and y of the
    landmarks found in both; NaN when there are none.

    Args:
        kp_gt, kp_gen: (..., M, 2) pixel coordinates, e.g. (T, M, 2).
        found_gt, found_gen: (..., M) bool, matching the leading shape.
    """
    kp_gt, kp_gen = np.asarray(kp_gt, np.float64), np.asarray(kp_gen, np.float64)
    found_gt, found_gen = np.asarray(found_gt, bool), np.asarray(found_gen, bool)
    if (
        kp_gt.shape != kp_gen.shape
        or found_gt.shape != found_gen.shape
        or (kp_gt.shape != found_gt.shape + (2,))
    ):
        raise ValueError(
            f"shape mismatch: {kp_gt.shape} {found_gt.shape} {kp_gen.shape} {found_gen.shape}"
        )
    both = found_gt & found_gen
    if not both.any():
        return float("nan")
    return float(np.abs(kp_gt[both] - kp_gen[both]).mean())


def mkr(found_gt: np.ndarray, found_gen: np.ndarray) -> float:
    """Missing keypoint rate in [0, 1]: (#found in gt and not in gen) / (#found in gt);
    NaN when the ground truth has none. Arrays (..., M) bool of the same shape."""
    found_gt, found_gen = np.asarray(found_gt, bool), np.asarray(found_gen, bool)
    if found_gt.shape != found_gen.shape:
        raise ValueError(f"shape mismatch: {found_gt.shape} vs {found_gen.shape}")
    present = np.count_nonzero(found_gt)
    if present == 0:
        return float("nan")
    return np.count_nonzero(found_gt & ~found_gen) / present
