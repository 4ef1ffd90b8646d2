"""The ``face_alignment`` package's 68 face landmarks (S3FD detector + 2-D FAN), set up once.

It is optional and downloads its weights into the torch hub cache on first use; callers
check for it (``importlib.util.find_spec``) before building an aligner.
"""

from __future__ import annotations

import importlib

import numpy as np


def make_aligner(device: str, flip_input: bool):
    """A ``face_alignment.FaceAlignment`` for 2-D landmarks on ``device``.

    Raises:
        ImportError: the package is not installed.
    """
    face_alignment = importlib.import_module("face_alignment")
    # The enum member was renamed from _2D to TWO_D in face_alignment 1.4.
    types = face_alignment.LandmarksType
    kind = types.TWO_D if hasattr(types, "TWO_D") else types._2D
    return face_alignment.FaceAlignment(kind, flip_input=flip_input, device=device)


def first_face(aligner, image: np.ndarray) -> np.ndarray | None:
    """``image: (H, W, 3)`` uint8 RGB -> the first face's ``(68, 2)`` landmarks (x, y pixels),
    or None when no face is found."""
    faces = aligner.get_landmarks(image)
    return np.asarray(faces[0], dtype=np.float64)[:, :2] if faces else None
