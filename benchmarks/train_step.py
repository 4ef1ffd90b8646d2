"""Seconds per training step and peak RSS: ``tpsmm.training`` against a reference-style step.

Both steps train the same networks (the vox-256 config at 256x256, or
``--config`` at ``--size``), seeded identically, on the same random batches,
at epoch 10 (background predictor and TPS dropout both on, the costliest
phase). They differ only in how the
step is run:

- *reference*: written the way the reference's ``train.py`` does it: the sum
  of the losses' means, ``backward``, inf-norm clipping of the keypoint and
  dense-motion gradients, ``step`` and ``zero_grad`` of torch's default Adam,
  and every loss copied to numpy for the log;
- *ours*: :meth:`tpsmm.training.trainer.Stage1.step` as ``tpsmm train`` runs
  it (Winograd 3x3 convolutions on the CPU in fp32, fused Adam, the gradient
  scaler path, the same clipping); ``--no-winograd`` times it with torch's
  direct convolutions instead.

Both use tpsmm's networks and :class:`~tpsmm.losses.GeneratorFullModel`;
the reference step swaps in the reference's warp loss, whose targets are
computed while autograd records (ours: without a graph, same values).

The timings come from one process per (batch, precision) that alternates
the two implementations step by step, so that both see the same machine
load; the peak resident memory (``VmHWM``) of each comes from a
separate fresh process running two steps. The VGG-19 has random
weights: the weights do not change the cost. Run::

    python benchmarks/train_step.py                      # batch 2 and 4, fp32 and bf16
    python benchmarks/train_step.py --size 128 --batches 2 --steps 1 --precisions fp32
    python benchmarks/train_step.py --config synthetic-64-stage1 --size 64 --batches 8 \
        --precisions fp32

and read the table: seconds per step (median of ``--steps`` after one
warm-up step), peak RSS, and ours/reference ratios (speed-up > 1 is better).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from _common import cpu_description, load_average, peak_rss_kib

import tpsmm.losses as losses_module
from tpsmm.config import load_config

EPOCH = 10


def _config(name: str, size: int):
    config = load_config(name)
    config["image_size"] = size
    config["train_params"]["perceptual_weights"] = "random"
    return config


def _reference_warp_loss(inpainting, driving: torch.Tensor, generated: dict) -> torch.Tensor:
    """The warp loss as the reference computes it: its targets are built with
    autograd recording (their inputs are detached, but the encoder's weights
    require grad), which keeps activations that no backward pass uses."""
    targets = inpainting.get_encode(driving, generated["occlusion_map"])
    return losses_module.encoder_distance(targets, generated["warped_encoder_maps"])


@contextmanager
def _reference_losses() -> Iterator[None]:
    """Swap in the reference's warp loss for the duration of a reference step."""
    saved = losses_module.warp_loss
    losses_module.warp_loss = _reference_warp_loss
    try:
        yield
    finally:
        losses_module.warp_loss = saved


def _reference_step(name: str, size: int, batch: int, precision: str):
    """A step as the reference writes it, around the same networks and losses."""
    from tpsmm.losses import GeneratorFullModel
    from tpsmm.model import TPSMM
    from tpsmm.networks import load_vgg19

    config = _config(name, size)
    params = config.train_params
    torch.manual_seed(0)
    model = TPSMM(config).train()
    full = GeneratorFullModel(model.kp_detector, model.bg_predictor,
                              model.dense_motion_network, model.inpainting_network, params,
                              load_vgg19("random"))
    optimizer = torch.optim.Adam(
        [*model.inpainting_network.parameters(), *model.dense_motion_network.parameters(),
         *model.kp_detector.parameters()], lr=params["lr_generator"], betas=(0.5, 0.999),
        weight_decay=1e-4)
    optimizer_bg = torch.optim.Adam(model.bg_predictor.parameters(), lr=params["lr_generator"],
                                    betas=(0.5, 0.999), weight_decay=1e-4)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def step(x: dict) -> dict:
        with (torch.autocast("cpu", dtype=dtype, enabled=precision == "bf16"),
              _reference_losses()):
            losses, _ = full(x, EPOCH)
        loss = sum(value.mean() for value in losses.values())
        loss.backward()
        for network in (model.kp_detector, model.dense_motion_network, model.bg_predictor):
            torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm=10, norm_type=math.inf)
        optimizer.step()
        optimizer.zero_grad()
        optimizer_bg.step()
        optimizer_bg.zero_grad()
        return {key: value.mean().detach().float().cpu().numpy() for key, value in losses.items()}

    return step


def _our_step(name: str, size: int, batch: int, precision: str, winograd: bool = True):
    from tpsmm.training.trainer import Stage1

    stage = Stage1(_config(name, size), seed=0, precision=precision, winograd=winograd)
    return lambda x: stage.step(x, EPOCH)


def _batch(generator: torch.Generator, batch: int, size: int) -> dict[str, torch.Tensor]:
    return {key: torch.rand(batch, 3, size, size, generator=generator)
            for key in ("source", "driving")}


def time_both(name: str, size: int, batch: int, precision: str, steps: int,
              winograd: bool) -> dict:
    """Seconds per step of both implementations, alternating step by step.

    On a machine shared with other jobs the load changes from minute to
    minute; alternating makes both implementations see the same load.
    """
    steps_by_name = {"reference": _reference_step(name, size, batch, precision),
                     "ours": _our_step(name, size, batch, precision, winograd)}
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for index in range(steps + 1):
        x = _batch(generator, batch, size)
        for name, step in steps_by_name.items():
            torch.manual_seed(index)
            start = time.perf_counter()
            step(x)
            if index:  # the first step is a warm-up (allocations, oneDNN primitives)
                times[name].append(time.perf_counter() - start)
    return {name: {"seconds": statistics.median(values), "all_seconds": values}
            for name, values in times.items()}


def peak_memory(implementation: str, name: str, size: int, batch: int, precision: str,
                winograd: bool) -> dict:
    """Peak RSS of one implementation over two steps (the second has Adam's state)."""
    if implementation == "reference":
        step = _reference_step(name, size, batch, precision)
    else:
        step = _our_step(name, size, batch, precision, winograd)
    generator = torch.Generator().manual_seed(0)
    for index in range(2):
        torch.manual_seed(index)
        step(_batch(generator, batch, size))
    return {"peak_rss_mib": peak_rss_kib() / 1024}


def _run_child(arguments: list[str], threads: int, steps: int, winograd: bool) -> dict:
    command = [sys.executable, __file__, "--child", *arguments, "--steps", str(steps),
               "--threads", str(threads), *([] if winograd else ["--no-winograd"])]
    output = subprocess.run(command, capture_output=True, text=True)
    if output.returncode:
        sys.exit(f"{' '.join(arguments)} failed:\n{output.stderr[-2000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vox-256",
                        help="the networks and losses of this config (bundled name or YAML)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=2, help="measured steps per configuration")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-winograd", action="store_true",
                        help="our step with torch's direct convolutions (as tpsmm train "
                        "--no-winograd)")
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    winograd = not args.no_winograd
    if args.child:
        kind, *rest = args.child
        if kind == "time":
            name, size, batch, precision = rest
            result = time_both(name, int(size), int(batch), precision, args.steps, winograd)
        else:
            implementation, name, size, batch, precision = rest
            result = peak_memory(implementation, name, int(size), int(batch), precision,
                                 winograd)
        print(json.dumps(result))
        return

    print(f"train step, {args.config} networks at {args.size}x{args.size}, CPU, {args.threads} "
          f"thread(s), median of {args.steps} step(s) after 1 warm-up (the two "
          f"implementations alternating in one process), peak RSS of each in its own "
          f"process over 2 steps, torch {torch.__version__}; ours with "
          f"{'Winograd (in fp32)' if winograd else 'direct'} convolutions", flush=True)
    print(f"machine: {cpu_description()}; load average {load_average()}", flush=True)
    rows = []
    for batch in args.batches:
        for precision in args.precisions:
            shape = [args.config, str(args.size), str(batch), precision]
            row = {"batch": batch, "precision": precision,
                   **_run_child(["time", *shape], args.threads, args.steps, winograd)}
            for implementation in ("reference", "ours"):
                row[implementation].update(_run_child(
                    ["memory", implementation, *shape], args.threads, args.steps, winograd))
            rows.append(row)
            ref, ours = row["reference"], row["ours"]
            print(f"batch {batch} {precision}: reference {ref['seconds']:.2f} s/step "
                  f"{ref['peak_rss_mib']:.0f} MiB | ours {ours['seconds']:.2f} s/step "
                  f"{ours['peak_rss_mib']:.0f} MiB | speed-up "
                  f"{ref['seconds'] / ours['seconds']:.2f}x, memory "
                  f"{ours['peak_rss_mib'] / ref['peak_rss_mib']:.2f}x", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
