"""Face landmarks and identity embeddings that load offline: dlib's models.

The face detector (:class:`~tpsmm.framing.detectors.FaceDetector`) gives boxes only; dlib's
shape predictor puts 68 landmarks in a box (the iBUG 300-W layout that ``face_alignment``
and the reference's best-frame search use), and dlib's face-recognition ResNet turns them
into a 128-d identity embedding. Their weights ship in the ``face-recognition-models``
package on PyPI (``pip install 'tpsmm[landmarks]'``):

- ``shape_predictor_68_face_landmarks.dat``: trained on iBUG 300-W, whose licence excludes
  commercial use;
- ``dlib_face_recognition_resnet_model_v1.dat``: dlib's, released into the public domain.

Both are named after themselves wherever they measure (``dlib-68`` AKD, ``dlib-resnet``
AED), never presented as the paper's face_alignment / OpenFace figures.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from tpsmm.errors import MissingExtraError
from tpsmm.framing.detectors import FaceDetector, require

LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
EMBEDDING_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def model_file(name: str) -> Path:
    """A model file of the ``face-recognition-models`` package.

    Its ``__init__`` imports ``pkg_resources``, which new setuptools no longer has, so the
    files are found without importing it.

    Raises:
        MissingExtraError: the package is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name if spec else None
    if path is None or not path.is_file():
        raise MissingExtraError("face landmarks need the face-recognition-models package: "
                                "pip install 'tpsmm[landmarks]'")
    return path


class DlibLandmarks:
    """68 face landmarks of the surest face: ``(H, W, 3)`` uint8 RGB -> ``(68, 2)`` x, y
    pixels, or None when no face is found. ~3 ms a face after the detector.

    The shapes of the last ``RECENT`` images are kept (by content), so that a
    :class:`DlibFaceEmbedding` sharing this object does not detect again a face the
    landmarks were just found on: reconstruct's ``dlib-68`` and ``dlib-resnet`` look at the
    same frames one after the other, and the detector takes most of a landmark search (24 ms
    a 320x240 frame in ``benchmarks/crop.py``).

    Raises:
        MissingExtraError: dlib or the model package is missing.
    """

    name = "dlib-68"
    RECENT = 64

    def __init__(self, detector: FaceDetector | None = None) -> None:
        dlib = require("dlib", "face")
        self._dlib = dlib
        self.detector = detector or FaceDetector()
        self._predictor = dlib.shape_predictor(str(model_file(LANDMARKS_FILE)))
        self._recent: dict[tuple, object] = {}

    def shape(self, image: np.ndarray):
        """dlib's full object detection of the surest face, or None."""
        image = np.ascontiguousarray(image)
        key = (image.shape, hashlib.blake2b(image.data, digest_size=16).digest())
        if key in self._recent:
            return self._recent[key]
        found = self.detector(image)
        shape = None
        if found:
            box = found[0].rect
            rect = self._dlib.rectangle(round(box.x0), round(box.y0), round(box.x1) - 1,
                                        round(box.y1) - 1)
            shape = self._predictor(image, rect)
        if len(self._recent) >= self.RECENT:
            del self._recent[next(iter(self._recent))]  # the oldest
        self._recent[key] = shape
        return shape

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        shape = self.shape(image)
        if shape is None:
            return None
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class DlibFaceEmbedding:
    """dlib's face-recognition ResNet: ``(H, W, 3)`` uint8 RGB -> ``(128,)`` float64 identity
    embedding of the surest face (two photos of one person lie within ~0.6 of each other,
    dlib's own threshold), or None when no face is found. ~80 ms a face on one core."""

    name = "dlib-resnet"

    def __init__(self, landmarks: DlibLandmarks | None = None) -> None:
        self.landmarks = landmarks or DlibLandmarks()
        dlib = require("dlib", "face")
        self._network = dlib.face_recognition_model_v1(str(model_file(EMBEDDING_FILE)))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        shape = self.landmarks.shape(image)
        if shape is None:
            return None
        return np.array(self._network.compute_face_descriptor(np.ascontiguousarray(image),
                                                              shape))
