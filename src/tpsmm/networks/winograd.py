"""3x3 convolutions through NNPACK's Winograd kernels on the CPU, for training and inference.

Almost every convolution of TPSMM is 3x3, stride 1, padding 1: the inpainting network's
residual, down and up blocks, the dense motion hourglass, most of the ResNet-18s and all
of the perceptual loss's VGG-19. oneDNN computes them directly on CPUs without AVX-512;
NNPACK's Winograd F(6x6, 3x3) kernels need several times fewer multiplications. The
gradient with respect to the input is, for stride 1 and padding 1, the same convolution
with the kernel rotated by 180 degrees and its channel axes swapped
(:func:`adjoint_kernel`), so it runs through Winograd too; the gradient with respect to
the weights has no Winograd kernel in torch and stays with oneDNN.

``python benchmarks/winograd_layers.py`` times TPSMM's layer shapes. Last run (2 AVX2
cores, batch 2): 1.6-1.9x oneDNN's speed at 32x32, 2.0-3.2x from 64x64 up, for the
forward pass and the input gradient alike; but 0.8-0.9x at 16x16 and 0.1-0.3x at 8x8 and
below with 512-1024 channels: NNPACK transforms the whole kernel on every call, which only
pays off over enough output tiles. Maps under :data:`MIN_PIXELS` therefore stay with
oneDNN. Samples go through NNPACK one at a time: given a batch, it switches to an
algorithm that is slower than oneDNN here.

Winograd rounds differently from direct convolution (the benchmark prints the largest
difference relative to the largest output: 0.6-1.7e-5 in fp32), as between any two
convolution algorithms; the golden losses and gradient norms hold within their
tolerances with it (tests/test_golden.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: Feature maps with fewer pixels than this (32x32) use the direct convolution.
MIN_PIXELS = 32 * 32


def winograd_available(device: torch.device, precision: str = "fp32") -> bool:
    """Whether :class:`WinogradConv2d` can run: fp32 on a CPU whose torch has NNPACK."""
    # _nnpack_available() also initialises NNPACK, which its convolutions need first.
    check = getattr(torch, "_nnpack_available", None)
    return (device.type == "cpu" and precision == "fp32" and check is not None and check()
            and hasattr(torch, "_nnpack_spatial_convolution"))


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=1)`` through NNPACK, one sample at a time.

    ``x: (B, C_in, H, W)`` fp32 on the CPU, ``weight: (C_out, C_in, 3, 3)`` ->
    ``(B, C_out, H, W)``. NNPACK must be initialised (:func:`winograd_available`).
    """
    x = x.contiguous()
    return torch.cat([torch._nnpack_spatial_convolution(sample[None], weight, bias, [1, 1])
                      for sample in x])


def adjoint_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``(C_out, C_in, 3, 3)`` -> ``(C_in, C_out, 3, 3)``: the kernel whose stride-1,
    padding-1 convolution of an output gradient is the input gradient."""
    return weight.flip(2, 3).transpose(0, 1).contiguous()


class _WinogradConv3x3(torch.autograd.Function):
    """conv2d(x, weight, bias, padding=1) with Winograd forward and input gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return winograd_conv3x3(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # Recomputed every backward pass: the weights change every step, and
            # caching the frozen VGG-19's would hold ~80 MB to save ~1% of a step.
            grad_x = winograd_conv3x3(grad, adjoint_kernel(weight))
        want_weight = ctx.needs_input_grad[1]
        want_bias = ctx.has_bias and ctx.needs_input_grad[2]
        if want_weight or want_bias:
            bias_sizes = [weight.shape[0]] if want_bias else None
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, x, weight, bias_sizes, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [False, want_weight, want_bias],
            )
        return grad_x, grad_weight, grad_bias


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride-1, padding-1 :class:`~torch.nn.Conv2d` computed with Winograd on the CPU.

    Falls back to the usual convolution where NNPACK does not apply or does not pay: other
    devices, other dtypes, autocast, maps smaller than :data:`MIN_PIXELS`. Same
    parameters, same state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        if (x.device.type != "cpu" or x.dtype != torch.float32
                or self.weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
                or x.shape[-2] * x.shape[-1] < MIN_PIXELS):
            return super().forward(x)
        return _WinogradConv3x3.apply(x, self.weight, self.bias)

    @classmethod
    def replacing(cls, conv: nn.Conv2d) -> WinogradConv2d:
        """A WinogradConv2d sharing ``conv``'s weight and bias (not copies)."""
        torch._nnpack_available()  # initialises NNPACK, which its convolutions need
        replacement = cls(conv.in_channels, conv.out_channels, 3, padding=1,
                          bias=conv.bias is not None)
        replacement.weight, replacement.bias = conv.weight, conv.bias
        return replacement

    @staticmethod
    def fits(conv: nn.Module) -> bool:
        return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
                and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros")


def use_winograd(module: nn.Module) -> int:
    """Replace, in place, every 3x3 stride-1 padding-1 convolution in ``module``.

    Returns the number replaced. The caller checks :func:`winograd_available` first.
    """
    replaced = 0
    for name, child in module.named_children():
        if WinogradConv2d.fits(child):
            setattr(module, name, WinogradConv2d.replacing(child))
            replaced += 1
        else:
            replaced += use_winograd(child)
    return replaced
