"""The generator: the source image moved to a set of driving keypoints.

The paper's figure read left to right: the dense motion network turns the two keypoint sets
(and the background transform) into an optical flow and occlusion masks, then the
inpainting network warps the source's encoder maps by that flow and decodes the frame.
Every path that makes frames goes through :func:`generate` — animation, reconstruction,
training and its losses, the AVD stage, the reference loop — so there is one place where
the networks are chained.
"""

from __future__ import annotations

import torch

from tpsmm.devices import autocast
from tpsmm.networks import DenseMotionNetwork, InpaintingNetwork


def generate(dense_motion_network: DenseMotionNetwork, inpainting_network: InpaintingNetwork,
             source: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor, *,
             bg_param: torch.Tensor | None = None, dropout_p: float | None = None,
             encoder_maps: list[torch.Tensor] | None = None,
             precision: str = "fp32") -> dict:
    """Frames of ``source`` moved so that its keypoints go where the driving ones are.

    Args:
        source: ``(B, 3, H, W)`` in [0, 1]; batch 1 is shared by every driving set.
        kp_source: ``(B, K*5, 2)`` in [-1, 1], x then y (batch 1 with a batch-1 source).
        kp_driving: ``(B, K*5, 2)`` in [-1, 1], the keypoints to move to.
        bg_param: ``(B, 3, 3)`` background transform, or None for a still background.
        dropout_p: TPS dropout probability while training (None: no dropout).
        encoder_maps: the inpainting encoder's maps of ``source``, computed once
            (:meth:`InpaintingNetwork.encode`); None computes them here.
        precision: what the learned per-frame convolutions run in (the dense motion
            network's hourglass and heads, the inpainting network; autocast, at
            inference): ``fp32``, ``bf16`` or ``fp16``. The TPS solves, sampling grids,
            softmax and flow stay in fp32 whatever it is.

    Returns:
        The inpainting network's outputs (``prediction`` and ``deformed`` ``(B, 3, H, W)``
        in [0, 1], ``warped_encoder_maps``, ``occlusion_map``, ...) and the dense motion
        network's as ``motion`` (``contribution_maps``, ``deformation``, ...).
    """
    motion = dense_motion_network(source, {"fg_kp": kp_driving}, {"fg_kp": kp_source},
                                  bg_param=bg_param, dropout_flag=dropout_p is not None,
                                  dropout_p=dropout_p or 0,
                                  network_context=autocast(source.device, precision))
    with autocast(source.device, precision):
        generated = inpainting_network(source, motion, encoder_maps=encoder_maps)
    return dict(generated, motion=motion)
