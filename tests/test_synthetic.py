"""Procedural dataset (tpsmm.data.synthetic), marker detector and AKD/MKR metrics."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from tpsmm.commands import synth
from tpsmm.data.synthetic import (
    MARKER_NAMES,
    MAX_TEXTURE_CHROMA,
    generate_dataset,
    render_video,
)
from tpsmm.errors import OutputError
from tpsmm.evaluation.landmarks import akd, detect_markers, detect_video_markers, mkr
from tpsmm.geometry import make_coordinate_grid
from tpsmm.testing.camera_truth import background_grid

M = len(MARKER_NAMES)


@pytest.fixture(scope="module")
def clips64() -> list:
    return [render_video(seed=5, size=64, num_frames=24, identity=i, clip=i) for i in range(4)]


def test_render_shapes_and_determinism():
    video = render_video(seed=3, size=64, num_frames=6, identity=1, clip=2)
    assert video.frames.shape == (6, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.keypoints.shape == (6, M, 2) and video.keypoints.dtype == np.float32
    assert video.visible.shape == (6, M) and video.visible.dtype == bool
    again = render_video(seed=3, size=64, num_frames=6, identity=1, clip=2)
    for a, b in zip(video, again, strict=True):
        np.testing.assert_array_equal(a, b)
    longer = render_video(seed=3, size=64, num_frames=9, identity=1, clip=2)
    np.testing.assert_array_equal(video.frames, longer.frames[:6])  # length only truncates
    for other in (
        render_video(seed=4, size=64, num_frames=6, identity=1, clip=2),
        render_video(seed=3, size=64, num_frames=6, identity=1, clip=3),
    ):
        assert not np.array_equal(video.frames, other.frames)
        assert not np.array_equal(video.keypoints, other.keypoints)


def test_motion_is_smooth_and_non_trivial(clips64):
    for video in clips64:
        step = np.linalg.norm(np.diff(video.keypoints, axis=0), axis=-1)  # (T-1, M) px
        assert step.max() < 0.1 * 64  # no jumps
        assert step.mean() > 0.2  # everything keeps moving
        accel = np.linalg.norm(np.diff(video.keypoints, n=2, axis=0), axis=-1)
        assert accel.max() < 2.0
        frame_change = np.abs(np.diff(video.frames.astype(np.int16), axis=0)).mean()
        assert frame_change > 0.5


def test_non_marker_colours_stay_desaturated():
    frames = render_video(seed=1, size=64, num_frames=4, identity=3, character=False).frames
    chroma = frames.max(axis=-1).astype(int) - frames.min(axis=-1)
    assert chroma.max() <= round(MAX_TEXTURE_CHROMA * 255) + 1
    for frame in frames:
        assert not detect_markers(frame)[1].any()


@pytest.mark.parametrize("size", [64, 128])
def test_detector_recovers_visible_markers(size, clips64):
    clips = clips64 if size == 64 else [render_video(5, 128, 8, identity=i) for i in range(2)]
    for video in clips:
        points, found = detect_video_markers(video.frames)
        assert found[video.visible].mean() >= 0.95
        error = np.linalg.norm(points - video.keypoints, axis=-1)[video.visible & found]
        assert np.median(error) < 0.3 and np.percentile(error, 95) < 1.0


def _degrade(frame: np.ndarray) -> np.ndarray:
    """3x3 box blur, then a JPEG round trip (quality 85, chroma subsampled)."""
    blurred = ndimage.uniform_filter(frame.astype(np.float32), size=(3, 3, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.rint(blurred).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return np.asarray(Image.open(buffer))


def test_detector_survives_blur_and_jpeg(clips64):
    for video in clips64[:2]:
        points, found = detect_video_markers(np.stack([_degrade(f) for f in video.frames]))
        assert found[video.visible].mean() >= 0.9
        error = np.linalg.norm(points - video.keypoints, axis=-1)[video.visible & found]
        assert np.median(error) < 1.0


def test_akd_and_mkr_on_hand_made_arrays():
    gt = np.zeros((2, 3, 2))
    gen = gt.copy()
    gen[0, 0] = (1.0, 3.0)  # |diff| 1 and 3
    gen[1, 1] = (2.0, 0.0)  # |diff| 2 and 0
    gen[1, 2] = (100.0, 100.0)  # ignored: missing in gt
    found_gt = np.array([[True, True, False], [True, True, False]])
    found_gen = np.array([[True, False, True], [True, True, True]])
    # pairs found in both: (0,0), (1,0), (1,1) -> |diffs| 1,3,0,0,2,0 -> mean 1
    assert akd(gt, found_gt, gen, found_gen) == pytest.approx(1.0)
    # gt has 4; (0,1) is missing in gen -> 1/4
    assert mkr(found_gt, found_gen) == pytest.approx(0.25)
    assert np.isnan(akd(gt, ~found_gt, gen, ~found_gen & found_gt))
    assert np.isnan(mkr(np.zeros(3, bool), np.ones(3, bool)))
    with pytest.raises(ValueError):
        akd(gt, found_gt, gen[:1], found_gen[:1])


def test_generate_dataset_layout(tmp_path):
    summary = generate_dataset(
        tmp_path / "a",
        7,
        size=32,
        num_frames=(3, 5),
        seed=2,
        test_fraction=0.3,
        clips_per_identity=2,
    )
    root = tmp_path / "a"
    ids = {}
    for split in ("train", "test"):
        videos = sorted(p for p in (root / split).iterdir() if p.is_dir())
        ids[split] = {p.name.split("#")[0] for p in videos}
        for folder in videos:
            frames = sorted(folder.glob("*.png"))
            assert [p.name for p in frames] == [f"{t:06d}.png" for t in range(len(frames))]
            assert 3 <= len(frames) <= 5
            assert np.asarray(Image.open(frames[0])).shape == (32, 32, 3)
            with np.load(folder.with_name(folder.name + ".npz")) as truth:
                assert truth["keypoints"].shape == (len(frames), M, 2)
                assert truth["visible"].shape == (len(frames), M)
    # 7 clips of 4 identities (2+2+2+1); round(4 * 0.3) = 1 test identity
    assert (summary.train_videos, summary.test_videos) == (6, 1)
    assert ids["test"] == {"id00003"} and not ids["train"] & ids["test"]
    assert json.loads((root / "synthetic.json").read_text())["marker_names"] == list(MARKER_NAMES)

    with pytest.raises(OutputError, match="not empty"):
        generate_dataset(root, 1, size=32, num_frames=2)
    generate_dataset(root, 1, size=32, num_frames=2, overwrite=True)
    assert len(list((root / "train").iterdir())) == 2  # one clip folder + its npz
    with pytest.raises(OutputError):
        generate_dataset(root / "synthetic.json" / "x", 1, size=32, num_frames=2)


def test_overwrite_deletes_only_a_dataset_synth_wrote(tmp_path):
    """--overwrite once deleted ROOT/train and ROOT/test of any folder, a user's own data
    included; now only a folder with synth's marker, even one a killed run left."""
    own = tmp_path / "own"
    (own / "train" / "my-video").mkdir(parents=True)
    (own / "train" / "my-video" / "000.png").write_bytes(b"precious")
    (own / "test").mkdir()
    with pytest.raises(OutputError, match=r"own: not a dataset written by tpsmm synth"):
        generate_dataset(own, 1, size=32, num_frames=2, overwrite=True)
    assert (own / "train" / "my-video" / "000.png").read_bytes() == b"precious"

    interrupted = tmp_path / "interrupted"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_dataset(interrupted, 3, size=32, num_frames=2, progress=stop)
    assert json.loads((interrupted / "synthetic.json").read_text())["complete"] is False
    generate_dataset(interrupted, 1, size=32, num_frames=2, overwrite=True)
    assert json.loads((interrupted / "synthetic.json").read_text())["complete"] is True
    assert len(list((interrupted / "train").iterdir())) == 2  # one clip folder + its npz


@pytest.mark.slow  # starting worker processes takes seconds
def test_workers_write_identical_files(tmp_path):
    for name, workers in (("one", 1), ("two", 2)):
        generate_dataset(tmp_path / name, 3, size=32, num_frames=(2, 4), seed=7, workers=workers)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert len(files) >= 6
    for path in files:
        assert (tmp_path / "one" / path).read_bytes() == (tmp_path / "two" / path).read_bytes()


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    synth.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", *argv])
    return args.func(args)


def test_cli_writes_a_tiny_dataset(tmp_path: Path, capsys):
    out = tmp_path / "data"
    argv = ["--out", str(out), "--videos", "3", "--size", "32", "--frames", "2-3"]
    assert _cli([*argv, "--clips-per-identity", "1", "--test-fraction", "0.4"]) == 0
    assert "2 train + 1 test videos" in capsys.readouterr().out
    assert len(list((out / "test").glob("*.npz"))) == 1
    with pytest.raises(OutputError):
        _cli(argv)
    assert _cli([*argv, "--overwrite"]) == 0
    with pytest.raises(SystemExit):
        _cli(["--out", str(out), "--videos", "0"])


def test_background_grid_is_the_true_camera_motion() -> None:
    frames = 24
    grid = background_grid(seed=1, size=64, num_frames=frames, identity=2)
    assert grid.shape == (frames, 64, 64, 2) and grid.dtype == np.float32
    identity = make_coordinate_grid((64, 64)).numpy()
    np.testing.assert_allclose(grid[0], identity, atol=1e-6)
    empty = render_video(seed=1, size=64, num_frames=frames, identity=2, character=False)
    images = torch.from_numpy(empty.frames).permute(0, 3, 1, 2).float() / 255
    warped = F.grid_sample(images[:1].expand(frames, -1, -1, -1), torch.from_numpy(grid),
                           align_corners=True)
    inside = torch.from_numpy((np.abs(grid) < 0.9).all(axis=-1))[:, None].expand_as(images)
    warp_error = (warped - images).abs()[inside].mean()
    copy_error = (images[:1] - images).abs()[inside].mean()
    assert warp_error < 0.5 * copy_error, (warp_error, copy_error)


def test_ctrl_c_with_workers_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group: the pool's workers printed "Process
    SpawnPoolWorker-1:" and their tracebacks under the command's own line."""
    out = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "tpsmm.cli", "synth", "--out", str(out), "--videos", "40",
         "--frames", "200", "--workers", "2"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        # As from a terminal: tests started in the background by a shell without job
        # control ignore SIGINT, a child inherits that, and Python then raises no
        # KeyboardInterrupt (the command ran to its end and exited 0).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(out.glob("*/*.npz")) and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first video is written: the workers are busy
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "tpsmm synth: interrupted"
