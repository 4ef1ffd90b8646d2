"""The README's crop and paste-back picture (docs/crop_paste_back.png), made with the
shipped demo model: a synthetic character inside a larger scene (its source frame, two
driving frames) and the animated crop pasted back into the full source.

    python tools/crop_picture.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tpsmm.animation import Animator
from tpsmm.data.video import open_video, open_writer
from tpsmm.demo import CHECKPOINT_NAME, CONFIG, assets_dir
from tpsmm.testing.scenes import CHARACTER_BOX, character_in_scene

FRAMES = (12, 28)


def main() -> None:
    scene = character_in_scene(32, seed=0, identity=0)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        Image.fromarray(scene[0]).save(folder / "source.png")
        with open_writer(folder / "driving.mp4", 25) as writer:
            writer.write(scene)
        animator = Animator.from_checkpoint(assets_dir() / CHECKPOINT_NAME, CONFIG, device="cpu")
        animator.animate(folder / "source.png", folder / "driving.mp4", folder / "out",
                         crop=CHARACTER_BOX)
        result = open_video(folder / "out").read(FRAMES)
    gap = np.full((scene.shape[1], 4, 3), 255, np.uint8)
    rows = [np.concatenate([scene[0], gap, scene[t], gap, frame], axis=1)
            for t, frame in zip(FRAMES, result, strict=True)]
    picture = np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8),
                              rows[1]])
    out = Path(__file__).resolve().parent.parent / "docs" / "crop_paste_back.png"
    Image.fromarray(picture).resize((picture.shape[1] * 2, picture.shape[0] * 2),
                                    Image.Resampling.NEAREST).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
