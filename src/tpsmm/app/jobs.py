"""One animation job of the web page: its inputs checked against the page's limits, run by
the same :class:`~tpsmm.animation.Animator` as ``tpsmm animate``, stoppable between batches,
and its files kept in a folder of its own that the page removes afterwards.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpsmm.animation import Animator
from tpsmm.data.images import load_image_uint8
from tpsmm.data.video import open_video
from tpsmm.errors import InputError, TPSMMError
from tpsmm.framing.plan import resolve_crop


class Cancelled(TPSMMError):
    """The job was stopped (the cancel button, or its tab was closed)."""


@dataclass(frozen=True)
class Limits:
    """What one job may ask for; stated on the page.

    Attributes:
        upload_mb: the largest file accepted, in MB (checked by the server on upload).
        seconds: the longest driving video, in seconds.
        video_side: the driving video's longest side, in pixels.
        image_side: the source image's longest side, in pixels.
    """

    upload_mb: int = 200
    seconds: float = 60.0
    video_side: int = 1920
    image_side: int = 8000

    def describe(self) -> str:
        return (f"Files up to {self.upload_mb} MB; driving videos up to {self.seconds:g} s "
                f"and {self.video_side} px on their longest side; source images up to "
                f"{self.image_side} px.")


@dataclass(frozen=True)
class JobRequest:
    """What the page asks for (see ``tpsmm animate``'s options of the same names)."""

    source: Path
    driving: Path
    mode: str = "relative"
    crop: str = "auto"
    paste_back: bool = True
    find_best_frame: bool = False
    fps: float | None = None


@dataclass(frozen=True)
class JobResult:
    video: Path
    comparison: Path
    summary: str


def check_inputs(request: JobRequest, limits: Limits) -> None:
    """The source and driving video readable and within ``limits``.

    Raises:
        InputError: one line naming the file and the problem.
    """
    image = load_image_uint8(request.source)
    if max(image.shape[:2]) > limits.image_side:
        raise InputError(f"{request.source.name}: {image.shape[1]}x{image.shape[0]} is larger "
                         f"than this page's limit of {limits.image_side} px")
    reader = open_video(request.driving)
    height, width = reader.size
    seconds = reader.num_frames / reader.fps
    if seconds > limits.seconds:
        raise InputError(f"{request.driving.name}: {seconds:.1f} s is longer than this page's "
                         f"limit of {limits.seconds:g} s")
    if max(height, width) > limits.video_side:
        raise InputError(f"{request.driving.name}: {width}x{height} is larger than this page's "
                         f"limit of {limits.video_side} px")


def run_job(request: JobRequest, animator: Animator, folder: Path, limits: Limits,
            report: Callable[[str, int, int], None] | None = None,
            stop: threading.Event | None = None) -> JobResult:
    """Animate into ``folder`` (``result.mp4`` and ``comparison.mp4``, with the driving
    video's sound).

    ``report(stage, done, total)`` is called after each batch; when ``stop`` is set the job
    ends at the next batch with :class:`Cancelled`, and nothing is left in ``folder``.

    Raises:
        TPSMMError: bad input (one line), or :class:`Cancelled`.
    """
    check_inputs(request, limits)
    started = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        if stop is not None and stop.is_set():
            raise Cancelled("cancelled")
        if report is not None:
            report(stage, done, total)

    folder.mkdir(parents=True, exist_ok=True)
    try:
        detector, fallback = resolve_crop(request.crop, animator.config)
        result = animator.animate(
            request.source, request.driving, folder / "result.mp4", mode=request.mode,
            fps=request.fps, find_best_frame=request.find_best_frame, progress=progress,
            crop=detector, paste_back=request.paste_back,
            comparison=folder / "comparison.mp4",
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    height, width = result.frame_size
    notes = [fallback] if fallback else []
    if result.best_frame is not None:
        notes.append(f"reference frame {result.best_frame} by {result.best_frame_by}")
    if result.source_window is not None:
        notes.append(f"{detector.subject} cropped, {result.tubes} tube(s) in the driving video")
    notes.append("with sound" if result.audio else "no sound")
    summary = (f"{result.frames} frames of {width}x{height} at {result.fps:g} fps in "
               f"{time.perf_counter() - started:.1f} s ({'; '.join(notes)})")
    return JobResult(result.output, folder / "comparison.mp4", summary)
