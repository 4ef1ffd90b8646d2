"""Tests of FramesDataset and seed_worker in tpsmm.data.dataset."""

from __future__ import annotations

import random
import types
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import tpsmm.data.dataset as dataset_module
from tpsmm.data.dataset import FramesDataset, seed_worker
from tpsmm.data.video import open_writer
from tpsmm.errors import ConfigError, InputError

SIZE = 64
# Frame i of a test video is filled with gray level 10 * i, so the frame index
# can be read back from any pixel (PNG is lossless); hence at most 25 frames.
STEP = 10


def _frame(index: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return np.full((height, width, 3), STEP * index, dtype=np.uint8)


def _write_frames(folder: Path, num_frames: int, height: int = SIZE, width: int = SIZE) -> Path:
    """A video stored as a folder of PNG frames 0000.png, 0001.png, ..."""
    folder.mkdir(parents=True)
    for i in range(num_frames):
        Image.fromarray(_frame(i, height, width)).save(folder / f"{i:04d}.png")
    return folder


def _write_strip(path: Path, num_frames: int) -> Path:
    """A video stored as one horizontal PNG strip of SIZE x SIZE frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([_frame(i) for i in range(num_frames)], axis=1)).save(path)
    return path


def _write_mp4(path: Path, num_frames: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _index(image: torch.Tensor) -> int:
    """The frame index encoded in a (3, H, W) frame in [0, 1]."""
    return round(float(image[0, 0, 0]) * 255 / STEP)


def _split_root(tmp_path: Path, train: list[str], test: list[str], num_frames: int = 5) -> Path:
    root = tmp_path / "data"
    for name in train:
        _write_frames(root / "train" / name, num_frames)
    for name in test:
        _write_frames(root / "test" / name, num_frames)
    return root


def test_predefined_split_is_used(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["b.mp4", "a.mp4"], ["c.mp4"])
    train = FramesDataset(root, is_train=True)
    test = FramesDataset(root, is_train=False)
    assert train.root_dir == root / "train" and test.root_dir == root / "test"
    assert [p.name for p in train.videos] == ["a.mp4", "b.mp4"]
    assert [p.name for p in test.videos] == ["c.mp4"]
    assert len(train) == 2 and len(test) == 1


def test_random_split_is_80_20_deterministic_and_disjoint(tmp_path: Path) -> None:
    root = tmp_path / "data"
    names = [f"v{i:02d}" for i in range(11)]
    for name in names:
        _write_frames(root / name, 2)
    train = FramesDataset(root, is_train=True)
    test = FramesDataset(root, is_train=False)
    assert train.root_dir == root
    # ceil(0.2 * 11) = 3 test videos, as sklearn's train_test_split would.
    assert len(test) == 3 and len(train) == 8
    assert sorted(p.name for p in train.videos + test.videos) == names
    order = np.random.RandomState(0).permutation(11)
    assert [p.name for p in test.videos] == sorted(names[i] for i in order[:3])
    assert FramesDataset(root, is_train=False).videos == test.videos
    assert FramesDataset(root, is_train=False, random_seed=1).videos != test.videos


def test_id_sampling_has_one_item_per_id_from_that_id(tmp_path: Path) -> None:
    train = ["id1#x#a.mp4", "id1#y#b.mp4", "id1#z#c.mp4", "id10#x#a.mp4", "id2#x#a.mp4"]
    root = _split_root(tmp_path, train, ["id3#x#a.mp4"], num_frames=2)
    dataset = FramesDataset(root, id_sampling=True)
    assert len(dataset) == 3 and dataset.ids == ["id1", "id10", "id2"]
    names = Counter(dataset[0]["name"] for _ in range(60))
    # "id10#..." starts with "id1" too but is another id.
    assert set(names) == {"id1#x#a.mp4", "id1#y#b.mp4", "id1#z#c.mp4"}
    assert {dataset[1]["name"] for _ in range(5)} == {"id10#x#a.mp4"}
    # id_sampling only concerns training.
    assert len(FramesDataset(root, id_sampling=True, is_train=False)) == 1


def test_pairs_are_sorted_with_replacement_and_cover_all_frames(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"], num_frames=4)
    dataset = FramesDataset(root)
    pairs = []
    for _ in range(200):
        item = dataset[0]
        pairs.append((_index(item["source"]), _index(item["driving"])))
    assert all(s <= d for s, d in pairs)
    assert any(s == d for s, d in pairs)
    assert {i for pair in pairs for i in pair} == {0, 1, 2, 3}


def _spy_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Record the indices of every VideoReader.read the dataset makes."""
    calls: list[list[int]] = []
    real_open = dataset_module.open_video

    def spy_open(path, frame_shape=None):
        reader = real_open(path, frame_shape=frame_shape)
        real_read = reader.read

        def read(indices):
            calls.append(list(indices))
            return real_read(indices)

        reader.read = read
        reader.iter_batches = None  # training must not stream the video
        return reader

    monkeypatch.setattr(dataset_module, "open_video", spy_open)
    return calls


def test_training_reads_only_the_two_frames(tmp_path: Path, monkeypatch) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"], num_frames=20)
    calls = _spy_reads(monkeypatch)
    dataset = FramesDataset(root)
    for _ in range(10):
        item = dataset[0]
        read = calls[-1]
        assert read == [_index(item["source"]), _index(item["driving"])] == sorted(read)
    assert len(calls) == 10


def test_training_opens_few_frame_files(tmp_path: Path, monkeypatch) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"], num_frames=20)
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(Path(fp).name)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    dataset = FramesDataset(root)
    assert opened == []  # listing opens no frame
    dataset[0]
    # The two frames of the pair, plus at most one for the reader's frame size.
    assert 2 <= len(opened) <= 3


def test_train_item_shapes_dtypes_and_ranges(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"], num_frames=3)
    item = FramesDataset(root)[0]
    assert set(item) == {"source", "driving", "name"}
    for key in ("source", "driving"):
        assert item[key].shape == (3, SIZE, SIZE) and item[key].dtype == torch.float32
        assert 0 <= item[key].min() and item[key].max() <= 1
    assert item["name"] == "a.mp4"
    batch = next(iter(DataLoader(FramesDataset(root), batch_size=1)))
    assert batch["source"].shape == (1, 3, SIZE, SIZE)


def test_test_item_is_the_whole_video_and_can_be_streamed(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"], num_frames=5)
    dataset = FramesDataset(root, is_train=False, augmentation_params={"flip_param": {}})
    item = dataset[0]
    assert set(item) == {"video", "name"} and item["name"] == "b.mp4"
    assert item["video"].shape == (3, 5, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert [_index(item["video"][:, t]) for t in range(5)] == [0, 1, 2, 3, 4]
    batches = list(dataset.iter_frames(0, batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert torch.equal(torch.cat(batches).permute(1, 0, 2, 3), item["video"])
    reader = dataset.open_video(0)
    assert reader.read([4]).shape == (1, SIZE, SIZE, 3)


def test_png_strip_needs_and_uses_frame_shape(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_strip(root / "train" / "a.png", 4)
    _write_strip(root / "test" / "b.png", 3)
    test = FramesDataset(root, is_train=False, frame_shape=[SIZE, SIZE, 3])
    video = test[0]["video"]
    assert video.shape == (3, 3, SIZE, SIZE)
    assert [_index(video[:, t]) for t in range(3)] == [0, 1, 2]
    item = FramesDataset(root, frame_shape=[SIZE, SIZE, 3])[0]
    assert item["source"].shape == (3, SIZE, SIZE)
    # Without frame_shape a strip is cut into square frames.
    assert FramesDataset(root, is_train=False)[0]["video"].shape == (3, 3, SIZE, SIZE)


def test_mp4_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_mp4(root / "train" / "a.mp4", 6)
    _write_mp4(root / "test" / "b.mp4", 6)
    item = FramesDataset(root)[0]
    assert item["source"].shape == (3, SIZE, SIZE) and item["name"] == "a.mp4"
    video = FramesDataset(root, is_train=False)[0]["video"]
    assert video.shape == (3, 6, SIZE, SIZE)
    # Lossy, but each frame's gray level stays close to 10 * index.
    assert [_index(video[:, t]) for t in range(6)] == [0, 1, 2, 3, 4, 5]


def test_frames_are_resized_only_when_needed(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_frames(root / "train" / "a", 2, height=32, width=48)
    _write_frames(root / "test" / "b", 2)
    resized = FramesDataset(root, frame_shape=[SIZE, SIZE, 3])[0]
    assert resized["source"].shape == (3, SIZE, SIZE)
    kept = FramesDataset(root, is_train=False, frame_shape=[SIZE, SIZE])[0]["video"]
    # Already at size: exactly the stored values.
    assert torch.equal(kept[:, 1], torch.full((3, SIZE, SIZE), STEP / 255))
    with pytest.raises(ConfigError, match="frame_shape"):
        FramesDataset(root, frame_shape=[SIZE, SIZE, 4])


def test_config_dataset_params_can_be_passed_as_is(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["id1#a.mp4"], ["id2#a.mp4"])
    params = {
        "root_dir": str(root),
        "frame_shape": None,
        "id_sampling": True,
        "pairs_list": None,
        "augmentation_params": {
            "flip_param": {"horizontal_flip": True, "time_flip": True},
            "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
        },
    }
    dataset = FramesDataset(is_train=True, **params)
    assert dataset[0]["source"].shape == (3, SIZE, SIZE)
    with pytest.raises(TypeError):
        FramesDataset(**params, frames_shape=None)


def test_augmentation_is_applied_after_sampling(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"], num_frames=6)
    dataset = FramesDataset(root, augmentation_params={"flip_param": {"time_flip": True}})
    items = [dataset[0] for _ in range(60)]
    pairs = [(_index(item["source"]), _index(item["driving"])) for item in items]
    # A time flip swaps source and driving, so both orders occur.
    assert any(s < d for s, d in pairs) and any(s > d for s, d in pairs)
    cropped = FramesDataset(root, augmentation_params={"crop_param": {"size": [32, 40]}})[0]
    assert cropped["driving"].shape == (3, 32, 40)


def test_same_seed_same_items(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["id1#a", "id1#b", "id2#a"], ["id3#a"], num_frames=8)
    aug = {"flip_param": {"time_flip": True, "horizontal_flip": True}, "jitter_param": {"hue": 0.2}}

    def draws(seed: int) -> list[tuple[str, int, int]]:
        dataset = FramesDataset(root, id_sampling=True, random_seed=seed, augmentation_params=aug)
        items = [dataset[i % 2] for i in range(12)]
        return [(it["name"], _index(it["source"]), _index(it["driving"])) for it in items]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_workers_draw_different_reproducible_samples(tmp_path: Path, monkeypatch) -> None:
    root = _split_root(tmp_path, ["a", "b"], ["c"], num_frames=25)
    dataset = FramesDataset(root)

    def draws(worker_seed: int) -> list[int]:
        info = types.SimpleNamespace(seed=worker_seed)
        monkeypatch.setattr(dataset_module, "get_worker_info", lambda: info)
        return [_index(dataset[0]["source"]) for _ in range(10)]

    first = draws(11)
    assert draws(12) != first
    assert draws(11) == first


def test_dataloader_workers_are_seeded_by_torch(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a", "b"], ["c"], num_frames=25)
    dataset = FramesDataset(root)

    def epoch() -> list[int]:
        torch.manual_seed(0)
        loader = DataLoader(dataset, batch_size=1, num_workers=2, worker_init_fn=seed_worker)
        return [_index(batch["source"][0]) for batch in loader]

    first = epoch()
    assert epoch() == first
    # Worker 0 takes item 0 (video "a"), worker 1 item 1 (video "b"); a second epoch draws
    # the same frames.
    assert len(first) == 2


def test_seed_worker_seeds_global_states() -> None:
    torch.manual_seed(5)
    seed_worker(0)
    first = (random.random(), np.random.random())
    torch.manual_seed(5)
    seed_worker(0)
    assert (random.random(), np.random.random()) == first


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere does not exist.*ROOT/train/ and ROOT/test/"):
        FramesDataset(tmp_path / "nowhere")


def test_config_errors_come_before_listing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rotation_param"):
        FramesDataset(tmp_path / "nowhere", augmentation_params={"rotation_param": {}})


def test_train_without_test_and_test_without_train(tmp_path: Path) -> None:
    _write_frames(tmp_path / "a" / "train" / "v", 2)
    with pytest.raises(InputError, match=r"has train/ but no test/"):
        FramesDataset(tmp_path / "a")
    _write_frames(tmp_path / "b" / "test" / "v", 2)
    with pytest.raises(InputError, match=r"has test/ but no train/"):
        FramesDataset(tmp_path / "b")


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no usable video in the train part.*empty"):
        FramesDataset(tmp_path / "empty")
    root = _split_root(tmp_path, [], ["b"])
    (root / "train").mkdir()
    with pytest.raises(InputError, match=r"no usable video in .*train; expected"):
        FramesDataset(root)


def test_non_videos_and_empty_folders_are_skipped_with_a_warning(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"])
    np.savez(root / "train" / "a.npz", kp=np.zeros(3))
    (root / "train" / "empty.mp4").mkdir()
    (root / "train" / ".DS_Store").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipping 2 entries.*a\.npz.*empty\.mp4/"):
        dataset = FramesDataset(root)
    assert [p.name for p in dataset.videos] == ["a.mp4"]


def test_unreadable_files_are_skipped_and_damage_further_in_names_the_file(
        tmp_path: Path) -> None:
    """Headers are checked when the dataset is listed (a corrupt .mp4 used to stop training
    later); damage past the header raises naming the file when the frames are read."""
    root = _split_root(tmp_path, ["a.mp4"], ["b.mp4"])
    (root / "train" / "broken.mp4").write_bytes(b"not a video")
    (root / "train" / "empty.gif").write_bytes(b"")
    (root / "train" / "strip.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    noise = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    cut = root / "train" / "cut.mp4"
    with open_writer(cut, 25) as writer:  # the index comes first (faststart)
        writer.write(noise)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 3])
    with pytest.warns(UserWarning, match=r"skipping 3 entries that are not readable videos: "
                      r"broken\.mp4 \(.*\), empty\.gif \(.*\), strip\.png \(not a readable"):
        dataset = FramesDataset(root)
    assert [p.name for p in dataset.videos] == ["a.mp4", "cut.mp4"]
    with pytest.raises(InputError, match=r"cut\.mp4: decoding failed at frame"):
        list(dataset.iter_frames(1))


def test_frames_of_another_size_raise_naming_the_file(tmp_path: Path) -> None:
    root = _split_root(tmp_path, ["a"], ["c"])
    _write_frames(root / "train" / "b", 2, height=32, width=32)
    dataset = FramesDataset(root)
    dataset[0]
    with pytest.raises(InputError, match=r"b: frames are 32x32 but a has 64x64"):
        dataset[1]
