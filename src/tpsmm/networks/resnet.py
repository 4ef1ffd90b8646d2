"""ResNet-18 with torchvision's parameter names, without torchvision.

The reference's keypoint detector and background predictor wrap
``torchvision.models.resnet18`` (randomly initialised). Keeping the exact
module names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0``,
``fc``...) lets reference checkpoints and torchvision weight files load
strictly. ``width`` (64 in torchvision) scales every stage, for small
models; the published configs use 64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """``x: (B, in_channels, H, W)`` -> ``(B, num_outputs)``."""

    def __init__(self, in_channels: int = 3, num_outputs: int = 1000, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, 2 * width, 4 * width, 8 * width]
        in_planes = width
        for index, (stage_planes, stride) in enumerate(zip(planes, [1, 2, 2, 2], strict=True)):
            stage = nn.Sequential(
                BasicBlock(in_planes, stage_planes, stride), BasicBlock(stage_planes, stage_planes)
            )
            setattr(self, f"layer{index + 1}", stage)
            in_planes = stage_planes
        self.fc = nn.Linear(in_planes, num_outputs)
        self._init_like_torchvision()

    def _init_like_torchvision(self) -> None:
        # torchvision's resnet init; matters when training from scratch.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
