"""Per-layer speed of the Winograd 3x3 convolutions against torch's direct (oneDNN) one.

For layer shapes of TPSMM (inpainting network, dense motion hourglass, VGG-19) at
256x256 and 64x64: the forward pass and the gradient with respect to the input, as
:mod:`tpsmm.networks.winograd` computes them, against ``F.conv2d`` and
``convolution_backward``. Two Winograd algorithms: NNPACK's F(6x6, 3x3), one sample at a
time (the input gradient as the convolution with the flipped, transposed kernel), and the
batched F(4x4, 3x3) of ``f4_conv3x3`` with its kernel already transformed (as for a frozen
layer, whose transform is cached), plus the time of that transform (``G g G^T``), which a
trained layer pays once per step for both passes. Then the weight gradient: oneDNN's
against ``f4_conv3x3_weight_grad``'s. The speed-ups say which layers each algorithm pays
on (``MIN_PIXELS``, ``MIN_SIDE``, ``F4_MIN_TILES``, ``F4_MIN_CHANNELS``,
``WEIGHT_GRAD_MIN_CHANNELS``, ``WEIGHT_GRAD_NARROW_MAX_SIDE``; run it with ``--batch 8``
for the batch of 64x64 training). Best of ``--repeats``. The last columns are the
largest difference between each Winograd result and the direct one, relative to the
largest direct value (the rounding of the algorithms).

    python benchmarks/winograd_layers.py
    python benchmarks/winograd_layers.py --batch 8 --maps 64    # 64x64 training's layers
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import cpu_description, load_average

from tpsmm.networks.winograd import (
    F4_MIN_CHANNELS,
    F4_MIN_TILES,
    MIN_PIXELS,
    MIN_SIDE,
    WEIGHT_GRAD_MIN_CHANNELS,
    WEIGHT_GRAD_NARROW_MAX_SIDE,
    adjoint_kernel,
    f4_conv3x3,
    f4_conv3x3_input_grad,
    f4_conv3x3_weight_grad,
    winograd_available,
    winograd_conv3x3,
    winograd_kernel,
)

# (C_in, C_out, H = W): inpainting, dense-motion hourglass and VGG-19 layers of 256x256
# training, and of 64x64 training (synthetic-64's networks, the dense motion network's at
# scale_factor 0.5, as shipped, and some at the earlier 0.25).
SHAPES = {
    "256": [
        (512, 512, 32), (512, 512, 64), (256, 256, 128), (512, 256, 64), (256, 64, 256),
        (64, 128, 256), (84, 128, 64), (128, 256, 32), (256, 512, 16), (512, 1024, 8),
        (1024, 1024, 4), (1024, 1024, 2), (64, 64, 256), (128, 128, 128), (256, 256, 64),
    ],
    "64": [
        (32, 64, 64), (116, 58, 64), (128, 128, 32), (64, 128, 32), (256, 64, 32),
        (128, 32, 32), (128, 128, 16), (256, 256, 16), (256, 64, 16), (128, 128, 8),
        (256, 256, 8), (512, 512, 8), (512, 512, 4), (256, 256, 4), (512, 512, 2),
    ],
}


def best_time(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _difference(output: torch.Tensor, direct: torch.Tensor) -> float:
    return ((output - direct).abs().max() / direct.abs().max()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--maps", choices=[*SHAPES, "all"], default="all",
                        help="the layers of 256x256 or of 64x64 training, or both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not winograd_available(torch.device("cpu")):
        sys.exit("this build of torch has no NNPACK")
    print(f"machine: {cpu_description()}; load average {load_average()}; batch {args.batch}; "
          f"times in ms, best of {args.repeats}. Used: NNPACK on maps >= {MIN_PIXELS} px, "
          f"F(4x4) below them down to {MIN_SIDE}x{MIN_SIDE} from {F4_MIN_TILES} tiles over "
          f"the batch and {F4_MIN_CHANNELS} channels in and out; F(4x4) weight gradient "
          f"from {F4_MIN_TILES} tiles and {WEIGHT_GRAD_MIN_CHANNELS} channels in and out (half "
          f"as many on one side up to {WEIGHT_GRAD_NARROW_MAX_SIDE}x{WEIGHT_GRAD_NARROW_MAX_SIDE})")
    print(f"{'layer':<18} | {'forward: oneDNN':>15} {'NNPACK':>13} {'F(4x4)':>13} | "
          f"{'d/dx: oneDNN':>12} {'NNPACK':>13} {'F(4x4)':>13} | {'GgG^T':>6} "
          f"{'trained':>7} | {'d/dw: oneDNN':>12} {'F(4x4)':>13} | {'diff NNPACK':>11} "
          f"{'F(4x4)':>7} {'d/dw':>7}")
    generator = torch.Generator().manual_seed(0)
    shapes = [shape for maps, group in SHAPES.items() if args.maps in (maps, "all")
              for shape in group]
    for c_in, c_out, size in shapes:
        x = torch.randn(args.batch, c_in, size, size, generator=generator)
        grad = torch.randn(args.batch, c_out, size, size, generator=generator)
        weight = torch.randn(c_out, c_in, 3, 3, generator=generator) * 0.05
        adjoint, kernel = adjoint_kernel(weight), winograd_kernel(weight)

        def backward(mask: list[bool], weight=weight, x=x, grad=grad) -> object:
            return torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

        runs = {
            "forward": lambda x=x, weight=weight: F.conv2d(x, weight, padding=1),
            "forward NNPACK": lambda x=x, weight=weight: winograd_conv3x3(x, weight),
            "forward F4": lambda x=x, kernel=kernel: f4_conv3x3(x, kernel),
            "dx": lambda: backward([True, False, False]),
            "dx NNPACK": lambda grad=grad, adjoint=adjoint: winograd_conv3x3(grad, adjoint),
            "dx F4": lambda grad=grad, kernel=kernel: f4_conv3x3_input_grad(grad, kernel),
            "transform": lambda weight=weight: winograd_kernel(weight),
            "dw": lambda: backward([False, True, False]),
            "dw F4": lambda x=x, grad=grad: f4_conv3x3_weight_grad(x, grad),
        }
        t = {name: best_time(run, args.repeats) for name, run in runs.items()}
        ms = {name: 1000 * value for name, value in t.items()}
        trained = (t["forward"] + t["dx"]) / (t["forward F4"] + t["dx F4"] + t["transform"])
        direct = F.conv2d(x, weight, padding=1)
        direct_dw = backward([False, True, False])[1]
        print(f"{c_in:>4}->{c_out:<4} @{size:>3}x{size:<3} | {ms['forward']:15.2f} "
              f"{ms['forward NNPACK']:7.2f} {t['forward'] / t['forward NNPACK']:4.2f}x "
              f"{ms['forward F4']:7.2f} {t['forward'] / t['forward F4']:4.2f}x | "
              f"{ms['dx']:12.2f} {ms['dx NNPACK']:7.2f} {t['dx'] / t['dx NNPACK']:4.2f}x "
              f"{ms['dx F4']:7.2f} {t['dx'] / t['dx F4']:4.2f}x | {ms['transform']:6.2f} "
              f"{trained:6.2f}x | {ms['dw']:12.2f} {ms['dw F4']:7.2f} "
              f"{t['dw'] / t['dw F4']:4.2f}x | "
              f"{_difference(winograd_conv3x3(x, weight), direct):11.1e} "
              f"{_difference(f4_conv3x3(x, kernel), direct):7.1e} "
              f"{_difference(f4_conv3x3_weight_grad(x, grad), direct_dw):7.1e}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
