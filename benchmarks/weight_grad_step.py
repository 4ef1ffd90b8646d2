"""What one F(4x4, 3x3) setting alone gives a `tpsmm train` step.

The same Stage-1 step as ``benchmarks/train_step.py``'s "ours" (Winograd on), timed as it
is and, alternating step by step in one process, with one thing changed (everything else
unchanged): by default every weight gradient left to oneDNN instead of
:func:`tpsmm.networks.winograd.f4_conv3x3_weight_grad` where it fits; with
``--f4-min-channels N``, F(4x4) forward and input gradients from N channels in and out
instead of :data:`~tpsmm.networks.winograd.F4_MIN_CHANNELS`. Prints the median seconds of
each and their ratio.

    python benchmarks/weight_grad_step.py                                  # vox-256, batch 1
    python benchmarks/weight_grad_step.py --config synthetic-64-stage1 --size 64 --batch 8
    python benchmarks/weight_grad_step.py --config synthetic-64-stage1 --size 64 --batch 8 \
        --f4-min-channels 128 --steps 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from unittest import mock

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
    parser.add_argument("--f4-min-channels", type=int, metavar="N",
                        help="compare F4_MIN_CHANNELS at N instead of the weight gradient")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not winograd.winograd_available(torch.device("cpu")):
        sys.exit("this build of torch has no NNPACK: no Winograd path to measure")
    step = _our_step(args.config, args.size, args.batch, "fp32")
    x = _batch(torch.Generator().manual_seed(0), args.batch, args.size)
    if args.f4_min_channels is None:
        as_is, changed = "with F(4x4) weight gradients where they fit", "weight gradients by oneDNN"
        change = mock.patch.object(winograd, "f4_weight_grad_fits", lambda *_: False)
    else:
        as_is = f"F(4x4) from {winograd.F4_MIN_CHANNELS} channels"
        changed = f"F(4x4) from {args.f4_min_channels} channels"
        change = mock.patch.object(winograd, "F4_MIN_CHANNELS", args.f4_min_channels)
    seconds: dict[str, list[float]] = {as_is: [], changed: []}
    for index in range(2 * (args.steps + 1)):  # one warm-up step of each
        variant = as_is if index % 2 == 0 else changed
        # The patch is undone on leaving the block, so every other step runs as shipped.
        with change if variant == changed else nullcontext():
            start = time.perf_counter()
            step(x)
            elapsed = time.perf_counter() - start
        if index >= 2:
            seconds[variant].append(elapsed)
    median = {variant: statistics.median(times) for variant, times in seconds.items()}
    print(f"train step, {args.config} networks at {args.size}x{args.size}, batch {args.batch}, "
          f"fp32, median of {args.steps} step(s) each after a warm-up, alternating")
    print(f"machine: {cpu_description()}; load average {load_average()}")
    print(f"{changed} {median[changed]:.2f} s/step | {as_is} {median[as_is]:.2f} s/step | "
          f"speed-up of the second over the first {median[changed] / median[as_is]:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
