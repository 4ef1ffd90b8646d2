"""Running a loaded TPSMM fast at inference, without changing what it computes.

:func:`optimize_for_inference` rewrites layers of a model, in place, into equivalent ones
that are cheaper to run or safe in reduced precision:

- every :class:`~tpsmm.networks.blocks.UpBlock2d` (nearest x2 upsampling, then a 3x3
  convolution) becomes one stride-2 4x4 *transposed* convolution with the same result.
  Nearest upsampling repeats each pixel twice, so every output pixel sees only 2x2
  distinct inputs; the 4x4 kernel adds up the 3x3 weights that fall on the same input.
  That is 2.25x fewer multiply-adds in layers that make a fifth of the inpainting
  decoder's work and three quarters of the dense motion network's.
- on the CPU, every convolution with a large kernel and few output channels (the 7x7 heads:
  the inpainting network's ``final``, the dense motion network's ``maps`` and ``occlusion``)
  becomes a 1 x k convolution to k times the channels, then a k x 1 one that sums them
  (:class:`RowSplitConv2d`): the same products plus a few additions, laid out so that the
  CPU's vector registers are filled. Measured at 256x256, batch 4, 2 cores (AVX-512),
  one-off: 64 -> 3 channels 2.7x faster in torch fp32, 2.0x in OpenVINO bf16; 37 -> 1
  channels 5.0x and 3.2x; the 8-frame OpenVINO bf16 animation of ``benchmarks/animate.py``
  4.77 -> 4.51 s (interleaved A/B in one process, best of 3).
- every InstanceNorm2d becomes the same normalisation through ``group_norm`` with one group
  per channel, computed in fp32. The CPU has a channels-last kernel for group norm (instance
  norm converts to channels-first and back on every call), and fp32 statistics keep the
  normalisation exact when the convolutions run in bf16 or fp16.
- on the CPU in fp32, the inpainting network's 3x3 convolutions (its residual blocks are
  ~80% of the work per frame) run through Winograd's algorithms (NNPACK's; a batched
  F(4x4, 3x3) on maps under 32x32), which need several times fewer multiplications than
  oneDNN's direct ones (oneDNN has Winograd only for AVX-512). Measured on 2 cores (AVX2)
  at 256x256: the decoder runs 1.5x faster, and its frames stay within 2e-5 of the
  reference's, as with direct convolution (fp32 rounding, as between any two convolution
  algorithms).

Parameters are shared, not copied, and state-dict keys are unchanged. Only the result of
the rewrite at inference counts: training a rewritten model would not update the
transposed kernels, which are computed once from the 3x3 weights.

Reduced precision (:func:`tpsmm.devices.autocast`) is only ever applied, by
:func:`tpsmm.generator.generate`, to the learned per-frame convolutions: the dense motion
network's hourglass and heads and the inpainting network's. The keypoint detector, the TPS
solves, the sampling grids, the softmax of the contribution maps, the flow and every
``grid_sample`` stay in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.model import TPSMM
from tpsmm.networks.blocks import UpBlock2d
from tpsmm.networks.winograd import WinogradConv2d, winograd_available


def nearest_up_conv_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The transposed-convolution kernel equal to nearest x2 upsampling then ``weight``.

    Args:
        weight: ``(C_out, C_in, 3, 3)``, a padding-1 convolution applied after upsampling.

    Returns:
        ``(C_in, C_out, 4, 4)``, for ``conv_transpose2d(x, kernel, stride=2, padding=1)``.
        Along each axis, output pixel 2i sees input i-1 through tap 0 and input i through
        taps 1 and 2; output pixel 2i+1 sees input i through taps 0 and 1 and input i+1
        through tap 2. A transposed convolution with kernel [w2, w1+w2, w0+w1, w0] places
        exactly these sums; zero padding maps to zero padding.
    """

    def along(w: torch.Tensor, dim: int) -> torch.Tensor:
        w0, w1, w2 = w.unbind(dim)
        return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)

    return along(along(weight, 2), 3).transpose(0, 1).contiguous()


class TransposedUpBlock2d(nn.Module):
    """:class:`UpBlock2d` with its upsampling and convolution fused (see the module doc).

    Keeps the original block's ``conv`` and ``norm``, so its state-dict keys are unchanged.
    """

    def __init__(self, block: UpBlock2d):
        super().__init__()
        self.conv = block.conv
        self.norm = block.norm
        kernel = nearest_up_conv_kernel(block.conv.weight.detach())
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C_in, H, W)`` -> ``(B, C_out, 2H, 2W)``, non-negative (after ReLU)."""
        out = F.conv_transpose2d(x, self.kernel, self.conv.bias, stride=2, padding=1)
        return F.relu(self.norm(out))


class RowSplitConv2d(nn.Module):
    """A k x k "same" convolution with few output channels, as a 1 x k one then a k x 1 sum.

    Row ``dy`` of the kernel is a 1 x k convolution; the first step computes all k of them
    for every output channel (``C_out * k`` channels), the second adds row ``dy``'s result
    from ``dy - k // 2`` rows away (a k x 1 convolution with 0/1 weights). The output is
    the same sum in another order. Why: CPU convolution kernels compute 16 output
    channels per vector register (8 on AVX2), so a layer with 1 to 3 output channels
    leaves most of each register empty; ``C_out * k`` channels fill them.

    Keeps the original layer's ``weight`` and ``bias``, so state-dict keys are unchanged.
    """

    #: Layers with at most this many output channels are split: under one AVX-512 register
    #: of fp32.
    MAX_OUT_CHANNELS = 15

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        out_channels, in_channels, size, _ = conv.weight.shape
        # (C_out, C_in, dy, dx) -> (C_out * k, C_in, 1, dx), channel o * k + dy.
        rows = conv.weight.detach().permute(0, 2, 1, 3).reshape(out_channels * size, in_channels,
                                                               1, size)
        # Output o takes channel o * k + dy at row offset dy.
        column_sum = torch.zeros(out_channels, out_channels * size, size, 1,
                                 dtype=rows.dtype, device=rows.device)
        taken = torch.arange(out_channels * size)
        column_sum[taken // size, taken, taken % size, 0] = 1
        self.register_buffer("row_kernel", rows.contiguous(), persistent=False)
        self.register_buffer("column_sum", column_sum, persistent=False)
        self.padding = size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        rows = F.conv2d(x, self.row_kernel, padding=(0, self.padding))
        return F.conv2d(rows, self.column_sum, self.bias, padding=(self.padding, 0))

    @classmethod
    def fits(cls, conv: nn.Module) -> bool:
        return (type(conv) is nn.Conv2d and conv.kernel_size[0] == conv.kernel_size[1] >= 5
                and conv.kernel_size[0] % 2 == 1 and conv.out_channels <= cls.MAX_OUT_CHANNELS
                # The column sum's C_out^2 k^2 multiply-adds a pixel, against the layer's
                # C_out C_in k^2, cost at most a quarter more.
                and 4 * conv.out_channels <= conv.in_channels
                and conv.stride == (1, 1) and conv.padding == (conv.kernel_size[0] // 2,) * 2
                and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros")


class Float32InstanceNorm2d(nn.InstanceNorm2d):
    """Affine instance norm without running statistics, always computed in fp32.

    Group norm with one group per channel normalises exactly like instance norm (per
    sample and channel over H x W, biased variance, same eps); unlike the CPU's instance
    norm it keeps channels-last inputs channels-last. The output is fp32 too, so residual
    sums stay in fp32 when the convolutions around it run in reduced precision.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, H, W)`` any float dtype -> ``(B, C, H, W)`` fp32."""
        if torch.onnx.is_in_onnx_export():
            # One InstanceNormalization node: group norm exports as reshapes around one,
            # across which OpenVINO moves every map from channels-last to channels-first
            # and back (measured: 8% of its bf16 inpainting decoder's time, 6% of its
            # fp32 dense motion's).
            return F.instance_norm(x.float(), weight=self.weight, bias=self.bias,
                                   eps=self.eps)
        return F.group_norm(x.float(), self.num_features, self.weight, self.bias, self.eps)

    @classmethod
    def replacing(cls, norm: nn.InstanceNorm2d) -> Float32InstanceNorm2d:
        if norm.track_running_stats or not norm.affine:
            raise ValueError("only affine instance norms without running statistics are used")
        replacement = cls(norm.num_features, eps=norm.eps, affine=True)
        replacement.weight, replacement.bias = norm.weight, norm.bias
        return replacement


def _rewrite(module: nn.Module, winograd: bool, split_rows: bool) -> None:
    for name, child in module.named_children():
        if split_rows and RowSplitConv2d.fits(child):
            setattr(module, name, RowSplitConv2d(child))
            continue
        if isinstance(child, UpBlock2d):
            child = TransposedUpBlock2d(child)
            setattr(module, name, child)
        elif type(child) is nn.InstanceNorm2d:
            setattr(module, name, Float32InstanceNorm2d.replacing(child))
            continue
        elif winograd and WinogradConv2d.fits(child):
            setattr(module, name, WinogradConv2d.replacing(child))
            continue
        _rewrite(child, winograd, split_rows)


def optimize_for_inference(model: TPSMM, device: torch.device, precision: str = "fp32",
                           winograd: bool = True) -> TPSMM:
    """Rewrite ``model`` in place for inference on ``device`` in ``precision``; returns it.

    Eval mode, no gradients, the rewrites of the module doc, moved to ``device``. On the
    CPU and CUDA the convolution weights are made channels-last (the fast layout of oneDNN
    and of tensor cores; a convolution with channels-last weights also gives channels-last
    outputs), except where the inpainting network uses Winograd, which needs
    channels-first. Measured on the CPU, channels-last makes the keypoint detector 1.2x and
    the dense motion network 1.3x faster, and is the only layout in which bf16/fp16
    convolutions do not fall back to generic kernels two orders of magnitude slower.
    ``winograd=False`` keeps the direct convolutions (for graphs exported to other engines,
    which cannot run NNPACK's).
    """
    model.eval().requires_grad_(False)
    winograd = winograd and winograd_available(device, precision)
    for network in model.networks.values():
        if network is not None:
            _rewrite(network, winograd and network is model.inpainting_network,
                     split_rows=device.type == "cpu")
    model.to(device)
    if device.type in ("cpu", "cuda"):
        for network in model.networks.values():
            if network is not None and not (winograd and network is model.inpainting_network):
                network.to(memory_format=torch.channels_last)
    return model
