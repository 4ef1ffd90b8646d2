"""Stage-1 training: the reference recipe (SPEC section 6.1), resumable and distributed.

The recipe is the reference's: one Adam (betas 0.5/0.999, L2 weight decay
1e-4) over the inpainting, dense-motion and keypoint networks and another
over the background predictor; MultiStepLR (gamma 0.1) stepped per epoch;
gradients of the motion networks clipped to an inf-norm of 10; the TPS
dropout ramp and ``bg_start`` by epoch; the weighted losses of
:class:`~tpsmm.losses.GeneratorFullModel` summed.

What differs is how it is run:

- data order, frame sampling, augmentation and the model's random draws are
  functions of (seed, epoch, step) (:mod:`tpsmm.training.sampling`), so a
  resumed run replays exactly what an uninterrupted one would have done;
- the state is saved atomically at every epoch end, every
  ``checkpoint_minutes`` and when a run stops early (``max_steps``, SIGINT,
  SIGTERM), with everything resuming needs (:mod:`tpsmm.training.checkpoints`);
- several processes train with DistributedDataParallel under ``torchrun``;
  ``batch_size`` is the global batch, split evenly over the processes, as
  the reference's DataParallel split it over GPUs;
- optional bf16/fp16 autocast and channels-last memory format.

:func:`train` is the whole job; ``tpsmm train`` is a thin layer over it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tpsmm.checkpoint import atomic_save, load_networks, read_checkpoint
from tpsmm.config import Config, load_config
from tpsmm.data.dataset import FramesDataset
from tpsmm.errors import CheckpointError, ConfigError
from tpsmm.losses import GeneratorFullModel
from tpsmm.model import TPSMM
from tpsmm.networks import load_vgg19
from tpsmm.training.checkpoints import (
    LAST,
    TRAINING_KEY,
    numbered_name,
    read_training_checkpoint,
    restore_rng_states,
    resume_path,
    rng_states,
)
from tpsmm.training.distributed import DistributedContext, setup_distributed
from tpsmm.training.logs import TrainingLog, progress_bar
from tpsmm.training.sampling import EpochSampler, TrainingPairs, make_loader, step_seed
from tpsmm.training.visualizer import save_image, visualize

#: The reference's optimizer settings (not in its configs).
ADAM_BETAS = (0.5, 0.999)
WEIGHT_DECAY = 1e-4
LR_GAMMA = 0.1
#: Inf-norm clipping of the keypoint, dense-motion and background gradients.
CLIP_NORM = 10.0
#: Networks trained in stage 1, in the order of the reference's optimizer.
STAGE1_NETWORKS = ("inpainting_network", "dense_motion_network", "kp_detector")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CONFIG_FILE = "config.yaml"


@dataclass
class TrainOptions:
    """What ``tpsmm train`` asks for; None means "as in the config".

    Attributes:
        out: the run directory (checkpoints, logs, ``config.yaml``, ``train-vis/``).
        config: bundled config name, YAML path or dict. May be None when
            resuming: the run's own config is used then.
        data: the dataset folder; None uses ``dataset_params.root_dir``.
        resume: None for a new run, ``"last"`` to continue ``out/last.pth.tar``
            (or start afresh when there is none), or a checkpoint path.
        init: a checkpoint whose networks initialise a new run (fine-tuning).
        epochs, batch_size, num_repeats, workers: override ``train_params``
            (``num_epochs``, ``batch_size`` (global), ``num_repeats``,
            ``dataloader_workers``).
        image_size: train at this resolution; frames are resized to it.
        max_steps: stop (with a checkpoint) after this many steps in total.
        seed: seeds the initial weights, the data order and every random draw.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast.
        channels_last: NHWC memory format for networks and batches.
        vgg_weights: VGG-19 weights of the perceptual loss: ``"imagenet"``, a
            path or ``"random"`` (overrides ``train_params.perceptual_weights``).
        checkpoint_minutes: also save ``last.pth.tar`` this often (None: only
            at epoch ends).
        checkpoint_every: keep a numbered checkpoint every this many epochs
            (default ``train_params.checkpoint_freq``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; None picks CUDA if present.
        sync_bn: SyncBatchNorm in the ResNets when distributed on GPUs.
        threads: torch intra-op threads of each process (None: torch's default).
        quiet: no progress bar and no summary lines.
        tensorboard: write TensorBoard events when the package is installed.
        visualize: save ``train-vis/<epoch>-rec.png`` at every epoch end.
    """

    out: str | os.PathLike
    config: str | os.PathLike | dict | None = None
    data: str | os.PathLike | None = None
    resume: str | None = None
    init: str | os.PathLike | None = None
    epochs: int | None = None
    batch_size: int | None = None
    num_repeats: int | None = None
    workers: int | None = None
    image_size: int | None = None
    max_steps: int | None = None
    seed: int = 0
    precision: str = "fp32"
    channels_last: bool = False
    vgg_weights: str | None = None
    checkpoint_minutes: float | None = 30.0
    checkpoint_every: int | None = None
    device: str | None = None
    sync_bn: bool = False
    threads: int | None = None
    quiet: bool = False
    tensorboard: bool = True
    visualize: bool = True


@dataclass
class TrainResult:
    """How a call to :func:`train` ended.

    ``status`` is ``"finished"`` (all epochs done), ``"max-steps"`` or
    ``"interrupted"`` (SIGINT/SIGTERM). ``epochs_done`` counts completed
    epochs; ``step`` is the global step count; ``epoch_losses`` are the
    means of the last completed epoch (empty if none completed in this call);
    ``is_main`` is False on the processes of a distributed run but rank 0.
    """

    run_dir: Path
    status: str
    epochs_done: int
    step: int
    checkpoint: Path
    epoch_losses: dict[str, float] = field(default_factory=dict)
    is_main: bool = True


def _plain(config: dict) -> dict:
    # Config is a dict subclass that yaml.safe_dump refuses; JSON gives plain types.
    return json.loads(json.dumps(config))


def _resolve_config(options: TrainOptions, saved: dict | None) -> Config:
    """The run's config: the saved one when resuming, else the given one, plus overrides."""
    if saved is not None:
        data = copy.deepcopy(saved)
        params = data["train_params"]
        fixed = {"batch_size": options.batch_size, "num_repeats": options.num_repeats}
        for key, value in fixed.items():
            if value is not None and value != params[key]:
                raise ConfigError(
                    f"cannot change {key} when resuming (the run uses {params[key]}); "
                    f"start a new run to train with {value}"
                )
        if options.image_size is not None and options.image_size != data.get("image_size"):
            raise ConfigError("cannot change the image size when resuming a run")
    else:
        if options.config is None:
            raise ConfigError("--config is needed to start a new run")
        data = _plain(load_config(options.config))
        params = data.setdefault("train_params", {})
        for key, value in (("batch_size", options.batch_size),
                           ("num_repeats", options.num_repeats)):
            if value is not None:
                params[key] = value
        size = options.image_size or load_config(data).image_size
        data["image_size"] = size
        if options.image_size is not None:
            data.setdefault("dataset_params", {})["frame_shape"] = [size, size, 3]
        if options.vgg_weights is None and params.get("perceptual_weights") is None:
            params["perceptual_weights"] = "imagenet"
    params = data["train_params"]
    if options.vgg_weights is not None:
        params["perceptual_weights"] = str(options.vgg_weights)
    if options.epochs is not None:
        params["num_epochs"] = options.epochs
    if options.workers is not None:
        params["dataloader_workers"] = options.workers
    if options.data is not None:
        data.setdefault("dataset_params", {})["root_dir"] = str(options.data)
    config = load_config(data)
    config.train_params  # noqa: B018 (raises ConfigError naming any missing key)
    return config


def _dataset(config: Config) -> FramesDataset:
    params = config.get("dataset_params") or {}
    if params.get("root_dir") is None:
        raise ConfigError("no dataset: pass --data ROOT (or set dataset_params.root_dir)")
    return FramesDataset(
        params["root_dir"],
        frame_shape=params.get("frame_shape"),
        id_sampling=bool(params.get("id_sampling", False)),
        is_train=True,
        augmentation_params=params.get("augmentation_params"),
    )


def _check_frame_size(dataset: FramesDataset, config: Config) -> None:
    """Frames stored at another size than the model's are a config mistake; say so."""
    pair = dataset.sample_pair(0, np.random.default_rng(0))
    height, width = pair["source"].shape[-2:]
    if (height, width) != (config.image_size, config.image_size):
        raise ConfigError(
            f"{dataset.root_dir}: frames are {height}x{width} but the model trains at "
            f"{config.image_size}x{config.image_size}; pass --image-size {height} or resize "
            f"the videos (dataset_params.frame_shape)"
        )


@contextmanager
def _stop_requests() -> Iterator[list[bool]]:
    """Turn SIGINT/SIGTERM into a flag checked between steps (a second SIGINT aborts)."""
    flag = [False]
    previous: dict[int, Any] = {}

    def request(signum: int, frame: Any) -> None:
        if flag[0] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag[0] = True

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request)
    except ValueError:  # not the main thread: leave signals alone
        previous.clear()
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Stage1:
    """The networks, optimizers and schedule of one stage-1 run."""

    def __init__(self, config: Config, options: TrainOptions, ctx: DistributedContext,
                 seed: int):
        self.config = config
        self.ctx = ctx
        self.params = config.train_params
        torch.manual_seed(seed)  # same initial weights on every process
        self.model = TPSMM(config)
        if options.init is not None:
            self.model.loaded = load_networks(
                {k: v for k, v in self.model.networks.items() if k != "avd_network"},
                read_checkpoint(options.init), str(options.init),
            )
        if options.sync_bn and ctx.enabled:
            if ctx.device.type != "cuda":
                raise ConfigError("--sync-bn needs GPUs (SyncBatchNorm has no CPU kernels)")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.memory_format = (torch.channels_last if options.channels_last
                              else torch.contiguous_format)
        self.model.to(ctx.device, memory_format=self.memory_format).train()
        self.bg = self.model.bg_predictor
        vgg = load_vgg19(self.params["perceptual_weights"], ctx.device).eval()
        self.vgg = vgg.to(memory_format=self.memory_format)
        # One full model per phase: DDP needs every parameter it wraps to get
        # a gradient, and the background predictor only does from bg_start.
        self._full: dict[bool, nn.Module] = {}

        fused = {"fused": True}
        generator_params = [p for name in STAGE1_NETWORKS
                            for p in getattr(self.model, name).parameters()]
        self.optimizer = torch.optim.Adam(generator_params, lr=self.params["lr_generator"],
                                          betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY, **fused)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, self.params["epoch_milestones"], gamma=LR_GAMMA)
        self.optimizer_bg = self.scheduler_bg = None
        if self.bg is not None:
            self.optimizer_bg = torch.optim.Adam(self.bg.parameters(),
                                                 lr=self.params["lr_generator"],
                                                 betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY,
                                                 **fused)
            self.scheduler_bg = torch.optim.lr_scheduler.MultiStepLR(
                self.optimizer_bg, self.params["epoch_milestones"], gamma=LR_GAMMA)
        dtype = PRECISIONS[options.precision]
        self.autocast_dtype = dtype
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=dtype is torch.float16)
        self.clipped = [p for name in ("kp_detector", "dense_motion_network")
                        for p in getattr(self.model, name).parameters()]

    def uses_bg(self, epoch: int) -> bool:
        return self.bg is not None and epoch >= self.params["bg_start"]

    def full_model(self, epoch: int) -> nn.Module:
        use_bg = self.uses_bg(epoch)
        if use_bg not in self._full:
            full = GeneratorFullModel(self.model.kp_detector, self.bg if use_bg else None,
                                      self.model.dense_motion_network,
                                      self.model.inpainting_network, self.params, self.vgg)
            full.to(self.ctx.device)
            if self.ctx.enabled:
                ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
                full = DistributedDataParallel(full, device_ids=ids)
            self._full[use_bg] = full
        return self._full[use_bg]

    def step(self, batch: dict, epoch: int) -> tuple[dict[str, torch.Tensor], dict]:
        """One optimisation step on a batch; returns the detached losses and outputs."""
        device = self.ctx.device
        x = {key: batch[key].to(device, non_blocking=True)
             .contiguous(memory_format=self.memory_format) for key in ("source", "driving")}
        with torch.autocast(device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            losses, generated = self.full_model(epoch)(x, epoch)
        # .mean() as the reference (one value per DataParallel replica there).
        loss = sum(value.mean() for value in losses.values())
        self.scaler.scale(loss).backward()
        use_bg = self.uses_bg(epoch)
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.clipped, CLIP_NORM, norm_type=math.inf)
        self.scaler.step(self.optimizer)
        if use_bg:
            self.scaler.unscale_(self.optimizer_bg)
            torch.nn.utils.clip_grad_norm_(self.bg.parameters(), CLIP_NORM, norm_type=math.inf)
            self.scaler.step(self.optimizer_bg)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.optimizer_bg is not None:
            self.optimizer_bg.zero_grad(set_to_none=True)
        return {k: v.detach().float().mean() for k, v in losses.items()}, generated

    def end_epoch(self) -> None:
        self.scheduler.step()
        if self.scheduler_bg is not None:
            self.scheduler_bg.step()

    def state(self, completed_epoch: int, training: dict) -> dict[str, Any]:
        """The checkpoint dict: reference keys plus the resume state."""
        data: dict[str, Any] = {
            name: getattr(self.model, name).state_dict() for name in STAGE1_NETWORKS
        }
        data["optimizer"] = self.optimizer.state_dict()
        if self.bg is not None:
            # Always saved (the reference waits for bg_start) so that a resumed
            # run continues from the same initial background weights.
            data["bg_predictor"] = self.bg.state_dict()
            data["optimizer_bg_predictor"] = self.optimizer_bg.state_dict()
        data["epoch"] = completed_epoch
        training = dict(training, scheduler=self.scheduler.state_dict(),
                        scaler=self.scaler.state_dict(), rng=rng_states())
        if self.scheduler_bg is not None:
            training["scheduler_bg"] = self.scheduler_bg.state_dict()
        data[TRAINING_KEY] = training
        return data

    def load(self, checkpoint: dict[str, Any], source: str) -> None:
        networks = {name: getattr(self.model, name) for name in STAGE1_NETWORKS}
        networks["bg_predictor"] = self.bg
        load_networks(networks, checkpoint, source)
        training = checkpoint[TRAINING_KEY]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        if self.bg is not None and "optimizer_bg_predictor" in checkpoint:
            self.optimizer_bg.load_state_dict(checkpoint["optimizer_bg_predictor"])
            self.scheduler_bg.load_state_dict(training["scheduler_bg"])
        self.scaler.load_state_dict(training["scaler"])
        restore_rng_states(training["rng"])


def train(options: TrainOptions) -> TrainResult:
    """Train (or continue training) a TPSMM model; see :class:`TrainOptions`.

    Raises :class:`~tpsmm.errors.ConfigError`, :class:`~tpsmm.errors.InputError`
    (dataset) or :class:`~tpsmm.errors.CheckpointError` (resume) before any
    training step when the inputs are unusable.
    """
    if options.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}")
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    ctx = setup_distributed(options.device)
    try:
        return _train(options, ctx)
    finally:
        ctx.shutdown()


def _train(options: TrainOptions, ctx: DistributedContext) -> TrainResult:
    run_dir = Path(options.out)
    start_path = resume_path(run_dir, options.resume)
    checkpoint = (read_training_checkpoint(start_path, ctx.device) if start_path
                  else None)
    resumed = checkpoint[TRAINING_KEY] if checkpoint else None
    config = _resolve_config(options, resumed["config"] if resumed else None)
    params = config.train_params
    seed = resumed["seed"] if resumed else options.seed
    batch_size = params["batch_size"]
    if batch_size % ctx.world_size:
        raise ConfigError(f"batch size {batch_size} does not split over {ctx.world_size} "
                          f"processes; use a multiple of {ctx.world_size}")
    dataset = _dataset(config)
    _check_frame_size(dataset, config)
    pairs = TrainingPairs(dataset, params["num_repeats"], seed)
    sampler = EpochSampler(len(pairs), batch_size // ctx.world_size, seed, ctx.rank,
                           ctx.world_size)

    stage = _Stage1(config, options, ctx, seed)
    epoch, step_in_epoch, global_step = 0, 0, 0
    sums: dict[str, float] = {}
    if checkpoint is not None:
        stage.load(checkpoint, str(start_path))
        epoch, step_in_epoch = resumed["epoch"], resumed["step_in_epoch"]
        global_step = resumed["global_step"]
        sums = dict(resumed["epoch_sums"])
        if step_in_epoch and resumed["world_size"] != ctx.world_size:
            raise CheckpointError(
                f"{start_path}: saved mid-epoch by {resumed['world_size']} process(es); resume "
                f"it with as many, or from a checkpoint saved at an epoch end"
            )
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(_plain(config), sort_keys=False))
    log = TrainingLog(run_dir, ctx.is_main, global_step if checkpoint else None,
                      options.tensorboard)
    num_epochs = params["num_epochs"]
    keep_every = options.checkpoint_every or params.get("checkpoint_freq") or num_epochs
    workers = params.get("dataloader_workers") or 0
    last_path = run_dir / LAST
    last_save = time.monotonic()
    status = "finished"
    epoch_losses: dict[str, float] = {}
    say = ctx.is_main and not options.quiet
    if say:
        where = f"resuming {start_path} at epoch {epoch} step {global_step}" if checkpoint \
            else "new run"
        print(f"train: {where}; {len(dataset)} training items x {params['num_repeats']} "
              f"repeats, {sampler.steps_per_epoch} steps/epoch of batch {batch_size}, "
              f"{ctx.world_size} process(es) on {ctx.device}, VGG "
              f"{params['perceptual_weights']} -> {run_dir}")

    def save(path: Path, completed_epoch: int) -> None:
        training = {
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "seed": seed, "world_size": ctx.world_size, "epoch_sums": dict(sums),
            "config": _plain(config),
        }
        if ctx.is_main:
            atomic_save(stage.state(completed_epoch, training), path)

    def should_stop() -> bool:
        steps_done = options.max_steps is not None and global_step >= options.max_steps
        return ctx.any(stop_flag[0] or steps_done)

    with _stop_requests() as stop_flag:
        if should_stop() and epoch < num_epochs:
            status = "max-steps"
        while epoch < num_epochs and status == "finished":
            sampler.set_epoch(epoch, step_in_epoch)
            loader = make_loader(pairs, sampler, workers, ctx.device.type == "cuda")
            bar = progress_bar(sampler.steps_per_epoch, step_in_epoch, f"epoch {epoch}",
                               say)
            epoch_start = time.monotonic()
            shown = generated = None
            for batch in loader:
                step_start = time.monotonic()
                torch.manual_seed(step_seed(seed, epoch, step_in_epoch, ctx.rank))
                losses, outputs = stage.step(batch, epoch)
                if step_in_epoch + 1 == sampler.steps_per_epoch:
                    shown, generated = batch, outputs  # the epoch's visualisation
                del outputs
                names = list(losses)
                values = ctx.mean(torch.stack([losses[k] for k in names])).tolist()
                step_losses = dict(zip(names, values, strict=True))
                for name, value in step_losses.items():
                    sums[name] = sums.get(name, 0.0) + value
                step_in_epoch += 1
                global_step += 1
                log.step(epoch, global_step, stage.optimizer.param_groups[0]["lr"],
                         step_losses, time.monotonic() - step_start)
                bar.update()
                bar.set_postfix(loss=f"{sum(values):.4f}")
                if step_in_epoch == sampler.steps_per_epoch:
                    break
                if should_stop():
                    status = "interrupted" if stop_flag[0] else "max-steps"
                    save(last_path, epoch - 1)
                    break
                minutes = options.checkpoint_minutes
                if minutes is not None and time.monotonic() - last_save >= 60 * minutes:
                    save(last_path, epoch - 1)
                    last_save = time.monotonic()
            bar.close()
            if status != "finished":
                break
            # The epoch is complete.
            epoch_losses = {k: v / sampler.steps_per_epoch for k, v in sums.items()}
            log.epoch(epoch, global_step, epoch_losses, time.monotonic() - epoch_start)
            if ctx.is_main and options.visualize and shown is not None:
                image = visualize(shown["source"], shown["driving"], generated,
                                  **_visualizer_params(config))
                save_image(image, run_dir / "train-vis" / f"{epoch:08d}-rec.png")
            stage.end_epoch()
            finished_epoch = epoch
            epoch, step_in_epoch, sums = epoch + 1, 0, {}
            save(last_path, finished_epoch)
            last_save = time.monotonic()
            if (finished_epoch + 1) % keep_every == 0 or epoch == num_epochs:
                save(run_dir / numbered_name(finished_epoch), finished_epoch)
            if say:
                terms = "; ".join(f"{k} {v:.4f}" for k, v in epoch_losses.items())
                print(f"train: epoch {finished_epoch} done (step {global_step}): {terms}")
            if epoch < num_epochs and should_stop():
                status = "interrupted" if stop_flag[0] else "max-steps"
    log.close()
    ctx.barrier()
    return TrainResult(run_dir, status, epoch, global_step, last_path, epoch_losses, ctx.is_main)


def _visualizer_params(config: Config) -> dict[str, Any]:
    params = config.get("visualizer_params") or {}
    return {key: params[key] for key in ("kp_size", "draw_border") if key in params}
