"""The out-of-the-box demo: the shipped model animates a shipped character.

Everything it needs ships inside the package (``tpsmm/assets/demo``): a
source image and a driving video (with a soundtrack) of synthetic
characters the model never saw in training, and the ``synthetic-64``
model trained with ``tpsmm train`` on ``tpsmm synth`` data (its model card
is ``tpsmm/assets/demo/MODEL_CARD.md``). :func:`make_demo_inputs` is how
the two inputs were made; :func:`export_checkpoint` how the weights were
cut down from a training checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tpsmm.animation.animator import Animator
from tpsmm.checkpoint import atomic_save, read_checkpoint
from tpsmm.data.images import to_tensor, to_uint8
from tpsmm.data.synthetic import render_video
from tpsmm.data.video import open_video, open_writer
from tpsmm.model import TPSMM
from tpsmm.training.visualizer import draw_keypoints

CONFIG = "synthetic-64"
CHECKPOINT_NAME = "synthetic-64.pth"
SOURCE_NAME = "source.png"
DRIVING_NAME = "driving.mp4"
# Characters of a dataset seed that training never used (training used seed 0).
DEMO_SEED = 7
SOURCE_IDENTITY = 1
DRIVING_IDENTITY = 3
DEMO_FRAMES = 100
DEMO_FPS = 25
# The comparison video shows each 64x64 panel 4x larger.
DISPLAY_SCALE = 4
NETWORKS_SHIPPED = ("kp_detector", "dense_motion_network", "inpainting_network")


def assets_dir() -> Path:
    """The folder of the shipped demo files."""
    return Path(str(resources.files("tpsmm") / "assets" / "demo"))


def _soundtrack(path: Path, seconds: float, rate: int = 44100) -> None:
    """A few plucked notes as AAC, so the demo shows the audio being kept."""
    t = np.arange(int(seconds * rate)) / rate
    notes = [261.63, 329.63, 392.0, 523.25]
    beat = (t * 2).astype(int)
    frequency = np.take(notes, beat % len(notes))
    envelope = np.exp(-4 * (t * 2 - beat))
    samples = (0.3 * envelope * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="fltp",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def make_demo_inputs(folder: str | os.PathLike, size: int = 64) -> tuple[Path, Path]:
    """Write the demo's source image and driving video (with sound) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = render_video(seed=DEMO_SEED, size=size, num_frames=1, identity=SOURCE_IDENTITY)
    driving = render_video(seed=DEMO_SEED, size=size, num_frames=DEMO_FRAMES,
                           identity=DRIVING_IDENTITY)
    Image.fromarray(source.frames[0]).save(folder / SOURCE_NAME)
    with tempfile.TemporaryDirectory() as scratch:
        audio = Path(scratch) / "sound.m4a"
        _soundtrack(audio, DEMO_FRAMES / DEMO_FPS)
        with open_writer(folder / DRIVING_NAME, DEMO_FPS, audio_from=audio) as writer:
            writer.write(driving.frames)
    return folder / SOURCE_NAME, folder / DRIVING_NAME


def export_checkpoint(training_checkpoint: str | os.PathLike,
                      output: str | os.PathLike) -> None:
    """Keep only the networks animation needs, in fp16 (half the size).

    The file is in the reference format; ``load_state_dict`` casts the
    weights back to fp32 when it is loaded.
    """
    data = read_checkpoint(training_checkpoint)
    shipped = {
        name: {key: value.half() if value.is_floating_point() else value
               for key, value in data[name].items()}
        for name in NETWORKS_SHIPPED
    }
    shipped["epoch"] = data.get("epoch")
    atomic_save(shipped, output)


def compose_comparison(source: torch.Tensor, kp_source: torch.Tensor, driving: torch.Tensor,
                       kp_driving: torch.Tensor, generated: torch.Tensor,
                       scale: int = DISPLAY_SCALE) -> np.ndarray:
    """Side-by-side frames: source | driving | result, keypoints on the first two.

    Args:
        source: (1, 3, S, S) in [0, 1]; ``kp_source``: (1, N, 2) in [-1, 1].
        driving, generated: (B, 3, S, S) in [0, 1]; ``kp_driving``: (B, N, 2).
        scale: display magnification of each panel.

    Returns:
        (B, S*scale, 3*S*scale, 3) uint8.
    """
    batch = driving.shape[0]
    size = (driving.shape[-2] * scale, driving.shape[-1] * scale)

    def panel(images: torch.Tensor) -> np.ndarray:
        images = F.interpolate(images.float().cpu(), size=size, mode="bilinear",
                               align_corners=False).clamp(0, 1)
        return images.permute(0, 2, 3, 1).numpy()

    radius = max(2, scale)
    left = draw_keypoints(panel(source), kp_source.float().cpu().numpy(), radius)
    middle = draw_keypoints(panel(driving), kp_driving.float().cpu().numpy(), radius)
    row = np.concatenate([np.repeat(left, batch, axis=0), middle, panel(generated)], axis=2)
    return (row * 255).round().astype(np.uint8)


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
            panels = compose_comparison(source.image, source.kp, frames, kp_driving, generated)
            comparison.write(panels)
            if small is not None:
                small.write(panels[-done % 2::2, ::2, ::2])  # even frame numbers
            done += len(panels)
    return DemoResult(result_path, comparison_path, reader.num_frames, untrained, gif_path)
