"""3x3 convolutions as Winograd's F(2, 3) along each row, built from ordinary graph operations.

What: the inpainting decoder's residual blocks (twelve 3x3 convolutions, ~80% of a frame's
work at 256x256) are exported as :class:`RowWinogradConv2d`: every pair of output columns
``2j, 2j+1`` is computed from the four input columns ``2j-1 .. 2j+2`` with 4 instead of 6
column products (Lavin & Gray, 2016, in one dimension):

1. input transform, ``V_u = B^T d`` for u = 0..3: a depthwise 1x4 convolution with stride 2
   along the width, one per u, giving four maps of half the width;
2. four 3x1 convolutions, ``M_u = conv(V_u, G g)``: the products, ``2/3`` of the direct
   convolution's multiply-adds;
3. output transform, ``A^T M``: the even columns ``M_0 + M_1 + M_2``, the odd ones
   ``M_1 - M_2 - M_3``, interleaved by upsampling both to the full width and picking columns
   with a constant 0/1 mask.

Why here and not in torch: every step is an operation graph engines run with their fast
kernels in their own blocked layouts (convolutions, depthwise convolutions, nearest
upsampling, element-wise sums that they fuse), so the transforms cost little next to the
products. Two-dimensional F(2x2, 3x3) needs 4x4 input tiles that only slicing or
scattering can build in a graph; measured in OpenVINO, those cost as much as they save.
Measured per residual block pair (4 convolutions, batch 4, OpenVINO on 2 cores with AVX-512
BF16, one-off): 512 channels at 64x64 1.34x faster in bf16 and 1.39x in fp32; at 32x32
1.31x / 1.35x; 256 channels at 128x128 1.15x / 1.21x. The result is the same sum in
another order: in fp32 within 3e-6 of the direct convolution, like any other algorithm;
in bf16 the maps between the steps are rounded too, which makes the error ~1.5x that of
direct bf16 convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.networks.blocks import ResBlock2d

# F(2, 3): input transform B^T (4x4), kernel transform G (4x3); the output transform A^T is
# written out in RowWinogradConv2d.forward.
_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                   dtype=torch.float64)
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)


class RowWinogradConv2d(nn.Module):
    """A 3x3, stride-1, padding-1 convolution through F(2, 3) along the width (module doc).

    Keeps the original layer's ``weight`` and ``bias``, so state-dict keys are unchanged;
    the transformed kernels are computed once, as buffers.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not self.fits(conv):
            raise ValueError("only 3x3, stride-1, padding-1, ungrouped convolutions")
        self.weight, self.bias = conv.weight, conv.bias
        weight = conv.weight.detach().double()
        # (4, C_out, C_in, 3 rows, 1): row dy of the kernel transformed along its columns.
        products = torch.einsum("uj,oiyj->uoiy", _G, weight).unsqueeze(-1)
        self.register_buffer("products", products.to(conv.weight.dtype).contiguous(),
                             persistent=False)
        # (4, C_in, 1, 1, 4): row u of B^T for every channel, as depthwise kernels.
        inputs = _BT.to(conv.weight.dtype).reshape(4, 1, 1, 1, 4)
        self.register_buffer("input_transform",
                             inputs.expand(4, conv.in_channels, 1, 1, 4).contiguous(),
                             persistent=False)

    @staticmethod
    def fits(conv: nn.Module) -> bool:
        return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
                and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C_in, H, W)`` -> ``(B, C_out, H, W)``; W odd takes the direct convolution
        (a graph is traced at one size, so this is decided once, at export)."""
        width = x.shape[-1]
        if width % 2:
            return F.conv2d(x, self.weight, self.bias, padding=1)
        m0, m1, m2, m3 = (
            F.conv2d(F.conv2d(x, self.input_transform[u], stride=(1, 2), padding=(0, 1),
                              groups=x.shape[1]),
                     self.products[u], padding=(1, 0))
            for u in range(4))
        even, odd = m0 + m1 + m2, m1 - m2 - m3
        # A product by 0 or 1 is exact, so each column is its own phase's value unchanged.
        take_even = (torch.arange(width, device=x.device) % 2 == 0).to(x.dtype)

        def widen(half: torch.Tensor) -> torch.Tensor:
            return F.interpolate(half, scale_factor=(1.0, 2.0), mode="nearest")

        out = widen(even) * take_even + widen(odd) * (1 - take_even)
        return out if self.bias is None else out + self.bias[:, None, None]


def use_row_winograd(network: nn.Module) -> int:
    """Replace, in place, both convolutions of every :class:`ResBlock2d` in ``network``.

    Returns the number replaced.
    """
    replaced = 0
    for block in network.modules():
        if isinstance(block, ResBlock2d):
            for name in ("conv1", "conv2"):
                conv = getattr(block, name)
                if RowWinogradConv2d.fits(conv):
                    setattr(block, name, RowWinogradConv2d(conv))
                    replaced += 1
    return replaced
