"""``tpsmm demo``: the shipped model animates a shipped character, nothing to download."""

from __future__ import annotations

import argparse

from tpsmm.demo import run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="animate the shipped character with the shipped model",
        description="Animate a shipped source image with a shipped driving video using the "
        "shipped synthetic-64 model; writes demo.mp4 and demo_comparison.mp4 "
        "(source | driving | result, with keypoints).",
    )
    parser.add_argument("--out", default=".", help="folder for the two videos (default: here)")
    parser.add_argument("--checkpoint", default=None,
                        help="a synthetic-64 checkpoint to use instead of the shipped one")
    parser.add_argument("--untrained", action="store_true",
                        help="random weights: checks the pipeline, shows no real animation")
    parser.add_argument("--gif", action="store_true",
                        help="also write demo_comparison.gif (half size and frames, no sound)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    outcome = run_demo(args.out, checkpoint=args.checkpoint, untrained=args.untrained,
                       device=args.device, gif=args.gif)
    weights = "untrained weights (pipeline check)" if outcome.untrained else "the shipped model"
    print(f"demo: {outcome.frames} frames animated with {weights}")
    print(f"demo: result      {outcome.result.resolve()}")
    print(f"demo: comparison  {outcome.comparison.resolve()}")
    if outcome.gif is not None:
        print(f"demo: gif         {outcome.gif.resolve()}")
    return 0
