"""The true background motion of a synthetic clip, to check background motion against."""

from __future__ import annotations

import numpy as np

from tpsmm.data.synthetic import clip_scene


def background_grid(seed: int = 0, size: int = 64, num_frames: int = 32, identity: int = 0,
                    clip: int = 0) -> np.ndarray:
    """The true backward flow of the background of a clip that
    :func:`~tpsmm.data.synthetic.render_video` renders.

    Returns:
        (T, size, size, 2) float32 in [-1, 1] (x, y), align_corners=True: where each pixel
        of frame t shows, in frame 0, the same point of the background (the camera's shift
        and zoom). ``grid_sample(frame0, grid[t])`` is the ideal warp of frame 0 to frame t.
    """
    _, _, joints = clip_scene(seed, size, num_frames, identity, clip)
    camera, zoom = joints["camera"], joints["zoom"]
    centre = (size - 1.0) / 2.0
    pixels = np.arange(size, dtype=np.float64)
    ratio = (zoom[0] / zoom)[:, None]
    # Frame t shows world point w at pixel (w - c) * zoom[t] + c + camera[t].
    x = (pixels[None] - centre - camera[:, :1]) * ratio + centre + camera[0, 0]
    y = (pixels[None] - centre - camera[:, 1:]) * ratio + centre + camera[0, 1]
    grid = np.stack(np.broadcast_arrays(x[:, None, :], y[:, :, None]), axis=-1)
    return (grid / (size - 1) * 2 - 1).astype(np.float32)
