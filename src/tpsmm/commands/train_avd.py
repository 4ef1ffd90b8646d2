"""``tpsmm train-avd``: train the AVD network from a stage-1 checkpoint."""

from __future__ import annotations

import argparse

from tpsmm.commands.train import add_run_options
from tpsmm.training.avd import AVDOptions, train_avd


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-avd",
        help="train the AVD network (animation mode 'avd') from a stage-1 checkpoint",
        description="Stage 2 of the reference recipe: train the AVD network on keypoints of "
        "the frozen stage-1 keypoint detector (train_avd_params of the config). The detector "
        "stays in eval mode unless --kp-train-mode (the reference's behaviour, which lets its "
        "BatchNorm statistics drift and saves them). Writes RUN_DIR/last.pth.tar etc. as "
        "tpsmm train does; the checkpoint holds all networks.",
    )
    p.add_argument("--checkpoint", metavar="STAGE1_CKPT",
                   help="stage-1 checkpoint to start from (not needed with --resume)")
    p.add_argument("--config", help="config name or YAML (default: the one saved in the "
                   "checkpoint by tpsmm train)")
    p.add_argument("--data", metavar="ROOT",
                   help="dataset folder (default: the config's dataset_params.root_dir)")
    add_run_options(p)
    p.add_argument("--kp-train-mode", action="store_true",
                   help="run the keypoint detector in train mode as the reference does")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = train_avd(AVDOptions(
        out=args.out, checkpoint=args.checkpoint, config=args.config, data=args.data,
        resume=args.resume, epochs=args.epochs, epoch_milestones=args.epoch_milestones,
        batch_size=args.batch_size,
        num_repeats=args.num_repeats, workers=args.workers, max_steps=args.max_steps,
        seed=args.seed, checkpoint_minutes=args.checkpoint_minutes,
        checkpoint_every=args.checkpoint_every, device=args.device, threads=args.threads,
        quiet=args.quiet, tensorboard=not args.no_tensorboard, visualize=not args.no_visualize,
        kp_train_mode=args.kp_train_mode,
    ))
    if not args.quiet and result.is_main:
        print(f"train-avd: {result.status} after {result.epochs_done} epoch(s), step "
              f"{result.step}; checkpoint {result.checkpoint}")
    return 130 if result.status == "interrupted" else 0
