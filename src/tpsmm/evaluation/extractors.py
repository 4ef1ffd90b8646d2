"""Metric extractors: what reconstruction compares between driving and generated frames.

The paper measures pose and identity with external detectors run on both the driving
frames and the generated ones:

- a :class:`KeypointExtractor` gives landmarks and whether each was found: AKD (average
  keypoint distance, pixels) and MKR (missing keypoint rate);
- an :class:`IdentityExtractor` gives an embedding per frame: AED (average euclidean
  distance; *squared*, as pose-evaluation's ``cmp.py`` computes it).

Built in: ``markers`` (the synthetic dataset's coloured markers, found by
:func:`tpsmm.evaluation.landmarks.detect_markers`; enabled automatically when the dataset
root has ``synthetic.json``), ``face-alignment`` (68 face landmarks, when the
``face_alignment`` package is installed), ``dlib-68`` and ``dlib-resnet`` (dlib's 68 face
landmarks and face embedding, offline, :mod:`tpsmm.framing.landmarks`: figures named after
them, not comparable with the paper's) and ``aed`` (any embedding network saved with
``torch.export`` or TorchScript). Extractors that cannot run are reported as absent with
the reason, never silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tpsmm.errors import ConfigError, InputError, MissingExtraError
from tpsmm.evaluation.fan import first_face, make_aligner
from tpsmm.evaluation.landmarks import detect_video_markers
from tpsmm.framing.landmarks import DlibFaceEmbedding, DlibLandmarks


class KeypointExtractor(Protocol):
    """Landmarks of frames: ``(T, H, W, 3) uint8 -> (points (T, M, 2) px, found (T, M) bool)``."""

    name: str

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class IdentityExtractor(Protocol):
    """Identity embeddings of frames: ``(T, H, W, 3) uint8 -> (T, D) float``; a row of NaN
    where there is nothing to embed (no face), which AED then leaves out."""

    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


class MarkerExtractor:
    """The synthetic characters' 10 coloured markers (no network needed)."""

    name = "markers"

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return detect_video_markers(frames)


class FaceAlignmentExtractor:
    """68 face landmarks from the ``face_alignment`` package (2-D FAN), as the paper's AKD.

    A frame where no face is found has all landmarks missing. The package
    downloads its own weights on first use.
    """

    name = "face-alignment"

    def __init__(self, device: str = "cpu") -> None:
        self.aligner = make_aligner(device, flip_input=False)

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _face_landmarks(frames, lambda frame: first_face(self.aligner, frame))


def _face_landmarks(frames: np.ndarray, find: Callable[[np.ndarray], np.ndarray | None]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks of each frame by ``find`` (None: no face, all 68 missing) ->
    ``(points (T, 68, 2), found (T, 68))``."""
    points = np.zeros((len(frames), 68, 2), np.float32)
    found = np.zeros((len(frames), 68), bool)
    for t, frame in enumerate(frames):
        landmarks = find(frame)
        if landmarks is not None:
            points[t], found[t] = landmarks, True
    return points, found


class DlibLandmarkExtractor:
    """dlib's 68 face landmarks (AKD and MKR named ``dlib-68``); a frame without a face has
    all 68 missing. Faces need ~40 px or more to be found."""

    name = "dlib-68"

    def __init__(self, landmarks: DlibLandmarks) -> None:
        self.landmarks = landmarks

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _face_landmarks(frames, self.landmarks)


class DlibIdentityExtractor:
    """dlib's face-recognition ResNet, 128-d (AED named ``dlib-resnet``); NaN rows for
    frames without a face."""

    name = "dlib-resnet"

    def __init__(self, landmarks: DlibLandmarks) -> None:
        self.embedding = DlibFaceEmbedding(landmarks)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        rows = [self.embedding(frame) for frame in frames]
        return np.stack([np.full(128, np.nan) if row is None else row for row in rows])


class SavedIdentityModel:
    """An identity embedding network saved with ``torch.export.save`` (``.pt2``) or TorchScript.

    The module takes (B, 3, H, W) float RGB in [0, 1] at the frames' size and
    returns (B, D) embeddings; any resizing or normalisation it needs (e.g.
    OpenFace's 96x96 BGR, the ReID net's 288x144 ImageNet-normalised input)
    belongs inside it. An exported program needs a dynamic batch dimension.
    """

    name = "aed"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: identity model not found")
        try:
            if path.suffix == ".pt2":
                self.module = torch.export.load(str(path)).module().to(device)
            else:
                self.module = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"{path}: not an exported (.pt2) or TorchScript model "
                             f"({reason})") from None
        self.device = device

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).to(self.device)
        with torch.no_grad():
            return self.module(batch).float().cpu().numpy()


def build_extractors(names: Sequence[str] | None, root: str | Path, aed_model: str | None = None,
                     device: str = "cpu"
                     ) -> tuple[list[KeypointExtractor], list[IdentityExtractor], dict[str, str]]:
    """Extractors by name, and the absent ones with the reason.

    ``names`` None means automatic: ``markers`` when ``root/synthetic.json``
    exists, ``aed`` when ``aed_model`` is given; the face and body
    detectors are then listed as absent unless asked for. Names:
    ``markers``, ``face-alignment``, ``dlib-68``, ``dlib-resnet``, ``aed``.
    """
    synthetic = (Path(root) / "synthetic.json").is_file()
    wanted = set(names) if names is not None else (
        ({"markers"} if synthetic else set()) | ({"aed"} if aed_model else set()))
    unknown = wanted - {"markers", "face-alignment", "dlib-68", "dlib-resnet", "aed"}
    if unknown:
        raise ConfigError(f"unknown metric extractor(s) {', '.join(sorted(unknown))}; "
                          f"choose from markers, face-alignment, dlib-68, dlib-resnet, aed")
    keypoints: list[KeypointExtractor] = []
    identities: list[IdentityExtractor] = []
    absent: dict[str, str] = {}
    if "markers" in wanted:
        if synthetic:
            keypoints.append(MarkerExtractor())
        else:
            absent["markers"] = f"{root} is not a synthetic dataset (no synthetic.json)"
    if "face-alignment" in wanted:
        try:
            keypoints.append(FaceAlignmentExtractor(device))
        except ImportError:
            absent["face-alignment"] = "the face_alignment package is not installed"
    else:
        absent["face-alignment"] = "not requested (--metrics face-alignment; faces only)"
    dlib_wanted = [name for name in ("dlib-68", "dlib-resnet") if name in wanted]
    absent.update({name: f"not requested (--metrics {name}; faces only)"
                   for name in ("dlib-68", "dlib-resnet") if name not in wanted})
    try:
        # One detector and landmark model for both (the embedding starts from landmarks).
        landmarks = DlibLandmarks() if dlib_wanted else None
        if "dlib-68" in dlib_wanted:
            keypoints.append(DlibLandmarkExtractor(landmarks))
        if "dlib-resnet" in dlib_wanted:
            identities.append(DlibIdentityExtractor(landmarks))
    except MissingExtraError as error:
        absent.update({name: str(error) for name in dlib_wanted})
    absent["pose"] = ("no body pose detector is bundled (the paper's OpenPose-style model); "
                      "plug one in through tpsmm.evaluation.extractors.KeypointExtractor")
    if "aed" in wanted and aed_model is not None:
        identities.append(SavedIdentityModel(aed_model, device))
    else:
        absent["aed"] = ("not requested (--metrics aed)" if aed_model is not None
                         else "no identity model: pass --aed-model FILE (.pt2 or TorchScript)")
    return keypoints, identities, absent
