"""Image loading, numpy <-> torch conversion and fitting to the model size."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from tpsmm.data.images import (
    Box,
    fit,
    load_image,
    load_image_uint8,
    square_box,
    to_tensor,
    to_uint8,
)
from tpsmm.errors import InputError, MissingExtraError


def _rgb(height: int = 4, width: int = 6) -> np.ndarray:
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3) * 3


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def test_rgb_png_loads_as_float_in_unit_range(tmp_path: Path) -> None:
    rgb = _rgb()
    image = load_image(_save(Image.fromarray(rgb), tmp_path / "a.png"))
    assert image.dtype == np.float32 and image.shape == (4, 6, 3)
    np.testing.assert_array_equal(image, rgb / np.float32(255))
    np.testing.assert_array_equal(load_image_uint8(tmp_path / "a.png"), rgb)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_is_repeated_to_three_channels(tmp_path: Path, mode: str) -> None:
    grey = (np.arange(24, dtype=np.uint8).reshape(4, 6) * 10) if mode == "L" else None
    image = Image.fromarray(grey) if mode == "L" else Image.new("1", (6, 4), 1)
    loaded = load_image_uint8(_save(image, tmp_path / "g.png"))
    assert loaded.shape == (4, 6, 3)
    expected = grey if mode == "L" else np.full((4, 6), 255, np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], expected)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_keeping_the_colour(tmp_path: Path, mode: str) -> None:
    rgba = np.concatenate([_rgb(), np.zeros((4, 6, 1), np.uint8)], axis=2)  # fully transparent
    image = Image.fromarray(rgba).convert(mode)
    expected = np.asarray(image.convert("RGBA"))[..., :3]
    np.testing.assert_array_equal(load_image_uint8(_save(image, tmp_path / "a.png")), expected)


def test_palette_with_transparency_gives_palette_colours(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 1, 2]], np.uint8), mode="L").convert("P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    path = _save(image, tmp_path / "p.png", transparency=b"\x00\x80")  # alpha per entry
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_image_uint8(path)
    np.testing.assert_array_equal(loaded[0], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])


def test_sixteen_bit_png_scales_by_65535(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "g16.png")
    image = load_image(path)
    np.testing.assert_allclose(image[..., 0], values / 65535, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(load_image_uint8(path)[0, :, 1], [0, 1, 128, 255])


def test_cmyk_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (6, 4), (0, 255, 255, 0)), tmp_path / "c.jpg")
    image = load_image_uint8(path)
    assert image.shape == (4, 6, 3)
    assert image[..., 0].min() > 200 and image[..., 1:].max() < 60  # red


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rgb = _rgb()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: turn 90 degrees clockwise to display
    path = _save(Image.fromarray(rgb), tmp_path / "o.png", exif=exif)
    np.testing.assert_array_equal(load_image_uint8(path), np.rot90(rgb, -1))


def _photo() -> np.ndarray:
    """(48, 64, 3) uint8: smooth gradients and a yellow box, as a lossy codec keeps them."""
    y, x = np.mgrid[:48, :64]
    rgb = np.stack([x * 255 // 64, y * 255 // 48, np.full_like(x, 90)], -1).astype(np.uint8)
    rgb[8:20, 8:24] = (250, 250, 40)
    return rgb


def test_heic_photos_load_upright(tmp_path: Path) -> None:
    """iPhones' format, through pillow-heif: rotated by its orientation, as a JPEG is."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(Image.fromarray(_photo()), tmp_path / "IMG_0001.HEIC", quality=90,
                 exif=exif.tobytes())
    image = load_image_uint8(path)
    assert image.shape == (64, 48, 3)
    # HEVC with 4:2:0 chroma: measured 1.37 levels on average, 5 at most (the box's edges).
    assert np.abs(image.astype(int) - np.rot90(_photo(), -1)).mean() < 2


def test_heic_without_pillow_heif_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "photo.heic"
    path.write_bytes(b"not read: the missing package is said first")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails
    with pytest.raises(MissingExtraError) as raised:
        load_image(path)
    assert str(raised.value) == (f"{path}: HEIC/HEIF photos need pillow-heif: pip install "
                                 "'tpsmm[heic]' (or save the photo as JPEG)")


def test_avif_photos_load(tmp_path: Path) -> None:
    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    path = _save(Image.fromarray(_photo()), tmp_path / "photo.avif", quality=100)
    image = load_image_uint8(path)
    assert image.shape == (48, 64, 3)
    assert np.abs(image.astype(int) - _photo()).mean() < 2.5  # measured 1.58 (4:2:0 chroma)


def test_missing_directory_and_non_images_raise_input_error(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("hello")
    cases = {
        tmp_path / "none.png": "no such file",
        tmp_path: "is a directory, not an image",
        text: "not an image (cannot identify image file)",
    }
    for path, problem in cases.items():
        with pytest.raises(InputError) as raised:
            load_image(path)
        assert str(raised.value) == f"{path}: {problem}"


def test_truncated_image_raises_input_error(tmp_path: Path) -> None:
    path = _save(Image.fromarray(_rgb(64, 64)), tmp_path / "a.png")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="a.png: cannot read image"):
        load_image(path)


def test_tensor_round_trip_is_exact_and_rounds() -> None:
    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    tensor = to_tensor(frames)
    assert tensor.shape == (1, 3, 16, 16) and tensor.dtype == torch.float32
    assert tensor.min() == 0 and tensor.max() == 1
    np.testing.assert_array_equal(to_uint8(tensor), frames)
    nearly_one = torch.full((1, 3, 1, 1), 0.9 / 255)
    assert to_uint8(nearly_one).item(0) == 1  # rounded, where truncating gives 0
    assert to_uint8(torch.full((1, 3, 1, 1), 1.5)).item(0) == 255  # clamped


def test_to_tensor_accepts_float_frames() -> None:
    frames = np.random.default_rng(0).random((2, 4, 5, 3), dtype=np.float32)
    tensor = to_tensor(frames)
    assert torch.equal(tensor, torch.from_numpy(frames).permute(0, 3, 1, 2))


def test_square_box_geometry() -> None:
    assert square_box(4, 8, "crop") == Box(0, 2, 4, 4)
    assert square_box(8, 4, "pad") == Box(0, -2, 8, 8)
    assert square_box(4, 8, "stretch") == Box(0, 0, 4, 8)
    with pytest.raises(ValueError, match="unknown fit mode"):
        square_box(4, 8, "zoom")


def _wide() -> torch.Tensor:
    return torch.rand(2, 3, 4, 8, generator=torch.Generator().manual_seed(0))


def test_fit_crop_takes_the_centre() -> None:
    frames = _wide()
    assert torch.equal(fit(frames, 4, "crop"), frames[..., 2:6])
    assert fit(frames, 16).shape == (2, 3, 16, 16)  # crop is the default


def test_fit_pad_adds_black_borders() -> None:
    padded = fit(_wide(), 8, "pad")
    assert torch.equal(padded[..., 2:6, :], _wide())
    assert padded[..., :2, :].abs().max() == 0 and padded[..., 6:, :].abs().max() == 0


def test_fit_stretch_squashes_the_whole_frame() -> None:
    frames = torch.zeros(1, 3, 8, 16)
    frames[..., 8:] = 1  # right half white
    stretched = fit(frames, 8, "stretch")
    assert stretched.shape == (1, 3, 8, 8)
    # Both halves are kept, each squashed to half the width.
    assert stretched[..., 0].max() == 0 and stretched[..., -1].min() == 1
    torch.testing.assert_close(stretched.mean(), torch.tensor(0.5))


def test_fit_downsizes_with_antialiasing() -> None:
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::2] = 1
    small = fit(stripes, 16, "stretch")[..., 1:-1]  # the border columns see only one side
    torch.testing.assert_close(small, torch.full_like(small, 0.5))  # averaged, not aliased


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_fit_at_model_size_is_bit_exact(mode: str) -> None:
    frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert fit(frames, 64, mode) is frames
