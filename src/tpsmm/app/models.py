"""The models the web page offers: the shipped demo model, the published checkpoints and
training runs found in ``--models DIR``, and checkpoints uploaded on the page.

Loaded models are kept (one animator per checkpoint and device) so a second job with the
same model starts at once; a changed file is loaded again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from tpsmm.animation import Animator
from tpsmm.demo import CHECKPOINT_NAME, CONFIG, assets_dir

# The published checkpoints' file names (the reference's README) and their configs.
PUBLISHED = {"vox.pth.tar": "vox-256", "taichi.pth.tar": "taichi-256",
             "ted.pth.tar": "ted-384", "mgif.pth.tar": "mgif-256"}
DEMO_LABEL = "demo: synthetic-64 (shipped)"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the page's model list: a checkpoint and the config it was trained with
    (a bundled config's name or a YAML file)."""

    label: str
    checkpoint: Path
    config: str | Path


def find_models(folder: str | Path | None) -> list[ModelChoice]:
    """The demo model, then in ``folder``: the published checkpoints under their file names
    (``vox.pth.tar``...) and training runs (folders holding ``config.yaml`` and
    ``last.pth.tar``, found up to two levels down), sorted by label."""
    choices = [ModelChoice(DEMO_LABEL, assets_dir() / CHECKPOINT_NAME, CONFIG)]
    if folder is None:
        return choices
    folder = Path(folder)
    found = []
    for name, config in PUBLISHED.items():
        if (folder / name).is_file():
            found.append(ModelChoice(f"{config}: {name}", folder / name, config))
    for pattern in ("last.pth.tar", "*/last.pth.tar", "*/*/last.pth.tar"):
        for checkpoint in folder.glob(pattern):
            run = checkpoint.parent
            if (run / "config.yaml").is_file():
                label = f"run: {run.relative_to(folder) if run != folder else run.name}"
                found.append(ModelChoice(label, checkpoint, run / "config.yaml"))
    return choices + sorted(found, key=lambda choice: choice.label)


class AnimatorCache:
    """The last animator loaded, reused while its checkpoint file is unchanged (one model
    in memory per device: the page runs one job at a time). Every animator runs on
    ``device`` in ``precision`` through ``backend``, as :class:`Animator` takes them."""

    def __init__(self, device: str, precision: str = "fp32", backend: str = "torch") -> None:
        self.device = device
        self.precision = precision
        self.backend = backend
        self._key: tuple | None = None
        self._animator: Animator | None = None
        # The page asks from several threads (a job, the mode list of another tab).
        self._lock = threading.Lock()

    def get(self, checkpoint: Path, config: str | Path) -> Animator:
        """The animator for ``checkpoint``.

        Raises:
            CheckpointError: unreadable, or it does not fit ``config``.
            ConfigError: ``config`` cannot be loaded, or the backend cannot run here.
        """
        stat = checkpoint.stat()
        key = (str(checkpoint.resolve()), stat.st_mtime_ns, stat.st_size, str(config))
        with self._lock:
            if key != self._key:
                # The old model's memory first; and a load that fails leaves nothing cached.
                self._animator = self._key = None
                self._animator = Animator.from_checkpoint(
                    checkpoint, config, device=self.device, precision=self.precision,
                    backend=self.backend)
                self._key = key
            return self._animator

    def has_avd(self, checkpoint: Path, config: str | Path) -> bool:
        """Whether the checkpoint holds the AVD network (``--mode avd`` needs it)."""
        return "avd_network" in self.get(checkpoint, config).loaded
