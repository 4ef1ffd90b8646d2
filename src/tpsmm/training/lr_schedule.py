"""The step learning-rate schedule of both stages, and changing it when resuming.

Both stages divide the lr by 10 at the config's ``epoch_milestones``
(torch's MultiStepLR, as the reference does). A run resumed with other
milestones (``--epoch-milestones``, usually with a larger ``--epochs``) takes
the lr the new schedule gives the current epoch, as if it had been trained
with that schedule from the start: stretching [70, 90] of 100 epochs to
[170, 190] of 200 at epoch 69 keeps the lr at its base for 100 more epochs.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

LR_GAMMA = 0.1


def step_schedule(optimizer: torch.optim.Optimizer,
                  milestones: Sequence[int]) -> torch.optim.lr_scheduler.MultiStepLR:
    """The lr times :data:`LR_GAMMA` at each of ``milestones`` (epoch indices)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=LR_GAMMA)


def load_step_schedule(scheduler: torch.optim.lr_scheduler.MultiStepLR, state: dict[str, Any],
                       milestones: Sequence[int]) -> None:
    """Restore ``scheduler`` from its saved ``state``, but with ``milestones``.

    With the saved milestones this is ``load_state_dict``. With others, each
    param group's lr (in the optimizer, already restored) becomes
    ``base_lr * gamma ** (milestones <= last_epoch)``, the new schedule's lr
    for the epoch the run is in.
    """
    if sorted(Counter(state["milestones"]).elements()) == sorted(milestones):
        scheduler.load_state_dict(state)
        return
    drops = bisect_right(sorted(milestones), state["last_epoch"])
    lrs = [base * state["gamma"] ** drops for base in state["base_lrs"]]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    # The state dict is the scheduler's public serialised form: loading an
    # edited one sets the milestones and the lr get_last_lr() reports
    # without touching the scheduler's private attributes.
    scheduler.load_state_dict({**state, "milestones": Counter(milestones), "_last_lr": lrs})
