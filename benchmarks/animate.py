"""Frames per second and peak RSS of ``tpsmm animate`` against a reference-style loop.

Everything runs the vox-256 config at 256x256 with the golden rule weights
(``tpsmm.testing.golden``, saved as a reference-format checkpoint) on the golden vox-256 source
image, driven by frames blended between the golden driving frames (8-bit PNGs, so both
sides read exactly the same pixels):

- *per-frame loop* (:func:`tpsmm.testing.reference_loop.animate_frame_by_frame`), the
  reference demo's way: all frames in memory, then for each frame, batch 1, fp32:
  keypoints, relative keypoints, dense motion, and the whole inpainting network (its
  encoder included). Only this loop is timed: reading and writing frames are left out in
  its favour;
- *tpsmm animate*: :meth:`tpsmm.animation.Animator.animate` from the driving PNG folder to
  an output PNG folder, decoding and encoding included, in fp32 and in bf16 with torch, and
  through each installed ONNX engine (``--backends``: onnxruntime, openvino; fp32).

Runs are interleaved (loop, fp32, bf16, loop, ...) and the best round of each is kept, so
that other work on a shared machine disturbs all of them alike. Peak RSS (``VmHWM``) is
measured in a fresh process per video length, running the ``tpsmm animate`` command on
an mp4 with audio, to an mp4.

    python benchmarks/animate.py                 # 8 frames x 2 rounds, RSS for 60 and 600
    python benchmarks/animate.py --frames 4 --rounds 1 --rss-frames 30 300   # quick look
"""

from __future__ import annotations

import os

# A shared machine runs more threads than it has cores. OpenMP's default spin-waiting then
# makes every parallel op wait for a descheduled thread: measured here, the small model
# of the tests ran 20x slower under load with 2 threads than with passive waiting. Both
# sides of the comparison get the same setting (it must be set before torch is loaded).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from _common import cpu_description, load_average, peak_rss_kib  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from tpsmm import TPSMM, load_config  # noqa: E402
from tpsmm.animation import Animator  # noqa: E402
from tpsmm.animation.inference import optimize_for_inference  # noqa: E402
from tpsmm.data.images import load_image, to_tensor, to_uint8  # noqa: E402
from tpsmm.data.video import open_video, open_writer  # noqa: E402
from tpsmm.deploy.engines import openvino_capabilities  # noqa: E402
from tpsmm.devices import native_reduced_precision  # noqa: E402
from tpsmm.networks.dense_motion import blend_transformations  # noqa: E402
from tpsmm.testing.golden import fill_with_rule  # noqa: E402
from tpsmm.testing.reference_loop import animate_frame_by_frame  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "vox-256.npz"
# The reduced model of the RSS runs: the vox-256 networks with an eighth of the channels,
# still at 256x256, so that 600 frames take seconds rather than a quarter of an hour.
REDUCED = {"generator_params": {"block_expansion": 8, "max_features": 64},
           "dense_motion_params": {"block_expansion": 8, "max_features": 128},
           "kp_detector_params": {"width": 8}}


def _save_model(folder: Path, reduced: bool) -> tuple[Path, Path]:
    """The vox-256 model (or its reduced variant) with rule weights: checkpoint, config."""
    data = dict(load_config("vox-256"))
    if reduced:
        params = copy.deepcopy(data["model_params"])
        for section, values in REDUCED.items():
            params.setdefault(section, {}).update(values)
        data["model_params"] = params
    config = folder / ("reduced.yaml" if reduced else "vox-256.yaml")
    config.write_text(yaml.safe_dump(data))
    model = TPSMM(load_config(config))
    for name, network in model.networks.items():
        if network is not None:
            fill_with_rule(network, name)
    checkpoint = folder / ("reduced.pth.tar" if reduced else "vox-256.pth.tar")
    model.save_checkpoint(checkpoint)
    return checkpoint, config


def _inputs(folder: Path, frames: int) -> tuple[Path, Path]:
    """The golden source as a PNG, and ``frames`` driving PNGs blended between the golden
    first and driving frames."""
    golden = np.load(GOLDEN)
    source = folder / "source.png"
    Image.fromarray(to_uint8(torch.from_numpy(golden["input.source"]))[0]).save(source)
    start, end = golden["input.driving_initial"], golden["input.driving"]
    driving = folder / "driving"
    driving.mkdir()
    for i in range(frames):
        weight = i / max(frames - 1, 1)
        frame = torch.from_numpy((1 - weight) * start + weight * end)
        Image.fromarray(to_uint8(frame)[0]).save(driving / f"{i:04d}.png")
    return source, driving


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (inf when equal)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _read(folder: Path) -> np.ndarray:
    return np.stack(list(open_video(folder)))


def speed(args: argparse.Namespace, folder: Path) -> None:
    checkpoint, config = _save_model(folder, reduced=False)
    source_png, driving = _inputs(folder, args.frames)
    # A variant is a torch precision, compiled or not, or an ONNX engine (fp32, CPU).
    # Each at every --batch-sizes (None: the animator's default for the device).
    kinds = {precision: (precision, "torch", False) for precision in args.precisions}
    if args.compile:
        kinds.update({f"{precision} compiled": (precision, "torch", True)
                      for precision in args.precisions})
    kinds.update({backend: ("fp32", backend, False) for backend in args.backends})
    if "openvino" in args.backends and "bf16" in args.precisions and "BF16" in \
            openvino_capabilities(importlib.import_module("openvino")):
        kinds["openvino bf16"] = ("bf16", "openvino", False)
    variants = {(kind if batch is None or len(args.batch_sizes) == 1 else f"{kind} b{batch}"):
                (*spec, batch) for kind, spec in kinds.items() for batch in args.batch_sizes}
    if "fp32" not in variants:  # the PSNR reference: fp32 at the first batch size
        variants["fp32"] = ("fp32", "torch", False, args.batch_sizes[0])
    animators = {name: Animator.from_checkpoint(checkpoint, config, device=args.device,
                                                precision=precision, backend=backend,
                                                compile=compiled, batch_size=batch)
                 for name, (precision, backend, compiled, batch) in variants.items()}
    device = next(iter(animators.values())).device
    model = TPSMM.from_checkpoint(checkpoint, config, map_location=device)
    source = to_tensor(load_image(source_png)[None]).to(device)
    frames = to_tensor(_read(driving)).to(device)
    name = cpu_description() if device.type == "cpu" else torch.cuda.get_device_name()
    print(f"device: {device} ({name})")
    print(f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"load average {load_average()} before the runs")
    print(f"vox-256 config, 256x256, golden rule weights, relative mode, {args.frames} frames, "
          f"best of {args.rounds} interleaved rounds after a warm-up")
    # A precision without hardware support runs generic kernels, tens of times slower: it
    # is timed on its first batch only, once, so that the run still ends in minutes.
    slow = [v for v, (p, *_) in variants.items() if not native_reduced_precision(device, p)]
    if args.backends:
        print(f"ONNX engines: the vox-256 graphs of `tpsmm export`, {', '.join(args.backends)}, "
              f"{torch.get_num_threads()} threads")
    for variant in slow:
        precision = variants[variant][0]
        print(f"{variant}: no native {precision} on this {device.type} (generic kernels); "
              f"timed once on the first {args.slow_frames} frames")
    print()
    slow_driving = folder / "driving-first"
    slow_driving.mkdir()
    for path in sorted(driving.iterdir())[: args.slow_frames]:
        (slow_driving / path.name).write_bytes(path.read_bytes())

    outputs: dict[str, np.ndarray] = {}

    def run_loop() -> float:
        started = time.perf_counter()
        outputs["loop"] = to_uint8(animate_frame_by_frame(model, source, frames))
        return time.perf_counter() - started

    def run_ours(variant: str, out: Path) -> float:
        """The whole command after loading: prepare the source, stream the video."""
        started = time.perf_counter()
        animators[variant].animate(source_png, slow_driving if variant in slow else driving, out)
        seconds = time.perf_counter() - started
        outputs[variant] = _read(out)
        return seconds

    # Warm-up, so that no side is timed creating its kernels: the loop on one frame, each
    # animator on one batch of the size it will use (compiling, for the compiled ones).
    animate_frame_by_frame(model, source, frames[:1])
    for variant, animator in animators.items():
        if variant not in slow:
            animator.animate_frames(animator.prepare(source_png), frames[: animator.batch_size])
    seconds: dict[str, list[float]] = {"loop": []}
    for round_ in range(args.rounds):
        seconds["loop"].append(run_loop())
        for variant in variants:
            if variant not in slow or round_ == 0:
                out = folder / f"out-{variant}-{round_}"
                seconds.setdefault(variant, []).append(run_ours(variant, out))
    fps = {name: len(outputs[name]) / min(values) for name, values in seconds.items()}
    print(f"{'':34s} {'frames/s':>9s} {'vs loop':>8s}   output")
    print(f"{'per-frame fp32 loop (reference)':34s} {fps['loop']:9.3f} {1:8.2f}x")
    psnr = {}
    for variant in variants:
        against = "loop" if variant == "fp32" else "fp32"
        ours = outputs[variant]
        other = outputs[against][: len(ours)]
        difference = np.abs(ours.astype(int) - other.astype(int))
        psnr[variant] = _psnr(ours, other)
        print(f"{'tpsmm animate ' + variant:34s} {fps[variant]:9.3f} "
              f"{fps[variant] / fps['loop']:8.2f}x   vs {against}: PSNR "
              f"{psnr[variant]:.1f} dB, max |diff| {difference.max()}/255, "
              f"{(difference > 0).mean():.3%} of values differ")
    print(f"load average {load_average()} after the runs; seconds per run: "
          + ", ".join(f"{k} {' '.join(f'{s:.1f}' for s in v)}" for k, v in seconds.items()))
    targets = [("fp32 >= 1.1x the loop", fps["fp32"] / fps["loop"] >= 1.1)]
    if device.type == "cpu":
        fastest = max((v for v in variants if psnr[v] >= 45), key=fps.get, default=None)
        speedup = fps[fastest] / fps["loop"] if fastest else 0.0
        targets.append((f"fastest CPU path with PSNR >= 45 dB >= 3x the loop "
                        f"({fastest}: {speedup:.2f}x)", speedup >= 3))
    if "bf16" in fps:
        targets += [("bf16 >= 2x the loop", fps["bf16"] / fps["loop"] >= 2),
                    ("bf16 PSNR >= 40 dB vs fp32", psnr["bf16"] >= 40)]
    if device.type == "cuda":
        targets.append(("best >= 10x the loop", max(fps.values()) / fps["loop"] >= 10))
    for name, met in targets:
        print(f"target {name}: {'met' if met else 'NOT met'}")
    if device.type == "cpu":
        _print_work(model, source, frames[:1], fps)


def _print_work(model: TPSMM, source: torch.Tensor, frame: torch.Tensor,
                fps: dict[str, float]) -> None:
    """What one frame costs in floating-point operations, and the rate each row needed.

    The networks as inference runs them (fused up-convolutions), direct convolution counted
    (Winograd's fewer multiplications are the torch fp32 row's gain). It bounds the 3x
    target: at 3x the loop, the whole frame has a third of the loop's time.
    """
    model = optimize_for_inference(copy.deepcopy(model), torch.device("cpu"), "fp32",
                                   winograd=False)
    dense_motion, inpainting = model.dense_motion_network, model.inpainting_network
    flops = {}
    with torch.no_grad():
        kp_source = model.kp_detector(source)["fg_kp"]
        maps = inpainting.encode(source)
        with FlopCounterMode(display=False) as counter:
            kp = model.kp_detector(frame)["fg_kp"]
            hourglass_input, transformations, _ = dense_motion.prepare(source, kp, kp_source)
        flops["fp32 before"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            logits, occlusion = dense_motion.predict(hourglass_input)
        flops["dense motion network"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            deformation = blend_transformations(logits.softmax(dim=1), transformations)
            warped, _ = inpainting.warp(maps, deformation, occlusion)
        flops["fp32 after"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            inpainting.decode(warped, occlusion[-1], source)
        flops["inpainting decoder"] = counter.get_total_flops()
    total = sum(flops.values()) / 1e9
    print(f"\nwork per frame (direct convolution, as fused for inference): {total:.0f} GFLOP, "
          f"{flops['inpainting decoder'] / 1e9:.0f} of them in the inpainting decoder and "
          f"{flops['dense motion network'] / 1e9:.0f} in the dense motion network's hourglass "
          f"and heads (the two in bf16 with --precision bf16)")
    for name, rate in fps.items():
        print(f"  {name:32s} {total * rate:6.0f} GFLOP/s over the whole frame")
    print(f"  3x the loop needs {total * 3 * fps['loop']:.0f} GFLOP/s over the whole frame")


def rss(args: argparse.Namespace, folder: Path) -> None:
    checkpoint, config = _save_model(folder, reduced=args.rss_model == "reduced")
    golden = np.load(GOLDEN)
    source = folder / "source.png"
    Image.fromarray(to_uint8(torch.from_numpy(golden["input.source"]))[0]).save(source)
    tone = folder / "tone.wav"
    with wave.open(str(tone), "wb") as file:
        seconds = max(args.rss_frames) / 25 + 1
        time_ = np.arange(round(seconds * 44100)) / 44100
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(44100)
        file.writeframes((8000 * np.sin(2 * np.pi * 440 * time_)).astype("<i2").tobytes())
    start, end = golden["input.driving_initial"], golden["input.driving"]
    what = ("the reduced model (vox-256 with 1/8 of the channels)" if args.rss_model == "reduced"
            else "the vox-256 model")
    print(f"\npeak RSS of `tpsmm animate` ({what}, 256x256 mp4 with audio -> mp4, "
          f"batch 4, a fresh process each):")
    peaks = {}
    for count in args.rss_frames:
        video = folder / f"driving-{count}.mp4"
        with open_writer(video, 25, audio_from=tone) as writer:
            for i in range(count):  # a back-and-forth motion, written frame by frame
                weight = 0.5 - 0.5 * math.cos(2 * math.pi * i / 50)
                frame = torch.from_numpy((1 - weight) * start + weight * end)
                writer.write(to_uint8(frame))
        command = [sys.executable, __file__, "--rss-child", str(checkpoint), str(config),
                   str(source), str(video), str(folder / f"out-{count}.mp4")]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        peaks[count], seconds = map(float, result.stdout.split()[-2:])
        print(f"  {count:5d} frames: {peaks[count] / 1024:7.1f} MiB ({seconds:.1f} s)")
    low, high = min(args.rss_frames), max(args.rss_frames)
    growth = peaks[high] / peaks[low] - 1
    print(f"  {high} vs {low} frames: {growth:+.1%}")
    print(f"target peak RSS for {high} frames within 10% of {low}: "
          f"{'met' if abs(growth) <= 0.10 else 'NOT met'}")


def rss_child(checkpoint: str, config: str, source: str, video: str, out: str) -> None:
    from tpsmm.cli import main

    started = time.perf_counter()
    status = main(["animate", "--config", config, "--checkpoint", checkpoint, "--source", source,
                   "--driving", video, "--output", out, "-q"])
    assert status == 0 and open_video(out).num_frames == open_video(video).num_frames
    print(peak_rss_kib(), time.perf_counter() - started)


def _installed_backends() -> list[str]:
    return [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8, help="driving frames timed (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--slow-frames", type=int, default=2,
                        help="frames for precisions without hardware support (default 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[None],
                        help="frames per batch of tpsmm animate, each timed (default: its "
                        "default for the device)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each precision with torch.compile (compiling, minutes "
                        "per variant, is not timed)")
    parser.add_argument("--backends", nargs="*", default=_installed_backends(),
                        choices=["onnxruntime", "openvino"],
                        help="ONNX engines timed besides torch (default: those installed)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16", "fp16"], help="tpsmm animate precisions")
    parser.add_argument("--rss-frames", type=int, nargs=2, default=[60, 600],
                        help="the two video lengths of the RSS comparison (default 60 600)")
    parser.add_argument("--rss-model", choices=["reduced", "full"], default="reduced",
                        help="model of the RSS runs (default: reduced, see REDUCED)")
    parser.add_argument("--skip-speed", action="store_true", help="only the RSS comparison")
    parser.add_argument("--skip-rss", action="store_true", help="only the speed comparison")
    parser.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    if "fp32" not in args.precisions:
        args.precisions.insert(0, "fp32")
    with tempfile.TemporaryDirectory(prefix="tpsmm-bench-") as folder:
        if not args.skip_speed:
            speed(args, Path(folder))
        if not args.skip_rss:
            rss(args, Path(folder))


if __name__ == "__main__":
    main()
