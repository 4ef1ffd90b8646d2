"""Writing a synthetic dataset in the training layout, in parallel and reproducibly."""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from tpsmm.data.synthetic.markers import MARKER_COLOURS, MARKER_NAMES
from tpsmm.data.synthetic.render import render_video
from tpsmm.data.video.writing import PNG_COMPRESS_LEVEL
from tpsmm.errors import OutputError

#: Written into the dataset folder before anything else: the settings, and the proof that
#: tpsmm synth made the folder (which --overwrite requires).
MARKER_FILE = "synthetic.json"
GENERATOR = "tpsmm.data.synthetic"


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`generate_dataset` wrote."""

    root: Path
    train_videos: int
    test_videos: int
    frames: int
    seconds: float



class _Job(NamedTuple):
    root: str
    split: str
    identity: int
    clip: int
    seed: int
    size: int
    num_frames: int


def video_name(identity: int, clip: int) -> str:
    """Directory name of a clip: ``id<identity>#<clip>`` (FOMM id_sampling convention)."""
    return f"id{identity:05d}#{clip:03d}"


def _ignore_ctrl_c() -> None:
    """A pool worker's start: Ctrl-C reaches the whole process group, and a worker that
    took it would print its traceback; the main process stops, and the pool ends its
    workers with SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_video(job: _Job) -> int:
    video = render_video(job.seed, job.size, job.num_frames, job.identity, job.clip)
    folder = Path(job.root) / job.split / video_name(job.identity, job.clip)
    try:
        folder.mkdir()
        for t, frame in enumerate(video.frames):
            Image.fromarray(frame).save(folder / f"{t:06d}.png", compress_level=PNG_COMPRESS_LEVEL)
        np.savez(
            folder.with_name(folder.name + ".npz"), keypoints=video.keypoints, visible=video.visible
        )
    except OSError as error:
        raise OutputError(f"cannot write {folder}: {error.strerror or error}") from error
    return len(video.frames)


def _written_by_synth(root: Path) -> bool:
    """Whether ``root`` holds the marker file this module writes before anything else."""
    try:
        info = json.loads((root / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == GENERATOR


def _write_info(root: Path, info: dict) -> None:
    try:
        (root / MARKER_FILE).write_text(json.dumps(info, indent=1) + "\n")
    except OSError as error:
        raise OutputError(f"cannot write {root}: {error.strerror or error}") from error


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise OutputError(f"{root} is not empty; use --overwrite to replace its dataset")
        # Only a dataset this module wrote (its marker file, written first, says so) is
        # deleted: never the train/ and test/ of a user's own dataset.
        if not _written_by_synth(root):
            raise OutputError(f"{root}: not a dataset written by tpsmm synth (no {MARKER_FILE}); "
                              "--overwrite only replaces those; choose a new or empty folder")
        for name in ("train", "test"):
            if (root / name).exists():
                shutil.rmtree(root / name)
        (root / MARKER_FILE).unlink(missing_ok=True)
    try:
        for name in ("train", "test"):
            (root / name).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot write {root}: {error.strerror or error}") from error


def _plan(
    root: Path,
    num_videos: int,
    size: int,
    num_frames: int | tuple[int, int],
    seed: int,
    test_fraction: float,
    clips_per_identity: int,
) -> list[_Job]:
    """Clip ``index`` belongs to identity index // clips_per_identity; the last
    round(identities * test_fraction) identities (at least one, never all, when
    there are two or more and test_fraction > 0) go to test."""
    identities = math.ceil(num_videos / clips_per_identity)
    test_ids = round(identities * test_fraction)
    if identities >= 2 and test_fraction > 0:
        test_ids = min(max(test_ids, 1), identities - 1)
    jobs = []
    for index in range(num_videos):
        identity, clip = divmod(index, clips_per_identity)
        length = num_frames
        if isinstance(num_frames, tuple):
            length = int(
                np.random.default_rng((seed, 2, identity, clip)).integers(
                    num_frames[0], num_frames[1] + 1
                )
            )
        split = "test" if identity >= identities - test_ids else "train"
        jobs.append(_Job(str(root), split, identity, clip, seed, size, length))
    return jobs


def generate_dataset(
    root: str | Path,
    num_videos: int,
    size: int = 64,
    num_frames: int | tuple[int, int] = 32,
    seed: int = 0,
    test_fraction: float = 0.2,
    clips_per_identity: int = 4,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetSummary:
    """Write ``num_videos`` clips under ``root`` in the training layout (module docstring).

    Args:
        root: output directory; must be empty or missing unless ``overwrite``, which
            replaces its train/, test/ and synthetic.json.
        num_videos: number of clips (>= 1).
        size: frame height and width in pixels (>= 16).
        num_frames: frames per clip, or an inclusive (low, high) range drawn per clip.
        seed: dataset seed (>= 0); every clip is a function of (seed, identity, clip).
        test_fraction: fraction of identities (not clips) held out for test, in [0, 1).
        clips_per_identity: clips of each character (>= 1).
        workers: processes rendering in parallel; the output does not depend on it.
        progress: called as progress(done, total) after each clip.

    Raises:
        OutputError: ``root`` is not empty (without ``overwrite``) or not writable.
    """
    low, high = num_frames if isinstance(num_frames, tuple) else (num_frames, num_frames)
    if num_videos < 1 or size < 16 or not 1 <= low <= high or seed < 0:
        raise ValueError("need num_videos >= 1, size >= 16, 1 <= frames (low <= high), seed >= 0")
    if not 0.0 <= test_fraction < 1.0 or clips_per_identity < 1 or workers < 1:
        raise ValueError("need 0 <= test_fraction < 1, clips_per_identity >= 1, workers >= 1")
    start = time.perf_counter()
    root = Path(root)
    _prepare_root(root, overwrite)
    info = {
        "generator": GENERATOR,
        "complete": False,
        "seed": seed,
        "size": size,
        "num_frames": num_frames,
        "num_videos": num_videos,
        "test_fraction": test_fraction,
        "clips_per_identity": clips_per_identity,
        "marker_names": list(MARKER_NAMES),
        "marker_colours": MARKER_COLOURS.tolist(),
        "keypoints": "pixel (x, y); pixel centres at integers",
    }
    # Written first, so that an interrupted run can still be replaced with --overwrite.
    _write_info(root, info)
    jobs = _plan(root, num_videos, size, num_frames, seed, test_fraction, clips_per_identity)
    frames = 0

    def consume(results: Iterator[int]) -> None:
        nonlocal frames
        for done, count in enumerate(results, start=1):
            frames += count
            if progress is not None:
                progress(done, len(jobs))

    if workers == 1:
        consume(map(_write_video, jobs))
    else:
        # spawn: forking a parent that already runs torch threads can deadlock.
        with multiprocessing.get_context("spawn").Pool(workers, _ignore_ctrl_c) as pool:
            consume(pool.imap_unordered(_write_video, jobs))
    _write_info(root, dict(info, complete=True))
    test_videos = sum(job.split == "test" for job in jobs)
    return DatasetSummary(
        root, len(jobs) - test_videos, test_videos, frames, time.perf_counter() - start
    )
