"""The animator: a source image brought to life by a driving video, streamed in batches.

One frame's path, top-down:

1. :meth:`Animator.prepare`, once per source image: fit it to the model's size, then keep
   its keypoints and the inpainting encoder's feature maps, which depend on it alone.
2. :meth:`Animator.animate` streams the driving video: decode a batch, fit it, detect its
   keypoints, turn them into the keypoints the source moves to (the mode, see
   :mod:`tpsmm.animation.keypoints`), run the dense motion network and the inpainting
   decoder on the kept source work, and hand the frames to the writer.

Only one batch of frames is in memory at a time, whatever the length of the video; the
output appears under its name only once complete (:func:`tpsmm.data.video.open_writer`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tpsmm.animation.best_frame import keypoint_distances, load_face_landmarks
from tpsmm.animation.comparison import Comparison
from tpsmm.animation.keypoints import relative_kp, relative_scale
from tpsmm.animation.overlap import WriteBehind, read_ahead
from tpsmm.config import Config
from tpsmm.data.images import FIT_MODES, Box, fit, load_image, to_tensor, to_uint8
from tpsmm.data.video import VideoReader, has_audio, open_video, open_writer
from tpsmm.deploy.engines import make_engine
from tpsmm.devices import PRECISIONS, resolve_device
from tpsmm.errors import CheckpointError, InputError
from tpsmm.framing.detectors import Detector
from tpsmm.framing.paste_back import PasteBack
from tpsmm.framing.plan import VideoFraming, cut, resolve_crop, source_window
from tpsmm.model import TPSMM
from tpsmm.progress import Progress, ProgressCallback

MODES = ("relative", "standard", "avd")
NEEDED_NETWORKS = ("kp_detector", "dense_motion_network", "inpainting_network")
# Frames per batch when not given. On the CPU, batches beyond a few frames gain nothing
# and only cost memory; GPUs need larger ones to fill up.
DEFAULT_BATCH_SIZE = {"cpu": 4, "cuda": 16, "mps": 8}
# The longest side of pasted-back output by default: full HD.
DEFAULT_MAX_SIZE = 1920

ImageInput = str | os.PathLike | np.ndarray | torch.Tensor
"""What an image may be given as: a file, an (H, W, 3) array or a (3, H, W) tensor."""


@dataclass(frozen=True)
class PreparedSource:
    """A source image with the work that depends only on it done once.

    Attributes:
        image: ``(1, 3, S, S)`` fp32 in [0, 1], at the model size S, on the device.
        kp: ``(1, K*5, 2)`` keypoints in (-1, 1), x then y.
        encoder_maps: the inpainting encoder's maps, shallowest first, ``(1, C_i, S/2^i,
            S/2^i)`` fp32 (kept in fp32 in every precision: they are warped by
            ``grid_sample``, which must see fp32 features and grids).
    """

    image: torch.Tensor
    kp: torch.Tensor
    encoder_maps: list[torch.Tensor]


@dataclass(frozen=True)
class AnimationResult:
    """What :meth:`Animator.animate` wrote.

    Attributes:
        output: the file or directory written.
        frames: number of frames written.
        fps: their frame rate.
        frame_size: their ``(height, width)`` in pixels: the model size, or the source's
            (capped) when pasted back.
        seconds: wall time of the whole call.
        audio: whether the output carries the driving video's audio.
        best_frame: index of the reference frame chosen by ``find_best_frame`` (for the
            first tube when cropping), else None.
        best_frame_by: ``"face landmarks"`` (face_alignment's), ``"dlib-68 face landmarks"``
            or ``"keypoints"``, what chose it; else None.
        tubes: the driving video's tubes (one when not cropping).
        source_window: where the source was cropped, None when it was fitted whole.
    """

    output: Path
    frames: int
    fps: float
    frame_size: tuple[int, int]
    seconds: float
    audio: bool
    best_frame: int | None = None
    best_frame_by: str | None = None
    tubes: int = 1
    source_window: Box | None = None

    @property
    def frames_per_second(self) -> float:
        """Throughput of the call: frames written per second of wall time."""
        return self.frames / max(self.seconds, 1e-9)


class Animator:
    """Animates source images with driving videos using one loaded model.

    The animator owns ``model``: its engine (:mod:`tpsmm.deploy.engines`) runs the networks,
    rewritten in place for inference (:func:`~tpsmm.animation.inference.optimize_for_inference`)
    or exported to ONNX graphs, without the background predictor, which animation never
    uses (as in the reference demo).

    Args:
        model: a :class:`TPSMM`, e.g. from :meth:`TPSMM.from_checkpoint`.
        device: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``mps``...
        precision: ``fp32`` (default: full precision, frames within 1/255 of the reference),
            ``bf16`` or ``fp16``: the precision of the per-frame convolutions of the dense
            motion network's hourglass and the inpainting network, ~98% of the work.
            Everything else (keypoints, TPS solves, grids, softmax, flow) stays fp32.
        batch_size: frames per batch; by default 4 on the CPU, 16 on CUDA, 8 on MPS.
        backend: ``torch`` (default), or ``onnxruntime`` / ``openvino``: the model's ONNX
            graphs run by that engine on the CPU (needs ``pip install 'tpsmm[deploy]'``): fp32,
            or with OpenVINO bf16 on a CPU that has it.
        compile: ``torch.compile`` the networks (torch backend) for batches of
            ``batch_size``; the first batch then takes minutes to compile.

    >>> animator = Animator.from_checkpoint("vox.pth.tar", config="vox-256")
    >>> source = animator.prepare("face.png")          # the source's work, done once
    >>> animator.animate(source, "speech.mp4", "out.mp4")
    >>> animator.animate(source, "song.mp4", "out2.mp4")
    """

    def __init__(self, model: TPSMM, device: str | torch.device = "auto",
                 precision: str = "fp32", batch_size: int | None = None,
                 backend: str = "torch", compile: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        # The ONNX engines run on the CPU: "auto" means it for them.
        graph = backend != "torch" and str(device) == "auto"
        self.device = resolve_device("cpu" if graph else device)
        self.precision = precision
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, 4)
        self.config: Config = model.config
        self.image_size = self.config.image_size
        self.checkpoint: Path | None = None
        self.backend = backend
        # Which networks came from a checkpoint (a model built in code has none listed).
        self.loaded = list(model.loaded)
        self.engine = make_engine(model, backend, self.device, precision,
                                  self.batch_size if compile else None, self.batch_size)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike,
                        config: str | os.PathLike | dict = "vox-256",
                        **options) -> Animator:
        """Load a reference-format checkpoint; ``options`` as for the constructor.

        Raises:
            CheckpointError: unreadable, not fitting ``config``, or without one of the
                networks animation needs.
            ConfigError: ``config`` cannot be loaded.
        """
        model = TPSMM.from_checkpoint(checkpoint, config=config, map_location="cpu")
        missing = [name for name in NEEDED_NETWORKS if name not in model.loaded]
        if missing:
            raise CheckpointError(
                f"{checkpoint}: checkpoint has no {' or '.join(missing)}, which animation needs"
            )
        animator = cls(model, **options)
        animator.checkpoint = Path(checkpoint)
        return animator

    # ----------------------------------------------------------------------- the frame path

    @torch.inference_mode()
    def prepare(self, source: ImageInput, fit_mode: str = "crop",
                window: Box | None = None) -> PreparedSource:
        """Do the work that depends on the source image alone.

        Args:
            source: an image file; an ``(H, W, 3)`` array, uint8 or float in [0, 1]; or a
                ``(3, H, W)`` / ``(1, 3, H, W)`` float tensor in [0, 1]. Any size: it is
                fitted to the model size with ``fit_mode`` (crop, pad or stretch).
            window: cut this square window out instead (e.g. around a face), padded with
                black where it leaves the image.
        """
        image = _image_batch(source)
        image = self._fit(image, fit_mode) if window is None else self._on_device(
            cut(image, window, self.image_size))
        return PreparedSource(
            image=image,
            kp=self.engine.keypoints(image),
            encoder_maps=self.engine.encode(image),
        )

    @torch.inference_mode()
    def animate_frames(self, source: PreparedSource, frames: torch.Tensor, mode: str = "relative",
                       reference: torch.Tensor | None = None) -> torch.Tensor:
        """Animate one batch of driving frames already at the model size.

        Args:
            source: from :meth:`prepare`.
            frames: ``(B, 3, S, S)`` float in [0, 1].
            mode: ``relative``, ``standard`` or ``avd`` (see :mod:`tpsmm.animation.keypoints`).
            reference: ``(1, 3, S, S)``, the frame relative motion starts from; by default
                ``frames[:1]``. Give the video's first frame for every batch of a video.

        Returns:
            ``(B, 3, S, S)`` fp32 in [0, 1], on the animator's device.
        """
        kp_driving = self.keypoints(frames)
        kp_reference = kp_driving[:1] if reference is None else self.keypoints(reference)
        return self.animate_keypoints(source, kp_driving, kp_reference, mode)

    @torch.inference_mode()
    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames: (B, 3, S, S)`` in [0, 1] at the model size -> ``(B, K*5, 2)`` in [-1, 1]."""
        if frames.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"frames must be {self.image_size}x{self.image_size} (the model "
                             f"size), got {tuple(frames.shape)}; fit them first")
        return self._keypoints(self._on_device(frames))

    @torch.inference_mode()
    def animate_keypoints(self, source: PreparedSource, kp_driving: torch.Tensor,
                          kp_reference: torch.Tensor, mode: str = "relative") -> torch.Tensor:
        """:meth:`animate_frames` from keypoints already detected (by :meth:`keypoints`).

        Args:
            kp_driving: ``(B, K*5, 2)``, the driving frames' keypoints.
            kp_reference: ``(1, K*5, 2)``, the reference frame's (relative mode).

        Returns:
            ``(B, 3, S, S)`` fp32 in [0, 1], on the animator's device.
        """
        self._check_mode(mode)
        return self._generate(source, self._motion(mode, source, kp_reference)(kp_driving))

    def _keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames: (B, 3, S, S)`` on the device -> ``(B, K*5, 2)``."""
        return self.engine.keypoints(frames)

    def _motion(self, mode: str, source: PreparedSource,
                kp_reference: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map from driving keypoints ``(B, K*5, 2)`` to the keypoints the source is
        animated with, for ``mode``; ``kp_reference: (1, K*5, 2)`` (relative mode only)."""
        if mode == "standard":
            return lambda kp_driving: kp_driving
        if mode == "relative":
            scale = relative_scale(source.kp, kp_reference)
            return lambda kp_driving: relative_kp(source.kp, kp_driving, kp_reference, scale)
        return lambda kp_driving: self.engine.avd(source.kp.expand_as(kp_driving), kp_driving)

    def _generate(self, source: PreparedSource, kp: torch.Tensor) -> torch.Tensor:
        """The frames of the source moved to ``kp: (B, K*5, 2)``: ``(B, 3, S, S)`` fp32."""
        return self.engine.generate(source.image, source.kp, kp, source.encoder_maps)

    # ----------------------------------------------------------------------- whole videos

    def animate(self, source: PreparedSource | ImageInput, driving: str | os.PathLike | VideoReader,
                output: str | os.PathLike, mode: str = "relative", fit_mode: str = "crop",
                fps: float | None = None, find_best_frame: bool = False,
                progress: bool | ProgressCallback = False, crop: str | Detector | None = None,
                paste_back: bool = True, max_size: int | None = DEFAULT_MAX_SIZE,
                comparison: str | os.PathLike | None = None) -> AnimationResult:
        """Animate ``source`` with a whole driving video and write the result.

        Args:
            source: a :class:`PreparedSource`, or an image for :meth:`prepare`.
            driving: a video file, animated GIF or directory of frames, or an open reader.
            output: ``.mp4`` / ``.mov`` / ``.mkv`` (H.264, with the driving video's audio),
                ``.gif``, or a directory, which receives numbered PNG frames.
            mode: ``relative`` (default), ``standard`` or ``avd``.
            fit_mode: how frames of another size or aspect become model-sized: ``crop``
                (centre square), ``pad`` (black borders) or ``stretch`` (the reference's).
            fps: output frame rate; by default the driving video's. A different rate changes
                the duration, so the audio is then left out.
            find_best_frame: relative mode only: measure the motion from the driving frame
                whose pose is closest to the source's (:mod:`tpsmm.animation.best_frame`),
                not from the first (in each tube when cropping). It costs one more decoding
                pass and keypoint detection.
            progress: show a progress bar (frames/s, ETA) on stderr; or a
                :data:`~tpsmm.progress.ProgressCallback` called after each batch (it may
                raise to stop the work: nothing is written then).
            crop: frame the subject as the training data were (:mod:`tpsmm.framing`):
                ``face``, ``body``, ``upper-body``, ``box:X,Y,W,H``, ``auto`` (the config's
                subject), or a :class:`~tpsmm.framing.detectors.Detector`; None or ``none``
                (default): fit the whole frames with ``fit_mode``. The source is cut around
                its subject, the driving video in tubes (one more pass to find them).
            paste_back: with ``crop``, paste the animated crop back into the source image,
                so the output has the source's size (capped by ``max_size``); else write the
                crops.
            max_size: the longest side of pasted-back output; None: the source's.
            comparison: also write this video (as ``output``): source | driving | result,
                with the keypoints on the source and the driving frames, each panel
                magnified to at least 256 px (:mod:`tpsmm.animation.comparison`).

        Raises:
            InputError: a driving frame cannot be decoded (after the frames before it were
                animated; nothing is written), an input is missing or unreadable, or no
                subject is found in the source or in any driving frame.
            OutputError: ``output`` cannot be written.
            CheckpointError: ``mode="avd"`` with a checkpoint that has no AVD network.
            MissingExtraError: ``crop`` names a subject whose detector is not installed.
        """
        started = time.perf_counter()
        self._check_mode(mode)
        if fit_mode not in FIT_MODES:
            raise ValueError(f"fit_mode must be one of {', '.join(FIT_MODES)}, got {fit_mode!r}")
        detector, fallback = resolve_crop(crop, self.config)
        if fallback is not None:
            warnings.warn(fallback, stacklevel=2)
        reader = driving if isinstance(driving, VideoReader) else open_video(driving)
        window = paste = None
        if isinstance(source, PreparedSource):
            if detector is not None:
                raise ValueError("crop needs the source image, not a PreparedSource")
        elif detector is None:
            source = self.prepare(source, fit_mode)
        else:
            image = to_uint8(_image_batch(source))[0]
            window = source_window(image, detector, _describe(source))
            paste = PasteBack(image, window, max_size=max_size) if paste_back else None
            source = self.prepare(image, window=window)
        framing = (VideoFraming.whole(reader.num_frames, fit_mode) if detector is None
                   else VideoFraming.find(reader, detector, progress))
        rate = float(fps) if fps else reader.fps
        keep_audio = reader.has_audio and rate == reader.fps
        best_frame = best_frame_by = None
        references: dict[int, torch.Tensor] = {}
        audio = reader.path if keep_audio else None
        with ExitStack() as outputs:
            writer = outputs.enter_context(open_writer(output, rate, audio_from=audio))
            panels = None if comparison is None else outputs.enter_context(
                open_writer(comparison, rate, audio_from=audio))
            try:
                if find_best_frame and mode == "relative":
                    references, best_frame, best_frame_by = self._find_best_frame(
                        source, reader, framing, progress
                    )
                self._stream(source, reader, (writer, panels), mode, framing, references, paste,
                             progress)
            except InputError as error:
                raise InputError(f"{error}; nothing was written to {writer.path}") from None
        return AnimationResult(
            output=writer.path,
            frames=writer.frames_written,
            fps=rate,
            frame_size=paste.size if paste else (self.image_size, self.image_size),
            seconds=time.perf_counter() - started,
            audio=keep_audio and has_audio(writer.path),
            best_frame=best_frame,
            best_frame_by=best_frame_by,
            tubes=len(framing.tubes),
            source_window=window,
        )

    @torch.inference_mode()
    def _stream(self, source: PreparedSource, reader: VideoReader, writers: tuple, mode: str,
                framing: VideoFraming, references: dict[int, torch.Tensor],
                paste: PasteBack | None, progress: bool | ProgressCallback) -> None:
        """Decode, frame, animate and encode batch by batch (decoding and encoding on threads
        of their own, :mod:`tpsmm.animation.overlap`). Relative motion starts, in each
        tube, from ``references[tube]`` (``(1, K*5, 2)``), else from the tube's first frame;
        ``paste`` puts the frames back into the source image. ``writers``: the output's, and
        the comparison's or None."""
        writer, panels = writers
        compose = Comparison(source.image, source.kp) if panels is not None else None

        @torch.inference_mode()  # a thread of its own: the mode is per thread
        def write(item: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
            frames, kp_driving, animated = item
            writer.write(paste(animated) if paste else to_uint8(animated))
            if panels is not None:
                panels.write(compose(frames, kp_driving, animated))

        motions: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        start = 0
        with Progress("animate", reader.num_frames, progress) as bar, \
                WriteBehind(write) as behind:
            for batch in read_ahead(reader, self.batch_size):
                frames, runs = framing.frame(to_tensor(batch), start, self.image_size)
                frames = self._on_device(frames)
                kp_driving = self._keypoints(frames)
                targets = []
                for tube, rows in runs:
                    if tube not in motions:  # the tube starts here, at its first frame
                        first = references.get(tube, kp_driving[rows.start : rows.start + 1])
                        motions = {tube: self._motion(mode, source, first)}
                    targets.append(motions[tube](kp_driving[rows]))
                behind.put((frames, kp_driving, self._generate(source, torch.cat(targets))))
                start += len(batch)
                bar.update(len(batch))

    @torch.inference_mode()
    def _find_best_frame(self, source: PreparedSource, reader: VideoReader,
                         framing: VideoFraming, progress: bool | ProgressCallback,
                         ) -> tuple[dict[int, torch.Tensor], int, str]:
        """One pass over the video: in each tube, the frame posed most like the source.

        Face landmarks when a landmark model can be loaded
        (:func:`~tpsmm.animation.best_frame.load_face_landmarks`) and finds a face in the
        source, as the reference does; else the model's keypoints.

        Returns:
            Each tube's reference keypoints ``(1, K*5, 2)`` (a tube in which no frame had a
            face is left out: it starts from its first frame), the first tube's reference
            frame index, and what compared the poses.
        """
        landmarks = load_face_landmarks(self.device)
        source_landmarks = landmarks(to_uint8(source.image)[0]) if landmarks else None
        best: dict[int, tuple[float, int, torch.Tensor]] = {}
        start = 0
        with Progress("find best frame", reader.num_frames, progress) as bar:
            for batch in read_ahead(reader, self.batch_size):
                frames, runs = framing.frame(to_tensor(batch), start, self.image_size)
                frames = self._on_device(frames)
                kp = self._keypoints(frames)
                if source_landmarks is not None:
                    distances = landmarks.distances(source_landmarks, to_uint8(frames))
                else:
                    distances = keypoint_distances(source.kp, kp)
                for tube, rows in runs:
                    index = rows.start + int(np.argmin(distances[rows]))
                    if distances[index] < best.get(tube, (np.inf,))[0]:
                        best[tube] = (distances[index], start + index, kp[index : index + 1])
                start += len(batch)
                bar.update(len(batch))
        method = "keypoints" if source_landmarks is None else landmarks.method
        first_tube = best[0][1] if 0 in best else framing.tubes[0].start
        return {tube: kp for tube, (_, _, kp) in best.items()}, first_tube, method

    # ----------------------------------------------------------------------- helpers

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        # A model built in code (no checkpoint) may have AVD weights of any origin.
        if mode == "avd" and self.loaded and "avd_network" not in self.loaded:
            where = self.checkpoint or "the model"
            raise CheckpointError(
                f"{where}: checkpoint has no avd_network, which --mode avd needs "
                "(train one with `tpsmm train-avd`, or use --mode relative or standard)"
            )

    def _on_device(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.to(self.device, torch.float32)

    def _fit(self, frames: torch.Tensor, fit_mode: str) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1], any size -> ``(B, 3, S, S)`` on the device."""
        return self._on_device(fit(frames, self.image_size, fit_mode))


def _image_batch(image: ImageInput) -> torch.Tensor:
    """An image file, ``(H, W, 3)`` array or ``(3, H, W)`` / ``(1, 3, H, W)`` tensor ->
    ``(1, 3, H, W)`` fp32 in [0, 1] (on the CPU for files and arrays)."""
    if isinstance(image, torch.Tensor):
        batch = image.unsqueeze(0) if image.ndim == 3 else image
        if batch.ndim != 4 or batch.shape[:2] != (1, 3):
            raise ValueError(
                f"expected a (3, H, W) or (1, 3, H, W) image, got {tuple(image.shape)}"
            )
        return batch.float()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
        return to_tensor(image[None])
    return to_tensor(load_image(image)[None])


def _describe(image: ImageInput) -> str:
    """How an error names a source image: its file, or what it was given as."""
    return str(image) if isinstance(image, str | os.PathLike) else "the source image"


def animate(source: ImageInput, driving: str | os.PathLike, output: str | os.PathLike, *,
            checkpoint: str | os.PathLike, config: str | os.PathLike | dict = "vox-256",
            mode: str = "relative", device: str = "auto", precision: str = "fp32",
            batch_size: int | None = None, fit_mode: str = "crop", fps: float | None = None,
            find_best_frame: bool = False, progress: bool = False,
            backend: str = "torch", compile: bool = False, crop: str | None = None,
            paste_back: bool = True, max_size: int | None = DEFAULT_MAX_SIZE,
            comparison: str | os.PathLike | None = None) -> AnimationResult:
    """Animate ``source`` with ``driving`` into ``output``, in one call.

    Loads the checkpoint each time; use an :class:`Animator` to animate several videos.
    Arguments as for :class:`Animator` and :meth:`Animator.animate`.

    >>> animate("face.png", "speech.mp4", "out.mp4", checkpoint="vox.pth.tar", config="vox-256")
    """
    animator = Animator.from_checkpoint(checkpoint, config, device=device, precision=precision,
                                        batch_size=batch_size, backend=backend,
                                        compile=compile)
    return animator.animate(source, driving, output, mode=mode, fit_mode=fit_mode, fps=fps,
                            find_best_frame=find_best_frame, progress=progress, crop=crop,
                            paste_back=paste_back, max_size=max_size, comparison=comparison)
