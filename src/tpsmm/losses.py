"""Training losses and the full training model of the reference.

:class:`GeneratorFullModel` runs the networks on a (source, driving) pair
and returns every loss term after its weight:

- ``perceptual``: L1 between VGG-19 features of prediction and driving
  frame over an image pyramid;
- ``equivariance_value``: keypoints must follow a random TPS warp;
- ``warp_loss``: warped source features must match the driving frame's;
- ``bg``: the background transforms source->driving and driving->source
  must compose to the identity;
- ``pixel`` (ours, only when ``loss_weights.pixel`` is set and non-zero):
  mean |prediction - driving|, the reconstruction metric itself. The
  reference has no such term; it helps when the perceptual loss's VGG-19 is
  random rather than ImageNet-trained (the offline demo model).

Keeping the losses inside one module's ``forward`` lets data-parallel
training spread them over devices along with the networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tpsmm.generator import generate
from tpsmm.geometry import RandomTPS
from tpsmm.model import trainable
from tpsmm.networks import BGMotionPredictor, KPDetector, Vgg19
from tpsmm.networks.blocks import AntiAliasInterpolation2d
from tpsmm.networks.dense_motion import DenseMotionNetwork
from tpsmm.networks.inpainting import InpaintingNetwork


class ImagePyramid(nn.Module):
    """``x: (B, C, H, W)`` -> one anti-aliased downsampling per scale."""

    def __init__(self, scales: list[float], num_channels: int):
        super().__init__()
        self.scales = list(scales)
        self.downs = nn.ModuleList(AntiAliasInterpolation2d(num_channels, s) for s in scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [down(x) for down in self.downs]


def tps_dropout_probability(epoch: int, train_params: dict) -> float | None:
    """TPS dropout probability of an epoch, or None once dropout is off.

    The reference ramps ``maxp / inc_epoch`` per epoch on top of ``startp``
    (not an interpolation from startp to maxp), capped at ``maxp``.
    """
    if epoch >= train_params["dropout_epoch"]:
        return None
    ramp = epoch / train_params["dropout_inc_epoch"] * train_params["dropout_maxp"]
    return min(ramp + train_params["dropout_startp"], train_params["dropout_maxp"])


def perceptual_loss(vgg: Vgg19, pyramid: ImagePyramid, prediction: torch.Tensor,
                    target: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Sum over scales and VGG layers of w_i * mean |VGG(pred) - VGG(target)|."""
    total = prediction.new_zeros(())
    for predicted, real in zip(pyramid(prediction), pyramid(target), strict=True):
        for weight, x, y in zip(weights, vgg(predicted), vgg(real), strict=False):
            total = total + weight * torch.abs(x - y.detach()).mean()
    return total


def equivariance_loss(kp_detector: KPDetector, driving: torch.Tensor,
                      kp_driving: torch.Tensor, transform: RandomTPS
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mean |kp(driving) - T(kp(T^-1 driving))|, T a random TPS.

    Returns the loss, the transformed frame and its keypoints.
    """
    transformed_frame = transform.warp_frame(driving)
    transformed_kp = kp_detector(transformed_frame)["fg_kp"]
    warped = transform.warp_coordinates(transformed_kp)
    return torch.abs(kp_driving - warped).mean(), transformed_frame, transformed_kp


def warp_loss(inpainting: InpaintingNetwork, driving: torch.Tensor, generated: dict
              ) -> torch.Tensor:
    """Sum over encoder levels of mean |E(driving)*occ - warp(E(source))*occ|.

    Both sides are built from detached features and masks, so only the
    flow (dense motion and keypoints) receives gradient.
    """
    # The targets are detached anyway; without a graph their activations are
    # not kept for a backward pass that never comes (less memory, same values).
    with torch.no_grad():
        targets = inpainting.get_encode(driving, generated["occlusion_map"])
    return encoder_distance(targets, generated["warped_encoder_maps"])


def encoder_distance(targets: list[torch.Tensor], warped: list[torch.Tensor]) -> torch.Tensor:
    """Sum over levels of mean |target - warped|; ``targets`` run deepest-first and
    ``warped`` shallowest-first, as the inpainting network returns them."""
    total = targets[0].new_zeros(())
    for i, target in enumerate(targets):
        total = total + torch.abs(target - warped[-i - 1]).mean()
    return total


def background_loss(bg_predictor: BGMotionPredictor, source: torch.Tensor,
                    driving: torch.Tensor, bg_param: torch.Tensor) -> torch.Tensor:
    """mean |I - BG(s, d) BG(d, s)|: the two transforms must be inverses."""
    product = torch.matmul(bg_param, bg_predictor(driving, source))
    eye = torch.eye(3, dtype=product.dtype, device=product.device)
    return torch.abs(eye - product).mean()


class GeneratorFullModel(nn.Module):
    """The networks plus every loss, as in the reference's training.

    ``forward(x, epoch)`` with ``x = {'source', 'driving'}`` (B, 3, H, W) in
    [0, 1] returns ``(losses, generated)``: ``losses`` maps each term to its
    weighted scalar; ``generated`` (detached) holds the inpainting outputs plus
    ``kp_source``, ``kp_driving``, ``bg_param``, ``transformed_frame`` and
    ``transformed_kp``.
    """

    def __init__(self, kp_detector: KPDetector, bg_predictor: BGMotionPredictor | None,
                 dense_motion_network: DenseMotionNetwork,
                 inpainting_network: InpaintingNetwork, train_params: dict,
                 vgg: Vgg19 | None):
        super().__init__()
        self.kp_detector = kp_detector
        self.bg_predictor = bg_predictor
        self.dense_motion_network = dense_motion_network
        self.inpainting_network = inpainting_network
        self.train_params = train_params
        self.loss_weights = train_params["loss_weights"]
        self.bg_start = train_params["bg_start"]
        self.pyramid = ImagePyramid(train_params["scales"], inpainting_network.num_channels)
        self.vgg = vgg

    def forward(self, x: dict[str, torch.Tensor], epoch: int,
                equivariance_transform: RandomTPS | None = None
                ) -> tuple[dict[str, torch.Tensor], dict]:
        """``equivariance_transform`` replaces the random draw (for tests)."""
        source, driving = x["source"], x["driving"]
        weights = self.loss_weights
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        use_bg = self.bg_predictor is not None and epoch >= self.bg_start
        bg_param = self.bg_predictor(source, driving) if use_bg else None
        dropout_p = tps_dropout_probability(epoch, self.train_params)
        generated = generate(self.dense_motion_network, self.inpainting_network, source,
                             kp_source["fg_kp"], kp_driving["fg_kp"], bg_param=bg_param,
                             dropout_p=dropout_p)
        generated.update(kp_source=kp_source, kp_driving=kp_driving, bg_param=bg_param)

        losses: dict[str, torch.Tensor] = {}
        if sum(weights["perceptual"]) != 0:
            losses["perceptual"] = perceptual_loss(
                self.vgg, self.pyramid, generated["prediction"], driving, weights["perceptual"]
            )
        if weights["equivariance_value"] != 0:
            transform = equivariance_transform or RandomTPS.sample(
                driving.shape[0], **self.train_params["transform_params"]
            )
            value, frame, kp = equivariance_loss(
                self.kp_detector, driving, kp_driving["fg_kp"], transform.to(driving.device)
            )
            losses["equivariance_value"] = weights["equivariance_value"] * value
            generated.update(transformed_frame=frame, transformed_kp={"fg_kp": kp})
        if weights["warp_loss"] != 0:
            losses["warp_loss"] = weights["warp_loss"] * warp_loss(
                self.inpainting_network, driving, generated
            )
        if weights.get("pixel"):
            losses["pixel"] = weights["pixel"] * torch.abs(generated["prediction"] - driving).mean()
        # A predictor without weights (LucasKanadeBGMotion) has nothing to learn from it.
        if use_bg and weights["bg"] != 0 and trainable(self.bg_predictor):
            losses["bg"] = weights["bg"] * background_loss(
                self.bg_predictor, source, driving, bg_param
            )
        # Only the losses carry gradients out: DistributedDataParallel must not see the
        # decoder as used through ``prediction`` when no loss uses it.
        return losses, _detached(generated)


def _detached(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts and lists) detached."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_detached(item) for item in value]
    return value
