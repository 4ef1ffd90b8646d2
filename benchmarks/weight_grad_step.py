"""What the F(4x4, 3x3) weight gradient alone gives a `tpsmm train` step.

The same Stage-1 step as ``benchmarks/train_step.py``'s "ours" (Winograd on), timed with
:func:`tpsmm.networks.winograd.f4_conv3x3_weight_grad` where it fits and, alternating step
by step in one process, with every weight gradient left to oneDNN (everything else
unchanged). Prints the median seconds of each and their ratio.

    python benchmarks/weight_grad_step.py                                  # vox-256, batch 1
    python benchmarks/weight_grad_step.py --config synthetic-64 --size 64 --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _common import cpu_description, load_average
from train_step import _batch, _our_step

import tpsmm.networks.winograd as winograd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vox-256")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps of each")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not winograd.winograd_available(torch.device("cpu")):
        sys.exit("this build of torch has no NNPACK: no Winograd path to measure")
    step = _our_step(args.config, args.size, args.batch, "fp32")
    x = _batch(torch.Generator().manual_seed(0), args.batch, args.size)
    fits = winograd.f4_weight_grad_fits
    seconds: dict[str, list[float]] = {"F(4x4)": [], "oneDNN": []}
    for index in range(2 * (args.steps + 1)):  # one warm-up step of each
        variant = "F(4x4)" if index % 2 == 0 else "oneDNN"
        winograd.f4_weight_grad_fits = fits if variant == "F(4x4)" else lambda *_: False
        start = time.perf_counter()
        step(x)
        if index >= 2:
            seconds[variant].append(time.perf_counter() - start)
    winograd.f4_weight_grad_fits = fits
    median = {variant: statistics.median(times) for variant, times in seconds.items()}
    print(f"train step, {args.config} networks at {args.size}x{args.size}, batch {args.batch}, "
          f"fp32, median of {args.steps} step(s) each after a warm-up, alternating")
    print(f"machine: {cpu_description()}; load average {load_average()}")
    print(f"weight gradients by oneDNN {median['oneDNN']:.2f} s/step | with F(4x4) where it "
          f"fits {median['F(4x4)']:.2f} s/step | speed-up "
          f"{median['oneDNN'] / median['F(4x4)']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
