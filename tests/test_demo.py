"""`tpsmm demo` writes playable videos with the driving video's sound, using the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tpsmm import TPSMM
from tpsmm.animation.animator import NEEDED_NETWORKS
from tpsmm.animation.comparison import panel_scale
from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.cli import main
from tpsmm.data.dataset import FramesDataset
from tpsmm.data.synthetic import generate_dataset
from tpsmm.data.video import open_video
from tpsmm.demo import CHECKPOINT_NAME, CONFIG, assets_dir
from tpsmm.evaluation.extractors import MarkerExtractor
from tpsmm.evaluation.reconstruction import reconstruct

DEMO_FRAMES = 100  # the shipped driving video's length (tools/demo_assets.py)
DISPLAY_SCALE = panel_scale(64)


def test_shipped_inputs_are_readable():
    driving = open_video(assets_dir() / "driving.mp4")
    assert driving.num_frames == DEMO_FRAMES and driving.size == (64, 64)
    assert driving.has_audio


def test_shipped_model_is_small_and_complete():
    path = assets_dir() / CHECKPOINT_NAME
    assert path.stat().st_size <= 25 * 2**20
    data = read_checkpoint(path)
    assert set(NEEDED_NETWORKS) <= set(data)
    model = TPSMM.from_checkpoint(path, config=CONFIG)
    assert set(model.loaded) >= set(NEEDED_NETWORKS)


def test_shipped_model_beats_copying_the_source(tmp_path, one_thread):
    """Held-out characters (dataset seed 1; training used seed 0), 2 videos of 24 frames.

    Measured on these: L1 0.512x and AKD 0.219x copy-source's (the model card's 480-frame
    benchmark: 0.484x and 0.191x); the bounds leave room for other CPUs' rounding only.
    """
    generate_dataset(tmp_path, 4, size=64, num_frames=24, seed=1, test_fraction=0.5,
                     clips_per_identity=1)
    test = FramesDataset(tmp_path, is_train=False)
    model = TPSMM.from_checkpoint(assets_dir() / CHECKPOINT_NAME, config=CONFIG)
    markers = [MarkerExtractor()]
    with torch.no_grad():
        trained = reconstruct(test, model, save_png=False, keypoint_extractors=markers)
        copied = reconstruct(test, baseline="copy-source", save_png=False,
                             keypoint_extractors=markers)
    assert trained.l1 / copied.l1 < 0.53, (trained.l1, copied.l1)
    akd_ratio = trained.metrics["markers"]["akd"] / copied.metrics["markers"]["akd"]
    assert akd_ratio < 0.24, akd_ratio
    assert trained.metrics["markers"]["mkr"] <= 0.02


@pytest.mark.parametrize("weights", [[], ["--untrained"]], ids=["shipped", "untrained"])
def test_demo_writes_playable_videos(tmp_path, capsys, weights):
    assert main(["demo", *weights, "--gif", "--device", "cpu", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert ("untrained weights" in printed) == bool(weights)
    assert str(tmp_path / "demo.mp4") in printed
    assert str(tmp_path / "demo_comparison.mp4") in printed

    result = open_video(tmp_path / "demo.mp4")
    comparison = open_video(tmp_path / "demo_comparison.mp4")
    assert result.num_frames == comparison.num_frames == DEMO_FRAMES
    assert result.size == (64, 64)
    assert comparison.size == (64 * DISPLAY_SCALE, 3 * 64 * DISPLAY_SCALE)
    assert result.has_audio and comparison.has_audio
    gif = open_video(tmp_path / "demo_comparison.gif")
    assert gif.num_frames == (DEMO_FRAMES + 1) // 2
    assert gif.size == (64 * DISPLAY_SCALE // 2, 3 * 64 * DISPLAY_SCALE // 2)
    frames = np.concatenate(list(result.iter_batches(50)))
    assert frames.shape == (DEMO_FRAMES, 64, 64, 3)
    # The middle panel of the comparison is the driving video, magnified.
    first = next(iter(comparison))
    assert first.std() > 10
