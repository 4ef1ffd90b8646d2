"""What a training run saves to resume exactly, beside the weights, and where in its folder.

The weights themselves are in the reference format (:mod:`tpsmm.checkpoint_file`).

A run directory holds:

- ``last.pth.tar``: the latest state, rewritten at the end of every epoch,
  every ``--checkpoint-minutes`` and when a run stops early; ``--resume``
  continues from it;
- ``{epoch:08d}-checkpoint.pth.tar``: a copy kept every
  ``checkpoint_freq`` epochs and after the last one (the reference's name).

Every file has the reference's top-level keys (a state dict per network,
``optimizer``..., ``epoch`` = the last *completed* epoch), so
``TPSMM.from_checkpoint``, ``tpsmm animate`` and the reference code load it,
plus one more key, ``"training"``, with the rest of the resume state:
where in the schedule the run is (epoch, batch within it, global step),
the LR schedulers, the gradient scaler, the torch random states, the
running epoch sums of the losses and the config it was trained with. All
of it is tensors, numbers, strings and plain containers, so it loads with
``weights_only=True``. Files are written atomically (temporary file, then
rename): a killed run loses at most the work since the last save.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.errors import CheckpointError

LAST = "last.pth.tar"
TRAINING_KEY = "training"


def numbered_name(epoch: int) -> str:
    """The reference's checkpoint file name of an epoch."""
    return f"{epoch:08d}-checkpoint.pth.tar"


def rng_states() -> dict[str, Any]:
    """The torch random states of this process (CPU, and every CUDA device in use)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def resume_path(out: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from, or None to start afresh.

    ``resume`` is None (no resuming: ``out`` must not hold a run already),
    ``"last"`` (``out/last.pth.tar`` if it exists, else start afresh, so
    the same command can start and continue a run), or a file path.
    """
    last = out / LAST
    if resume is None:
        if last.exists():
            raise CheckpointError(
                f"{out} already holds a run ({LAST}); pass --resume to continue it, "
                f"or choose another --out"
            )
        return None
    if resume == "last":
        return last if last.exists() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint to resume from not found")
    return path


def read_training_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint written by training, with its ``"training"`` resume state.

    Raises :class:`CheckpointError` for a checkpoint without one (such as a
    published model: start a new run from its weights with ``--init``).
    """
    checkpoint = read_checkpoint(path, map_location)
    if TRAINING_KEY not in checkpoint:
        raise CheckpointError(
            f"{path}: has no '{TRAINING_KEY}' resume state (not written by tpsmm training), "
            f"so no run can be resumed from it; to start a new run from its weights, pass it "
            f"with --init (tpsmm train) or --checkpoint (tpsmm train-avd)"
        )
    return checkpoint


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from.

    Attributes:
        path: its file.
        checkpoint: its contents (on the CPU), with the resume state under ``"training"``.
    """

    path: Path
    checkpoint: dict[str, Any]

    @property
    def training(self) -> dict[str, Any]:
        """The resume state: epoch, step, seed, config, schedulers, random states..."""
        return self.checkpoint[TRAINING_KEY]


def find_resume_point(out: Path, resume: str | None) -> ResumePoint | None:
    """The checkpoint ``--resume`` names in the run folder ``out``, read, or None for a new
    run (see :func:`resume_path`)."""
    path = resume_path(out, resume)
    if path is None:
        return None
    # On the CPU: the random states must be CPU tensors; weights and optimizer states move
    # to their parameters' device as they are loaded.
    return ResumePoint(path, read_training_checkpoint(path, "cpu"))
