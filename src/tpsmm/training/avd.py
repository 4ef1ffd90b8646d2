"""Stage 2: the AVD network on top of a trained stage-1 model (SPEC section 6.6).

The AVD network learns to take the identity (shape) of the source's
keypoints and the pose of the driving keypoints. For a training pair the
driving keypoints are scaled by a random factor per axis (``random_scale``)
and the network must undo it from the source's keypoints:
``loss = lambda_shift * mean |kp_driving - AVD(kp_source, scaled kp_driving)|``.

Recipe as the reference: Adam (lr ``train_avd_params.lr``, betas 0.5/0.999,
no weight decay) on the AVD network only, MultiStepLR (gamma 0.1) per
epoch, batches of ``train_avd_params.batch_size``.

One deliberate difference: the reference leaves the keypoint detector in
train mode here, so its BatchNorm layers normalise with batch statistics
and their running statistics drift towards the AVD batches, and saves the
drifted detector into the AVD checkpoint. By default the detector is kept
frozen in eval mode, so the checkpoint's detector is the stage-1 one;
``kp_train_mode=True`` reproduces the reference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from tpsmm.checkpoint_file import load_networks, read_checkpoint
from tpsmm.config import Config, load_config, plain
from tpsmm.errors import CheckpointError, ConfigError
from tpsmm.generator import generate
from tpsmm.model import TPSMM
from tpsmm.training.distributed import DistributedContext, setup_distributed
from tpsmm.training.loop import RunOptions, Schedule, TrainResult, run_epochs
from tpsmm.training.lr_schedule import load_step_schedule, step_schedule
from tpsmm.training.resume_state import (
    TRAINING_KEY,
    find_resume_point,
    restore_rng_states,
    rng_states,
)
from tpsmm.training.sampling import TrainingPairs
from tpsmm.training.trainer import ADAM_BETAS, training_dataset
from tpsmm.training.visualizer import visualize_avd

#: train_avd_params for a config that leaves them out: the values shared by the
#: reference configs, and taichi-256's schedule. The loader workers default to
#: those of train_params.
AVD_DEFAULTS = {"num_epochs": 100, "num_repeats": 150, "batch_size": 256, "checkpoint_freq": 10,
                "epoch_milestones": [70, 90], "lr": 1e-3, "lambda_shift": 1,
                "random_scale": 0.25}
#: Networks of a stage-1 checkpoint that the AVD stage carries along.
CARRIED = ("kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor")


@dataclass
class AVDOptions(RunOptions):
    """What ``tpsmm train-avd`` asks for, besides :class:`RunOptions`.

    Attributes:
        checkpoint: the stage-1 checkpoint (needed for a new run).
        config: config name, YAML path or dict; None takes the one saved in
            the checkpoint by ``tpsmm train``.
        data: the dataset folder; None uses ``dataset_params.root_dir``.
        kp_train_mode: run the keypoint detector in train mode, as the
            reference (its BatchNorm statistics drift and are saved). A
            resumed run keeps the mode it was started with.
    """

    checkpoint: str | os.PathLike | None = None
    config: str | os.PathLike | dict | None = None
    data: str | os.PathLike | None = None
    kp_train_mode: bool = False


def random_scale(kp: torch.Tensor, scale: float) -> torch.Tensor:
    """Scale x and y of each sample by independent factors from U[1 - scale, 1 + scale].

    ``kp: (B, N, 2)`` in [-1, 1]; the scaling is about the origin (the frame
    centre). Factors come from the global torch generator (seeded per step).
    """
    factors = torch.rand(kp.shape[0], 1, 2) * 2 * scale + (1 - scale)
    return kp * factors.to(kp.device, kp.dtype)


class AVDStage:
    """The AVD network, its optimizer and schedule, with frozen stage-1 networks."""

    def __init__(self, config: Config, stage1: dict[str, Any], source: str,
                 ctx: DistributedContext | None = None, seed: int = 0,
                 kp_train_mode: bool = False):
        ctx = ctx or DistributedContext.single_cpu()
        self.config = config
        self.ctx = ctx
        self.params = config["train_avd_params"]
        torch.manual_seed(seed)
        self.model = TPSMM(config)
        carried = {name: self.model.networks[name] for name in CARRIED}
        load_networks(carried, stage1, source)
        if "kp_detector" not in stage1:
            raise CheckpointError(f"{source}: has no kp_detector to train the AVD network with")
        if "avd_network" in stage1:  # continue an AVD network, as the reference does
            self.model.avd_network.load_state_dict(stage1["avd_network"])
        self.model.to(ctx.device).eval()
        self.kp_train_mode = kp_train_mode
        self.model.kp_detector.train(kp_train_mode).requires_grad_(False)
        self.model.avd_network.train()
        avd = self.model.avd_network
        self.avd = (DistributedDataParallel(avd, device_ids=[ctx.device.index]
                                            if ctx.device.type == "cuda" else None)
                    if ctx.enabled else avd)
        self.optimizer = torch.optim.Adam(avd.parameters(), lr=self.params["lr"],
                                          betas=ADAM_BETAS)
        if "optimizer_avd" in stage1:
            self.optimizer.load_state_dict(stage1["optimizer_avd"])
        self.scheduler = step_schedule(self.optimizer, self.params["epoch_milestones"])

    def _keypoints(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.ctx.device
        with torch.no_grad():
            kp_source = self.model.kp_detector(batch["source"].to(device))["fg_kp"]
            kp_driving = self.model.kp_detector(batch["driving"].to(device))["fg_kp"]
        return kp_source, kp_driving

    def step(self, batch: dict, epoch: int) -> tuple[dict[str, torch.Tensor], dict]:
        kp_source, kp_driving = self._keypoints(batch)
        kp_random = random_scale(kp_driving, self.params["random_scale"])
        rec = self.avd({"fg_kp": kp_source}, {"fg_kp": kp_random})["fg_kp"]
        loss = self.params["lambda_shift"] * torch.abs(kp_driving - rec).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"shift": loss.detach()}, {"kp_source": kp_source, "kp_driving": kp_driving}

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def visualize(self, batch: dict, outputs: dict) -> np.ndarray:
        """Sources (up to 6) animated by the first driving frame through the AVD network."""
        count = min(6, batch["source"].shape[0])
        device = self.ctx.device
        source = batch["source"][:count].to(device)
        driving = batch["driving"][:1].to(device).expand(count, -1, -1, -1)
        kp_source = outputs["kp_source"][:count]
        kp_driving = outputs["kp_driving"][:1].expand(count, -1, -1)
        avd = self.model.avd_network
        avd.eval()
        with torch.no_grad():
            kp_avd = avd({"fg_kp": kp_source}, {"fg_kp": kp_driving})["fg_kp"]
            prediction = generate(self.model.dense_motion_network,
                                  self.model.inpainting_network, source, kp_source,
                                  kp_avd)["prediction"]
        avd.train()
        return visualize_avd(source, driving, kp_source, kp_driving, kp_avd, prediction)

    def end_epoch(self) -> None:
        self.scheduler.step()

    def state(self, completed_epoch: int, training: dict) -> dict[str, Any]:
        """The reference's AVD checkpoint (all networks, ``optimizer_avd``) plus resume state."""
        data: dict[str, Any] = {name: network.state_dict()
                                for name, network in self.model.networks.items()
                                if network is not None}
        data["optimizer_avd"] = self.optimizer.state_dict()
        data["epoch"] = completed_epoch
        data[TRAINING_KEY] = dict(training, scheduler=self.scheduler.state_dict(),
                                  rng=rng_states(), stage="avd",
                                  kp_train_mode=self.kp_train_mode)
        return data

    def load(self, checkpoint: dict[str, Any], source: str) -> None:
        load_networks(self.model.networks, checkpoint, source)
        self.optimizer.load_state_dict(checkpoint["optimizer_avd"])
        load_step_schedule(self.scheduler, checkpoint[TRAINING_KEY]["scheduler"],
                           self.params["epoch_milestones"])
        restore_rng_states(checkpoint[TRAINING_KEY]["rng"])


def _avd_config(options: AVDOptions, base: str | os.PathLike | dict | None,
                resuming: bool) -> Config:
    """``base`` with ``train_avd_params`` completed by defaults and the overrides."""
    if base is None:
        raise ConfigError(f"{options.checkpoint}: not written by tpsmm train (no config "
                          f"inside); pass --config")
    data = plain(load_config(base))
    workers = (data.get("train_params") or {}).get("dataloader_workers") or 0
    params = {**AVD_DEFAULTS, "dataloader_workers": workers,
              **(data.get("train_avd_params") or {})}
    overrides = {"num_epochs": options.epochs, "epoch_milestones": options.epoch_milestones,
                 "batch_size": options.batch_size,
                 "num_repeats": options.num_repeats, "dataloader_workers": options.workers}
    for key, value in overrides.items():
        if value is None:
            continue
        if resuming and key in ("batch_size", "num_repeats") and value != params[key]:
            raise ConfigError(f"cannot change {key} when resuming (the run uses {params[key]})")
        params[key] = value
    data["train_avd_params"] = params
    if options.data is not None:
        data.setdefault("dataset_params", {})["root_dir"] = str(options.data)
    return load_config(data)


def train_avd(options: AVDOptions) -> TrainResult:
    """Train the AVD network from a stage-1 checkpoint (or resume); see :class:`AVDOptions`."""
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    ctx = setup_distributed(options.device)
    try:
        resume = find_resume_point(Path(options.out), options.resume)
        if resume is not None:
            stage1, source = resume.checkpoint, str(resume.path)
            resumed = resume.training
            if resumed.get("stage") != "avd":
                raise CheckpointError(f"{source}: a stage-1 checkpoint, not an AVD run; pass it "
                                      f"with --checkpoint to start AVD training")
            config = _avd_config(options, resumed["config"], resuming=True)
            seed, kp_train_mode = resumed["seed"], resumed["kp_train_mode"]
        else:
            if options.checkpoint is None:
                raise ConfigError("--checkpoint (a stage-1 checkpoint) is needed to start "
                                  "AVD training")
            source = str(options.checkpoint)
            stage1 = read_checkpoint(Path(options.checkpoint))
            # A checkpoint of tpsmm train carries its config.
            base = options.config or stage1.get(TRAINING_KEY, {}).get("config")
            config = _avd_config(options, base, resuming=False)
            seed, kp_train_mode = options.seed, options.kp_train_mode
        params = config["train_avd_params"]
        dataset = training_dataset(config)
        stage = AVDStage(config, stage1, source, ctx, seed, kp_train_mode)
        schedule = Schedule(num_epochs=params["num_epochs"], batch_size=params["batch_size"],
                            num_repeats=params["num_repeats"],
                            workers=params["dataloader_workers"],
                            keep_every=options.checkpoint_every or params["checkpoint_freq"])
        if ctx.is_main and not options.quiet:
            mode = "train mode (reference)" if kp_train_mode else "frozen, eval mode"
            print(f"train-avd: keypoint detector {mode}")
        pairs = TrainingPairs(dataset, schedule.num_repeats, seed)
        return run_epochs(stage, pairs, schedule, config, options, ctx, seed, resume, "train-avd")
    finally:
        ctx.shutdown()

