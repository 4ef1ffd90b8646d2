"""The keypoint detector: K groups of 5 keypoints, one TPS per group."""

from __future__ import annotations

import torch
from torch import nn

from tpsmm.networks.resnet import ResNet18


class KPDetector(nn.Module):
    """A ResNet-18 regressing ``num_tps * 5`` keypoints.

    ``image: (B, 3, H, W)`` in [0, 1] (no normalisation) ->
    ``{'fg_kp': (B, num_tps*5, 2)}`` in (-1, 1), x then y.
    Points 5k..5k+4 are the control points of TPS k.

    Extra keywords of the config's ``common_params`` (num_channels, bg,
    multi_mask) are accepted and ignored, as in the reference. ``width`` is
    the ResNet base width (64 = the reference).
    """

    def __init__(self, num_tps: int, width: int = 64, **kwargs):
        super().__init__()
        self.num_tps = num_tps
        self.fg_encoder = ResNet18(in_channels=3, num_outputs=num_tps * 5 * 2, width=width)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        fg_kp = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return {"fg_kp": fg_kp.view(image.shape[0], self.num_tps * 5, 2)}
