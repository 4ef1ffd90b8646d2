"""The rasteriser: antialiased capsules and ellipses composited back to front, with the
visible part of every marker disc tracked as later shapes cover it.

Pixel (row i, column j) has its centre at (x, y) = (j, i).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tpsmm.data.synthetic.character import Texture
from tpsmm.data.synthetic.markers import MARKER_COLOURS


class Shape(NamedTuple):
    """A primitive restricted to its bounding box: signed distance ``sd`` in pixels
    (negative inside) and local coordinates u, v (pixels) for texturing."""

    rows: slice
    cols: slice
    sd: np.ndarray
    u: np.ndarray
    v: np.ndarray


class Canvas:
    """A float RGB frame that composites antialiased shapes back to front and keeps,
    for each marker painted so far, the part of its disc that is still unoccluded."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.xs = np.arange(image.shape[1], dtype=np.float64)
        self.ys = np.arange(image.shape[0], dtype=np.float64)
        self.markers: list[tuple[int, float, slice, slice, np.ndarray]] = []

    def _box(self, x0: float, x1: float, y0: float, y1: float):
        c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1) + 1, len(self.xs))
        r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1) + 1, len(self.ys))
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1), self.xs[None, c0:c1], self.ys[r0:r1, None]

    def capsule(self, a: np.ndarray, b: np.ndarray, r: float) -> Shape | None:
        """Segment a-b thickened by radius r; u runs along it from a, v across."""
        pad = r + 1.0
        box = self._box(
            min(a[0], b[0]) - pad,
            max(a[0], b[0]) + pad,
            min(a[1], b[1]) - pad,
            max(a[1], b[1]) + pad,
        )
        if box is None:
            return None
        rows, cols, x, y = box
        length = max(math.hypot(b[0] - a[0], b[1] - a[1]), 1e-6)
        ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
        px, py = x - a[0], y - a[1]
        u = px * ux + py * uy
        v = py * ux - px * uy
        return Shape(rows, cols, np.hypot(u - np.clip(u, 0.0, length), v) - r, u, v)

    def ellipse(self, c: np.ndarray, rx: float, ry: float, angle: float = 0.0) -> Shape | None:
        """Ellipse with radii rx, ry turned by ``angle``; u, v in its own frame."""
        pad = max(rx, ry) + 1.0
        box = self._box(c[0] - pad, c[0] + pad, c[1] - pad, c[1] + pad)
        if box is None:
            return None
        rows, cols, x, y = box
        ca, sa = math.cos(angle), math.sin(angle)
        px, py = x - c[0], y - c[1]
        u, v = px * ca - py * sa, px * sa + py * ca
        # First-order distance estimate |p/r| - 1 over its gradient: exact for circles,
        # accurate enough near the edge of an ellipse for antialiasing.
        k0 = np.hypot(u / rx, v / ry)
        k1 = np.hypot(u / rx**2, v / ry**2)
        sd = np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -min(rx, ry))
        return Shape(rows, cols, sd, u, v)

    def paint(
        self,
        shape: Shape | None,
        colour: Texture | np.ndarray,
        unit: float = 1.0,
        outline: np.ndarray | None = None,
        outline_w: float = 0.0,
    ) -> None:
        """Composite ``shape`` over the frame with coverage = clip(0.5 - sd, 0, 1)."""
        if shape is None:
            return
        alpha = np.clip(0.5 - shape.sd, 0.0, 1.0)
        fill = colour.shade(shape.u, shape.v, unit) if isinstance(colour, Texture) else colour
        if outline is not None and outline_w > 0.0:
            inner = np.clip(0.5 - shape.sd - outline_w, 0.0, 1.0)[..., None]
            fill = outline + inner * (fill - outline)
        region = self.image[shape.rows, shape.cols]
        region += alpha[..., None] * (fill - region)
        top, left = shape.rows.start, shape.cols.start
        for _, _, rows, cols, coverage in self.markers:
            r0, r1 = max(rows.start, top), min(rows.stop, shape.rows.stop)
            c0, c1 = max(cols.start, left), min(cols.stop, shape.cols.stop)
            if r0 < r1 and c0 < c1:
                hidden = alpha[r0 - top : r1 - top, c0 - left : c1 - left]
                coverage[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] *= (
                    1.0 - hidden
                )

    def marker(self, index: int, centre: np.ndarray, radius: float) -> None:
        shape = self.ellipse(centre, radius, radius)
        self.paint(shape, MARKER_COLOURS[index] / 255.0)
        if shape is not None:
            coverage = np.clip(0.5 - shape.sd, 0.0, 1.0)
            self.markers.append((index, math.pi * radius**2, shape.rows, shape.cols, coverage))

    def visible_fractions(self, count: int) -> np.ndarray:
        """(count,) fraction of each marker's disc left visible inside the frame."""
        fractions = np.zeros(count)
        for index, area, _, _, coverage in self.markers:
            fractions[index] = coverage.sum() / area
        return fractions
