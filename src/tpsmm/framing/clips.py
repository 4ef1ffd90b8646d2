"""Raw footage cut into training clips, as the published datasets were cut.

Each video is scanned for its subject (:func:`~tpsmm.framing.tubes.scan_video`), its tubes
found (:func:`~tpsmm.framing.tubes.find_tubes`), and every tube long enough and with a
subject large enough written as one clip: its window cut from each frame and scaled to
``size``. The output is the training layout ``ROOT/train`` and ``ROOT/test`` (all clips of
one video in the same split, chosen by a hash of its name, so no video is in both), with
clips named ``<video>#<n>.mp4`` (the ``#`` separates the video id that ``id_sampling``
groups by) and ``ROOT/crops.csv`` listing them.

Resumable: a finished video leaves a small record under ``ROOT/.crops``; a second run skips
those videos and rebuilds ``crops.csv`` from all records. A clip appears under its name
only once complete (:func:`tpsmm.data.video.open_writer`).
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from tpsmm.data.images import to_tensor, to_uint8
from tpsmm.data.video import open_video, open_writer
from tpsmm.files import atomic_write_text
from tpsmm.framing.boxes import crop_window
from tpsmm.framing.detectors import Detector
from tpsmm.framing.plan import cut
from tpsmm.framing.tubes import find_tubes, scan_video

RECORDS = ".crops"
CSV_COLUMNS = ("video", "clip", "split", "start", "frames", "x", "y", "size")


@dataclass(frozen=True)
class CropOptions:
    """What ``tpsmm crop`` keeps and how it frames it.

    Attributes:
        size: the clips' side in pixels (the model size).
        min_frames: shorter tubes are dropped (VoxCeleb's crop used 150 at 25 fps).
        min_size: tubes whose window is smaller than this, in the video's pixels, are dropped
            (they would be scaled up).
        margin: the window's margin; None: the detector's own.
        test_fraction: the share of videos whose clips go to ``test``.
    """

    size: int = 256
    min_frames: int = 64
    min_size: int = 128
    margin: float | None = None
    test_fraction: float = 0.1


@dataclass(frozen=True)
class Clip:
    """One clip written: a row of ``crops.csv``. The window is ``size`` pixels square with
    its top-left corner at ``(x, y)`` in the video (it may reach outside, padded)."""

    video: str
    clip: str
    split: str
    start: int
    frames: int
    x: int
    y: int
    size: int


def split_of(video: Path, test_fraction: float) -> str:
    """``train`` or ``test``, fixed by the video's name (stable across runs and machines)."""
    bucket = zlib.crc32(video.stem.encode()) % 1000
    return "test" if bucket < round(test_fraction * 1000) else "train"


def crop_video(video: Path, root: Path, detector: Detector, options: CropOptions) -> list[Clip]:
    """Cut one video's tubes into clips under ``root``; returns the clips written.

    Raises:
        InputError: the video cannot be read.
    """
    reader = open_video(video)
    tubes = find_tubes(scan_video(reader, detector))
    margin = detector.margin if options.margin is None else options.margin
    split = split_of(video, options.test_fraction)
    kept = []
    for tube in tubes:
        window = crop_window(tube.subject, margin, detector.lift)
        if len(tube) >= options.min_frames and window.width >= options.min_size:
            kept.append((tube, window))
    clips = []
    for number, (tube, window) in enumerate(kept):
        name = f"{video.stem}#{number:03d}"
        path = root / split / f"{name}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_writer(path, reader.fps) as writer:
            for start in range(tube.start, tube.stop, 32):
                frames = reader.read(range(start, min(start + 32, tube.stop)))
                writer.write(to_uint8(cut(to_tensor(frames), window, options.size)))
        clips.append(Clip(video.name, name, split, tube.start, len(tube), window.left,
                          window.top, window.width))
    return clips


def record_path(root: Path, video: Path) -> Path:
    """Where a finished video's clips are recorded (its existence means: done)."""
    key = zlib.crc32(str(video.resolve()).encode())
    return root / RECORDS / f"{video.stem}-{key:08x}.json"


def save_record(root: Path, video: Path, clips: list[Clip]) -> None:
    record = record_path(root, video)
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps([asdict(c) for c in clips]))


def write_csv(root: Path) -> int:
    """``crops.csv`` rebuilt from every finished video's record; returns its row count."""
    rows = []
    for record in sorted((root / RECORDS).glob("*.json")):
        rows += json.loads(record.read_text())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: (row["video"], row["clip"])))
    atomic_write_text(root / "crops.csv", text.getvalue())
    return len(rows)
