"""The inpainting network: warps the source's encoder features with the
flow, masks them with the occlusion maps and decodes the driving frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.networks.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d


def resize_flow(deformation: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``deformation: (B, h, w, 2)`` -> ``(B, *size, 2)``, bilinearly (align_corners=True);
    unchanged when it is already that size."""
    if deformation.shape[1:3] == size:
        return deformation
    return F.interpolate(deformation.permute(0, 3, 1, 2), size=size, mode="bilinear",
                         align_corners=True).permute(0, 2, 3, 1)


def deform_input(features: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``features: (B, C, H, W)`` with ``deformation: (B, h, w, 2)``.

    The flow is resized to (H, W) (:func:`resize_flow`) when the resolutions
    differ. A batch-1 ``features`` is shared by every flow.
    """
    if features.shape[0] != deformation.shape[0]:
        features = features.expand(deformation.shape[0], -1, -1, -1)
    deformation = resize_flow(deformation, tuple(features.shape[2:]))
    return F.grid_sample(features, deformation.to(features.dtype), align_corners=True)


class InpaintingNetwork(nn.Module):
    """Keyword arguments are the YAML keys of ``generator_params`` and
    ``common_params``; ``num_tps`` and ``bg`` are accepted and ignored."""

    def __init__(self, num_channels: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, multi_mask: bool = True, **kwargs):
        super().__init__()
        self.num_down_blocks = num_down_blocks
        self.multi_mask = multi_mask
        self.num_channels = num_channels
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        down_blocks, up_blocks, resblocks = [], [], []
        for i in range(num_down_blocks):
            in_features = min(max_features, block_expansion * 2**i)
            out_features = min(max_features, block_expansion * 2 ** (i + 1))
            down_blocks.append(DownBlock2d(in_features, out_features))
            # Every decoder level but the deepest also receives a warped skip.
            decoder_in = out_features if i == num_down_blocks - 1 else 2 * out_features
            up_blocks.append(UpBlock2d(decoder_in, in_features))
            resblocks += [ResBlock2d(decoder_in), ResBlock2d(decoder_in)]
        self.down_blocks = nn.ModuleList(down_blocks)
        # Built shallow-to-deep, used deep-to-shallow; the reversed order is
        # what the checkpoints' key indices mean.
        self.up_blocks = nn.ModuleList(up_blocks[::-1])
        self.resblock = nn.ModuleList(resblocks[::-1])
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Encoder maps ``[e0 (be@H), e1 (2be@H/2), ...]``, shallowest first.

        They depend on the source only, so inference computes them once.
        """
        maps = [self.first(image)]
        for block in self.down_blocks:
            maps.append(block(maps[-1]))
        return maps

    def _mask(self, features: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        if not self.multi_mask and features.shape[2:] != occlusion.shape[2:]:
            occlusion = F.interpolate(occlusion, size=features.shape[2:], mode="bilinear",
                                      align_corners=True)
        return features * occlusion

    def _warp_and_mask(self, features: torch.Tensor, deformation: torch.Tensor,
                       occlusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The warped, masked map, and its copy for the warp loss.

        The copy is computed from detached features and mask, so the warp
        loss reaches only the flow. Without autograd the two are equal and
        the copy costs nothing.
        """
        warped = self._mask(deform_input(features, deformation), occlusion)
        if not torch.is_grad_enabled():
            return warped, warped
        copy = self._mask(deform_input(features.detach(), deformation), occlusion.detach())
        return warped, copy

    def warp(self, encoder_maps: list[torch.Tensor], deformation: torch.Tensor,
             occlusion_map: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The encoder maps moved by the flow and masked, and their copies for the warp loss.

        Args:
            encoder_maps: :meth:`encode`'s maps, shallowest first (batch 1 broadcasts).
            deformation: ``(B, h, w, 2)``, the dense motion network's flow.
            occlusion_map: its masks, coarsest first.

        Returns:
            Two lists, deepest map first, as the decoder takes them: ``(B, C_i, H_i, W_i)``
            each, the warped maps and the copies of :meth:`_warp_and_mask`.
        """
        warped, copies = [], []
        for i, features in enumerate(reversed(encoder_maps)):
            mask = occlusion_map[i if self.multi_mask else 0]
            out, copy = self._warp_and_mask(features, deformation, mask)
            warped.append(out)
            copies.append(copy)
        return warped, copies

    def decode(self, warped: list[torch.Tensor], occlusion_last: torch.Tensor,
               deformed: torch.Tensor) -> torch.Tensor:
        """The driving frame from the warped maps (:meth:`warp`'s first list, deepest first),
        the finest occlusion mask ``(B, 1, h, w)`` and the warped source ``deformed (B, 3, H,
        W)``: ``(B, 3, H, W)`` in [0, 1]. The decoder's convolutions are all here, and no
        sampling: this is the part that reduced precision may run."""
        out = warped[0]
        for i in range(self.num_down_blocks):
            out = self.up_blocks[i](self.resblock[2 * i + 1](self.resblock[2 * i](out)))
            if i < self.num_down_blocks - 1:
                out = torch.cat([out, warped[i + 1]], dim=1)
        if not self.multi_mask:
            occlusion_last = F.interpolate(occlusion_last, size=out.shape[2:], mode="bilinear",
                                           align_corners=True)
        out = torch.sigmoid(self.final(out * (1 - occlusion_last) + warped[-1]))
        return out * (1 - occlusion_last) + deformed * occlusion_last

    def forward(self, source_image: torch.Tensor, dense_motion: dict,
                encoder_maps: list[torch.Tensor] | None = None) -> dict:
        """``source_image: (B, 3, H, W)`` in [0, 1]; ``dense_motion`` from
        :class:`DenseMotionNetwork`; ``encoder_maps`` optionally precomputed
        by :meth:`encode` (batch 1 broadcasts).

        Returns ``prediction`` and ``deformed`` (B, 3, H, W) in [0, 1],
        ``warped_encoder_maps`` (deepest first) and the dense-motion outputs
        ``contribution_maps``, ``deformed_source``, ``occlusion_map``.
        """
        if encoder_maps is None:
            encoder_maps = self.encode(source_image)
        deformation = dense_motion["deformation"]
        occlusion_map = dense_motion["occlusion_map"]
        warped, copies = self.warp(encoder_maps, deformation, occlusion_map)
        deformed = deform_input(source_image, deformation)
        return {
            "contribution_maps": dense_motion["contribution_maps"],
            "deformed_source": dense_motion["deformed_source"],
            "occlusion_map": occlusion_map,
            "deformed": deformed,
            "warped_encoder_maps": copies,
            "prediction": self.decode(warped, occlusion_map[-1], deformed),
        }

    def get_encode(self, driver_image: torch.Tensor,
                   occlusion_map: list[torch.Tensor]) -> list[torch.Tensor]:
        """Targets of the warp loss: the driving frame's encoder maps, each
        stage fed a detached input, masked by the detached occlusion maps
        (shallowest map with the finest mask). Shallowest first."""
        out = self.first(driver_image)
        maps = [self._mask(out.detach(), occlusion_map[-1].detach())]
        for i, block in enumerate(self.down_blocks):
            out = block(out.detach())
            maps.append(self._mask(out.detach(), occlusion_map[2 - i].detach()).detach())
        return maps
