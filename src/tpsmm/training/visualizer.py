"""The reference's training visualisation: one row per sample, one column per stage.

Columns, left to right (SPEC section 6.4): source with its keypoints; the
equivariance-warped driving frame with its keypoints; driving with its
keypoints; the warped source (``deformed``); the prediction; each
occlusion mask; then, for each of the K+1 transforms, the source warped by
it and its contribution map in the transform's colour; last, the sum of
the coloured contribution maps. Keypoints are coloured by index along a
rainbow, as the reference's ``gist_rainbow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def rainbow(fractions: np.ndarray) -> np.ndarray:
    """Colours (N, 3) in [0, 1] for ``fractions`` (N,) in [0, 1]: red through magenta.

    A hue sweep over 0..300 degrees at full saturation, close to matplotlib's
    ``gist_rainbow`` (matplotlib is not a dependency).
    """
    hue = np.asarray(fractions, dtype=np.float64) * 300.0 / 60.0
    channels = [np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
                for k in ((5.0 + hue) % 6.0, (3.0 + hue) % 6.0, (1.0 + hue) % 6.0)]
    return 1.0 - np.stack(channels, axis=-1)


def draw_keypoints(images: np.ndarray, keypoints: np.ndarray, radius: int) -> np.ndarray:
    """Discs at keypoints on a copy of ``images``.

    Args:
        images: (B, H, W, 3) float in [0, 1].
        keypoints: (B, N, 2) in [-1, 1], x then y.
        radius: disc radius in pixels.

    Returns:
        (B, H, W, 3) float in [0, 1]; keypoint n has colour ``rainbow(n / N)``.
    """
    images = images.copy()
    batch, height, width, _ = images.shape
    count = keypoints.shape[1]
    colours = rainbow(np.arange(count) / max(count, 1))
    rows, cols = np.mgrid[0:height, 0:width]
    for b in range(batch):
        for n in range(count):
            x = (keypoints[b, n, 0] + 1) / 2 * width
            y = (keypoints[b, n, 1] + 1) / 2 * height
            disc = (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
            images[b][disc] = colours[n]
    return images


def _to_numpy(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(B, C, h, w) -> (B, H, W, 3) float in [0, 1], nearest-upsampled, gray made RGB."""
    images = F.interpolate(images.detach().float().cpu(), size=size, mode="nearest")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def visualize(source: torch.Tensor, driving: torch.Tensor, generated: dict,
              kp_size: int = 5, draw_border: bool = True) -> np.ndarray:
    """The visualisation grid of a training batch.

    Args:
        source, driving: (B, 3, H, W) in [0, 1].
        generated: the second output of ``GeneratorFullModel``: ``prediction``,
            ``deformed``, ``occlusion_map``, ``deformed_source``,
            ``contribution_maps``, ``kp_source``, ``kp_driving`` and, when the
            equivariance loss ran, ``transformed_frame``/``transformed_kp``.
        kp_size: keypoint radius in pixels at 256x256, scaled with the frame.
        draw_border: a white line between the columns.

    Returns:
        (B*H, columns*W, 3) uint8.
    """
    size = (source.shape[-2], source.shape[-1])
    radius = max(1, round(kp_size * size[0] / 256))

    def with_kp(images: torch.Tensor, kp: dict) -> np.ndarray:
        return draw_keypoints(_to_numpy(images, size), kp["fg_kp"].detach().float().cpu().numpy(),
                              radius)

    columns = [with_kp(source, generated["kp_source"])]
    if "transformed_frame" in generated:
        columns.append(with_kp(generated["transformed_frame"], generated["transformed_kp"]))
    columns.append(with_kp(driving, generated["kp_driving"]))
    columns.append(_to_numpy(generated["deformed"], size))
    columns.append(_to_numpy(generated["prediction"], size))
    columns += [_to_numpy(mask, size) for mask in generated["occlusion_map"]]

    deformed_source = generated["deformed_source"]
    contribution = generated["contribution_maps"].detach().float().cpu()
    transforms = contribution.shape[1]
    colours = torch.from_numpy(rainbow(np.arange(transforms) / transforms)).float()
    total = torch.zeros(contribution.shape[0], 3, *contribution.shape[-2:])
    for k in range(transforms):
        coloured = contribution[:, k : k + 1] * colours[k].view(1, 3, 1, 1)
        total += coloured
        columns.append(_to_numpy(deformed_source[:, k], size))
        columns.append(_to_numpy(coloured, size))
    columns.append(_to_numpy(total, size))

    if draw_border:
        for column in columns:
            column[:, :, -1] = 1.0
    grid = np.concatenate(columns, axis=2)
    grid = grid.reshape(-1, grid.shape[2], 3)
    return (grid * 255).round().astype(np.uint8)


def save_image(image: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) uint8 image as PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(temporary, format="PNG")
    temporary.replace(path)


def visualize_avd(source: torch.Tensor, driving: torch.Tensor, kp_source: torch.Tensor,
                  kp_driving: torch.Tensor, kp_avd: torch.Tensor,
                  prediction: torch.Tensor) -> np.ndarray:
    """Rows of (source + its keypoints, driving + its keypoints, animation + AVD keypoints).

    Args:
        source, driving, prediction: (B, 3, H, W) in [0, 1].
        kp_source, kp_driving, kp_avd: (B, N, 2) in [-1, 1].

    Returns:
        (B*H, 3*W, 3) uint8.
    """
    size = (source.shape[-2], source.shape[-1])
    radius = max(1, round(5 * size[0] / 256))
    columns = [
        draw_keypoints(_to_numpy(images, size), kp.detach().float().cpu().numpy(), radius)
        for images, kp in ((source, kp_source), (driving, kp_driving), (prediction, kp_avd))
    ]
    grid = np.concatenate(columns, axis=2)
    return (grid.reshape(-1, grid.shape[2], 3) * 255).round().astype(np.uint8)
