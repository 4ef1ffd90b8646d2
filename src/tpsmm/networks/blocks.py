"""The small convolutional blocks the TPSMM networks share.

Attribute names (``conv``, ``norm``, ``conv1``, ``norm1``, ...) are those of
the reference, so its checkpoints load strictly. Every normalisation is an
affine InstanceNorm2d without running statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SameBlock2d(nn.Module):
    """conv -> InstanceNorm -> ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.InstanceNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    """conv -> InstanceNorm -> ReLU -> 2x2 average pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 2)


class UpBlock2d(SameBlock2d):
    """Nearest x2 upsampling -> conv -> InstanceNorm -> ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv(relu(IN(conv(relu(IN(x))))))."""

    def __init__(self, features: int, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm1 = nn.InstanceNorm2d(features, affine=True)
        self.norm2 = nn.InstanceNorm2d(features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Encoder(nn.Module):
    """``num_blocks`` DownBlocks; returns [x, d0, d1, ...] (the U-Net skips)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _width(block_expansion, max_features, i),
                _width(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """UpBlocks, each followed by concatenation with the matching skip.

    ``out_channels`` lists the channels of the decoder's inputs and of the
    final output; the dense motion network sizes its heads from it.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256):
        super().__init__()
        blocks = []
        self.out_channels = []
        for i in reversed(range(num_blocks)):
            factor = 1 if i == num_blocks - 1 else 2
            in_filters = factor * _width(block_expansion, max_features, i + 1)
            self.out_channels.append(in_filters)
            blocks.append(UpBlock2d(in_filters, _width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_channels.append(block_expansion + in_features)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """``skips`` from :class:`Encoder`; returns every concatenated output,
        coarsest first (the reference's ``mode=1``)."""
        out = skips[-1]
        outs = []
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
            outs.append(out)
        return outs


class Hourglass(nn.Module):
    """U-Net: :class:`Encoder` then :class:`Decoder`."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3,
                 max_features: int = 256):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(x))


def gaussian_kernel(scale: float) -> torch.Tensor:
    """The anti-aliasing blur for downsampling by ``scale``: (k, k), sums to 1.

    sigma = (1/scale - 1) / 2 and k = 2 round(4 sigma) + 1. For scale 1 the
    kernel is NaN (sigma = 0); it is then never used, but the reference
    stores it, so we do too.
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    ramp = torch.arange(size, dtype=torch.float32)
    profile = torch.exp(-((ramp - (size - 1) / 2) ** 2) / (2 * sigma**2))
    kernel = profile.view(-1, 1) * profile.view(1, -1)
    return kernel / kernel.sum()


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur, then nearest downsampling by ``scale``.

    The blur is a depthwise convolution with zero padding; its kernel is the
    buffer ``weight: (C, 1, k, k)``, part of the dense motion network's state
    dict in the reference.
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        kernel = gaussian_kernel(scale)
        size = kernel.shape[0]
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).contiguous())
        self.groups = channels
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, self.weight.to(out.dtype), groups=self.groups)
        return F.interpolate(out, scale_factor=(self.scale, self.scale), mode="nearest")
