"""``tpsmm synth``: write the procedural cartoon-character dataset (train/ and test/)."""

from __future__ import annotations

import argparse
import sys

from tpsmm.commands.arguments import at_least, fraction, frame_count
from tpsmm.data.synthetic import generate_dataset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate the procedural cartoon-character video dataset",
        description="Render videos of articulated cartoon characters with coloured "
        "landmark markers into ROOT/train and ROOT/test (PNG frame folders, "
        "keypoints in <video>.npz beside each); test characters are unseen in train.",
    )
    p.add_argument("--out", required=True, metavar="ROOT", help="dataset directory")
    p.add_argument("--videos", required=True, type=at_least(1), help="number of clips")
    p.add_argument("--size", type=at_least(16), default=64, help="frame size (default 64)")
    p.add_argument("--frames", type=frame_count, default=32, help="frames per clip: T or LOW-HIGH")
    p.add_argument("--seed", type=at_least(0), default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.2,
        help="fraction of characters held out for test (default 0.2)",
    )
    p.add_argument(
        "--clips-per-identity",
        type=at_least(1),
        default=4,
        help="clips of each character (default 4)",
    )
    p.add_argument("--workers", type=at_least(1), default=1, help="rendering processes")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the dataset in a non-empty ROOT"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(
                f"\rsynth: {done}/{total} videos", end="" if done < total else "\n", file=sys.stderr
            )

    summary = generate_dataset(
        args.out,
        args.videos,
        size=args.size,
        num_frames=args.frames,
        seed=args.seed,
        test_fraction=args.test_fraction,
        clips_per_identity=args.clips_per_identity,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=progress,
    )
    rate = summary.frames / max(summary.seconds, 1e-9)
    print(
        f"synth: {summary.train_videos} train + {summary.test_videos} test videos, "
        f"{summary.frames} frames of {args.size}x{args.size} in {summary.seconds:.1f} s "
        f"({rate:.0f} frames/s) -> {summary.root}"
    )
    return 0
