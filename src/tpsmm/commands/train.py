"""``tpsmm train``: train a model on a video dataset (one process, or many under torchrun)."""

from __future__ import annotations

import argparse

from tpsmm.commands.arguments import non_negative_int, positive_float, positive_int
from tpsmm.devices import PRECISIONS
from tpsmm.training.trainer import TrainOptions, train


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``train-avd``: run directory, resuming, hardware."""
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory: checkpoints, logs, config.yaml, visualisations")
    p.add_argument("--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
                   help="continue the run in RUN_DIR from its last.pth.tar (starting afresh "
                   "if there is none yet), or from CHECKPOINT")
    p.add_argument("--epochs", type=positive_int, help="number of epochs (overrides the config)")
    p.add_argument("--epoch-milestones", type=non_negative_int, nargs="+", metavar="EPOCH",
                   help="epochs after which the lr drops 10x (overrides the config); with "
                   "--resume, the lr becomes what the new schedule gives the current epoch")
    p.add_argument("--batch-size", type=positive_int,
                   help="global batch size, split over the processes (overrides the config)")
    p.add_argument("--num-repeats", type=positive_int,
                   help="passes over the dataset per epoch (overrides the config)")
    p.add_argument("--max-steps", type=positive_int,
                   help="stop, with a checkpoint, after this many steps in total")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the weights, data order and random draws (default 0)")
    p.add_argument("--workers", type=non_negative_int,
                   help="data loader processes per training process (overrides the config)")
    p.add_argument("--checkpoint-minutes", type=positive_float, default=30.0,
                   help="also save RUN_DIR/last.pth.tar this often (default 30)")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="EPOCHS",
                   help="keep a numbered checkpoint every EPOCHS epochs "
                   "(default: the config's checkpoint_freq)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available); "
                   "under torchrun each process takes GPU LOCAL_RANK")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads per process")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="do not write TensorBoard events even if tensorboard is installed")
    p.add_argument("--no-visualize", action="store_true",
                   help="do not save train-vis/<epoch>-rec.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summaries")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on your videos (resumable; torchrun for several GPUs/machines)",
        description="Train the TPSMM networks with the reference recipe on ROOT/train "
        "(or an 80/20 split of ROOT). Saves RUN_DIR/last.pth.tar every epoch and every "
        "--checkpoint-minutes, numbered checkpoints every checkpoint_freq epochs, log.jsonl, "
        "log.txt and train-vis/*.png. Several processes: "
        "torchrun --nproc_per_node N -m tpsmm.cli train ...",
    )
    p.add_argument("--config", help="bundled config name (vox-256, taichi-256, ted-384, "
                   "mgif-256) or YAML path; when resuming, the run's own config is used")
    p.add_argument("--data", metavar="ROOT",
                   help="dataset folder (default: the config's dataset_params.root_dir)")
    add_run_options(p)
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="start a new run from these weights (fine-tuning)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="change one config value of a new run, VALUE read as YAML (e.g. "
                   "train_params.loss_weights.pixel=0); repeatable")
    p.add_argument("--image-size", type=positive_int,
                   help="train at this resolution, resizing the frames to it")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="autocast precision (default fp32; fp16 uses a gradient scaler)")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (often faster on recent GPUs)")
    p.add_argument("--vgg-weights", metavar="imagenet|PATH|random",
                   help="VGG-19 of the perceptual loss (default: the config's "
                   "train_params.perceptual_weights, else imagenet from the torch hub cache); "
                   "'random' is an explicit choice for tests and offline demos")
    p.add_argument("--no-winograd", action="store_true",
                   help="on the CPU, use torch's direct 3x3 convolutions instead of Winograd's "
                   "algorithms (which are faster but round differently, by ~1e-5)")
    p.add_argument("--sync-bn", action="store_true",
                   help="synchronise BatchNorm statistics across GPUs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = train(TrainOptions(
        out=args.out, config=args.config, data=args.data, resume=args.resume, init=args.init,
        epochs=args.epochs, epoch_milestones=args.epoch_milestones, batch_size=args.batch_size,
        num_repeats=args.num_repeats,
        workers=args.workers, image_size=args.image_size, max_steps=args.max_steps,
        seed=args.seed, precision=args.precision, channels_last=args.channels_last,
        vgg_weights=args.vgg_weights, winograd=not args.no_winograd, overrides=args.overrides,
        checkpoint_minutes=args.checkpoint_minutes,
        checkpoint_every=args.checkpoint_every, device=args.device, sync_bn=args.sync_bn,
        threads=args.threads, quiet=args.quiet, tensorboard=not args.no_tensorboard,
        visualize=not args.no_visualize,
    ))
    if not args.quiet and result.is_main:
        print(f"train: {result.status} after {result.epochs_done} epoch(s), step "
              f"{result.step}; checkpoint {result.checkpoint}")
    return 130 if result.status == "interrupted" else 0
