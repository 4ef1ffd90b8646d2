"""``tpsmm crop``: raw footage cut into training clips, one tube per clip, resumable."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tpsmm.cli import main
from tpsmm.data.dataset import FramesDataset
from tpsmm.data.images import Box, to_tensor, to_uint8
from tpsmm.data.video import open_video, open_writer
from tpsmm.framing.plan import cut
from tpsmm.testing.scenes import Shot, moving_head

pytest.importorskip("skimage")
pytest.importorskip("dlib")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two raw videos: ``talk`` (a 14-frame shot, a cut, a 20-frame shot in which the face
    is lost for 14 frames), ``small`` (a face too small to keep), and a broken file."""
    folder = tmp_path_factory.mktemp("raw")
    talk, _ = moving_head([Shot("coffee", 14, (40, 40), (1.0, 0.0)),
                           Shot("chelsea", 20, (150, 70), hidden=range(2, 16))],
                          head_width=140)
    small, _ = moving_head([Shot("rocket", 10, (100, 60))], head_width=60)
    for name, frames in (("talk.mp4", talk), ("small.mp4", small)):
        with open_writer(folder / name, 25) as writer:
            writer.write(frames)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    return folder


def _crop(raw, root, *options):
    return main(["crop", str(raw), "--out", str(root), "--subject", "face", "--size", "64",
                 "--min-frames", "5", "--min-size", "96", "-q", *options])


def test_raw_videos_become_training_clips(raw, tmp_path, capsys):
    root = tmp_path / "data"
    assert _crop(raw, root, "--test-fraction", "0") == 2  # the broken file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.mp4" in err[0] and err[0].endswith("skipped")
    with open(root / "crops.csv") as file:
        rows = list(csv.DictReader(file))
    # talk: one tube per shot, but the second shot's is cut by the 14 lost frames into two
    # of 2 and 4 frames, below --min-frames; small: its face's crop is under 96 px.
    assert [(r["video"], r["clip"], r["split"], r["start"], r["frames"]) for r in rows] == [
        ("talk.mp4", "talk#000", "train", "0", "14")]
    clip = open_video(root / "train" / "talk#000.mp4")
    assert (clip.num_frames, clip.size) == (14, (64, 64))
    assert int(rows[0]["size"]) >= 96
    # The clips load as a training set.
    assert len(FramesDataset(str(root), frame_shape=(64, 64, 3), is_train=True)) == 1


def test_a_second_run_resumes_and_keeps_what_was_cut(raw, tmp_path):
    root = tmp_path / "data"
    _crop(raw, root)
    clips = sorted(root.rglob("*.mp4"))
    stamps = [p.stat().st_mtime_ns for p in clips]
    table = (root / "crops.csv").read_text()
    assert _crop(raw, root) == 2  # the broken file again; the others are not cut again
    assert [p.stat().st_mtime_ns for p in sorted(root.rglob("*.mp4"))] == stamps
    assert (root / "crops.csv").read_text() == table


def test_workers_cut_the_same_clips(raw, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _crop(raw, one, "--min-size", "32", "--min-frames", "2")
    _crop(raw, two, "--min-size", "32", "--min-frames", "2", "--workers", "2")
    assert (one / "crops.csv").read_text() == (two / "crops.csv").read_text()
    assert len((one / "crops.csv").read_text().splitlines()) == 5  # header and 4 clips
    # libx264 does not always encode the same frames to the same bytes in a long-lived
    # process (decoded, two such encodes differ by up to 30 levels at edges, each 4.0 levels
    # from the frames given), so each clip is held to the crop it should contain.
    raw_frames = {name: np.stack(list(open_video(raw / name))) for name in ("talk.mp4",)}
    for table in (one, two):
        for row in csv.DictReader(open(table / "crops.csv")):
            if row["video"] not in raw_frames:
                continue
            start, count, size = int(row["start"]), int(row["frames"]), int(row["size"])
            window = Box(top=int(row["y"]), left=int(row["x"]), height=size, width=size)
            expected = to_uint8(cut(to_tensor(raw_frames[row["video"]][start:start + count]),
                                    window, 64)).astype(int)
            clip = np.stack(list(open_video(table / row["split"] / f"{row['clip']}.mp4")))
            assert np.abs(clip - expected).mean() < 5, (table.name, row["clip"])


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, True),
                                               (signal.SIGTERM, False)])
def test_stopping_crop_workers_is_one_line_and_leaves_no_file(signum, group, tmp_path):
    """Ctrl-C and a scheduler's SIGTERM reach every process of the command (``group``),
    ``kill PID`` the main one only. Workers once died of them, leaving their clips'
    temporary files, the pool's thread printing a traceback, and a worker waiting for work
    printed its own. Here one worker is cutting a long video and the other has finished a
    short one and waits."""
    raw = tmp_path / "raw"
    raw.mkdir()
    frames = np.zeros((1500, 64, 64, 3), np.uint8)
    frames[:, 8:40, 8:40] = np.linspace(0, 255, 1500, dtype=np.uint8)[:, None, None, None]
    for name, count in (("a-long.mp4", 1500), ("b-short.mp4", 20)):
        with open_writer(raw / name, 25) as writer:
            writer.write(frames[:count])
    root = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "tpsmm.cli", "crop", str(raw), "--out", str(root), "--subject",
         "box:0,0,48,48", "--size", "128", "--min-frames", "8", "--workers", "2", "-q"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.monotonic() + 120
    while not list(root.glob(".crops/b-short*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(root.glob(".crops/a-long*.json")), "the long video ended too soon"
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "tpsmm crop: interrupted"
    assert not list(root.rglob(".*.tmp-*"))


def test_no_videos_or_an_unknown_subject_is_one_line(tmp_path, capsys):
    assert main(["crop", str(tmp_path), "--out", str(tmp_path / "o"), "--subject", "face"]) == 2
    assert "no video files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["crop", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        main(["crop", str(tmp_path), "--out", str(tmp_path / "o"), "--subject", "cat"])
    assert "unknown subject 'cat'" in capsys.readouterr().err
