"""Held-out synthetic videos: the demo model against two baselines.

Reconstructs each test video from its first frame (SPEC section 8) and
reports L1 and, from the characters' coloured markers found in the driving
and the generated frames alike, AKD (pixels) and MKR. Baselines: copying
the source frame, and the same architecture untrained. Targets: L1 and AKD
of the model at most half of copy-source's.

    python benchmarks/synthetic.py                       # the shipped model
    python benchmarks/synthetic.py --checkpoint run/last.pth.tar
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import add_demo_model_arguments

from tpsmm import TPSMM
from tpsmm.data.dataset import FramesDataset
from tpsmm.data.synthetic import generate_dataset
from tpsmm.evaluation.extractors import build_extractors
from tpsmm.evaluation.reconstruction import background_used, reconstruct

# Training used dataset seed 0; these characters are new to the model.
HELD_OUT_SEED = 1


def evaluate(dataset: FramesDataset, root: Path, model: TPSMM | None, baseline: str | None,
             use_bg: bool | None = None):
    keypoints, identities, absent = build_extractors(["markers"], root)
    return reconstruct(dataset, model, baseline=baseline, keypoint_extractors=keypoints,
                       identity_extractors=identities, absent=absent, use_bg=use_bg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_demo_model_arguments(parser)
    parser.add_argument("--data", default=None,
                        help="a synthetic dataset root (default: generate held-out videos)")
    parser.add_argument("--videos", type=int, default=20, help="videos to generate")
    parser.add_argument("--frames", type=int, default=48, help="frames per generated video")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.data) if args.data else Path(scratch)
        if not args.data:
            generate_dataset(root, args.videos, size=64, num_frames=args.frames,
                             seed=HELD_OUT_SEED, test_fraction=0.5, clips_per_identity=1)
        dataset = FramesDataset(root, is_train=False)
        trained = TPSMM.from_checkpoint(args.checkpoint, config=args.config)
        torch.manual_seed(0)
        untrained = TPSMM.from_config(args.config)
        rows = []
        for label, model, baseline in [("copy source", None, "copy-source"),
                                       ("untrained model", untrained, None),
                                       ("trained model", trained, None)]:
            start = time.perf_counter()
            report = evaluate(dataset, root, model, baseline, False if args.no_bg else None)
            rows.append((label, report, time.perf_counter() - start))

    frames = sum(video.frames for video in rows[0][1].videos)
    source = args.data or f"generated with seed {HELD_OUT_SEED}"
    print(f"held-out synthetic videos: {len(rows[0][1].videos)} videos, {frames} frames, "
          f"64x64, {source}")
    print(f"checkpoint: {args.checkpoint} (config {args.config}); background predictor "
          f"{'used' if background_used(trained) and not args.no_bg else 'not used'}")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    copy = rows[0][1]
    copy_akd = copy.metrics["markers"]["akd"]
    print(f"{'method':<16} {'L1':>8} {'AKD px':>8} {'MKR':>7} {'L1/copy':>8} {'AKD/copy':>9}")
    for label, report, _ in rows:
        marker = report.metrics["markers"]
        print(f"{label:<16} {report.l1:8.4f} {marker['akd']:8.3f} {marker['mkr']:7.3f} "
              f"{report.l1 / copy.l1:8.3f} {marker['akd'] / copy_akd:9.3f}")
    trained_report = rows[2][1]
    l1_ok = trained_report.l1 <= 0.5 * copy.l1
    akd_ok = trained_report.metrics["markers"]["akd"] <= 0.5 * copy_akd
    print(f"target L1 <= 0.5 x copy-source: {'met' if l1_ok else 'NOT met'}; "
          f"AKD <= 0.5 x copy-source: {'met' if akd_ok else 'NOT met'}")
    return 0 if l1_ok and akd_ok else 1


if __name__ == "__main__":
    sys.exit(main())
