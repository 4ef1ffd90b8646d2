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
  SIGTERM), with everything resuming needs (:mod:`tpsmm.training.resume_state`);
- several processes train with DistributedDataParallel under ``torchrun``;
  ``batch_size`` is the global batch, split evenly over the processes, as
  the reference's DataParallel split it over GPUs;
- on the CPU in fp32, the 3x3 stride-1 convolutions of the inpainting and
  dense motion networks and of the perceptual loss's VGG-19 (nearly all of
  the work) run their forward pass and input gradient through Winograd's
  algorithms, NNPACK's and a batched F(4x4, 3x3) for smaller maps
  (:mod:`tpsmm.networks.winograd`; ``winograd=False`` turns this off);
- optional bf16/fp16 autocast and channels-last memory format.

:func:`train` is the whole job; ``tpsmm train`` is a thin layer over it.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tpsmm.checkpoint_file import load_networks, read_checkpoint
from tpsmm.config import Config
from tpsmm.data.dataset import FramesDataset
from tpsmm.devices import PRECISIONS, autocast
from tpsmm.errors import ConfigError
from tpsmm.losses import GeneratorFullModel
from tpsmm.model import TPSMM, trainable
from tpsmm.networks import load_vgg19
from tpsmm.networks.winograd import use_winograd, winograd_available
from tpsmm.training.distributed import DistributedContext, setup_distributed
from tpsmm.training.loop import (
    Schedule,
    TrainResult,
    run_epochs,
)
from tpsmm.training.lr_schedule import load_step_schedule, step_schedule
from tpsmm.training.resume_state import (
    TRAINING_KEY,
    find_resume_point,
    restore_rng_states,
    rng_states,
)
from tpsmm.training.run_config import TrainOptions, run_config
from tpsmm.training.sampling import TrainingPairs
from tpsmm.training.visualizer import visualize

#: The reference's optimizer settings (not in its configs).
ADAM_BETAS = (0.5, 0.999)
WEIGHT_DECAY = 1e-4
#: Inf-norm clipping of the keypoint, dense-motion and background gradients.
CLIP_NORM = 10.0
#: Networks trained in stage 1, in the order of the reference's optimizer.
STAGE1_NETWORKS = ("inpainting_network", "dense_motion_network", "kp_detector")
#: Networks whose 3x3 convolutions run through Winograd on the CPU (and the VGG-19).
WINOGRAD_NETWORKS = ("inpainting_network", "dense_motion_network")
#: Samples shown in the per-epoch visualisation.
VIS_ROWS = 6


def training_dataset(config: Config) -> FramesDataset:
    """The train split of ``dataset_params`` (root, frame_shape, id_sampling, augmentation)."""
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


class Stage1:
    """The networks, optimizers and LR schedule of a stage-1 run, and one training step.

    Builds :class:`~tpsmm.model.TPSMM` from ``config`` with weights seeded by
    ``seed`` (or loaded from the checkpoint ``init``), the VGG-19 of the
    perceptual loss (``train_params.perceptual_weights``), the two Adams
    and their MultiStepLR schedulers, and a gradient scaler for fp16.
    :meth:`step` is one optimisation step on a batch. ``ctx`` None means one
    process on the CPU; ``precision`` and ``channels_last`` as in
    :class:`TrainOptions`.
    """

    def __init__(self, config: Config, ctx: DistributedContext | None = None, seed: int = 0,
                 precision: str = "fp32", channels_last: bool = False,
                 init: str | os.PathLike | None = None, sync_bn: bool = False,
                 winograd: bool = True):
        ctx = ctx or DistributedContext.single_cpu()
        self.config = config
        self.ctx = ctx
        self.params = config.train_params
        torch.manual_seed(seed)  # same initial weights on every process
        self.model = TPSMM(config)
        if init is not None:
            self.model.loaded = load_networks(
                {k: v for k, v in self.model.networks.items() if k != "avd_network"},
                read_checkpoint(init), str(init),
            )
        if sync_bn and ctx.enabled:
            if ctx.device.type != "cuda":
                raise ConfigError("--sync-bn needs GPUs (SyncBatchNorm has no CPU kernels)")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if ctx.device.type == "cuda":
            # Every batch has the same shape: let cuDNN pick its fastest kernels once.
            torch.backends.cudnn.benchmark = True
        self.model.to(ctx.device, memory_format=self.memory_format).train()
        self.bg = self.model.bg_predictor
        # The VGG-19 serves the perceptual loss alone: with its weights all 0 (an ablation)
        # none is built, so neither its ImageNet file nor a download is needed.
        self.vgg = None
        if sum(self.params["loss_weights"]["perceptual"]) != 0:
            vgg = load_vgg19(self.params["perceptual_weights"], ctx.device).eval()
            self.vgg = vgg.to(memory_format=self.memory_format)
        self.winograd = (winograd and not channels_last
                         and winograd_available(ctx.device, precision))
        if self.winograd:
            # Not in the ResNet-18 detectors: little of the work, and their gradients
            # (BatchNorm over a small batch) amplify rounding differences the most.
            for network in WINOGRAD_NETWORKS:
                use_winograd(getattr(self.model, network))
            if self.vgg is not None:
                use_winograd(self.vgg)
        # One full model per phase: DDP needs every parameter it wraps to get
        # a gradient, and the background predictor only does from bg_start.
        self._full: dict[bool, nn.Module] = {}

        fused = {"fused": True}
        generator_params = [p for name in STAGE1_NETWORKS
                            for p in getattr(self.model, name).parameters()]
        self.optimizer = torch.optim.Adam(generator_params, lr=self.params["lr_generator"],
                                          betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY, **fused)
        self.scheduler = step_schedule(self.optimizer, self.params["epoch_milestones"])
        self.optimizer_bg = self.scheduler_bg = None
        if trainable(self.bg):  # not LucasKanadeBGMotion: it has no weights
            self.optimizer_bg = torch.optim.Adam(self.bg.parameters(),
                                                 lr=self.params["lr_generator"],
                                                 betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY,
                                                 **fused)
            self.scheduler_bg = step_schedule(self.optimizer_bg, self.params["epoch_milestones"])
        self.precision = precision
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
        # Clipped network by network, as the reference does (with the inf-norm
        # that differs from clipping them together).
        self.clipped = [list(getattr(self.model, name).parameters())
                        for name in ("kp_detector", "dense_motion_network")]

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
                # A loss switched off (an ablation) leaves parameters without a gradient,
                # which DDP must be told to look for (it costs a graph traversal a step).
                weights = self.params["loss_weights"]
                some_off = any(weights[term] == 0 for term in ("equivariance_value",
                                                               "warp_loss", "bg"))
                some_off = some_off or sum(weights["perceptual"]) == 0
                full = DistributedDataParallel(full, device_ids=ids,
                                               find_unused_parameters=some_off)
            self._full[use_bg] = full
        return self._full[use_bg]

    def step(self, batch: dict, epoch: int) -> tuple[dict[str, torch.Tensor], dict]:
        """One optimisation step on a batch; returns the detached losses and outputs."""
        losses, generated = self.backward(batch, epoch)
        self.update(epoch)
        return losses, generated

    def backward(self, batch: dict, epoch: int,
                 weight: float = 1.0) -> tuple[dict[str, torch.Tensor], dict]:
        """The losses of ``batch`` and their gradients (times ``weight``), added to the
        parameters' ``.grad``; returns the detached losses and outputs."""
        device = self.ctx.device
        x = {key: batch[key].to(device, non_blocking=True)
             .contiguous(memory_format=self.memory_format) for key in ("source", "driving")}
        with autocast(device, self.precision):
            losses, generated = self.full_model(epoch)(x, epoch)
        # .mean() as the reference (one value per DataParallel replica there).
        loss = sum(value.mean() for value in losses.values())
        self.scaler.scale(loss * weight).backward()
        return {k: v.detach().float().mean() for k, v in losses.items()}, generated

    def update(self, epoch: int) -> None:
        """Clip the gradients :meth:`backward` left, step the optimizers, clear them."""
        use_bg = self.uses_bg(epoch)
        self.scaler.unscale_(self.optimizer)
        for parameters in self.clipped:
            torch.nn.utils.clip_grad_norm_(parameters, CLIP_NORM, norm_type=math.inf)
        self.scaler.step(self.optimizer)
        if use_bg and self.optimizer_bg is not None:
            self.scaler.unscale_(self.optimizer_bg)
            torch.nn.utils.clip_grad_norm_(self.bg.parameters(), CLIP_NORM, norm_type=math.inf)
            self.scaler.step(self.optimizer_bg)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.optimizer_bg is not None:
            self.optimizer_bg.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def visualize(self, batch: dict, outputs: dict) -> np.ndarray:
        """The reference's picture of the batch, its first :data:`VIS_ROWS` samples only
        (the reference drew all 28: a 7168-pixel-high image at 256x256)."""
        params = self.config.get("visualizer_params") or {}
        rows = slice(0, VIS_ROWS)
        generated = {key: _rows(value, rows) for key, value in outputs.items()}
        return visualize(batch["source"][rows], batch["driving"][rows], generated,
                         **{k: params[k] for k in ("kp_size", "draw_border") if k in params})

    def end_epoch(self) -> None:
        self.scheduler.step()
        if self.scheduler_bg is not None:
            with warnings.catch_warnings():
                # Before bg_start its optimizer has not stepped yet, which torch
                # warns about; the schedule must still count those epochs.
                warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
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
        if self.optimizer_bg is not None:
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
        milestones = self.params["epoch_milestones"]
        load_step_schedule(self.scheduler, training["scheduler"], milestones)
        if self.optimizer_bg is not None and "optimizer_bg_predictor" in checkpoint:
            self.optimizer_bg.load_state_dict(checkpoint["optimizer_bg_predictor"])
            load_step_schedule(self.scheduler_bg, training["scheduler_bg"], milestones)
        self.scaler.load_state_dict(training["scaler"])
        restore_rng_states(training["rng"])


def _rows(value: Any, rows: slice) -> Any:
    """The ``rows`` of every batch tensor in a (nested) model output."""
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, dict):
        return {key: _rows(item, rows) for key, item in value.items()}
    if isinstance(value, list):
        return [_rows(item, rows) for item in value]
    return value


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
        resume = find_resume_point(Path(options.out), options.resume)
        config = run_config(options, resume.training["config"] if resume else None)
        params = config.train_params
        seed = resume.training["seed"] if resume else options.seed
        dataset = training_dataset(config)
        _check_frame_size(dataset, config)
        stage = Stage1(config, ctx, seed, options.precision, options.channels_last,
                       options.init, options.sync_bn, options.winograd)
        schedule = Schedule(
            num_epochs=params["num_epochs"], batch_size=params["batch_size"],
            num_repeats=params["num_repeats"], workers=params.get("dataloader_workers") or 0,
            keep_every=options.checkpoint_every or params.get("checkpoint_freq")
            or params["num_epochs"],
        )
        if ctx.is_main and not options.quiet:
            if resume and options.config is not None:
                print("train: resuming with the run's own config.yaml; --config is ignored")
            vgg = params["perceptual_weights"] if stage.vgg is not None else "none (weights 0)"
            print(f"train: VGG-19 of the perceptual loss: {vgg}")
        pairs = TrainingPairs(dataset, schedule.num_repeats, seed)
        return run_epochs(stage, pairs, schedule, config, options, ctx, seed, resume, "train")
    finally:
        ctx.shutdown()
