"""Tests of the clip augmentations in tpsmm.data.augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import tpsmm
from tpsmm.data.augmentation import (
    AllAugmentationTransform,
    ColorJitter,
    RandomCrop,
    RandomFlip,
    RandomResize,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    hsv_to_rgb,
    rgb_to_hsv,
)
from tpsmm.errors import ConfigError


def _clip(frames: int = 2, height: int = 8, width: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(
        np.random.default_rng(seed).random((frames, 3, height, width), dtype=np.float32)
    )


def _pixel(r: float, g: float, b: float) -> torch.Tensor:
    """A one-pixel image (3, 1, 1)."""
    return torch.tensor([r, g, b], dtype=torch.float32).view(3, 1, 1)


class _FixedRng:
    """Stands in for a Generator: random() returns the given values in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_time_flip_swaps_source_and_driving() -> None:
    clip = _clip()
    out = RandomFlip(time_flip=True, horizontal_flip=True)(clip, _FixedRng(0.1))
    assert torch.equal(out[0], clip[1]) and torch.equal(out[1], clip[0])


def test_horizontal_flip_mirrors_every_frame() -> None:
    clip = _clip()
    # 0.9: no time flip; 0.1: mirror.
    out = RandomFlip(time_flip=True, horizontal_flip=True)(clip, _FixedRng(0.9, 0.1))
    assert torch.equal(out, clip[..., torch.arange(clip.shape[-1] - 1, -1, -1)])


def test_flip_keeps_clip_when_draws_are_high_or_flips_are_off() -> None:
    clip = _clip()
    assert torch.equal(RandomFlip(True, True)(clip, _FixedRng(0.9, 0.9)), clip)
    assert torch.equal(RandomFlip(False, False)(clip, np.random.default_rng(0)), clip)


def test_flip_probabilities_are_one_half_and_time_flip_excludes_mirror() -> None:
    clip = _clip(height=4, width=4)
    flip = RandomFlip(time_flip=True, horizontal_flip=True)
    rng = np.random.default_rng(0)
    counts = {"time": 0, "mirror": 0, "none": 0}
    for _ in range(400):
        out = flip(clip, rng)
        if torch.equal(out, clip.flip(0)):
            counts["time"] += 1
        elif torch.equal(out, clip.flip(-1)):
            counts["mirror"] += 1
        else:
            assert torch.equal(out, clip)
            counts["none"] += 1
    # Expected 200 / 100 / 100.
    assert 160 < counts["time"] < 240
    assert 65 < counts["mirror"] < 135 and 65 < counts["none"] < 135


def test_resize_uses_one_ratio_within_bounds_and_nearest_values() -> None:
    clip = _clip(height=20, width=30)
    resize = RandomResize(ratio=[0.5, 1.5])
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = resize(clip, rng)
        height, width = out.shape[-2:]
        assert 10 <= height <= 30 and 15 <= width <= 45
        # One ratio for both axes: int() truncation allows one pixel of slack.
        assert abs(height / 20 - width / 30) < 1 / 15
        # Nearest neighbour creates no new values.
        assert set(out.unique().tolist()) <= set(clip.unique().tolist())


def test_resize_size_matches_reference_formula() -> None:
    clip = _clip(height=20, width=30)
    resize = RandomResize(ratio=[0.9, 1.1])
    scale = np.random.default_rng(5).uniform(0.9, 1.1)
    out = resize(clip, np.random.default_rng(5))
    assert out.shape == (2, 3, int(20 * scale), int(30 * scale))


def test_resize_by_two_repeats_pixels() -> None:
    clip = _clip(height=3, width=4)
    out = RandomResize(ratio=[2.0, 2.0])(clip, np.random.default_rng(0))
    expected = clip.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    assert torch.equal(out, expected)


def test_crop_gives_the_size_and_a_window_of_the_clip() -> None:
    clip = _clip(height=12, width=16)
    out = RandomCrop(size=[5, 7])(clip, np.random.default_rng(3))
    assert out.shape == (2, 3, 5, 7)
    windows = clip.unfold(-2, 5, 1).unfold(-2, 7, 1)  # (T, 3, 8, 10, 5, 7)
    matches = (windows == out[:, :, None, None]).all(-1).all(-1).all(1).all(0)
    assert matches.any()


def test_crop_covers_all_offsets() -> None:
    clip = torch.arange(6, dtype=torch.float32).view(1, 1, 1, 6).expand(2, 3, 1, 6)
    crop = RandomCrop(size=[1, 4])
    rng = np.random.default_rng(0)
    starts = {int(crop(clip, rng)[0, 0, 0, 0]) for _ in range(60)}
    assert starts == {0, 1, 2}


def test_crop_pads_small_frames_with_edge_pixels() -> None:
    clip = torch.arange(6, dtype=torch.float32).view(1, 1, 2, 3).expand(2, 3, 2, 3)
    out = RandomCrop(size=5)(clip, np.random.default_rng(0))
    assert out.shape == (2, 3, 5, 5)
    # Height 2 -> 5: 1 row above, 2 below; width 3 -> 5: 1 column each side.
    expected = torch.tensor(
        [
            [0, 0, 1, 2, 2],
            [0, 0, 1, 2, 2],
            [3, 3, 4, 5, 5],
            [3, 3, 4, 5, 5],
            [3, 3, 4, 5, 5],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(out[1, 2], expected)


def test_brightness_multiplies_and_clamps() -> None:
    image = _pixel(0.2, 0.5, 0.8)
    out = adjust_brightness(image, 1.5)
    assert torch.allclose(out.flatten(), torch.tensor([0.3, 0.75, 1.0]))


def test_contrast_blends_with_mean_gray_by_hand() -> None:
    # Two pixels: red and a mid gray. Grays: 0.299 and 0.5; mean 0.3995.
    image = torch.tensor([[[1.0, 0.5]], [[0.0, 0.5]], [[0.0, 0.5]]])
    out = adjust_contrast(image, 0.5)
    mean = (0.299 + 0.5) / 2
    expected = torch.tensor(
        [
            [[0.5 * 1.0 + 0.5 * mean, 0.5 * 0.5 + 0.5 * mean]],
            [[0.5 * mean, 0.5 * 0.5 + 0.5 * mean]],
            [[0.5 * mean, 0.5 * 0.5 + 0.5 * mean]],
        ]
    )
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(adjust_contrast(image, 0.0), torch.full_like(image, mean))


def test_contrast_uses_each_frames_own_mean() -> None:
    clip = torch.stack([torch.full((3, 2, 2), 0.2), torch.full((3, 2, 2), 0.8)])
    # A flat frame equals its mean: contrast changes nothing.
    assert torch.allclose(adjust_contrast(clip, 3.0), clip)


def test_saturation_blends_with_grayscale_by_hand() -> None:
    image = _pixel(0.8, 0.4, 0.2)
    gray = 0.299 * 0.8 + 0.587 * 0.4 + 0.114 * 0.2  # 0.4904
    out = adjust_saturation(image, 1.5).flatten()
    expected = torch.tensor([1.5 * v - 0.5 * gray for v in (0.8, 0.4, 0.2)]).clamp(0, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(adjust_saturation(image, 0.0).flatten(), torch.full((3,), gray))


def test_hsv_round_trip_and_known_values() -> None:
    image = _clip(frames=1, height=5, width=5)[0]
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-6)
    hsv = rgb_to_hsv(torch.cat([_pixel(1, 0, 0), _pixel(0, 1, 0), _pixel(0, 0, 1)], dim=-1))
    assert torch.allclose(hsv[0].flatten(), torch.tensor([0.0, 1 / 3, 2 / 3]))
    gray = rgb_to_hsv(_pixel(0.4, 0.4, 0.4)).flatten()
    assert torch.allclose(gray, torch.tensor([0.0, 0.0, 0.4]))


def test_hue_shift_zero_is_identity() -> None:
    image = _clip(frames=1, height=6, width=6)[0]
    assert torch.allclose(adjust_hue(image, 0.0), image, atol=1e-6)


def test_hue_shift_rotates_and_wraps() -> None:
    red = _pixel(1.0, 0.0, 0.0)
    assert torch.allclose(adjust_hue(red, 1 / 3).flatten(), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(adjust_hue(red, -1 / 3).flatten(), torch.tensor([0.0, 0.0, 1.0]))
    # +-0.5 both land on the complementary colour.
    cyan = torch.tensor([0.0, 1.0, 1.0])
    assert torch.allclose(adjust_hue(red, 0.5).flatten(), cyan, atol=1e-6)
    assert torch.allclose(adjust_hue(red, -0.5).flatten(), cyan, atol=1e-6)
    # Blue (hue 2/3) + 0.5 wraps past 1 to hue 1/6: yellow.
    blue = _pixel(0.0, 0.0, 1.0)
    assert torch.allclose(adjust_hue(blue, 0.5).flatten(), torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="hue shift"):
        adjust_hue(red, 0.6)


def test_jitter_with_all_zeros_is_identity() -> None:
    clip = _clip()
    jitter = ColorJitter(brightness=0, contrast=0, saturation=0, hue=0)
    assert torch.equal(jitter(clip, np.random.default_rng(0)), clip)


def test_jitter_applies_one_factor_set_to_the_whole_clip() -> None:
    frame = _clip(frames=1)[0]
    clip = torch.stack([frame, frame])
    out = ColorJitter(0.3, 0.3, 0.3, 0.1)(clip, np.random.default_rng(2))
    assert torch.equal(out[0], out[1])
    assert not torch.allclose(out[0], frame)
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == torch.float32


def test_jitter_brightness_factor_range() -> None:
    clip = torch.full((2, 3, 2, 2), 0.5)
    jitter = ColorJitter(brightness=0.1)
    rng = np.random.default_rng(0)
    factors = [float(jitter(clip, rng)[0, 0, 0, 0]) / 0.5 for _ in range(200)]
    assert 0.9 <= min(factors) < 0.92 and 1.08 < max(factors) <= 1.1


def test_jitter_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="hue"):
        ColorJitter(hue=0.7)
    with pytest.raises(ConfigError, match="brightness"):
        ColorJitter(brightness=-0.1)


def test_all_augmentation_from_yaml_dict_is_seeded() -> None:
    params = {
        "flip_param": {"horizontal_flip": True, "time_flip": True},
        "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
        "crop_param": {"size": [6, 6]},
        "resize_param": {"ratio": [0.9, 1.1]},
    }
    transform = AllAugmentationTransform(**params)
    assert [type(t) for t in transform.transforms] == [
        RandomFlip,
        RandomResize,
        RandomCrop,
        ColorJitter,
    ]
    clip = _clip()
    first = transform(clip, np.random.default_rng(7))
    second = transform(clip, np.random.default_rng(7))
    assert first.shape == (2, 3, 6, 6)
    assert torch.equal(first, second)


def test_all_augmentation_empty_or_null_is_identity() -> None:
    clip = _clip()
    assert torch.equal(AllAugmentationTransform()(clip, np.random.default_rng(0)), clip)
    transform = AllAugmentationTransform(flip_param=None, jitter_param=None)
    assert transform.transforms == []


def test_all_augmentation_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match="rotation_param"):
        AllAugmentationTransform(rotation_param={"degrees": 10})
    with pytest.raises(ConfigError, match="augmentation_params.flip_param.vertical_flip"):
        AllAugmentationTransform(flip_param={"vertical_flip": True})
    with pytest.raises(ConfigError, match="crop_param must be a mapping"):
        AllAugmentationTransform(crop_param=[64, 64])


@pytest.mark.parametrize(
    "config", sorted((Path(tpsmm.__file__).parent / "configs").glob("*.yaml")), ids=lambda p: p.stem
)
def test_packaged_configs_build_their_augmentation(config: Path) -> None:
    params = yaml.safe_load(config.read_text())["dataset_params"]["augmentation_params"]
    out = AllAugmentationTransform(**params)(_clip(), np.random.default_rng(0))
    crop = params.get("crop_param")
    assert out.shape[-2:] == (tuple(crop["size"]) if crop else (8, 10))
    assert 0 <= out.min() and out.max() <= 1
