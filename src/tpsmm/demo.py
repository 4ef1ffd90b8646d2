"""The out-of-the-box demo: the shipped model animates a shipped character.

Everything it needs ships inside the package (``tpsmm/assets/demo``): a
source image and a driving video (with a soundtrack) of synthetic
characters the model never saw in training, and the ``synthetic-64``
model trained with ``tpsmm train`` on ``tpsmm synth`` data (its model card
is ``tpsmm/assets/demo/MODEL_CARD.md``). ``tools/demo_assets.py`` in the
repository is how the two inputs were made and the weights cut down from
a training checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from tpsmm.animation.animator import Animator
from tpsmm.data.video import open_video, open_writer
from tpsmm.model import TPSMM

CONFIG = "synthetic-64"
CHECKPOINT_NAME = "synthetic-64.pth"
SOURCE_NAME = "source.png"
DRIVING_NAME = "driving.mp4"


def assets_dir() -> Path:
    """The folder of the shipped demo files."""
    return Path(str(resources.files("tpsmm") / "assets" / "demo"))


@dataclass(frozen=True)
class DemoResult:
    result: Path
    comparison: Path
    frames: int
    untrained: bool
    gif: Path | None = None


def run_demo(output_dir: str | os.PathLike = ".", checkpoint: str | os.PathLike | None = None,
             untrained: bool = False, device: str = "auto", gif: bool = False) -> DemoResult:
    """Animate the shipped source with the shipped driving video.

    Writes ``demo.mp4`` (the result, at the model's resolution) and
    ``demo_comparison.mp4`` (source | driving | result with keypoints,
    magnified 4x) into ``output_dir``, both with the driving video's sound, through
    :meth:`Animator.animate` as ``tpsmm animate --comparison`` does.
    ``untrained`` uses randomly initialised weights instead of a checkpoint
    (a check of the whole pipeline, not a result). ``gif`` also writes the
    comparison as ``demo_comparison.gif`` at half its magnification and
    every other frame (the README's picture: GIFs of textured frames are
    large).
    """
    assets = assets_dir()
    if untrained:
        torch.manual_seed(0)
        animator = Animator(TPSMM.from_config(CONFIG).eval(), device=device)
    else:
        animator = Animator.from_checkpoint(checkpoint or assets / CHECKPOINT_NAME, CONFIG,
                                            device=device)
    output_dir = Path(output_dir)
    result_path = output_dir / "demo.mp4"
    comparison_path = output_dir / "demo_comparison.mp4"
    gif_path = output_dir / "demo_comparison.gif" if gif else None
    result = animator.animate(assets / SOURCE_NAME, assets / DRIVING_NAME, result_path,
                              comparison=comparison_path)
    if gif_path is not None:
        comparison = open_video(comparison_path)
        with open_writer(gif_path, comparison.fps / 2) as small:
            done = 0
            for panels in comparison.iter_batches(16):
                small.write(panels[-done % 2::2, ::2, ::2])  # even frame numbers, half size
                done += len(panels)
    return DemoResult(result_path, comparison_path, result.frames, untrained, gif_path)
