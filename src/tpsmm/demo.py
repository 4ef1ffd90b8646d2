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
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from tpsmm.animation.animator import Animator
from tpsmm.animation.comparison import compose_comparison
from tpsmm.data.images import to_tensor, to_uint8
from tpsmm.data.video import open_video, open_writer
from tpsmm.model import TPSMM

CONFIG = "synthetic-64"
CHECKPOINT_NAME = "synthetic-64.pth"
SOURCE_NAME = "source.png"
DRIVING_NAME = "driving.mp4"
# The comparison video shows each 64x64 panel 4x larger.
DISPLAY_SCALE = 4


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
    magnified) into ``output_dir``, both with the driving video's sound.
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
    source = animator.prepare(assets / SOURCE_NAME)
    reader = open_video(assets / DRIVING_NAME)
    output_dir = Path(output_dir)
    result_path = output_dir / "demo.mp4"
    comparison_path = output_dir / "demo_comparison.mp4"
    gif_path = output_dir / "demo_comparison.gif" if gif else None
    with ExitStack() as stack:
        result = stack.enter_context(open_writer(result_path, reader.fps,
                                                 audio_from=reader.path))
        comparison = stack.enter_context(open_writer(comparison_path, reader.fps,
                                                     audio_from=reader.path))
        small = stack.enter_context(open_writer(gif_path, reader.fps / 2)) if gif else None
        kp_first = None
        done = 0
        for batch in reader.iter_batches(animator.batch_size):
            frames = to_tensor(batch).to(animator.device)
            kp_driving = animator.keypoints(frames)
            kp_first = kp_driving[:1] if kp_first is None else kp_first
            generated = animator.animate_keypoints(source, kp_driving, kp_first)
            result.write(to_uint8(generated))
            panels = compose_comparison(source.image, source.kp, frames, kp_driving, generated,
                                        DISPLAY_SCALE)
            comparison.write(panels)
            if small is not None:
                small.write(panels[-done % 2::2, ::2, ::2])  # even frame numbers
            done += len(panels)
    return DemoResult(result_path, comparison_path, reader.num_frames, untrained, gif_path)
