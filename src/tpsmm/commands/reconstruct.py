"""``tpsmm reconstruct``: rebuild each test video from its first frame and measure the error."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.commands.arguments import positive_int
from tpsmm.config import load_config
from tpsmm.data.dataset import FramesDataset
from tpsmm.devices import resolve_device
from tpsmm.errors import ConfigError
from tpsmm.evaluation.extractors import build_extractors
from tpsmm.evaluation.reconstruction import (
    BASELINES,
    ReconstructionReport,
    VideoResult,
    reconstruct,
)
from tpsmm.model import TPSMM
from tpsmm.training.resume_state import TRAINING_KEY


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct the test videos from their first frame: L1, AKD/MKR, AED",
        description="Video reconstruction as in the paper: frame 0 of each test video is the "
        "source, every frame drives it. Prints the mean L1 and writes OUT/results.json (per "
        "video), OUT/png/<video>.png strips of the predictions and, with --save-video, "
        "OUT/mp4/<video>.mp4 (driving | prediction). On the synthetic dataset the markers "
        "give AKD and MKR.",
    )
    p.add_argument("--checkpoint", help="trained checkpoint (not needed with --baseline)")
    p.add_argument("--config", help="config name or YAML (default: the one saved in the "
                   "checkpoint by tpsmm train)")
    p.add_argument("--data", required=True, metavar="ROOT",
                   help="dataset folder: ROOT/test, or the 20%% test part of ROOT")
    p.add_argument("--out", help="output folder (default: CHECKPOINT_DIR/reconstruction, "
                   "or ./reconstruction-<baseline>)")
    p.add_argument("--baseline", choices=BASELINES,
                   help="evaluate a baseline instead of a model: copy-source predicts frame 0")
    p.add_argument("--videos", type=positive_int, help="only the first N test videos")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="frames predicted at once (default 16)")
    p.add_argument("--metrics", default="auto",
                   help="comma-separated extractors: markers, face-alignment, dlib-68 (face "
                   "landmarks: AKD, MKR), dlib-resnet (face embedding: AED; both offline "
                   "with pip install 'tpsmm[landmarks]', named after dlib's models, not the "
                   "paper's), aed; 'auto' (default) uses markers on synthetic data and aed "
                   "with --aed-model")
    p.add_argument("--aed-model", metavar="FILE",
                   help="identity embedding network for AED: torch.export .pt2 (dynamic batch) "
                   "or TorchScript; takes (B, 3, H, W) RGB in [0, 1], returns (B, D)")
    p.add_argument("--save-video", action="store_true", help="also write OUT/mp4/*.mp4")
    p.add_argument("--no-png", action="store_true", help="do not write the PNG strips")
    p.add_argument("--no-bg", action="store_true",
                   help="ignore the checkpoint's background predictor")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: "
                   "auto, a GPU if there is one)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    p.set_defaults(func=run)


def _load_model(args: argparse.Namespace, device: str) -> TPSMM:
    config = args.config
    if config is None:
        config = read_checkpoint(args.checkpoint).get(TRAINING_KEY, {}).get("config")
        if config is None:
            raise ConfigError(f"{args.checkpoint}: has no config inside (not written by tpsmm "
                              f"train); pass --config")
    return TPSMM.from_checkpoint(args.checkpoint, config=config, map_location=device)


def summary(report: ReconstructionReport) -> str:
    """One line per figure: L1, then each extractor's metrics, then the absent ones."""
    frames = sum(video.frames for video in report.videos)
    lines = [f"reconstruct ({report.method}): {len(report.videos)} videos, {frames} frames: "
             f"L1 {report.l1:.5f}"]
    for name, values in report.metrics.items():
        terms = ", ".join(f"{k.upper()} {_number(v)}" for k, v in values.items())
        lines.append(f"  {name}: {terms}")
    for name, reason in report.absent.items():
        lines.append(f"  {name}: absent: {reason}")
    return "\n".join(lines)


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if (args.checkpoint is None) == (args.baseline is None):
        raise ConfigError("give --checkpoint (a trained model) or --baseline, not both")
    device = str(resolve_device(args.device or "auto"))
    model = _load_model(args, device) if args.checkpoint else None
    frame_shape = None
    if model is not None:
        size = model.config.image_size
        frame_shape = [size, size, 3]
    elif args.config is not None:
        frame_shape = (load_config(args.config).get("dataset_params") or {}).get("frame_shape")
    dataset = FramesDataset(args.data, frame_shape=frame_shape, is_train=False)
    names = None if args.metrics == "auto" else [n.strip() for n in args.metrics.split(",")
                                                 if n.strip()]
    keypoints, identities, absent = build_extractors(names, args.data, args.aed_model, device)
    if args.out is not None:
        out = Path(args.out)
    elif args.checkpoint is not None:
        out = Path(args.checkpoint).parent / "reconstruction"
    else:
        out = Path(f"reconstruction-{args.baseline}")

    def progress(done: int, total: int, result: VideoResult) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\rreconstruct: {done}/{total} videos ({result.name}: L1 {result.l1:.4f})",
                  end="\n" if done == total else "", file=sys.stderr)

    report = reconstruct(
        dataset, model, baseline=args.baseline, keypoint_extractors=keypoints,
        identity_extractors=identities, absent=absent, out_dir=out,
        save_png=not args.no_png, save_video=args.save_video, batch_size=args.batch_size,
        max_videos=args.videos, use_bg=False if args.no_bg else None, progress=progress,
    )
    print(summary(report))
    print(f"reconstruct: per-video results in {out / 'results.json'}")
    return 0
