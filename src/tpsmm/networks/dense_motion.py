"""The dense motion network: K+1 transforms blended into one optical flow,
plus multi-resolution occlusion masks."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.errors import ConfigError
from tpsmm.geometry import KeypointTPS, apply_projective, keypoint_heatmaps, make_coordinate_grid
from tpsmm.networks.blocks import AntiAliasInterpolation2d, Hourglass, UpBlock2d


def tps_dropout_softmax(
    logits: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Softmax over channels with TPS dropout (Eqs. 7-8 of the paper).

    ``logits: (B, K+1, h, w)``. Each TPS channel (not the background, index
    0) is dropped for a whole sample with probability ``p``; the softmax is
    renormalised over the kept channels with 1e-6 added to the denominator.
    The reference also rescales the logits by 1/(1-p) *after* taking the
    exponentials, which has no effect, so it is omitted here. The mask is
    drawn on the CPU, like the reference's global-RNG draw.
    """
    keep = (torch.rand(logits.shape[:2], generator=generator) < (1 - p)).to(logits)
    keep[:, 0] = 1
    exp = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    exp = exp * keep.to(logits.device)[:, :, None, None]
    return exp / (exp.sum(dim=1, keepdim=True) + 1e-6)


def blend_transformations(contribution_maps: torch.Tensor,
                          transformations: torch.Tensor) -> torch.Tensor:
    """The optical flow: the K+1 sampling grids weighted by the contribution maps.

    ``contribution_maps: (B, K+1, h, w)`` summing to 1 over K+1, ``transformations:
    (B, K+1, h, w, 2)`` -> ``(B, h, w, 2)`` source coordinates, in the grids' dtype.
    """
    return torch.einsum("bkhw,bkhwc->bhwc", contribution_maps.to(transformations.dtype),
                        transformations)


class DenseMotionNetwork(nn.Module):
    """Predicts the flow from driving to source and the occlusion masks.

    Keyword arguments are the YAML keys of ``common_params`` and
    ``dense_motion_params``. The network works at ``scale_factor`` of the
    input resolution (64x64 for a 256 input).

    ``clamp_background`` (ours; the reference's False is the default) clamps
    the background transform's grid to the frame, so that where the driving
    frame shows more than the source (the camera zooms out or pans), the
    background is the source's border pixel instead of grid_sample's zeros.
    """

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_tps: int,
                 num_channels: int, scale_factor: float = 0.25, bg: bool = False,
                 multi_mask: bool = True, kp_variance: float = 0.01,
                 clamp_background: bool = False):
        super().__init__()
        self.clamp_background = clamp_background
        self.scale_factor = scale_factor
        self.multi_mask = multi_mask
        self.num_tps = num_tps
        self.bg = bg
        self.kp_variance = kp_variance
        in_features = num_channels * (num_tps + 1) + num_tps * 5 + 1
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        channels = self.hourglass.out_channels
        self.maps = nn.Conv2d(channels[-1], num_tps + 1, kernel_size=7, padding=3)

        if multi_mask:
            # Masks at 1/2 and 1x the motion resolution from the hourglass,
            # then one per further x2 upsampling up to the input resolution.
            self.up_nums = int(math.log(1 / scale_factor, 2))
            self.occlusion_num = 4
            up_channels = [channels[-1] // 2**i for i in range(self.up_nums)]
            self.up = nn.ModuleList(UpBlock2d(c, c // 2) for c in up_channels)
            from_hourglass = self.occlusion_num - self.up_nums
            if not 0 <= from_hourglass <= num_blocks:
                raise ConfigError(
                    f"dense_motion_params: the {self.occlusion_num} occlusion masks at "
                    f"scale_factor {scale_factor} need {from_hourglass} hourglass outputs, "
                    f"but num_blocks {num_blocks} gives only {num_blocks}; use scale_factor "
                    f"between 1/16 and 1 and num_blocks >= {max(from_hourglass, 1)}")
            mask_channels = [channels[-i - 1] for i in reversed(range(from_hourglass))]
            mask_channels += [channels[-1] // 2 ** (i + 1) for i in range(self.up_nums)]
        else:
            mask_channels = [channels[-1]]
        self.occlusion = nn.ModuleList(
            nn.Conv2d(c, 1, kernel_size=7, padding=3) for c in mask_channels
        )
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def create_transformations(self, spatial_size: tuple[int, int], kp_driving: torch.Tensor,
                               kp_source: torch.Tensor,
                               bg_param: torch.Tensor | None) -> torch.Tensor:
        """The K+1 backward sampling grids ``(B, K+1, h, w, 2)``.

        Index 0 is the background: the identity, or the identity pushed
        through ``bg_param: (B, 3, 3)``. Indices 1..K are the keypoint TPS.
        """
        batch = kp_driving.shape[0]
        tps_grids = KeypointTPS.fit(kp_driving, kp_source).warp_grid(spatial_size)
        identity = make_coordinate_grid(spatial_size, tps_grids.dtype, tps_grids.device)
        if bg_param is None:
            background = identity.expand(batch, *identity.shape)
        else:
            background = apply_projective(bg_param.to(identity.dtype), identity)
            if self.clamp_background:
                background = background.clamp(-1, 1)
        return torch.cat([background.unsqueeze(1), tps_grids], dim=1)

    def forward(self, source_image: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor], bg_param: torch.Tensor | None = None,
                dropout_flag: bool = False, dropout_p: float = 0,
                network_context: contextlib.AbstractContextManager | None = None) -> dict:
        """``source_image: (B, 3, H, W)`` in [0, 1]; keypoints ``(B, K*5, 2)``.

        A batch-1 ``source_image`` is shared by every keypoint set, so inference downsamples
        one source once however many driving frames it animates. ``network_context``: the
        context the learned part (:meth:`predict`) runs in, reduced-precision autocast at
        inference; the transforms, the softmax and the flow stay in the input's dtype.

        Returns, with h, w = the motion resolution:
        - ``deformed_source``: (B, K+1, 3, h, w), the source under each transform;
        - ``contribution_maps``: (B, K+1, h, w), softmax weights of the transforms;
        - ``deformation``: (B, h, w, 2), the blended flow (source coordinates);
        - ``occlusion_map``: list of (B, 1, h', w') in [0, 1] at h/2, h, 2h, 4h.
        """
        hourglass_input, transformations, deformed_source = self.prepare(
            source_image, kp_driving["fg_kp"], kp_source["fg_kp"], bg_param)
        with network_context or contextlib.nullcontext():
            logits, occlusion_map = self.predict(hourglass_input)
        logits = logits.to(hourglass_input.dtype)
        occlusion_map = [mask.to(hourglass_input.dtype) for mask in occlusion_map]
        if dropout_flag:
            contribution_maps = tps_dropout_softmax(logits, dropout_p)
        else:
            contribution_maps = F.softmax(logits, dim=1)
        return {
            "deformed_source": deformed_source,
            "contribution_maps": contribution_maps,
            "deformation": blend_transformations(contribution_maps, transformations),
            "occlusion_map": occlusion_map,
        }

    def prepare(self, source_image: torch.Tensor, kp_driving: torch.Tensor,
                kp_source: torch.Tensor, bg_param: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The K+1 transforms and what the hourglass sees of them (no learned weights).

        ``source_image: (B or 1, 3, H, W)``, keypoints ``(B, K*5, 2)`` ->
        ``hourglass_input (B, 1 + K*5 + 3*(K+1), h, w)`` (zeros, keypoint heatmap
        differences, deformed sources), ``transformations (B, K+1, h, w, 2)`` as
        :meth:`create_transformations`, ``deformed_source (B, K+1, 3, h, w)``.
        """
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        _, _, h, w = source_image.shape
        batch = kp_driving.shape[0]

        heatmaps = keypoint_heatmaps(kp_driving, (h, w), self.kp_variance) - keypoint_heatmaps(
            kp_source, (h, w), self.kp_variance
        )
        transformations = self.create_transformations((h, w), kp_driving, kp_source, bg_param)
        frames = source_image.unsqueeze(1).expand(batch, self.num_tps + 1, -1, -1, -1)
        deformed_source = F.grid_sample(
            frames.reshape(batch * (self.num_tps + 1), -1, h, w),
            transformations.reshape(batch * (self.num_tps + 1), h, w, 2).to(source_image.dtype),
            align_corners=True,
        ).view(batch, self.num_tps + 1, -1, h, w)

        zeros = heatmaps.new_zeros(batch, 1, h, w)
        hourglass_input = torch.cat(
            [zeros, heatmaps.to(source_image.dtype), deformed_source.reshape(batch, -1, h, w)],
            dim=1,
        )
        return hourglass_input, transformations, deformed_source

    def predict(self, hourglass_input: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The learned part: ``hourglass_input`` as :meth:`prepare` gives it ->
        contribution logits ``(B, K+1, h, w)`` and the occlusion masks (see :meth:`forward`)."""
        prediction = self.hourglass(hourglass_input)
        return self.maps(prediction[-1]), self._occlusion_maps(prediction)

    def _occlusion_maps(self, prediction: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.multi_mask:
            return [torch.sigmoid(self.occlusion[0](prediction[-1]))]
        from_hourglass = self.occlusion_num - self.up_nums
        masks = [
            torch.sigmoid(self.occlusion[i](prediction[i - from_hourglass]))
            for i in range(from_hourglass)
        ]
        features = prediction[-1]
        for i, up in enumerate(self.up):
            features = up(features)
            masks.append(torch.sigmoid(self.occlusion[from_hourglass + i](features)))
        return masks
