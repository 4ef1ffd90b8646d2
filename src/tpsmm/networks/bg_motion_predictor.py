"""The background motion predictor: one affine transform per frame pair."""

from __future__ import annotations

import torch
from torch import nn

from tpsmm.networks.resnet import ResNet18


class BGMotionPredictor(nn.Module):
    """A ResNet-18 on the stacked pair, predicting a 2x3 affine matrix.

    ``source, driving: (B, 3, H, W)`` in [0, 1] -> ``(B, 3, 3)`` whose last
    row is [0, 0, 1]. The last layer starts at zero weight and identity bias
    so training starts from "no background motion". ``width`` is the ResNet
    base width (64 = the reference); other keywords are ignored.
    """

    def __init__(self, width: int = 64, **kwargs):
        super().__init__()
        self.bg_encoder = ResNet18(in_channels=6, num_outputs=6, width=width)
        nn.init.zeros_(self.bg_encoder.fc.weight)
        with torch.no_grad():
            self.bg_encoder.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, source_image: torch.Tensor, driving_image: torch.Tensor) -> torch.Tensor:
        batch = source_image.shape[0]
        affine = self.bg_encoder(torch.cat([source_image, driving_image], dim=1)).view(batch, 2, 3)
        last_row = torch.tensor([0.0, 0.0, 1.0], dtype=affine.dtype, device=affine.device)
        return torch.cat([affine, last_row.expand(batch, 1, 3)], dim=1)
