"""The epoch loop shared by both training stages: resume, checkpoints, logs, stopping.

A *stage* (:class:`Stage`: stage 1 in :mod:`tpsmm.training.trainer`, the
AVD stage in :mod:`tpsmm.training.avd`) owns its networks and optimizers
and knows how to take one step. :func:`run_epochs` drives it: it walks the
epochs and steps of the schedule, seeds every step with (seed, epoch,
step, rank), and has the run's files (:class:`RunDirectory`) log every loss
term, save ``last.pth.tar`` at each epoch end, every ``checkpoint_minutes``
and when stopped (``max_steps``, SIGINT, SIGTERM), keep numbered
checkpoints, and save a visualisation per epoch.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tpsmm.config import Config, plain
from tpsmm.errors import CheckpointError, ConfigError
from tpsmm.model import TPSMM
from tpsmm.training.distributed import DistributedContext
from tpsmm.training.logs import progress_bar
from tpsmm.training.resume_state import ResumePoint
from tpsmm.training.run_directory import RunDirectory
from tpsmm.training.sampling import (
    EpochSampler,
    TrainingPairs,
    batches,
    make_loader,
    step_seed,
)


@dataclass
class RunOptions:
    """Options of a training run that do not depend on the stage.

    Attributes:
        out: the run directory (checkpoints, logs, ``config.yaml``, ``train-vis/``).
        resume: None for a new run, ``"last"`` to continue ``out/last.pth.tar``
            (or start afresh when there is none), or a checkpoint path.
        epochs, batch_size, num_repeats, workers: override the config's
            ``num_epochs``, ``batch_size`` (global: split over the processes),
            ``num_repeats`` and ``dataloader_workers``.
        epoch_milestones: override the config's ``epoch_milestones`` (the epochs
            after which the lr drops 10x). Resuming with new ones sets the lr
            the new schedule gives the current epoch (:mod:`~tpsmm.training.lr_schedule`).
        max_steps: stop (with a checkpoint) after this many steps in total.
        seed: seeds the initial weights, the data order and every random draw.
        checkpoint_minutes: also save ``last.pth.tar`` this often (None: only
            at epoch ends and when stopping).
        checkpoint_every: keep a numbered checkpoint every this many epochs
            (default: the config's ``checkpoint_freq``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; None picks CUDA if present.
        threads: torch intra-op threads of each process (None: torch's default).
        quiet: no progress bar and no summary lines.
        tensorboard: write TensorBoard events when the package is installed.
        visualize: save ``train-vis/<epoch>-rec.png`` at every epoch end.
    """

    out: str | os.PathLike
    resume: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    num_repeats: int | None = None
    workers: int | None = None
    epoch_milestones: list[int] | None = None
    max_steps: int | None = None
    seed: int = 0
    checkpoint_minutes: float | None = 30.0
    checkpoint_every: int | None = None
    device: str | None = None
    threads: int | None = None
    quiet: bool = False
    tensorboard: bool = True
    visualize: bool = True


@dataclass
class TrainResult:
    """How a training call ended.

    ``status`` is ``"finished"`` (all epochs done), ``"max-steps"`` or
    ``"interrupted"`` (SIGINT/SIGTERM). ``epochs_done`` counts completed
    epochs; ``step`` is the global step count; ``epoch_losses`` are the
    means of the last completed epoch (empty if none completed in this call);
    ``is_main`` is False on the processes of a distributed run but rank 0;
    ``model`` holds the networks as trained (in train mode).
    """

    run_dir: Path
    status: str
    epochs_done: int
    step: int
    checkpoint: Path
    epoch_losses: dict[str, float] = field(default_factory=dict)
    is_main: bool = True
    model: TPSMM | None = None


class Stage(Protocol):
    """What :func:`run_epochs` needs from a training stage."""

    model: TPSMM

    def step(self, batch: dict, epoch: int) -> tuple[dict[str, torch.Tensor], Any]:
        """One optimisation step: (detached scalar losses, outputs to visualise)."""

    def lr(self) -> float:
        """The current learning rate (for the log)."""

    def end_epoch(self) -> None:
        """Step the LR schedulers."""

    def state(self, completed_epoch: int, training: dict) -> dict[str, Any]:
        """The checkpoint dict, with ``training`` (plus the stage's own) under "training"."""

    def load(self, checkpoint: dict[str, Any], source: str) -> None:
        """Restore networks, optimizers and schedulers from a checkpoint of :meth:`state`."""

    def visualize(self, batch: dict, outputs: Any) -> np.ndarray:
        """An (H, W, 3) uint8 picture of the last batch of an epoch."""


@dataclass
class Schedule:
    """The epoch structure of a stage, from its config section and overrides."""

    num_epochs: int
    batch_size: int
    num_repeats: int
    workers: int
    keep_every: int


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


def run_epochs(stage: Stage, pairs: TrainingPairs, schedule: Schedule, config: Config,
               options: RunOptions, ctx: DistributedContext, seed: int,
               resume: ResumePoint | None, name: str) -> TrainResult:
    """Train ``stage`` on ``pairs`` through ``schedule``, continuing from ``resume``.

    ``resume`` is :func:`~tpsmm.training.resume_state.find_resume_point`'s result (None for
    a new run); ``seed`` the run's seed (the saved one when resuming); ``name`` prefixes the
    summary lines.
    """
    if schedule.batch_size % ctx.world_size:
        raise ConfigError(f"batch size {schedule.batch_size} does not split over "
                          f"{ctx.world_size} processes; use a multiple of {ctx.world_size}")
    sampler = EpochSampler(len(pairs), schedule.batch_size // ctx.world_size, seed, ctx.rank,
                           ctx.world_size)
    epoch, step_in_epoch, global_step = 0, 0, 0
    sums: dict[str, float] = {}
    if resume is not None:
        saved = resume.training
        if saved["step_in_epoch"] and saved["world_size"] != ctx.world_size:
            raise CheckpointError(
                f"{resume.path}: saved mid-epoch by {saved['world_size']} process(es); resume "
                f"it with as many, or from a checkpoint saved at an epoch end"
            )
        stage.load(resume.checkpoint, str(resume.path))
        epoch, step_in_epoch = saved["epoch"], saved["step_in_epoch"]
        global_step = saved["global_step"]
        sums = dict(saved["epoch_sums"])
    status = "finished"
    epoch_losses: dict[str, float] = {}
    say = ctx.is_main and not options.quiet
    if say:
        where = (f"resuming {resume.path} at epoch {epoch}, step {global_step}, "
                 f"lr {stage.lr():g}" if resume else "new run")
        print(f"{name}: {where}; {len(pairs.dataset)} training items x {schedule.num_repeats} "
              f"repeats = {sampler.steps_per_epoch} steps/epoch of batch {schedule.batch_size}; "
              f"{ctx.world_size} process(es) on {ctx.device} -> {options.out}")

    def state(last_completed_epoch: int) -> dict[str, Any]:
        training = {
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "seed": seed, "world_size": ctx.world_size, "epoch_sums": dict(sums),
            "config": plain(config),
        }
        return stage.state(last_completed_epoch, training)

    def should_stop() -> bool:
        steps_done = options.max_steps is not None and global_step >= options.max_steps
        return ctx.any(stop_flag[0] or steps_done)

    with (RunDirectory(Path(options.out), ctx.is_main, global_step if resume else None,
                       options.tensorboard) as run, _stop_requests() as stop_flag):
        run.write_config(config)
        last_save = time.monotonic()
        if epoch < schedule.num_epochs and should_stop():
            status = "max-steps"
        while epoch < schedule.num_epochs and status == "finished":
            sampler.set_epoch(epoch, step_in_epoch)
            loader = make_loader(pairs, sampler, schedule.workers, ctx.device.type == "cuda")
            bar = progress_bar(sampler.steps_per_epoch, step_in_epoch, f"epoch {epoch}", say)
            epoch_start = time.monotonic()
            shown = None
            for batch in batches(loader):
                step_start = time.monotonic()
                torch.manual_seed(step_seed(seed, epoch, step_in_epoch, ctx.rank))
                losses, outputs = stage.step(batch, epoch)
                if step_in_epoch + 1 == sampler.steps_per_epoch:
                    shown = (batch, outputs)  # the epoch's visualisation
                del outputs
                names = list(losses)
                values = ctx.mean(torch.stack([losses[k] for k in names])).tolist()
                step_losses = dict(zip(names, values, strict=True))
                for key, value in step_losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                step_in_epoch += 1
                global_step += 1
                run.log.step(epoch, global_step, stage.lr(), step_losses,
                             time.monotonic() - step_start)
                bar.update()
                bar.set_postfix(loss=f"{sum(values):.4f}")
                if step_in_epoch == sampler.steps_per_epoch:
                    break
                if should_stop():
                    status = "interrupted" if stop_flag[0] else "max-steps"
                    run.save_checkpoint(state(epoch - 1))
                    break
                minutes = options.checkpoint_minutes
                if minutes is not None and time.monotonic() - last_save >= 60 * minutes:
                    run.save_checkpoint(state(epoch - 1))
                    last_save = time.monotonic()
            bar.close()
            if status != "finished":
                break
            # The epoch is complete.
            epoch_losses = {k: v / sampler.steps_per_epoch for k, v in sums.items()}
            run.log.epoch(epoch, global_step, epoch_losses, time.monotonic() - epoch_start)
            if options.visualize and shown is not None and ctx.is_main:
                run.save_visualisation(stage.visualize(*shown), epoch)
            shown = None
            stage.end_epoch()
            completed_epoch = epoch
            epoch, step_in_epoch, sums = epoch + 1, 0, {}
            run.save_checkpoint(state(completed_epoch))
            last_save = time.monotonic()
            if (completed_epoch + 1) % schedule.keep_every == 0 or epoch == schedule.num_epochs:
                run.save_checkpoint(state(completed_epoch), numbered_epoch=completed_epoch)
            if say:
                terms = "; ".join(f"{k} {v:.4f}" for k, v in epoch_losses.items())
                print(f"{name}: epoch {completed_epoch} done (step {global_step}): {terms}")
            if epoch < schedule.num_epochs and should_stop():
                status = "interrupted" if stop_flag[0] else "max-steps"
    # DDP syncs buffers at each forward pass; the last pass left them apart.
    ctx.broadcast_buffers(stage.model)
    return TrainResult(Path(options.out), status, epoch, global_step, run.last, epoch_losses,
                       ctx.is_main, stage.model)
