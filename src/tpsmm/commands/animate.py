"""``tpsmm animate``: a source image animated by a driving video, into a video file."""

from __future__ import annotations

import argparse
import sys

import torch

from tpsmm.animation import MODES, Animator
from tpsmm.animation.animator import DEFAULT_MAX_SIZE
from tpsmm.commands.arguments import (
    add_engine_arguments,
    positive_float,
    positive_int,
    slow_precision_warning,
    subject,
)
from tpsmm.config import load_config
from tpsmm.data.images import FIT_MODES, load_image
from tpsmm.data.video import open_video
from tpsmm.devices import resolve_device
from tpsmm.framing.plan import CROP_CHOICES, resolve_crop


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "animate",
        help="animate a source image with the motion of a driving video",
        description="Move the object in a source image as the object in a driving video "
        "moves, and write the result as a video (.mp4 with the driving video's audio), an "
        "animated .gif or a directory of numbered PNG frames. Frames are decoded, animated "
        "and encoded in batches, so any video length fits in memory.",
    )
    p.add_argument("--config", required=True, metavar="NAME|PATH",
                   help="bundled config (vox-256, taichi-256, ted-384, mgif-256) or a YAML file; "
                   "it must be the one the checkpoint was trained with")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint in the reference format (e.g. vox.pth.tar)")
    p.add_argument("--source", required=True, metavar="IMAGE", help="the image to animate")
    p.add_argument("--driving", required=True, metavar="VIDEO",
                   help="video file, animated GIF or directory of frames")
    p.add_argument("--output", required=True, metavar="OUT",
                   help=".mp4/.mov/.mkv, .gif, or a directory for PNG frames")
    p.add_argument("--mode", choices=MODES, default="relative",
                   help="relative: the source moves as the driving object moves from its first "
                   "frame (default); standard: the source takes the driving keypoints as they "
                   "are; avd: pose from the driving frame, shape from the source (needs "
                   "avd_network in the checkpoint)")
    add_engine_arguments(p)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (torch backend), meant for GPUs (not yet "
                   "measured there): the first batch takes minutes to compile, and on the "
                   "CPU it runs slower than the default")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="frames animated at once (default: 4 on the CPU, 16 on CUDA)")
    p.add_argument("--find-best-frame", action="store_true",
                   help="relative mode: measure motion from the driving frame posed most like "
                   "the source instead of the first (face landmarks if the face_alignment "
                   "package and its weights are installed, else the model's keypoints)")
    p.add_argument("--crop", type=subject("auto", "none"), default="auto",
                   metavar="|".join(CROP_CHOICES),
                   help="find the subject and cut it out as the model's training data were "
                   "cut: the source around it, the driving video in tubes that follow it. "
                   "auto (default): the config's subject (vox: face, taichi: body, ted: "
                   "upper-body; others: none); none: fit the whole frames (--fit); "
                   "box:X,Y,W,H: a box in the source's pixels, used for the driving video "
                   "too. Detectors need pip install 'tpsmm[crop]'")
    p.add_argument("--paste-back", action=argparse.BooleanOptionalAction, default=True,
                   help="with a crop, paste the animated crop back into the source image, "
                   "so the output has the source's size (default); --no-paste-back writes "
                   "the model-sized crops")
    p.add_argument("--max-size", type=positive_int, default=DEFAULT_MAX_SIZE, metavar="PX",
                   help=f"longest side of pasted-back output (default {DEFAULT_MAX_SIZE})")
    p.add_argument("--fit", choices=FIT_MODES, default="crop",
                   help="without --crop: inputs of another size or aspect: crop the centre "
                   "square (default), pad to a square with black, or stretch (the reference "
                   "demo's way); inputs at the model size are used as they are")
    p.add_argument("--comparison", metavar="OUT",
                   help="also write source | driving | result, with keypoints, at the model "
                   "size (.mp4/.gif/folder, as --output)")
    p.add_argument("--fps", type=positive_float,
                   help="output frame rate (default: the driving video's; another rate "
                   "changes the duration, so the audio is then left out)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary")
    p.set_defaults(func=run)


def _warn(message: str) -> None:
    print(f"tpsmm animate: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Inputs are checked before the checkpoint (hundreds of MB) is loaded.
    config = load_config(args.config)
    load_image(args.source)  # checked now; read again, whole, by the animator
    driving = open_video(args.driving)
    device = resolve_device(args.device)
    detector, fallback = resolve_crop(args.crop, config)
    if fallback is not None:
        _warn(fallback)
    if device.type == "cuda":
        # Every batch has the same shapes: let cuDNN pick its fastest algorithms once.
        torch.backends.cudnn.benchmark = True
    animator = Animator.from_checkpoint(args.checkpoint, config, device=device,
                                        precision=args.precision, batch_size=args.batch_size,
                                        backend=args.backend, compile=args.compile)
    warning = slow_precision_warning(animator.device, args.backend, args.precision)
    if warning is not None:
        _warn(warning)
    if args.find_best_frame and args.mode != "relative":
        _warn(f"--find-best-frame only changes --mode relative; ignored for --mode {args.mode}")
    if driving.has_audio and args.fps and args.fps != driving.fps:
        _warn(f"--fps {args.fps:g} differs from the driving video's {driving.fps:g} fps; "
              "the audio is left out")

    result = animator.animate(
        args.source, driving, args.output, mode=args.mode, fit_mode=args.fit, fps=args.fps,
        find_best_frame=args.find_best_frame, progress=not args.quiet and sys.stderr.isatty(),
        crop=detector, paste_back=args.paste_back, max_size=args.max_size,
        comparison=args.comparison,
    )
    if not args.quiet:
        height, width = result.frame_size
        extras = []
        if result.best_frame is not None:
            extras.append(f"reference frame {result.best_frame} by {result.best_frame_by}")
        if result.source_window is not None:
            window = result.source_window
            extras.append(f"{detector.subject} cropped at {window.width}x{window.height}+"
                          f"{window.left}+{window.top} in the source, {result.tubes} "
                          f"tube{'s' if result.tubes > 1 else ''} in the driving video")
        if result.audio:
            extras.append("with audio")
        print(
            f"animate: {result.frames} frames of {width}x{height} at "
            f"{result.fps:g} fps{''.join(', ' + e for e in extras)} -> {result.output} "
            f"({result.seconds:.1f} s, {result.frames_per_second:.2f} frames/s on "
            f"{animator.device.type}, {animator.precision}, {animator.backend})"
        )
    return 0
