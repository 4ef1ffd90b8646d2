"""Per-layer speed of NNPACK's Winograd 3x3 convolution against torch's direct (oneDNN) one.

For layer shapes of TPSMM at 256x256 (inpainting network, dense motion hourglass,
VGG-19), at batch 2: the forward pass and the gradient with respect to the input, as
:mod:`tpsmm.networks.winograd` computes them (one sample at a time; the input gradient as
the convolution with the flipped, transposed kernel), against ``F.conv2d`` and
``convolution_backward``; plus oneDNN's weight gradient, which stays with oneDNN. The
speed-ups say which maps Winograd pays on (``MIN_PIXELS``). Best of ``--repeats``. The
last column is the largest difference between the two forward outputs, relative to the
largest output (the rounding of the two algorithms).

    python benchmarks/winograd_layers.py
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
    MIN_PIXELS,
    adjoint_kernel,
    winograd_available,
    winograd_conv3x3,
)

# (C_in, C_out, H = W): inpainting, dense-motion hourglass (1/4 resolution), VGG-19.
SHAPES = [
    (512, 512, 32), (512, 512, 64), (256, 256, 128), (512, 256, 64), (256, 64, 256),
    (64, 128, 256), (84, 128, 64), (128, 256, 32), (256, 512, 16), (512, 1024, 8),
    (1024, 1024, 4), (1024, 1024, 2), (64, 64, 256), (128, 128, 128), (256, 256, 64),
]


def best_time(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not winograd_available(torch.device("cpu")):
        sys.exit("this build of torch has no NNPACK")
    print(f"machine: {cpu_description()}; load average {load_average()}; batch {args.batch}; "
          f"times in ms, best of {args.repeats}; Winograd is used on maps >= {MIN_PIXELS} px")
    print(f"{'layer':<18} {'fwd oneDNN':>10} {'Winograd':>9} {'ratio':>6}  "
          f"{'d/dx oneDNN':>11} {'Winograd':>9} {'ratio':>6}  {'d/dw oneDNN':>11} "
          f"{'rel. diff':>9}")
    generator = torch.Generator().manual_seed(0)
    for c_in, c_out, size in SHAPES:
        x = torch.randn(args.batch, c_in, size, size, generator=generator)
        grad = torch.randn(args.batch, c_out, size, size, generator=generator)
        weight = torch.randn(c_out, c_in, 3, 3, generator=generator) * 0.05
        adjoint = adjoint_kernel(weight)

        def backward(mask: list[bool], weight=weight, x=x, grad=grad) -> object:
            return torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

        times = [
            best_time(lambda x=x, weight=weight: F.conv2d(x, weight, padding=1), args.repeats),
            best_time(lambda x=x, weight=weight: winograd_conv3x3(x, weight), args.repeats),
            best_time(lambda: backward([True, False, False]), args.repeats),
            best_time(lambda grad=grad, adjoint=adjoint: winograd_conv3x3(grad, adjoint),
                      args.repeats),
            best_time(lambda: backward([False, True, False]), args.repeats),
        ]
        direct = F.conv2d(x, weight, padding=1)
        difference = ((winograd_conv3x3(x, weight) - direct).abs().max()
                      / direct.abs().max()).item()
        ms = [1000 * t for t in times]
        print(f"{c_in:>4}->{c_out:<4} @{size:>3}x{size:<3} {ms[0]:10.2f} {ms[1]:9.2f} "
              f"{times[0] / times[1]:5.2f}x  {ms[2]:11.2f} {ms[3]:9.2f} "
              f"{times[2] / times[3]:5.2f}x  {ms[4]:11.2f} {difference:9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
