"""`tpsmm demo` writes playable videos with the driving video's sound."""

from __future__ import annotations

import numpy as np

from tpsmm.cli import main
from tpsmm.data.video import open_video
from tpsmm.demo import DEMO_FRAMES, DISPLAY_SCALE, assets_dir


def test_shipped_inputs_are_readable():
    driving = open_video(assets_dir() / "driving.mp4")
    assert driving.num_frames == DEMO_FRAMES and driving.size == (64, 64)
    assert driving.has_audio


def test_demo_pipeline_writes_playable_videos(tmp_path, capsys):
    assert main(["demo", "--untrained", "--gif", "--device", "cpu", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "demo.mp4") in printed
    assert str(tmp_path / "demo_comparison.mp4") in printed

    result = open_video(tmp_path / "demo.mp4")
    comparison = open_video(tmp_path / "demo_comparison.mp4")
    assert result.num_frames == comparison.num_frames == DEMO_FRAMES
    assert result.size == (64, 64)
    assert comparison.size == (64 * DISPLAY_SCALE, 3 * 64 * DISPLAY_SCALE)
    assert result.has_audio and comparison.has_audio
    gif = open_video(tmp_path / "demo_comparison.gif")
    assert gif.num_frames == DEMO_FRAMES
    assert gif.size == (64 * DISPLAY_SCALE // 2, 3 * 64 * DISPLAY_SCALE // 2)
    frames = np.concatenate(list(result.iter_batches(50)))
    assert frames.shape == (DEMO_FRAMES, 64, 64, 3)
    # The middle panel of the comparison is the driving video, magnified.
    first = next(iter(comparison))
    assert first.std() > 10
