"""3x3 convolutions through Winograd's minimal filtering on the CPU, for training and inference.

What: almost every convolution of TPSMM is 3x3, stride 1, padding 1 (the inpainting
network's residual, down and up blocks, the dense motion hourglass, most of the ResNet-18s,
all of the perceptual loss's VGG-19). :class:`WinogradConv2d` computes such a layer's
forward pass, input gradient and weight gradient with Winograd's algorithms instead of
oneDNN's direct convolution.

Why: oneDNN has no Winograd kernels for CPUs without AVX-512, and Winograd needs several
times fewer multiplications. Each algorithm only pays off where its fixed costs are shared
by enough output tiles, hence the thresholds (each was measured; the figures are in
``benchmarks/README.md``, from ``benchmarks/winograd_layers.py`` and
``benchmarks/weight_grad_step.py``):

- maps of at least :data:`MIN_PIXELS`: NNPACK's F(6x6, 3x3), one sample at a time (given a
  batch, NNPACK switches to a slower algorithm). It transforms the whole kernel on every
  call, which smaller maps do not repay.
- smaller maps with :data:`F4_MIN_CHANNELS` channels: F(4x4, 3x3) written with torch's
  matrix products (:func:`f4_conv3x3`), the whole batch at once, the kernel transform
  cached for frozen layers (the VGG-19).
- the input gradient is, for stride 1 and padding 1, the same convolution with the kernel
  rotated by 180 degrees and its channel axes swapped (:func:`adjoint_kernel`), so it takes
  the same paths (through F(4x4, 3x3), the transpose of each step:
  :func:`f4_conv3x3_input_grad`).
- the weight gradient, which torch computes only directly, goes through F(4x4, 3x3)
  (:func:`f4_conv3x3_weight_grad`) for trained layers wide enough and with enough output
  tiles (:func:`f4_weight_grad_fits`), whichever algorithm ran their forward pass.

Winograd rounds differently from direct convolution (about 1e-5 of the largest output in
fp32), as any two convolution algorithms do; the golden losses and gradient norms hold
within their tolerances with it (tests/test_golden.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
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


# Winograd F(4x4, 3x3) (Lavin & Gray, 2016): a 4x4 output tile from a 6x6 input tile,
# Y = A^T [(G g G^T) * (B^T d B)] A. On row-major flattened tiles, B^T d B is
# kron(B^T, B^T) vec(d), so each transform is one matrix product over all tiles.
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                   dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                  dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
_B36 = torch.kron(_BT, _BT).float()  # (36, 36): input tile -> Winograd domain
_G36 = torch.kron(_G, _G).float()  # (36, 9): kernel -> Winograd domain
_A16 = torch.kron(_AT, _AT).float()  # (16, 36): Winograd domain -> output tile

#: Below :data:`MIN_PIXELS`, the F(4x4, 3x3) path takes maps of at least this many rows
#: and columns, batches of at least this many 4x4 output tiles and layers of at least this
#: many input and output channels: with less, its tile transforms cost more than its
#: products save (``python benchmarks/winograd_layers.py --batch 8``).
MIN_SIDE = 4
F4_MIN_TILES = 32
F4_MIN_CHANNELS = 256
#: The F(4x4, 3x3) weight gradient (:func:`f4_conv3x3_weight_grad`) is used, on any
#: trained layer with :data:`F4_MIN_TILES` output tiles over the batch, from this many
#: channels in and out, or from half as many on one side on maps of at most
#: :data:`WEIGHT_GRAD_NARROW_MAX_SIDE`. ``python benchmarks/winograd_layers.py`` (``--batch 8
#: --maps 64``, ``--batch 2 --maps 256``) measured 1.22-2.60x oneDNN's on the first kind,
#: 1.46-1.87x on the second, but 0.88x and 0.99x for 64->128 and 256->64 at 256x256,
#: 0.79-1.00x with fewer channels and 0.16-0.83x with fewer tiles.
WEIGHT_GRAD_MIN_CHANNELS = 128
WEIGHT_GRAD_NARROW_MAX_SIDE = 128


def winograd_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``(C_out, C_in, 3, 3)`` -> ``(36, C_in, C_out)``: G g G^T of every kernel."""
    c_out, c_in = weight.shape[:2]
    return (_G36 @ weight.permute(2, 3, 1, 0).reshape(9, c_in * c_out)).view(36, c_in, c_out)


def _tile_grid(h: int, w: int) -> tuple[int, int]:
    """Rows and columns of 4x4 output tiles covering an (h, w) map."""
    return -(-h // 4), -(-w // 4)


def _input_tiles(x: torch.Tensor) -> torch.Tensor:
    """``x: (B, C_in, H, W)`` -> ``(36, B * th * tw, C_in)``: B^T d B of every 6x6 input tile
    (tiles overlap by 2; ``th = ceil(H / 4)`` rows and ``tw`` columns of them)."""
    n, c, h, w = x.shape
    th, tw = _tile_grid(h, w)
    padded = F.pad(x, (1, 1 + 4 * tw - w, 1, 1 + 4 * th - h)).permute(0, 2, 3, 1)
    tiles = padded.unfold(1, 6, 4).unfold(2, 6, 4)  # (B, th, tw, C_in, 6, 6)
    tiles = tiles.permute(4, 5, 0, 1, 2, 3).reshape(36, -1)
    return (_B36 @ tiles).view(36, n * th * tw, c)


def _output_grad_tiles(grad: torch.Tensor) -> torch.Tensor:
    """``grad: (B, C_out, H, W)`` -> ``(36, B * th * tw, C_out)``: A g A^T of every 4x4 tile
    of an output gradient, the transpose of the output transform."""
    n, c_out, h, w = grad.shape
    th, tw = _tile_grid(h, w)
    tiles = F.pad(grad, (0, 4 * tw - w, 0, 4 * th - h)).reshape(n, c_out, th, 4, tw, 4)
    tiles = tiles.permute(3, 5, 0, 2, 4, 1).reshape(16, -1)
    return (_A16.T @ tiles).view(36, n * th * tw, c_out)


def f4_conv3x3(x: torch.Tensor, kernel: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=1)`` by Winograd F(4x4, 3x3), the whole batch at once.

    ``x: (B, C_in, H, W)`` fp32; ``kernel: (36, C_in, C_out)`` from :func:`winograd_kernel`
    -> ``(B, C_out, H, W)``. One batched matrix product per tile position, so the kernel
    transform is paid once per batch (NNPACK pays it per sample and per call).
    """
    n, _, h, w = x.shape
    th, tw = _tile_grid(h, w)
    products = torch.bmm(_input_tiles(x), kernel)
    c_out = kernel.shape[2]
    y = (_A16 @ products.view(36, -1)).view(4, 4, n, th, tw, c_out)
    y = y.permute(2, 5, 3, 0, 4, 1).reshape(n, c_out, 4 * th, 4 * tw)[:, :, :h, :w]
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def f4_conv3x3_input_grad(grad: torch.Tensor, kernel: torch.Tensor,
                          grad_tiles: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of :func:`f4_conv3x3` with respect to ``x``: its transposed steps.

    ``grad: (B, C_out, H, W)``, ``kernel: (36, C_in, C_out)`` -> ``(B, C_in, H, W)``. The
    6x6 input tiles overlap by 2, so their gradients are summed back by ``fold``.
    ``grad_tiles``: ``grad``'s transformed tiles if already computed (for the weight
    gradient of the same layer).
    """
    n, _, h, w = grad.shape
    th, tw = _tile_grid(h, w)
    c_in = kernel.shape[1]
    if grad_tiles is None:
        grad_tiles = _output_grad_tiles(grad)
    inputs = (_B36.T @ torch.bmm(grad_tiles, kernel.transpose(1, 2)).view(36, -1))
    inputs = inputs.view(6, 6, n, th, tw, c_in).permute(2, 5, 0, 1, 3, 4)
    summed = F.fold(inputs.reshape(n, c_in * 36, th * tw), (4 * th + 2, 4 * tw + 2),
                    kernel_size=6, stride=4)
    return summed[:, :, 1:1 + h, 1:1 + w]


def f4_conv3x3_weight_grad(x: torch.Tensor, grad: torch.Tensor,
                           grad_tiles: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of ``conv2d(x, weight, padding=1)`` with respect to ``weight``.

    ``x: (B, C_in, H, W)``, ``grad: (B, C_out, H, W)`` -> ``(C_out, C_in, 3, 3)``. F(4x4, 3x3)
    is linear in the transformed kernel U = G g G^T, so dL/dU is, at each of the 36 tile
    positions, one product of the transformed input tiles with the transformed output
    gradient over all tiles of the batch, and dL/dg = G^T (dL/dU) G. ``grad_tiles`` as for
    :func:`f4_conv3x3_input_grad`. The input tiles are transformed again rather than kept
    from the forward pass: kept, they would hold 2.25x each layer's input until backward.
    """
    c_out, c_in = grad.shape[1], x.shape[1]
    if grad_tiles is None:
        grad_tiles = _output_grad_tiles(grad)
    products = torch.bmm(_input_tiles(x).transpose(1, 2), grad_tiles)
    grad_kernel = _G36.T @ products.view(36, c_in * c_out)  # (9, C_in * C_out)
    return grad_kernel.view(3, 3, c_in, c_out).permute(3, 2, 0, 1).contiguous()


def f4_weight_grad_fits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`f4_conv3x3_weight_grad` beats oneDNN's for this layer and batch."""
    n, _, h, w = x.shape
    narrow, wide = sorted(weight.shape[:2])
    return (n * math.prod(_tile_grid(h, w)) >= F4_MIN_TILES and wide >= WEIGHT_GRAD_MIN_CHANNELS
            and (narrow >= WEIGHT_GRAD_MIN_CHANNELS
                 or (2 * narrow >= WEIGHT_GRAD_MIN_CHANNELS
                     and max(h, w) <= WEIGHT_GRAD_NARROW_MAX_SIDE)))


def _weight_and_bias_grads(ctx: Any, grad: torch.Tensor, x: torch.Tensor,
                           weight: torch.Tensor, grad_tiles: torch.Tensor | None = None,
                           ) -> tuple[torch.Tensor | None, ...]:
    """The weight and bias gradients, where autograd asks for them: F(4x4, 3x3)'s where
    :func:`f4_weight_grad_fits` (reusing ``grad_tiles`` if given), oneDNN's elsewhere."""
    want_weight = ctx.needs_input_grad[1]
    want_bias = ctx.has_bias and ctx.needs_input_grad[2]
    if not (want_weight or want_bias):
        return None, None
    if want_weight and f4_weight_grad_fits(x, weight):
        return (f4_conv3x3_weight_grad(x, grad, grad_tiles),
                grad.sum(dim=(0, 2, 3)) if want_bias else None)
    bias_sizes = [weight.shape[0]] if want_bias else None
    _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad, x, weight, bias_sizes, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
        [False, want_weight, want_bias],
    )
    return grad_weight, grad_bias


class _Conv3x3(torch.autograd.Function):
    """conv2d(x, weight, bias, padding=1) with the forward pass and input gradient by
    NNPACK (``nnpack``) or by oneDNN; weight and bias gradients as
    :func:`_weight_and_bias_grads` chooses. The oneDNN variant serves trained layers whose
    maps or width do not pay for a Winograd forward pass but whose weight gradient does."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                nnpack: bool) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.nnpack = bias is not None, nnpack
        if nnpack:
            return winograd_conv3x3(x, weight, bias)
        return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = None
        if ctx.needs_input_grad[0] and ctx.nnpack:
            # Recomputed every backward pass: the weights change every step, and
            # caching the frozen VGG-19's would hold ~80 MB to save ~1% of a step.
            grad_x = winograd_conv3x3(grad, adjoint_kernel(weight))
        elif ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        return (grad_x, *_weight_and_bias_grads(ctx, grad, x, weight), None)


class _WinogradF4Conv3x3(torch.autograd.Function):
    """conv2d(x, weight, bias, padding=1) by F(4x4, 3x3), given the transformed kernel.

    The kernel is an input rather than computed here so that a frozen layer can pass a
    cached one; the backward pass reuses it (transposed) for the input gradient.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                kernel: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight, kernel)
        ctx.has_bias = bias is not None
        return f4_conv3x3(x, kernel, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, kernel = ctx.saved_tensors
        grad = grad.contiguous()
        # Shared by the input and weight gradients; a bias gradient alone needs neither.
        grad_tiles = (_output_grad_tiles(grad)
                      if ctx.needs_input_grad[0] or ctx.needs_input_grad[1] else None)
        grad_x = (f4_conv3x3_input_grad(grad, kernel, grad_tiles) if ctx.needs_input_grad[0]
                  else None)
        return (grad_x, *_weight_and_bias_grads(ctx, grad, x, weight, grad_tiles), None)


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride-1, padding-1 :class:`~torch.nn.Conv2d` computed with Winograd on the CPU.

    Maps of at least :data:`MIN_PIXELS` go through NNPACK's F(6x6, 3x3), sample by
    sample; smaller ones, down to :data:`MIN_SIDE` rows and columns, through the batched
    F(4x4, 3x3) of :func:`f4_conv3x3` where the layer and batch are wide enough
    (:data:`F4_MIN_CHANNELS`, :data:`F4_MIN_TILES`). A frozen layer (the VGG-19, or any
    network under inference) transforms its kernel once and keeps it until its weight
    changes; a trained one on every call, once for both passes. A trained layer wide
    enough (:func:`f4_weight_grad_fits`) gets its weight gradient from
    :func:`f4_conv3x3_weight_grad` on every path, the direct one included. Everything else
    falls back to the usual convolution: other devices, other dtypes, autocast, other maps.
    Same parameters, same state-dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        h, w = x.shape[-2:]
        if (x.device.type != "cpu" or x.dtype != torch.float32
                or self.weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu")
                or min(h, w) < MIN_SIDE):
            return super().forward(x)
        if h * w >= MIN_PIXELS:
            return _Conv3x3.apply(x, self.weight, self.bias, True)
        if (x.shape[0] * math.prod(_tile_grid(h, w)) < F4_MIN_TILES
                or min(self.in_channels, self.out_channels) < F4_MIN_CHANNELS):
            if (self.weight.requires_grad and torch.is_grad_enabled()
                    and f4_weight_grad_fits(x, self.weight)):
                return _Conv3x3.apply(x, self.weight, self.bias, False)
            return super().forward(x)
        kernel = (winograd_kernel(self.weight.detach()) if self.weight.requires_grad
                  else self._frozen_kernel())
        return _WinogradF4Conv3x3.apply(x, self.weight, self.bias, kernel)

    def _frozen_kernel(self) -> torch.Tensor:
        """The transformed kernel, recomputed when the weight is replaced or modified in
        place (its version counter moves; only frozen weights are cached: fused optimizers
        update parameters without moving it)."""
        key = (self.weight.data_ptr(), self.weight._version)
        if getattr(self, "_kernel_key", None) != key:
            self._kernel = winograd_kernel(self.weight.detach())
            self._kernel_key = key
        return self._kernel

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
