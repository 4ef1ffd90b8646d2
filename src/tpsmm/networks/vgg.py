"""VGG-19 features for the perceptual loss, with torchvision's names.

The perceptual loss compares relu1_1, relu2_1, relu3_1, relu4_1 and
relu5_1 of an ImageNet-trained VGG-19. The layers are built here as
``features.<index>`` exactly as in ``torchvision.models.vgg19().features``,
so a torchvision weight file (``vgg19-dcbb9e9d.pth``) loads strictly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.checkpoint_file import load_tensors
from tpsmm.errors import ConfigError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# Configuration "E" of the VGG paper: channels per conv, "M" for max-pooling.
_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
           512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# Ends (exclusive) of the slices giving relu1_1, relu2_1, ..., relu5_1.
_SLICE_ENDS = [2, 7, 12, 21, 30]


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in _LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)


class Vgg19(nn.Module):
    """Frozen VGG-19 feature extractor.

    ``x: (B, 3, H, W)`` in [0, 1] -> 5 feature maps (relu1_1 ... relu5_1).
    ImageNet mean/std normalisation happens inside.
    """

    def __init__(self):
        super().__init__()
        self.features = _features()
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean) / self.std
        outputs = []
        start = 0
        for end in _SLICE_ENDS:
            for layer in self.features[start:end]:
                # In-place ReLUs would overwrite the slice outputs we keep.
                x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            outputs.append(x)
            start = end
        return outputs


def default_vgg19_path() -> Path:
    """Where torch hub caches the torchvision weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(VGG19_URL)


def load_vgg19(weights: str | os.PathLike, device: torch.device | str = "cpu") -> Vgg19:
    """Build :class:`Vgg19` with ``weights``.

    ``weights`` is ``"imagenet"`` (torchvision's file from the torch hub
    cache, downloaded there if possible), a path to a torchvision-format
    state dict (full ``vgg19()`` or just its ``features``), or ``"random"``
    (frozen random weights: a deliberate choice, never a fallback).
    """
    vgg = Vgg19()
    if str(weights) == "random":
        return vgg.to(device)
    if str(weights) == "imagenet":
        path = default_vgg19_path()
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(VGG19_URL, str(path), progress=False)
            except Exception as error:
                raise ConfigError(
                    f"{path}: VGG-19 ImageNet weights for the perceptual loss are missing and "
                    f"could not be downloaded ({type(error).__name__}). Download {VGG19_URL} "
                    f"on a connected machine and copy it to {path}, or pass its path with "
                    "--vgg-weights (config key train_params.perceptual_weights), or choose "
                    "'random' explicitly."
                ) from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"{path}: VGG-19 weight file not found")
    state = load_tensors(path, "cpu", "VGG-19 weights", ConfigError)
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a torchvision VGG-19 state dict (it holds a "
                          f"{type(state).__name__})")
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        vgg.features.load_state_dict(features, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"{path}: not a torchvision VGG-19 state dict ({first})") from None
    return vgg.to(device)
