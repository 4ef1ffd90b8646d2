"""Finding the subject: detectors that return boxes for an image or a frame.

Every detector takes an ``(H, W, 3)`` uint8 RGB image and returns its detections best
first, in the image's pixels. Each carries the margin (and lift) that turns its boxes into
the training data's framing (:func:`tpsmm.framing.boxes.crop_window`): detectors draw their
boxes tighter or looser, so the margin belongs to the detector.

Subjects (``pip install 'tpsmm[crop]'``; each model ships inside its package and loads
offline):

- ``face``: dlib's HOG + linear SVM frontal face detector, built into dlib (Boost Software
  License 1.0). Chosen over OpenCV's Haar cascade by ``benchmarks/crop.py``.
- ``body``: OpenCV's HOG people detector (Dalal and Triggs' linear SVM, built into OpenCV,
  Apache 2.0): a whole standing person, as in TaiChiHD.
- ``upper-body``: the face detector's box grown to the head and shoulders, as TED-talks
  frames show a speaker: the face is what detectors find reliably in such frames.
- ``box:X,Y,W,H``: a box given by hand, for any other subject (:class:`FixedBox`).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tpsmm.errors import MissingExtraError
from tpsmm.framing.boxes import Rect, parse_box

SUBJECTS = ("face", "body", "upper-body")


@dataclass(frozen=True)
class Detection:
    """One subject found: its box in pixels and the detector's confidence (higher is
    surer; the scale is the detector's own)."""

    rect: Rect
    score: float


class Detector(ABC):
    """Finds one kind of subject.

    Attributes:
        subject: ``face``, ``body``, ``upper-body`` or ``box``.
        margin, lift: the framing of :func:`~tpsmm.framing.boxes.crop_window` for this
            detector's boxes.
        work_size: images are shrunk so that their longer side is at most this before
            detection (speed), and the boxes scaled back.
    """

    subject: str
    margin: float
    lift: float = 0.0
    work_size: int = 640

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """``image: (H, W, 3)`` uint8 RGB -> detections, best first, in its pixels."""
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        scale = min(1.0, self.work_size / max(height, width))
        if scale < 1.0:
            size = (max(round(width * scale), 1), max(round(height * scale), 1))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR,
                                                              reducing_gap=2.0))
        found = self._detect(np.ascontiguousarray(image))
        found = [Detection(d.rect.scaled(1 / scale), d.score) for d in found]
        return sorted(found, key=lambda d: -d.score)

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in ``image`` (already at the working size), any order."""


def require(module: str, subject: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"finding a {subject} needs the {module.split('.')[0]} package: "
            "pip install 'tpsmm[crop]' (or give the subject's box as --crop box:X,Y,W,H)"
        ) from None


class FaceDetector(Detector):
    """dlib's HOG frontal face detector.

    Its box runs from the eyebrows to below the lips and between the cheeks: tighter than
    the S3FD boxes the VoxCeleb crops were drawn around (roughly brows to chin, ear to ear),
    hence a larger margin than VoxCeleb's 0.1 and a lift that puts hair in the window.

    Args:
        upsample: times the image is doubled before searching; dlib finds faces of about
            80 px and more, 40 px after one doubling (four times slower).
    """

    subject = "face"
    margin = 0.5
    lift = 0.1

    def __init__(self, upsample: int = 1, work_size: int = 640) -> None:
        dlib = require("dlib", "face")
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.work_size = work_size

    def _detect(self, image: np.ndarray) -> list[Detection]:
        rects, scores, _ = self._detector.run(image, self.upsample, 0.0)
        return [Detection(Rect(r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s))
                for r, s in zip(rects, scores, strict=True)]


class UpperBodyDetector(FaceDetector):
    """Head and shoulders, from the face: the face box widened to the shoulders and
    lengthened to the chest (a TED-talks frame), by the proportions below."""

    subject = "upper-body"
    margin = 0.05
    lift = 0.0
    # In face-box widths / heights: how far the shoulders and chest reach from the face.
    HALF_WIDTH = 1.7
    ABOVE = 0.9
    BELOW = 3.0

    def _detect(self, image: np.ndarray) -> list[Detection]:
        bodies = []
        for face in super()._detect(image):
            (centre_x, _), box = face.rect.centre, face.rect
            bodies.append(Detection(Rect(
                centre_x - self.HALF_WIDTH * box.width, box.y0 - self.ABOVE * box.height,
                centre_x + self.HALF_WIDTH * box.width, box.y1 + self.BELOW * box.height,
            ), face.score))
        return bodies


class PersonDetector(Detector):
    """OpenCV's HOG people detector: whole standing people of 128 px and taller at the
    working size. Its windows hold the person with about 1/8 of a margin already."""

    subject = "body"
    margin = 0.05

    def __init__(self, work_size: int = 640) -> None:
        cv2 = require("cv2", "body")
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.work_size = work_size

    def _detect(self, image: np.ndarray) -> list[Detection]:
        rects, weights = self._hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8),
                                                    scale=1.05)
        return [Detection(Rect(x, y, x + w, y + h), float(score))
                for (x, y, w, h), score in zip(rects, np.ravel(weights), strict=True)]


class FixedBox(Detector):
    """A box given by hand (``box:X,Y,W,H``): found in every image, as given."""

    subject = "box"
    margin = 0.0
    work_size = 1 << 30  # never shrink: there is nothing to search

    def __init__(self, rect: Rect) -> None:
        self.rect = rect

    def _detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection(self.rect, 1.0)]


def make_detector(subject: str) -> Detector:
    """``face``, ``body``, ``upper-body`` or ``box:X,Y,W,H`` -> its detector.

    Raises:
        MissingExtraError: the subject's package is not installed.
        ValueError: an unknown subject or a malformed box.
    """
    if subject.startswith("box:"):
        return FixedBox(parse_box(subject))
    detectors = {"face": FaceDetector, "body": PersonDetector, "upper-body": UpperBodyDetector}
    if subject not in detectors:
        raise ValueError(f"unknown subject {subject!r}; expected one of "
                         f"{', '.join(SUBJECTS)} or box:X,Y,W,H")
    return detectors[subject]()
