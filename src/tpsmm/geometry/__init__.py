"""Geometry: coordinate grids, keypoint heatmaps and thin-plate splines."""

from tpsmm.geometry.grid import (
    apply_projective,
    keypoint_heatmaps,
    make_coordinate_grid,
)
from tpsmm.geometry.tps import KeypointTPS, RandomTPS, solve_tps

__all__ = [
    "KeypointTPS",
    "RandomTPS",
    "apply_projective",
    "keypoint_heatmaps",
    "make_coordinate_grid",
    "solve_tps",
]
