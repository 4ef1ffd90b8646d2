"""The files of a training run, and their one owner (the role of FOMM's ``Logger``).

A run folder holds ``config.yaml`` (the config it trains with), ``last.pth.tar`` and the
numbered checkpoints (:mod:`tpsmm.training.resume_state`), the logs
(:mod:`tpsmm.training.logs`) and ``train-vis/<epoch>-rec.png``. Only the main process of
a distributed run writes; the others hold a :class:`RunDirectory` that writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import yaml

from tpsmm.checkpoint_file import atomic_save
from tpsmm.config import Config, plain
from tpsmm.files import atomic_write_text, remove_stale_temporaries
from tpsmm.training.logs import TrainingLog
from tpsmm.training.resume_state import LAST, numbered_name
from tpsmm.training.visualizer import save_image

CONFIG_FILE = "config.yaml"


class RunDirectory:
    """Writes a run's config, checkpoints, logs and visualisations; use as a context manager,
    which closes the logs however the run ends.

    Args:
        root: the run folder (created).
        writes: False on every process but the main one.
        resumed_at_step: the global step of the checkpoint a resumed run continues from (the
            logs drop what came after it), None for a new run.
        tensorboard: also log TensorBoard events (when the package is installed).
    """

    def __init__(self, root: Path, writes: bool, resumed_at_step: int | None,
                 tensorboard: bool) -> None:
        self.root = root
        self.writes = writes
        if writes:
            root.mkdir(parents=True, exist_ok=True)
            # What a run killed mid-write left (SIGKILL inside a checkpoint save).
            remove_stale_temporaries(root)
        self.log = TrainingLog(root, writes, resumed_at_step, tensorboard)

    @property
    def last(self) -> Path:
        """``last.pth.tar``, the checkpoint ``--resume`` continues from."""
        return self.root / LAST

    def write_config(self, config: Config) -> None:
        if self.writes:
            atomic_write_text(self.root / CONFIG_FILE, yaml.safe_dump(plain(config),
                                                                     sort_keys=False))

    def save_checkpoint(self, state: dict[str, Any], numbered_epoch: int | None = None) -> None:
        """Write ``state`` to ``last.pth.tar`` atomically, or to the numbered checkpoint of
        ``numbered_epoch`` (the reference's name)."""
        if self.writes:
            path = self.last if numbered_epoch is None else self.root / numbered_name(
                numbered_epoch)
            atomic_save(state, path)

    def save_visualisation(self, image: np.ndarray, epoch: int) -> None:
        """``image``: ``(H, W, 3)`` uint8, the picture of an epoch's last batch."""
        if self.writes:
            save_image(image, self.root / "train-vis" / f"{epoch:08d}-rec.png")

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
