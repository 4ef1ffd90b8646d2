"""Datasets of videos for training and evaluation, as in the reference ``frames_dataset.py``.

Layout of ``root_dir`` (the ``dataset_params.root_dir`` of a config)::

    root_dir/train/<video> ...  and  root_dir/test/<video> ...   # predefined split
    root_dir/<video> ...                                          # split 80/20 here

A *video* is one directory entry of a split, read with
:func:`tpsmm.data.video.open_video`:

* a folder of frame images, in natural name order (FOMM-style datasets name
  these folders ``*.mp4``);
* a video file (``.mp4``, ``.mov``, ``.gif``, ...);
* a horizontal strip of frames in one image (``.png``, ``.jpg``, ...), cut
  into frames of ``frame_shape`` (square frames when it is null).

Hidden entries (names starting with ``.``) are ignored. Other files (such as
ground-truth ``<name>.npz`` side files), folders without a single frame
image, and video files or strips whose header cannot be read (empty, not a
video, cut before the index) are skipped with one ``warnings.warn`` per split
that names them.

Broken videos past that check: to keep the construction of a large dataset
fast, only headers are read there. A video that turns out to be unreadable
further in, to have no frames, or to have frames of another size than the
earlier ones (when no ``frame_shape`` asks to resize them) raises
:class:`~tpsmm.errors.InputError` naming the file when it is read, so a
training run stops with a clear message instead of silently training on less
data.

Frames are returned at the size they are stored in, which must be the
model's resolution (configs have ``frame_shape: null``), unless
``frame_shape`` asks to resize them (bilinear with antialiasing).

Randomness (which video of an id, which frames, the augmentation) comes from
a ``numpy.random.Generator`` held by the dataset, seeded from
``random_seed`` and, inside a ``DataLoader`` worker, from that worker's seed
too (``torch.utils.data.get_worker_info().seed``). Workers therefore draw
different samples, and a run is reproducible once ``torch.manual_seed`` is
set; no ``worker_init_fn`` is needed for this dataset (:func:`seed_worker` is
there for other code in the workers that uses the global random states).
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from tpsmm.data.augmentation import AllAugmentationTransform
from tpsmm.data.images import IMAGE_SUFFIXES
from tpsmm.data.video import VideoReader, open_video
from tpsmm.data.video.media import gif_is_cut, open_input
from tpsmm.errors import ConfigError, InputError

__all__ = ["FramesDataset", "seed_worker"]

# Files listed as videos; image files (IMAGE_SUFFIXES) are listed as strips.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")

_LAYOUT = (
    "expected either ROOT/train/ and ROOT/test/ holding videos, or ROOT/ holding videos "
    "(split 80/20 into train and test); a video is a folder of frame images (often named "
    "*.mp4), a video file (.mp4, .mov, .gif, ...), or a horizontal .png/.jpg strip of "
    "frames of frame_shape"
)

# How many skipped names a warning spells out before it only counts the rest.
_WARN_NAMES = 5


def _has_frames(folder: Path) -> bool:
    # Stops at the first image, so listing a big dataset stays cheap.
    with os.scandir(folder) as entries:
        return any(
            entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
            for entry in entries
        )


def _unreadable(path: Path) -> str | None:
    """Why the video file or frame strip ``path`` cannot be read, or None if it can.

    Only the header is read (FFmpeg's probe of the container, Pillow's of the image), so
    listing a large dataset stays cheap; damage further in is found when the frames are.
    """
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            with Image.open(path):
                return None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            return f"not a readable image: {' '.join(str(error).split())[:80]}"
    try:
        with open_input(path) as container:
            if not container.streams.video:
                return "no video stream"
            if container.format.name == "gif" and gif_is_cut(path):
                return "the GIF is cut short"
            return None
    except InputError as error:
        return str(error).split(": ", 1)[-1]


def _list_videos(folder: Path) -> tuple[list[Path], str]:
    """The videos in ``folder``, sorted by name, and what was skipped (a phrase naming the
    entries, or "").

    Side files named after a video (``<video>.npz``: the ground truth that
    ``tpsmm synth`` writes) are expected and skipped silently; video files and strips whose
    header cannot be read are skipped with the reason.
    """
    videos: list[Path] = []
    skipped: list[str] = []
    entries = sorted(folder.iterdir())
    names = {path.name for path in entries}
    for path in entries:
        if path.name.startswith(".") or (path.suffix == ".npz" and path.stem in names):
            continue
        if path.is_dir():
            if _has_frames(path):
                videos.append(path)
            else:
                skipped.append(f"{path.name}/ (no frame images)")
        elif path.suffix.lower() in (*VIDEO_SUFFIXES, *IMAGE_SUFFIXES):
            problem = _unreadable(path)
            if problem is None:
                videos.append(path)
            else:
                skipped.append(f"{path.name} ({problem})")
        else:
            skipped.append(path.name)
    if not skipped:
        return videos, ""
    shown = ", ".join(skipped[:_WARN_NAMES])
    more = f" and {len(skipped) - _WARN_NAMES} more" if len(skipped) > _WARN_NAMES else ""
    return videos, (f"{folder}: skipping {len(skipped)} entries that are not readable "
                    f"videos: {shown}{more}")


def _random_split(videos: list[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """Split into (train, test) with 20 % (rounded up) in test.

    The reference used sklearn's ``train_test_split(test_size=0.2,
    random_state=seed)``; this draws the same permutation
    (``RandomState(seed).permutation``) and cuts it the same way, without
    sklearn. It is applied to the name-sorted listing rather than to the
    arbitrary ``os.listdir`` order, so it is the same on every machine but not
    necessarily the same files as the reference picked.
    """
    order = np.random.RandomState(seed).permutation(len(videos))
    num_test = math.ceil(0.2 * len(videos))
    test = sorted(videos[i] for i in order[:num_test])
    train = sorted(videos[i] for i in order[num_test:])
    return train, test


def _video_id(path: Path) -> str:
    """The id of a video: its name up to the first ``#`` (VoxCeleb ``id10001#clip#...``)."""
    return path.name.split("#", 1)[0]


def _frame_size(frame_shape: Sequence[int] | None) -> tuple[int, int] | None:
    if frame_shape is None:
        return None
    shape = tuple(int(s) for s in frame_shape)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3) or min(shape) < 1:
        raise ConfigError(
            f"dataset_params.frame_shape must be null or [height, width, 3], got {frame_shape!r}"
        )
    return shape[0], shape[1]


class FramesDataset(Dataset):
    """Videos of one split of a dataset folder.

    Train split (``is_train=True``): item ``i`` is a dict with

    * ``source``, ``driving``: float32 tensors (3, H, W) in [0, 1], two frames
      of one video drawn uniformly with replacement and sorted by index (the
      source is never later than the driving frame), then augmented together
      (a time flip swaps them). Only these two frames are read.
    * ``name``: the file name of the video.

    With ``id_sampling`` the items are the ids (names up to the first ``#``),
    sorted, and each access picks one of that id's videos at random, so an
    epoch visits every id once however many clips it has. Otherwise the items
    are the videos. (The reference only grouped ids with a predefined split;
    here it is done for both layouts. The 80/20 split is by video, as in the
    reference, so an id may have videos in both parts.)

    Test split (``is_train=False``): item ``i`` is ``{"video": (3, T, H, W)
    float32 in [0, 1], "name": str}`` for video ``self.videos[i]``, all
    frames, not augmented. This holds the whole video in memory; for long
    videos use :meth:`open_video` or :meth:`iter_frames`, which stream.

    Args:
        root_dir: the dataset folder (layout in the module docstring).
        frame_shape: None to keep frames as stored, or ``[H, W, 3]`` (or
            ``[H, W]``) to resize frames to H x W; also gives the frame size
            of strips.
        id_sampling: sample training items per id, see above.
        is_train: use the train split (with augmentation) or the test split.
        random_seed: seeds the 80/20 split and the sampling.
        pairs_list: accepted so that a reference config's ``dataset_params``
            can be passed as is, and ignored: the reference only used it for
            a separate paired animation dataset.
        augmentation_params: the config's ``augmentation_params``, given to
            :class:`~tpsmm.data.augmentation.AllAugmentationTransform`; only
            used for the train split. None means no augmentation.

    Attributes:
        root_dir: the folder of the split in use (``root/train``,
            ``root/test`` or ``root``).
        videos: paths of the videos of the split, sorted by name.
        ids: with ``id_sampling`` on the train split, the sorted ids, else None.
        frame_size: (H, W) from ``frame_shape``, or None.

    Raises:
        InputError: the root does not exist, has ``train/`` without ``test/``
            (or the reverse), or the split has no video.
        ConfigError: a malformed ``frame_shape`` or ``augmentation_params``.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        frame_shape: Sequence[int] | None = None,
        id_sampling: bool = False,
        is_train: bool = True,
        random_seed: int = 0,
        pairs_list: str | None = None,
        augmentation_params: Mapping[str, Any] | None = None,
    ) -> None:
        del pairs_list  # see the docstring
        # Config mistakes first: they are cheaper to find than listing a dataset.
        self.frame_size = _frame_size(frame_shape)
        self.transform = (
            AllAugmentationTransform(**augmentation_params)
            if is_train and augmentation_params
            else None
        )
        root = Path(root_dir)
        if not root.is_dir():
            raise InputError(f"dataset folder {root} does not exist or is not a folder; {_LAYOUT}")
        train_dir, test_dir = root / "train", root / "test"
        if train_dir.is_dir() != test_dir.is_dir():
            present, missing = ("train", "test") if train_dir.is_dir() else ("test", "train")
            raise InputError(f"dataset folder {root} has {present}/ but no {missing}/; {_LAYOUT}")

        if train_dir.is_dir():
            self.root_dir = train_dir if is_train else test_dir
            self.videos, skipped = _list_videos(self.root_dir)
            where = str(self.root_dir)
        else:
            self.root_dir = root
            found, skipped = _list_videos(root)
            train, test = _random_split(found, random_seed)
            self.videos = train if is_train else test
            split = "train" if is_train else "test"
            where = f"the {split} part of the 80/20 split of {root} ({len(found)} videos found)"
        if not self.videos:
            # What was skipped is said here, so the error stays one line.
            because = f" ({skipped})" if skipped else ""
            raise InputError(f"no usable video in {where}{because}; {_LAYOUT}")
        if skipped:
            warnings.warn(skipped, stacklevel=2)

        self.is_train = bool(is_train)
        self.random_seed = int(random_seed)
        self.ids: list[str] | None = None
        self._videos_by_id: dict[str, list[Path]] = {}
        if self.is_train and id_sampling:
            for video in self.videos:
                self._videos_by_id.setdefault(_video_id(video), []).append(video)
            self.ids = sorted(self._videos_by_id)
        # The frame size of the first video read, against which the others are
        # checked when frames are not resized (see the module docstring).
        self._seen_size: tuple[Path, tuple[int, int]] | None = None
        self._rng: np.random.Generator | None = None
        self._rng_worker_seed: int | None = None

    def __len__(self) -> int:
        return len(self.ids) if self.ids is not None else len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index``: a training pair or a whole test video (see the class docstring)."""
        if not self.is_train:
            path = self.videos[index]
            video = torch.cat(list(self.iter_frames(index)))
            return {"video": video.permute(1, 0, 2, 3).contiguous(), "name": path.name}

        return self.sample_pair(index, self._generator())

    def sample_pair(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Training item ``index`` drawn with ``rng`` instead of the dataset's generator.

        Every random choice (video of the id, frame indices, augmentation)
        comes from ``rng``, so a generator seeded from (seed, epoch, position)
        makes the item a pure function of them, whatever worker reads it: the
        trainer relies on this to replay an interrupted epoch exactly.
        """
        if not self.is_train:
            raise ValueError("sample_pair needs the train split (is_train=True)")
        if self.ids is not None:
            choices = self._videos_by_id[self.ids[index]]
            path = choices[rng.integers(len(choices))]
        else:
            path = self.videos[index]
        reader = self._open(path)
        indices = np.sort(rng.integers(reader.num_frames, size=2))
        clip = self._to_tensor(reader.read(indices.tolist()), path)
        if self.transform is not None:
            clip = self.transform(clip, rng)
        return {"source": clip[0].contiguous(), "driving": clip[1].contiguous(), "name": path.name}

    def open_video(self, index: int) -> VideoReader:
        """A reader of video ``self.videos[index]``, for streaming evaluation.

        Its frames are uint8 (n, H, W, 3) as stored, not resized to
        ``frame_shape``; :meth:`iter_frames` does that.
        """
        return self._open(self.videos[index])

    def iter_frames(self, index: int, batch_size: int = 64) -> Iterator[torch.Tensor]:
        """Stream video ``self.videos[index]`` as float32 (n, 3, H, W) batches in [0, 1].

        Frames are in order, resized to ``frame_shape`` if given, not
        augmented; at most ``batch_size`` frames are decoded at a time.
        """
        path = self.videos[index]
        for batch in self._open(path).iter_batches(batch_size):
            yield self._to_tensor(batch, path)

    def _open(self, path: Path) -> VideoReader:
        # open_video raises InputError naming the file for unreadable videos and
        # videos without frames; the frame size is only used to cut strips.
        return open_video(path, frame_shape=self.frame_size)

    def _to_tensor(self, frames: np.ndarray, path: Path) -> torch.Tensor:
        """uint8 frames (n, H, W, 3) -> float32 (n, 3, H', W') in [0, 1] at the dataset's size."""
        clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        size = (clip.shape[-2], clip.shape[-1])
        if self.frame_size is not None:
            if size != self.frame_size:
                clip = F.interpolate(
                    clip, size=self.frame_size, mode="bilinear", antialias=True, align_corners=False
                ).clamp(0.0, 1.0)
        elif self._seen_size is None:
            self._seen_size = (path, size)
        elif size != self._seen_size[1]:
            first, expected = self._seen_size
            raise InputError(
                f"{path}: frames are {size[0]}x{size[1]} but {first.name} has "
                f"{expected[0]}x{expected[1]}; store all videos at the model's resolution "
                f"or set dataset_params.frame_shape to resize them"
            )
        return clip

    def _generator(self) -> np.random.Generator:
        # A DataLoader copies the dataset into each worker; mixing in the
        # worker's seed keeps the workers' samples apart, and gives new
        # samples each epoch when workers are restarted.
        info = get_worker_info()
        worker_seed = None if info is None else info.seed
        if self._rng is None or worker_seed != self._rng_worker_seed:
            entropy = [self.random_seed] if worker_seed is None else [self.random_seed, worker_seed]
            self._rng = np.random.default_rng(entropy)
            self._rng_worker_seed = worker_seed
        return self._rng


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` seeding Python's and numpy's global random states per worker.

    :class:`FramesDataset` seeds its own generator and does not need it; it is
    for other code in the workers that draws from ``random`` or
    ``np.random``. The seed is the worker's torch seed, so it is reproducible
    once ``torch.manual_seed`` is set in the main process.
    """
    del worker_id  # the torch seed already differs per worker
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
