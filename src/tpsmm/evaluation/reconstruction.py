"""Video reconstruction on the test split, with L1 and pluggable AKD/MKR/AED (SPEC section 8).

Each test video is reconstructed from its own first frame: frame 0 is the
source and every frame t (0 included) drives it, as in the reference's
``reconstruction.py``. L1 is the mean |prediction - driving| over pixels in
[0, 1]; the dataset's figure is the mean over all frames of all videos.

Pose and identity metrics compare what an *extractor* finds in the driving
frames and in the generated frames alike, as the paper does with external
pose detectors:

- a :class:`KeypointExtractor` gives landmarks and whether each was found:
  AKD (average keypoint distance, pixels) and MKR (missing keypoint rate);
- an :class:`IdentityExtractor` gives an embedding per frame: AED (average
  euclidean distance; *squared*, as pose-evaluation's ``cmp.py`` computes it).

Built in: ``markers`` (the synthetic dataset's coloured markers, found by
:func:`tpsmm.evaluation.landmarks.detect_markers`; enabled automatically
when the dataset root has ``synthetic.json``), ``face-alignment`` (68 face
landmarks, when the ``face_alignment`` package is installed) and ``aed``
(any embedding network saved with ``torch.export`` or TorchScript). Extractors that cannot
run are reported as absent with the reason, never silently skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from tpsmm.data.dataset import FramesDataset
from tpsmm.data.images import to_uint8
from tpsmm.data.video import open_writer
from tpsmm.errors import ConfigError, InputError
from tpsmm.evaluation.landmarks import akd, detect_video_markers, mkr
from tpsmm.model import TPSMM, trainable

BASELINES = ("copy-source",)


class KeypointExtractor(Protocol):
    """Landmarks of frames: ``(T, H, W, 3) uint8 -> (points (T, M, 2) px, found (T, M) bool)``."""

    name: str

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class IdentityExtractor(Protocol):
    """Identity embeddings of frames: ``(T, H, W, 3) uint8 -> (T, D) float``."""

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
        import face_alignment  # optional dependency, checked by build_extractors

        # Renamed from _2D to TWO_D in face_alignment 1.4.
        types = face_alignment.LandmarksType
        kind = types.TWO_D if hasattr(types, "TWO_D") else types._2D
        self.aligner = face_alignment.FaceAlignment(kind, flip_input=False, device=device)

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.zeros((len(frames), 68, 2), np.float32)
        found = np.zeros((len(frames), 68), bool)
        for t, frame in enumerate(frames):
            faces = self.aligner.get_landmarks(frame)
            if faces:
                points[t], found[t] = faces[0][:, :2], True
        return points, found


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


@dataclass
class VideoResult:
    """One test video: ``frames`` count, ``l1`` mean over its frames, ``metrics`` by extractor."""

    name: str
    frames: int
    l1: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ReconstructionReport:
    """Results over a test split.

    ``l1`` is the mean over all frames of all videos (the reference's
    figure); ``metrics[extractor]`` pools every frame of every video
    (``akd``/``mkr`` for keypoint extractors, ``aed`` for identity ones);
    ``absent`` names the extractors that could not run and why; ``method``
    is ``"model"`` or a baseline name.
    """

    method: str
    videos: list[VideoResult]
    l1: float
    metrics: dict[str, dict[str, float]]
    absent: dict[str, str]

    def to_json(self) -> dict:
        """A JSON-ready dict; undefined metrics (NaN: nothing detected) become null."""
        return _nan_to_none(asdict(self))


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    return value


def build_extractors(names: Sequence[str] | None, root: str | Path, aed_model: str | None = None,
                     device: str = "cpu"
                     ) -> tuple[list[KeypointExtractor], list[IdentityExtractor], dict[str, str]]:
    """Extractors by name, and the absent ones with the reason.

    ``names`` None means automatic: ``markers`` when ``root/synthetic.json``
    exists, ``aed`` when ``aed_model`` is given; the face and body
    detectors are then listed as absent unless asked for. Names:
    ``markers``, ``face-alignment``, ``aed``.
    """
    synthetic = (Path(root) / "synthetic.json").is_file()
    wanted = set(names) if names is not None else (
        ({"markers"} if synthetic else set()) | ({"aed"} if aed_model else set()))
    unknown = wanted - {"markers", "face-alignment", "aed"}
    if unknown:
        raise ConfigError(f"unknown metric extractor(s) {', '.join(sorted(unknown))}; "
                          f"choose from markers, face-alignment, aed")
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
    absent["pose"] = ("no body pose detector is bundled (the paper's OpenPose-style model); "
                      "plug one in through tpsmm.evaluation.reconstruction.KeypointExtractor")
    if "aed" in wanted and aed_model is not None:
        identities.append(SavedIdentityModel(aed_model, device))
    else:
        absent["aed"] = ("not requested (--metrics aed)" if aed_model is not None
                         else "no identity model: pass --aed-model FILE (.pt2 or TorchScript)")
    return keypoints, identities, absent


def reconstruct_frames(model: TPSMM | None, source: torch.Tensor, driving: torch.Tensor,
                       kp_source: dict | None, use_bg: bool) -> torch.Tensor:
    """Predictions of a batch of driving frames from one source frame.

    Args:
        model: networks in eval mode, or None for the copy-source baseline.
        source: (1, 3, H, W) in [0, 1].
        driving: (n, 3, H, W) in [0, 1], on the model's device.
        kp_source: ``model.kp_detector(source)``, computed once per video.
        use_bg: move the background with the BG predictor (reconstruction
            does; the reference's animation demo does not).

    Returns:
        (n, 3, H, W) in [0, 1].
    """
    if model is None:
        return source.expand_as(driving).clone()
    return generate_frames(model, source, driving, kp_source, use_bg)["prediction"]


def generate_frames(model: TPSMM, source: torch.Tensor, driving: torch.Tensor,
                    kp_source: dict, use_bg: bool) -> dict:
    """:func:`reconstruct_frames` with everything the inpainting network returns
    (``prediction``, ``deformed``, ``occlusion_map``, ...), each with n rows, the
    dense motion network's output as ``motion`` (``contribution_maps``, ``deformation``)
    and the background predictor's ``bg_param`` ((n, 3, 3), or None without it)."""
    count = driving.shape[0]
    sources = source.expand(count, -1, -1, -1)
    kp_sources = {"fg_kp": kp_source["fg_kp"].expand(count, -1, -1)}
    kp_driving = model.kp_detector(driving)
    bg_param = model.bg_predictor(sources, driving) if use_bg else None
    motion = model.dense_motion_network(sources, kp_driving, kp_sources, bg_param=bg_param)
    return dict(model.inpainting_network(sources, motion), motion=motion, bg_param=bg_param)


def background_used(model: TPSMM) -> bool:
    """Whether reconstruction moves the background: only with a trained BG predictor
    (one loaded from the checkpoint), as the reference's reconstruction does, or one
    that needs no weights (``bg_predictor_params.kind: lucas_kanade``)."""
    if model.bg_predictor is None:
        return False
    return "bg_predictor" in model.loaded or not trainable(model.bg_predictor)


def _predict_video(model: TPSMM | None, batches: Iterator[torch.Tensor], device: torch.device,
                   use_bg: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(driving, prediction) batches of one video, frame 0 as the source."""
    source = kp_source = None
    for driving in batches:
        driving = driving.to(device)
        if source is None:
            source = driving[:1]
            kp_source = model.kp_detector(source) if model is not None else None
        yield driving, reconstruct_frames(model, source, driving, kp_source, use_bg)


def reconstruct(dataset: FramesDataset, model: TPSMM | None = None, *,
                baseline: str | None = None,
                keypoint_extractors: Sequence[KeypointExtractor] = (),
                identity_extractors: Sequence[IdentityExtractor] = (),
                absent: dict[str, str] | None = None, out_dir: str | Path | None = None,
                save_png: bool = True, save_video: bool = False, batch_size: int = 16,
                max_videos: int | None = None, use_bg: bool | None = None,
                progress: Callable[[int, int, VideoResult], None] | None = None
                ) -> ReconstructionReport:
    """Reconstruct every test video of ``dataset`` and measure the results.

    Args:
        dataset: a test split (``FramesDataset(..., is_train=False)``).
        model: the networks (put in eval mode here), or None with ``baseline``.
        baseline: ``"copy-source"``: every prediction is frame 0.
        keypoint_extractors, identity_extractors: metrics to compute
            (see :func:`build_extractors`); ``absent`` is copied to the report.
        out_dir: where to write ``png/<video>.png`` (the predictions side by
            side, the reference's strip), ``mp4/<video>.mp4`` (driving |
            prediction) and ``results.json``; None writes nothing.
        save_png, save_video: which of the per-video outputs to write.
        batch_size: frames predicted at once (memory vs speed).
        max_videos: only the first videos (sorted by name).
        use_bg: move the background with the BG predictor; None: when the
            model has one loaded from a checkpoint.
        progress: called after each video with (done, total, result).
    """
    if (model is None) == (baseline is None):
        raise ConfigError("give either a model or a baseline (copy-source)")
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    if dataset.is_train:
        raise ConfigError("reconstruction needs the test split (is_train=False)")
    device = torch.device("cpu")
    if model is not None:
        model.eval()
        device = next(model.parameters()).device
        use_bg = background_used(model) if use_bg is None else bool(
            use_bg and model.bg_predictor is not None)
    out = Path(out_dir) if out_dir is not None else None
    total = len(dataset.videos) if max_videos is None else min(max_videos, len(dataset.videos))
    results: list[VideoResult] = []
    pooled_kp: dict[str, list[tuple]] = {e.name: [] for e in keypoint_extractors}
    pooled_id: dict[str, list[np.ndarray]] = {e.name: [] for e in identity_extractors}
    frame_l1: list[np.ndarray] = []
    for index in range(total):
        name = dataset.videos[index].name
        video_l1: list[np.ndarray] = []
        strip: list[np.ndarray] = []
        found_kp: dict[str, list[tuple]] = {e.name: [] for e in keypoint_extractors}
        distances: dict[str, list[np.ndarray]] = {e.name: [] for e in identity_extractors}
        writer = None
        if out is not None and save_video:
            fps = dataset.open_video(index).fps
            writer = open_writer(out / "mp4" / f"{Path(name).stem}.mp4", fps)
        try:
            with torch.no_grad():
                for driving, prediction in _predict_video(
                        model, dataset.iter_frames(index, batch_size), device, bool(use_bg)):
                    video_l1.append((prediction - driving).abs().mean(dim=(1, 2, 3)).cpu().numpy())
                    real, fake = to_uint8(driving), to_uint8(prediction)
                    if out is not None and save_png:
                        strip.append(fake)
                    if writer is not None:
                        writer.write(np.concatenate([real, fake], axis=2))
                    for extractor in keypoint_extractors:
                        found_kp[extractor.name].append((*extractor(real), *extractor(fake)))
                    for extractor in identity_extractors:
                        difference = extractor(real) - extractor(fake)
                        distances[extractor.name].append((difference**2).sum(axis=1))
        finally:
            if writer is not None:
                writer.close()
        l1 = np.concatenate(video_l1)
        frame_l1.append(l1)
        result = VideoResult(name, len(l1), float(l1.mean()))
        for key, parts in found_kp.items():
            arrays = [np.concatenate(column) for column in zip(*parts, strict=True)]
            pooled_kp[key].append(tuple(arrays))
            result.metrics[key] = _keypoint_metrics(*arrays)
        for key, parts in distances.items():
            values = np.concatenate(parts)
            pooled_id[key].append(values)
            result.metrics[key] = {"aed": float(values.mean())}
        if out is not None and save_png:
            (out / "png").mkdir(parents=True, exist_ok=True)
            # The reference's file name: the video's name plus .png (name.mp4.png).
            Image.fromarray(np.concatenate(np.concatenate(strip), axis=1)).save(
                out / "png" / f"{name}.png")
        results.append(result)
        if progress is not None:
            progress(index + 1, total, result)

    metrics = {key: _keypoint_metrics(*[np.concatenate(c) for c in zip(*parts, strict=True)])
               for key, parts in pooled_kp.items() if parts}
    metrics.update({key: {"aed": float(np.concatenate(parts).mean())}
                    for key, parts in pooled_id.items() if parts})
    l1_all = float(np.concatenate(frame_l1).mean()) if frame_l1 else float("nan")
    report = ReconstructionReport(baseline or "model", results, l1_all, metrics,
                                  dict(absent or {}))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    return report


def _keypoint_metrics(points_real: np.ndarray, found_real: np.ndarray, points_fake: np.ndarray,
                      found_fake: np.ndarray) -> dict[str, float]:
    return {"akd": akd(points_real, found_real, points_fake, found_fake),
            "mkr": float(mkr(found_real, found_fake))}
