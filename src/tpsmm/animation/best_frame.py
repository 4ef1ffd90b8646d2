"""Choosing the driving frame whose pose is closest to the source's (``--find-best-frame``).

In relative mode the source moves by the driving motion *since a reference frame*; the
reference demo takes as reference the frame whose face looks most like the source, so that
the motion is applied from a matching pose. It compares 68 face landmarks, each set centred
and divided by the square root of its convex hull's area, by the sum of squared
differences (SPEC section 7).

The landmark model (the ``face_alignment`` package, whose weights are downloaded on first
use) only knows faces and is often unavailable. :func:`keypoint_distances` applies the same
comparison to the model's own keypoints, which exist for every domain the model was trained
on. :func:`load_face_landmarks` prefers face landmarks when a model is on the machine:
:class:`FaceLandmarks` when the package and its weights are both there, else
:class:`DlibFaceLandmarks` (dlib's 68 landmarks, offline: ``pip install 'tpsmm[landmarks]'``).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from tpsmm.animation.keypoints import convex_hull_area
from tpsmm.errors import MissingExtraError
from tpsmm.evaluation.fan import first_face, make_aligner
from tpsmm.framing.landmarks import DlibLandmarks


def normalize_shape(points: np.ndarray) -> np.ndarray:
    """``points: (N, 2)`` centred on their mean and divided by sqrt(convex hull area).

    The result no longer depends on where the shape is or how large it is, only on its
    pose. A degenerate (collinear) shape is only centred.
    """
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=0, keepdims=True)
    area = convex_hull_area(centred)
    return centred / np.sqrt(area) if area > 0 else centred


def shape_distance(source: np.ndarray, frame: np.ndarray) -> float:
    """Sum of squared differences of the two normalised shapes, both ``(N, 2)``."""
    return float(((normalize_shape(source) - normalize_shape(frame)) ** 2).sum())


def keypoint_distances(kp_source: torch.Tensor, kp_frames: torch.Tensor) -> np.ndarray:
    """Pose distance of each frame to the source, from model keypoints.

    Args:
        kp_source: ``(1, N, 2)`` in [-1, 1].
        kp_frames: ``(B, N, 2)`` in [-1, 1].

    Returns:
        ``(B,)`` float64, smaller is closer.
    """
    source = kp_source[0].float().cpu().numpy()
    return np.array([shape_distance(source, kp) for kp in kp_frames.float().cpu().numpy()])


class FaceLandmarks:
    """68 face landmarks from the ``face_alignment`` package, as the reference demo uses.

    Build it with :meth:`load`, which returns None rather than downloading anything.
    """

    method = "face landmarks"

    # File name prefixes of the detector's and the 2-D landmark network's weights in the
    # torch hub cache, where face_alignment stores its downloads.
    WEIGHT_PREFIXES = ("s3fd", "2DFAN4")

    def __init__(self, aligner) -> None:
        self._aligner = aligner

    @classmethod
    def load(cls, device: torch.device) -> FaceLandmarks | None:
        """The landmark model, or None if the package or its cached weights are missing."""
        if importlib.util.find_spec("face_alignment") is None:
            return None
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        files = [path.name for path in cache.glob("*")] if cache.is_dir() else []
        if not all(any(name.startswith(p) for name in files) for p in cls.WEIGHT_PREFIXES):
            return None
        return cls(make_aligner(device.type, flip_input=True))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """``image: (H, W, 3)`` uint8 RGB -> the first face's ``(68, 2)`` landmarks, or None."""
        return first_face(self._aligner, image)

    def distances(self, source: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Pose distances of ``frames: (B, H, W, 3)`` uint8 to the source's ``(68, 2)``
        landmarks; ``inf`` for frames where no face is found (the reference skips them)."""
        found = (self(frame) for frame in frames)
        return np.array([np.inf if f is None else shape_distance(source, f) for f in found])


class DlibFaceLandmarks(FaceLandmarks):
    """The same comparison on dlib's 68 landmarks (:mod:`tpsmm.framing.landmarks`), which
    load offline. Faces need ~40 px or more at the model size to be found."""

    method = "dlib-68 face landmarks"

    def __init__(self, landmarks: DlibLandmarks) -> None:
        self._landmarks = landmarks

    @classmethod
    def load(cls, device: torch.device) -> DlibFaceLandmarks | None:
        """dlib's landmark model, or None if dlib or its model package is missing (it runs
        on the CPU whatever ``device``)."""
        try:
            return cls(DlibLandmarks())
        except MissingExtraError:
            return None

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        return self._landmarks(image)


def load_face_landmarks(device: torch.device) -> FaceLandmarks | None:
    """The face landmark model to compare poses with: ``face_alignment``'s (the reference's)
    when it and its weights are installed, else dlib's when installed, else None."""
    return FaceLandmarks.load(device) or DlibFaceLandmarks.load(device)
