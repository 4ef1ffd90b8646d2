"""The ten landmarks a synthetic character carries, and their reserved colours.

Markers are small discs in fully saturated hues; every other colour in a frame has a chroma
of at most :data:`MAX_TEXTURE_CHROMA`, so markers can be found by colour alone.
"""

from __future__ import annotations

import numpy as np

MARKER_NAMES = (
    "head",  # on the nose, so it also follows the face turning
    "chest",
    "left_elbow",
    "right_elbow",
    "left_hand",
    "right_hand",
    "left_knee",
    "right_knee",
    "left_foot",
    "right_foot",
)
#: Hue of each marker in degrees; evenly spaced so that blurred markers stay apart.
MARKER_HUES = np.arange(len(MARKER_NAMES)) * (360.0 / len(MARKER_NAMES))
#: Upper bound of the chroma (max - min channel, in [0, 1]) of all non-marker colours.
MAX_TEXTURE_CHROMA = 0.22
#: Marker disc radius in body units (fractions of the frame size at body scale 1).
MARKER_RADIUS = 0.036
#: A marker counts as visible when this fraction of its disc can be seen.
VISIBLE_FRACTION = 0.75


def hue_to_rgb(hue: np.ndarray | float) -> np.ndarray:
    """Fully saturated RGB (..., 3) in [0, 1] for hues in degrees (max 1, min 0)."""
    h = (np.asarray(hue, dtype=np.float64) % 360.0)[..., None] / 60.0
    return np.clip(np.abs(h - [3.0, 2.0, 4.0]) * [1.0, -1.0, -1.0] + [-1.0, 2.0, 2.0], 0.0, 1.0)


MARKER_INDEX = {name: i for i, name in enumerate(MARKER_NAMES)}
#: (M, 3) uint8 marker colours: pure hues, chroma 255.
MARKER_COLOURS = np.round(hue_to_rgb(MARKER_HUES) * 255).astype(np.uint8)
