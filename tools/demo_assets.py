"""How the demo's shipped files (``src/tpsmm/assets/demo``) were made.

    python tools/demo_assets.py inputs FOLDER          # source.png and driving.mp4 (with sound)
    python tools/demo_assets.py weights CHECKPOINT OUT  # a training checkpoint cut for shipping

The inputs are characters of a dataset seed that training never used (training used seed
0). The weights keep only the networks animation needs, in fp16 (half the size): still the
reference format, and ``load_state_dict`` casts them back to fp32 when loaded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tpsmm.animation.animator import NEEDED_NETWORKS
from tpsmm.checkpoint_file import atomic_save, read_checkpoint
from tpsmm.data.synthetic import render_video
from tpsmm.data.video import open_writer
from tpsmm.demo import DRIVING_NAME, SOURCE_NAME

DEMO_SEED = 7
SOURCE_IDENTITY = 1
DRIVING_IDENTITY = 3
DEMO_FRAMES = 100
DEMO_FPS = 25


def write_soundtrack(path: Path, seconds: float, rate: int = 44100) -> None:
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


def write_inputs(folder: Path, size: int = 64) -> None:
    """The demo's source image and driving video (with sound), into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = render_video(seed=DEMO_SEED, size=size, num_frames=1, identity=SOURCE_IDENTITY)
    driving = render_video(seed=DEMO_SEED, size=size, num_frames=DEMO_FRAMES,
                           identity=DRIVING_IDENTITY)
    Image.fromarray(source.frames[0]).save(folder / SOURCE_NAME)
    with tempfile.TemporaryDirectory() as scratch:
        audio = Path(scratch) / "sound.m4a"
        write_soundtrack(audio, DEMO_FRAMES / DEMO_FPS)
        with open_writer(folder / DRIVING_NAME, DEMO_FPS, audio_from=audio) as writer:
            writer.write(driving.frames)


def write_weights(training_checkpoint: Path, output: Path) -> None:
    """The networks animation needs from ``training_checkpoint``, in fp16."""
    data = read_checkpoint(training_checkpoint)
    shipped = {
        name: {key: value.half() if value.is_floating_point() else value
               for key, value in data[name].items()}
        for name in NEEDED_NETWORKS
    }
    shipped["epoch"] = data.get("epoch")
    atomic_save(shipped, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    jobs = parser.add_subparsers(dest="job", required=True)
    inputs = jobs.add_parser("inputs", help="write source.png and driving.mp4")
    inputs.add_argument("folder", type=Path)
    weights = jobs.add_parser("weights", help="cut a training checkpoint for shipping")
    weights.add_argument("checkpoint", type=Path)
    weights.add_argument("output", type=Path)
    args = parser.parse_args()
    if args.job == "inputs":
        write_inputs(args.folder)
    else:
        write_weights(args.checkpoint, args.output)


if __name__ == "__main__":
    main()
