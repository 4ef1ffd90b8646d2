"""``tpsmm crop``: raw videos cut into training clips around their subject."""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch
from tqdm import tqdm

from tpsmm.commands.arguments import at_least, fraction, positive_float, subject
from tpsmm.data.dataset import VIDEO_SUFFIXES
from tpsmm.errors import InputError, OutputError, TPSMMError
from tpsmm.framing.clips import CropOptions, crop_video, record_path, save_record, write_csv
from tpsmm.framing.detectors import SUBJECTS, make_detector


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "crop",
        help="cut raw videos into training clips around their subject",
        description="Find the subject in every frame, follow it in tubes (a new one at a "
        "scene cut, when it is lost or leaves its first box) and write each tube that is "
        "long enough, and whose subject is large enough, as one square clip: the published "
        "datasets' crop. Output: ROOT/train and ROOT/test (all clips of a video in one "
        "split), clips named VIDEO#N.mp4, and ROOT/crops.csv. Run it again to resume: "
        "finished videos are skipped. Needs pip install 'tpsmm[crop]' for face and body.",
    )
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                   help="video files, or folders searched for them (recursively)")
    p.add_argument("--out", required=True, metavar="ROOT", help="dataset folder")
    p.add_argument("--subject", required=True, type=subject(),
                   metavar="|".join((*SUBJECTS, "box:X,Y,W,H")),
                   help="what to follow: face (vox), body (taichi), upper-body (ted), or a "
                   "fixed box in the videos' pixels")
    p.add_argument("--size", type=at_least(16), default=256, help="clip side (default 256)")
    p.add_argument("--min-frames", type=at_least(1), default=64,
                   help="drop shorter tubes (default 64; VoxCeleb used 150)")
    p.add_argument("--min-size", type=at_least(1), default=128,
                   help="drop tubes whose crop is smaller than this many pixels in the "
                   "video (default 128)")
    p.add_argument("--margin", type=positive_float,
                   help="margin around the subject's box on each side, as a fraction of "
                   "its size (default: the detector's, calibrated to the datasets' crop)")
    p.add_argument("--test-fraction", type=fraction, default=0.1,
                   help="share of videos for ROOT/test (default 0.1)")
    p.add_argument("--workers", type=at_least(1), default=1, help="videos cut in parallel")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def find_videos(inputs: list[str]) -> list[Path]:
    """The video files named or found (recursively) in the folders named, sorted.

    Raises:
        InputError: an input does not exist, or none of them holds a video.
    """
    videos = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            videos += [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in VIDEO_SUFFIXES]
        elif path.is_file():
            videos.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    if not videos:
        raise InputError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {', '.join(inputs)}")
    return sorted(set(videos))


_detector = None


def _start_worker(subject: str, threads: int | None = None) -> None:
    global _detector
    _detector = make_detector(subject)
    if threads is not None:  # the workers share the cores: one thread each
        torch.set_num_threads(threads)


def _crop_one(video: Path, root: Path, options: CropOptions) -> tuple[Path, int, str | None]:
    """One video: ``(video, clips written, error line or None)``."""
    try:
        clips = crop_video(video, root, _detector, options)
    except TPSMMError as error:
        return video, 0, str(error)
    save_record(root, video, clips)
    return video, len(clips), None


# Ctrl-C and a scheduler's SIGTERM reach the pool's workers too (one process group). A worker
# killed by them leaves its clip's temporary file and breaks the pool (whose thread then
# prints a traceback); one that takes them while waiting for work prints its own. So in a
# worker they stop the video being cut, as Ctrl-C does (once: the removal of the unfinished
# clip that follows is not cut short), and do nothing otherwise. The handler stays installed
# throughout: switching to SIG_IGN while a signal is pending makes Python print that it
# "ignored" it.
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_cutting = False  # in a pool worker: whether a video is being cut


def _stop_video(signum: int, frame: object) -> None:
    global _cutting
    if _cutting:
        _cutting = False
        raise KeyboardInterrupt


def _start_pool_worker(subject: str) -> None:
    for each in _SIGNALS:
        signal.signal(each, _stop_video)
    _start_worker(subject, threads=1)


def _crop_one_in_pool(video: Path, root: Path,
                      options: CropOptions) -> tuple[Path, int, str | None]:
    global _cutting
    _cutting = True
    try:
        return _crop_one(video, root, options)
    finally:
        _cutting = False


def _results(videos: list[Path], root: Path, options: CropOptions, subject: str,
             workers: int) -> Iterator[tuple[Path, int, str | None]]:
    """Each video cut, in order: here, or in ``workers`` fresh processes (spawned, not
    forked: a fork of a process running torch's thread pools can hang)."""
    if workers == 1:
        _start_worker(subject)
        yield from (_crop_one(video, root, options) for video in videos)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_pool_worker, initargs=(subject,)) as pool:
        try:
            yield from pool.map(_crop_one_in_pool, videos, [root] * len(videos),
                                [options] * len(videos))
        except BrokenProcessPool:
            raise TPSMMError("a crop worker stopped (killed, or out of memory); run the same "
                             "command again to resume from the videos already cut") from None
        except BaseException:
            # Stopped here (Ctrl-C or SIGTERM, which may have come to this process alone,
            # or the caller closing this generator): the workers' videos stop too, rather
            # than the pool's shutdown waiting for them.
            for worker in multiprocessing.active_children():
                worker.terminate()
            raise


def run(args: argparse.Namespace) -> int:
    make_detector(args.subject)  # an unknown subject or a missing package: said at once
    videos = find_videos(args.inputs)
    root = Path(args.out)
    try:
        for split in ("train", "test"):  # both, as the training layout expects
            (root / split).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{root}: cannot create the dataset folder ({error.strerror})") from None
    todo = [v for v in videos if not record_path(root, v).exists()]
    options = CropOptions(size=args.size, min_frames=args.min_frames, min_size=args.min_size,
                          margin=args.margin, test_fraction=args.test_fraction)
    failed = written = 0
    with tqdm(total=len(todo), desc="crop", unit="video", file=sys.stderr,
              disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True) as bar:
        for _video, clips, error in _results(todo, root, options, args.subject, args.workers):
            if error:
                failed += 1
                print(f"tpsmm crop: warning: {error}; skipped", file=sys.stderr)
            written += clips
            bar.update(1)
            bar.set_postfix(clips=written)
    rows = write_csv(root)
    print(f"crop: {len(todo) - failed} videos cut into {written} clips, "
          f"{len(videos) - len(todo)} done before, {failed} unreadable; {rows} clips in "
          f"{root / 'crops.csv'}")
    return 2 if failed else 0
