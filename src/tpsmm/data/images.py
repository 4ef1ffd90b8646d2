"""Still images: loading to RGB, numpy <-> torch conversion and fitting to the model size.

Conventions used across the package:

* numpy images and frames are channel-last RGB, ``(H, W, 3)`` or ``(N, H, W, 3)``, either
  ``uint8`` in [0, 255] or ``float32`` in [0, 1];
* torch tensors are channel-first ``(N, 3, H, W)`` ``float32`` in [0, 1].
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from tpsmm.errors import InputError, MissingExtraError

HEIF_SUFFIXES = (".heic", ".heif")
"""HEIF photos (iPhones' default), read through pillow-heif (``pip install 'tpsmm[heic]'``)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".avif",
                  *HEIF_SUFFIXES)
"""File suffixes read as still images (a ``.gif`` is read as a video)."""

FIT_MODES = ("crop", "pad", "stretch")

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Modes whose conversion must go through RGBA: a palette may carry transparency, which Pillow
# refuses to drop silently when converting straight to RGB.
_ALPHA_OR_PALETTE_MODES = ("P", "PA", "LA", "La", "RGBa", "RGBA")


def register_heif_reader() -> bool:
    """Teach Pillow to open HEIC/HEIF files if pillow-heif is installed; returns whether it is.

    Pillow reads AVIF itself but not HEIF, whose HEVC decoder comes in pillow-heif's wheel.
    The reader applies the file's rotation and resets its EXIF orientation, so
    ``exif_transpose`` after it turns nothing twice.
    """
    try:
        pillow_heif = importlib.import_module("pillow_heif")
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB integers.

    Returns:
        ``(H, W, 3)`` ``uint16`` in [0, 65535] for 16-bit greyscale files, else ``uint8``.
        EXIF orientation is applied. An alpha channel is dropped without compositing (the RGB
        channels are kept as they are), as the reference implementation does.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    if path.suffix.lower() in HEIF_SUFFIXES and not register_heif_reader():
        raise MissingExtraError(f"{path}: HEIC/HEIF photos need pillow-heif: "
                                "pip install 'tpsmm[heic]' (or save the photo as JPEG)")
    try:
        with Image.open(path) as opened:
            # Returns a loaded copy, so decoding errors surface here and the file can close.
            image = ImageOps.exif_transpose(opened)
    except Image.UnidentifiedImageError:
        raise InputError(f"{path}: not an image (cannot identify image file)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot read image ({error})") from None

    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion to RGB clips these to 0..255 instead of scaling them.
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        raise InputError(f"{path}: 32-bit float images are not supported")
    if image.mode in _ALPHA_OR_PALETTE_MODES:
        return np.asarray(image.convert("RGBA"))[..., :3].copy()
    return np.asarray(image.convert("RGB")).copy()


def load_image(path: str | Path) -> np.ndarray:
    """Load an image file as RGB.

    Greyscale (1-bit, 8-bit, 16-bit), palette, CMYK and alpha images are converted; the alpha
    channel is dropped (RGB kept as is, not composited). 16-bit files are scaled by 1/65535.

    Returns:
        ``(H, W, 3)`` ``float32`` in [0, 1].

    Raises:
        InputError: the file is missing, a directory, or not a readable image.
    """
    rgb = _read_rgb(path)
    return rgb.astype(np.float32) / np.float32(np.iinfo(rgb.dtype).max)


def load_image_uint8(path: str | Path) -> np.ndarray:
    """Load an image file as 8-bit RGB, converted as :func:`load_image` does.

    Returns:
        ``(H, W, 3)`` ``uint8``; 16-bit values are rounded to the nearest 8-bit value.
    """
    rgb = _read_rgb(path)
    if rgb.dtype == np.uint16:
        # 65535 / 255 == 257 exactly, so this is round(x * 255 / 65535).
        return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return rgb


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """Convert channel-last frames to a model batch.

    Args:
        frames: ``(N, H, W, 3)``, ``uint8`` in [0, 255] or floating point in [0, 1].

    Returns:
        ``(N, 3, H, W)`` ``float32`` in [0, 1].
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    tensor = torch.tensor(frames).permute(0, 3, 1, 2)
    if frames.dtype == np.uint8:
        return tensor.float().div_(255)
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"expected uint8 or float frames, got {frames.dtype}")
    return tensor.float().contiguous()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Convert a model batch to channel-last 8-bit frames.

    Values are rounded to the nearest integer (ties to even), not truncated, so that 8-bit
    input survives ``to_uint8(to_tensor(x))`` exactly; out-of-range values are clamped.

    Args:
        frames: ``(N, 3, H, W)`` floating point, nominally in [0, 1].

    Returns:
        ``(N, H, W, 3)`` ``uint8``.
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames of shape (N, 3, H, W), got {tuple(frames.shape)}")
    scaled = (frames.detach() * 255).round().clamp(0, 255).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class Box:
    """A window on an image, in pixels. It may reach outside the image, which means padding."""

    top: int
    left: int
    height: int
    width: int


def square_box(height: int, width: int, mode: str = "crop") -> Box:
    """The window that :func:`fit` takes from a ``height`` x ``width`` image before resizing.

    ``crop`` takes the centred square of side ``min(height, width)``; ``pad`` the centred
    square of side ``max(height, width)`` (reaching outside the image); ``stretch`` the whole
    image, which resizing then squashes to a square. Use it to fit an image and a video, or
    to map results back to the input, with the same geometry.
    """
    if mode == "stretch":
        return Box(0, 0, height, width)
    if mode == "crop":
        side = min(height, width)
    elif mode == "pad":
        side = max(height, width)
    else:
        raise ValueError(f"unknown fit mode {mode!r}; expected one of {', '.join(FIT_MODES)}")
    return Box((height - side) // 2, (width - side) // 2, side, side)


def take_box(frames: torch.Tensor, box: Box) -> torch.Tensor:
    """Cut ``box`` out of ``(N, C, H, W)`` frames; parts outside the frames are zero (black)."""
    height, width = frames.shape[-2:]
    # Negative padding crops, so one call handles both crop and pad.
    return F.pad(
        frames,
        (-box.left, box.left + box.width - width, -box.top, box.top + box.height - height),
    )


def resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` float frames bilinearly with antialiasing.

    Frames that already have the size are returned as they are, without resampling.
    """
    if frames.shape[-2:] == (height, width):
        return frames
    return F.interpolate(
        frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False
    )


def fit(frames: torch.Tensor, size: int, mode: str = "crop") -> torch.Tensor:
    """Make frames square at the model size.

    Args:
        frames: ``(N, 3, H, W)`` ``float32`` in [0, 1].
        size: side of the output.
        mode: ``crop`` (centre crop, then resize), ``pad`` (black borders, then resize) or
            ``stretch`` (resize, ignoring the aspect ratio, as the reference does).

    Returns:
        ``(N, 3, size, size)``; the input itself if it is already that size.
    """
    height, width = frames.shape[-2:]
    box = square_box(height, width, mode)
    if (height, width) == (size, size):
        return frames
    return resize(take_box(frames, box), size, size)
