"""The Advanced Video Driving (AVD) network: pose from one set of keypoints,
identity from another."""

from __future__ import annotations

import torch
from torch import nn


def _mlp(in_features: int, out_features: int, hidden: list[int]) -> nn.Sequential:
    """Linear-BN-ReLU triples then a final Linear (Sequential indices 0,1 | 3,4 | ...)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        in_features = width
    layers.append(nn.Linear(in_features, out_features))
    return nn.Sequential(*layers)


class AVDNetwork(nn.Module):
    """``kp_source, kp_random: {'fg_kp': (B, K*5, 2)}`` -> ``{'fg_kp': (B, K*5, 2)}``.

    Encodes identity from ``kp_source`` and pose from ``kp_random`` and
    decodes keypoints with the source's identity in the driving pose. There
    is no output activation.
    """

    def __init__(self, num_tps: int, id_bottle_size: int = 64, pose_bottle_size: int = 64):
        super().__init__()
        size = 5 * 2 * num_tps
        self.num_tps = num_tps
        self.id_encoder = _mlp(size, id_bottle_size, [256, 512, 1024])
        self.pose_encoder = _mlp(size, pose_bottle_size, [256, 512, 1024])
        self.decoder = _mlp(pose_bottle_size + id_bottle_size, size, [1024, 512, 256])

    def forward(self, kp_source: dict[str, torch.Tensor],
                kp_random: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = kp_source["fg_kp"].shape[0]
        pose = self.pose_encoder(kp_random["fg_kp"].reshape(batch, -1))
        identity = self.id_encoder(kp_source["fg_kp"].reshape(batch, -1))
        rec = self.decoder(torch.cat([pose, identity], dim=1))
        return {"fg_kp": rec.view(batch, self.num_tps * 5, 2)}
