"""Video reconstruction on the test split, with L1 and pluggable AKD/MKR/AED (SPEC section 8).

Each test video is reconstructed from its own first frame: frame 0 is the
source and every frame t (0 included) drives it, as in the reference's
``reconstruction.py``. L1 is the mean |prediction - driving| over pixels in
[0, 1]; the dataset's figure is the mean over all frames of all videos.

Pose and identity metrics compare what an extractor
(:mod:`tpsmm.evaluation.extractors`) finds in the driving frames and in the
generated frames alike, as the paper does with external pose detectors.

Three parts, top-down: :func:`reconstruct` loops over the videos and pools
the metrics; :func:`_measure_video` streams one video through the forward
pass (:func:`reconstruct_frames`) and its extractors; :class:`_OutputFiles`
writes what the user asked to keep (strips, side-by-side videos, JSON).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tpsmm.data.dataset import FramesDataset
from tpsmm.data.images import to_uint8
from tpsmm.data.video import VideoWriter, open_writer
from tpsmm.errors import ConfigError, OutputError
from tpsmm.evaluation.extractors import IdentityExtractor, KeypointExtractor
from tpsmm.evaluation.landmarks import akd, mkr
from tpsmm.generator import generate
from tpsmm.model import TPSMM, trainable

BASELINES = ("copy-source",)


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
    generated = generate(model.dense_motion_network, model.inpainting_network, sources,
                         kp_sources["fg_kp"], kp_driving["fg_kp"], bg_param=bg_param)
    return dict(generated, bg_param=bg_param)


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


class _OutputFiles:
    """What reconstruction keeps on disk under ``root``: ``png/<video>.png`` (the
    predictions side by side, the reference's strip), ``mp4/<video>.mp4`` (driving |
    prediction) and ``results.json``. A video's mp4 appears only once complete."""

    def __init__(self, root: Path, save_png: bool, save_video: bool) -> None:
        self.root = root
        self.save_png = save_png
        self.save_video = save_video
        # Found before the first video is reconstructed, not after the last; the folder
        # itself is made by the first write, so a run that fails leaves none.
        existing = root
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise OutputError(f"{root}: cannot write ({existing} is not a folder)")
        if not os.access(existing, os.W_OK):
            raise OutputError(f"{root}: cannot write (permission denied)")

    @staticmethod
    @contextlib.contextmanager
    def _writing(path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None

    def video_writer(self, dataset: FramesDataset, index: int) -> VideoWriter | None:
        if not self.save_video:
            return None
        name = Path(dataset.videos[index].name).stem
        return open_writer(self.root / "mp4" / f"{name}.mp4", dataset.open_video(index).fps)

    def write_strip(self, name: str, predictions: list[np.ndarray]) -> None:
        """``predictions``: batches ``(n, H, W, 3)`` uint8 of one video."""
        if not self.save_png:
            return
        # The reference's file name: the video's name plus .png (name.mp4.png).
        path = self.root / "png" / f"{name}.png"
        with self._writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate(np.concatenate(predictions), axis=1)).save(path)

    def write_report(self, report: ReconstructionReport) -> None:
        path = self.root / "results.json"
        with self._writing(path):
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report.to_json(), indent=1) + "\n")


@dataclass
class _VideoMeasurements:
    """Per-frame measurements of one video: ``l1`` (T,), and per extractor the keypoint
    arrays (real points, real found, fake points, fake found) or the AED values (T,)."""

    l1: np.ndarray
    keypoints: dict[str, tuple[np.ndarray, ...]]
    distances: dict[str, np.ndarray]


def _measure_video(model: TPSMM | None, batches: Iterator[torch.Tensor], device: torch.device,
                   use_bg: bool, keypoint_extractors: Sequence[KeypointExtractor],
                   identity_extractors: Sequence[IdentityExtractor],
                   writer: VideoWriter | None, strip: list[np.ndarray] | None
                   ) -> _VideoMeasurements:
    """Stream one video through the forward pass and the extractors; hand its frames to
    ``writer`` (driving | prediction) and its predictions to ``strip`` when given."""
    l1: list[np.ndarray] = []
    keypoints: dict[str, list[tuple]] = {e.name: [] for e in keypoint_extractors}
    distances: dict[str, list[np.ndarray]] = {e.name: [] for e in identity_extractors}
    with torch.no_grad():
        for driving, prediction in _predict_video(model, batches, device, use_bg):
            l1.append((prediction - driving).abs().mean(dim=(1, 2, 3)).cpu().numpy())
            real, fake = to_uint8(driving), to_uint8(prediction)
            if strip is not None:
                strip.append(fake)
            if writer is not None:
                writer.write(np.concatenate([real, fake], axis=2))
            for extractor in keypoint_extractors:
                keypoints[extractor.name].append((*extractor(real), *extractor(fake)))
            for extractor in identity_extractors:
                difference = extractor(real) - extractor(fake)
                distances[extractor.name].append((difference**2).sum(axis=1))
    return _VideoMeasurements(
        l1=np.concatenate(l1),
        keypoints={key: tuple(np.concatenate(column) for column in zip(*parts, strict=True))
                   for key, parts in keypoints.items()},
        distances={key: np.concatenate(parts) for key, parts in distances.items()},
    )


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
            (see :func:`~tpsmm.evaluation.extractors.build_extractors`); ``absent`` is
            copied to the report.
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
    files = _OutputFiles(Path(out_dir), save_png, save_video) if out_dir is not None else None
    total = len(dataset.videos) if max_videos is None else min(max_videos, len(dataset.videos))
    results: list[VideoResult] = []
    videos: list[_VideoMeasurements] = []
    for index in range(total):
        name = dataset.videos[index].name
        strip: list[np.ndarray] | None = [] if files is not None and save_png else None
        writer = files.video_writer(dataset, index) if files is not None else None
        with writer if writer is not None else contextlib.nullcontext():
            measured = _measure_video(model, dataset.iter_frames(index, batch_size), device,
                                      bool(use_bg), keypoint_extractors, identity_extractors,
                                      writer, strip)
        if files is not None:
            files.write_strip(name, strip)
        result = VideoResult(name, len(measured.l1), float(measured.l1.mean()))
        result.metrics.update({key: _keypoint_metrics(*arrays)
                               for key, arrays in measured.keypoints.items()})
        result.metrics.update({key: {"aed": _aed(values)}
                               for key, values in measured.distances.items()})
        results.append(result)
        videos.append(measured)
        if progress is not None:
            progress(index + 1, total, result)

    metrics = {key: _keypoint_metrics(*[np.concatenate([v.keypoints[key][c] for v in videos])
                                        for c in range(4)])
               for key in (e.name for e in keypoint_extractors) if videos}
    metrics.update({key: {"aed": _aed(np.concatenate([v.distances[key] for v in videos]))}
                    for key in (e.name for e in identity_extractors) if videos})
    l1_all = float(np.concatenate([v.l1 for v in videos]).mean()) if videos else float("nan")
    report = ReconstructionReport(baseline or "model", results, l1_all, metrics,
                                  dict(absent or {}))
    if files is not None:
        files.write_report(report)
    return report


def _keypoint_metrics(points_real: np.ndarray, found_real: np.ndarray, points_fake: np.ndarray,
                      found_fake: np.ndarray) -> dict[str, float]:
    return {"akd": akd(points_real, found_real, points_fake, found_fake),
            "mkr": float(mkr(found_real, found_fake))}


def _aed(distances: np.ndarray) -> float:
    """The mean of the frames' squared embedding distances, leaving out the frames an
    extractor could not embed (NaN: no face); NaN when there are none."""
    kept = distances[~np.isnan(distances)]
    return float(kept.mean()) if len(kept) else float("nan")
