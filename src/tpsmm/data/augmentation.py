"""Training-time augmentation of frame clips, as in the reference ``augmentation.py``.

A *clip* here is a float32 torch tensor of shape (T, 3, H, W) with values in
[0, 1]: the T frames of one training example (T = 2 for a source/driving
pair). Every transform draws its random numbers once per clip, so the source
and the driving frame are changed the same way, and all of them take a
``numpy.random.Generator`` so that a seeded run is reproducible.

``AllAugmentationTransform(**augmentation_params)`` builds the chain from the
``augmentation_params`` block of a config and applies it in the reference's
fixed order: flip -> resize -> crop -> jitter.

Differences from the reference, all deliberate:

* Rotation (``rotation_param``) is not implemented: no reference config uses
  it, so the key is rejected like any other unknown key.
* Everything works on float tensors; the reference converted each frame to an
  8-bit PIL image for the colour jitter, which rounded values to 1/255.
* The colour operations follow torchvision's functional ``adjust_*``
  definitions (written here, torchvision is not a dependency), except that
  grayscale uses the ITU-R 601 weights 0.299/0.587/0.114 that PIL uses.
* ``RandomResize`` keeps the reference's nearest-neighbour sampling but does
  not blur before shrinking (skimage's ``anti_aliasing=True`` did).
* ``RandomCrop`` draws the x offset from the width and the y offset from the
  height; the reference compared the crop height with the image height to
  decide the x offset (and vice versa), which only matters for non-square
  crops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tpsmm.errors import ConfigError

__all__ = [
    "AllAugmentationTransform",
    "ColorJitter",
    "RandomCrop",
    "RandomFlip",
    "RandomResize",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "hsv_to_rgb",
    "rgb_to_grayscale",
    "rgb_to_hsv",
]

# ITU-R 601 luma weights, the ones PIL uses for convert("L").
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def _check_clip(clip: torch.Tensor) -> None:
    if clip.ndim != 4 or clip.shape[1] != 3:
        raise ValueError(f"expected a clip of shape (T, 3, H, W), got {tuple(clip.shape)}")


class RandomFlip:
    """Reverse the clip in time or mirror it left-right, each with probability 1/2.

    As in the reference, a time flip ends the transform: a reversed clip is
    returned without a chance of also being mirrored. For a pair, reversing
    swaps the source and the driving frame.
    """

    def __init__(self, time_flip: bool = False, horizontal_flip: bool = False) -> None:
        self.time_flip = bool(time_flip)
        self.horizontal_flip = bool(horizontal_flip)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Flip a clip (T, 3, H, W); returns a new tensor of the same shape."""
        _check_clip(clip)
        if self.time_flip and rng.random() < 0.5:
            return clip.flip(0)
        if self.horizontal_flip and rng.random() < 0.5:
            return clip.flip(-1)
        return clip


class RandomResize:
    """Scale the whole clip by one factor drawn uniformly from ``ratio = [lo, hi]``.

    The new size is ``int(H * s) x int(W * s)`` as in the reference, with
    nearest-neighbour sampling at pixel centres (skimage's ``order=0``, torch's
    ``nearest-exact``).
    """

    def __init__(self, ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0)) -> None:
        lo, hi = (float(r) for r in ratio)
        if not 0.0 < lo <= hi:
            raise ConfigError(
                f"augmentation_params.resize_param.ratio must be [lo, hi] with 0 < lo <= hi, "
                f"got {list(ratio)}"
            )
        self.ratio = (lo, hi)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Resize a clip (T, 3, H, W) to (T, 3, int(H*s), int(W*s))."""
        _check_clip(clip)
        scale = rng.uniform(*self.ratio)
        height, width = clip.shape[-2:]
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        return F.interpolate(clip, size=size, mode="nearest-exact")


class RandomCrop:
    """Cut one random ``size = [h, w]`` window out of every frame of the clip.

    Frames smaller than the window are first padded by repeating their edge
    pixels, split evenly between both sides (the extra pixel goes after).
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        height, width = (size, size) if isinstance(size, int) else (int(s) for s in size)
        if height < 1 or width < 1:
            raise ConfigError(f"augmentation_params.crop_param.size must be positive, got {size!r}")
        self.size = (height, width)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Crop a clip (T, 3, H, W) to (T, 3, h, w)."""
        _check_clip(clip)
        crop_h, crop_w = self.size
        pad_h = max(0, crop_h - clip.shape[-2])
        pad_w = max(0, crop_w - clip.shape[-1])
        if pad_h or pad_w:
            clip = F.pad(
                clip,
                (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2),
                mode="replicate",
            )
        height, width = clip.shape[-2:]
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        return clip[..., top : top + crop_h, left : left + crop_w]


def rgb_to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images (..., 3, H, W) in [0, 1], as (..., 1, H, W)."""
    red, green, blue = image.unbind(-3)
    gray = _GRAY_WEIGHTS[0] * red + _GRAY_WEIGHTS[1] * green + _GRAY_WEIGHTS[2] * blue
    return gray.unsqueeze(-3)


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    # factor 1 keeps the image, 0 gives `other`, above 1 pushes away from it.
    return (factor * image + (1.0 - factor) * other).clamp(0.0, 1.0)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply RGB images (..., 3, H, W) in [0, 1] by ``factor`` >= 0, clamped to [0, 1]."""
    return _blend(image, torch.zeros_like(image), factor)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend each image (..., 3, H, W) with the mean of its own grayscale version.

    ``factor`` 0 gives a flat gray image, 1 the original; clamped to [0, 1].
    """
    mean = rgb_to_grayscale(image).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(image, mean, factor)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend RGB images (..., 3, H, W) with their grayscale version.

    ``factor`` 0 gives the grayscale image, 1 the original; clamped to [0, 1].
    """
    return _blend(image, rgb_to_grayscale(image), factor)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3, H, W) in [0, 1] to HSV (..., 3, H, W), every channel in [0, 1).

    Hue is a fraction of a turn (0 red, 1/3 green, 2/3 blue); gray pixels get
    hue 0 and saturation 0.
    """
    red, green, blue = image.unbind(-3)
    value = image.amax(dim=-3)
    chroma = value - image.amin(dim=-3)
    # Gray pixels have no hue; dividing by 1 instead of 0 keeps them finite.
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    safe_value = torch.where(value > 0, value, torch.ones_like(value))
    saturation = chroma / safe_value
    # The sector formulas give hue in sixths of a turn, relative to the
    # channel holding the maximum (red wins ties, then green).
    hue = torch.where(
        value == red,
        (green - blue) / safe_chroma,
        torch.where(
            value == green,
            2.0 + (blue - red) / safe_chroma,
            4.0 + (red - green) / safe_chroma,
        ),
    )
    hue = torch.where(chroma > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
    return torch.stack((hue, saturation, value), dim=-3)


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """HSV (..., 3, H, W), hue in turns (any real, taken modulo 1), to RGB in [0, 1]."""
    hue, saturation, value = image.unbind(-3)
    # Closed form: channel n (5 for R, 3 for G, 1 for B) is
    # v - v*s*clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6.
    channels = []
    for offset in (5.0, 3.0, 1.0):
        k = torch.remainder(offset + 6.0 * hue, 6.0)
        ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
        channels.append(value - value * saturation * ramp)
    return torch.stack(channels, dim=-3)


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of RGB images (..., 3, H, W) in [0, 1] by ``shift`` turns.

    ``shift`` must be in [-0.5, 0.5]; hue wraps around, so +0.5 and -0.5 both
    give the complementary colour. Saturation and value are kept.
    """
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"hue shift must be in [-0.5, 0.5], got {shift}")
    hsv = rgb_to_hsv(image)
    hue = torch.remainder(hsv[..., 0:1, :, :] + shift, 1.0)
    return hsv_to_rgb(torch.cat((hue, hsv[..., 1:, :, :]), dim=-3)).clamp(0.0, 1.0)


class ColorJitter:
    """Change brightness, contrast, saturation and hue of a clip, in random order.

    One set of factors is drawn per clip: brightness, contrast and saturation
    factors uniformly from [max(0, 1 - x), 1 + x], the hue shift from [-h, h]
    (turns). A parameter of 0 leaves that property alone. Each frame's
    contrast is blended towards that frame's own mean gray, as torchvision does
    frame by frame.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
    ) -> None:
        for key, amount in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if amount < 0:
                raise ConfigError(
                    f"augmentation_params.jitter_param.{key} must be >= 0, got {amount}"
                )
        if not 0 <= hue <= 0.5:
            raise ConfigError(
                f"augmentation_params.jitter_param.hue must be in [0, 0.5], got {hue}"
            )
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Jitter a clip (T, 3, H, W) in [0, 1]; the result is in [0, 1]."""
        _check_clip(clip)
        steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
        # Draw in the reference's order (b, c, s, h) and build the list in its
        # order (b, s, h, c) before shuffling, so a seed means the same jitter.
        brightness = self._factor(self.brightness, rng)
        contrast = self._factor(self.contrast, rng)
        saturation = self._factor(self.saturation, rng)
        hue = rng.uniform(-self.hue, self.hue) if self.hue > 0 else None
        if brightness is not None:
            steps.append(lambda x: adjust_brightness(x, brightness))
        if saturation is not None:
            steps.append(lambda x: adjust_saturation(x, saturation))
        if hue is not None:
            steps.append(lambda x: adjust_hue(x, hue))
        if contrast is not None:
            steps.append(lambda x: adjust_contrast(x, contrast))
        for index in rng.permutation(len(steps)):
            clip = steps[index](clip)
        return clip

    @staticmethod
    def _factor(amount: float, rng: np.random.Generator) -> float | None:
        if amount <= 0:
            return None
        return float(rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount))


# Config key -> (transform class, the keyword arguments it accepts). The order
# of this table is the order in which the transforms are applied.
_TRANSFORMS: dict[str, tuple[type, tuple[str, ...]]] = {
    "flip_param": (RandomFlip, ("time_flip", "horizontal_flip")),
    "resize_param": (RandomResize, ("ratio",)),
    "crop_param": (RandomCrop, ("size",)),
    "jitter_param": (ColorJitter, ("brightness", "contrast", "saturation", "hue")),
}


class AllAugmentationTransform:
    """The augmentation chain described by a config's ``augmentation_params``.

    Keyword arguments are the config keys ``flip_param``, ``resize_param``,
    ``crop_param`` and ``jitter_param``, each a dict of the matching
    transform's arguments or None (left out). They are applied in that order.
    An unknown key, including ``rotation_param`` (not implemented), raises
    :class:`~tpsmm.errors.ConfigError` naming it.
    """

    def __init__(self, **augmentation_params: Mapping[str, Any] | None) -> None:
        for key in augmentation_params:
            if key not in _TRANSFORMS:
                raise ConfigError(
                    f"unknown key augmentation_params.{key}; expected some of "
                    f"{', '.join(_TRANSFORMS)}"
                    + (" (rotation is not implemented)" if key == "rotation_param" else "")
                )
        self.transforms: list[Callable[[torch.Tensor, np.random.Generator], torch.Tensor]] = []
        for key, (transform, allowed) in _TRANSFORMS.items():
            params = augmentation_params.get(key)
            if params is None:
                continue
            if not isinstance(params, Mapping):
                raise ConfigError(
                    f"augmentation_params.{key} must be a mapping of "
                    f"{', '.join(allowed)}, got {params!r}"
                )
            for name in params:
                if name not in allowed:
                    raise ConfigError(
                        f"unknown key augmentation_params.{key}.{name}; expected some of "
                        f"{', '.join(allowed)}"
                    )
            self.transforms.append(transform(**params))

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Augment a clip (T, 3, H, W) float32 in [0, 1].

        Returns (T, 3, H', W') in [0, 1]; H', W' differ from H, W only when
        resizing or cropping is configured.
        """
        for transform in self.transforms:
            clip = transform(clip, rng)
        return clip
