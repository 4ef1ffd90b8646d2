"""The logs of a training run: JSON lines, the reference's log.txt, TensorBoard, a progress bar.

- ``log.jsonl``: one record per training step
  (``{"kind": "step", "epoch", "step", "lr", "loss", <each loss term>, "seconds"}``,
  ``step`` counting from 1 over the whole run) and one per epoch
  (``{"kind": "epoch", "epoch", "step", <mean of each term>, "seconds"}``).
- ``log.txt``: the reference's line per epoch,
  ``00000012) perceptual - 95.12345; equivariance_value - 0.12345; ...``.
- TensorBoard event files under ``tensorboard/`` when the ``tensorboard``
  package is installed.

When a run resumes, records of steps after the checkpoint (work that was
lost and is about to be redone) are dropped first, so the log reads as if
the run had never been interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

JSONL = "log.jsonl"
TEXT = "log.txt"


def _open_tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))


class TrainingLog:
    """Writes the logs of a run directory; a no-op on non-main processes.

    Args:
        run_dir: the run directory.
        enabled: False on every process but rank 0.
        keep_until_step: when resuming, the global step of the checkpoint:
            records after it are removed. None for a new run.
        tensorboard: also write TensorBoard events (when installed).
    """

    def __init__(self, run_dir: Path, enabled: bool = True, keep_until_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tensorboard = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / JSONL
        self.text_path = run_dir / TEXT
        if keep_until_step is not None:
            self._truncate(keep_until_step)
        self._jsonl = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if tensorboard:
            self._tensorboard = _open_tensorboard(run_dir / "tensorboard")

    def _truncate(self, last_step: int) -> None:
        records = read_log(self.path) if self.path.exists() else []
        kept = [record for record in records if record["step"] <= last_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        lines = [_text_line(r) for r in kept if r["kind"] == "epoch"]
        self.text_path.write_text("".join(lines), encoding="utf-8")

    def step(self, epoch: int, step: int, lr: float, losses: dict[str, float],
             seconds: float) -> None:
        """Record one step's weighted loss terms (``loss`` is their sum)."""
        if not self.enabled:
            return
        record = {"kind": "step", "epoch": epoch, "step": step, "lr": lr,
                  "loss": sum(losses.values()), **losses, "seconds": round(seconds, 4)}
        self._write(record)
        if self._tensorboard is not None:
            for name, value in losses.items():
                self._tensorboard.add_scalar(f"loss/{name}", value, step)
            self._tensorboard.add_scalar("lr", lr, step)

    def epoch(self, epoch: int, step: int, means: dict[str, float], seconds: float) -> None:
        """Record the means of an epoch's loss terms, also as a log.txt line."""
        if not self.enabled:
            return
        record = {"kind": "epoch", "epoch": epoch, "step": step, **means,
                  "seconds": round(seconds, 2)}
        self._write(record)
        with open(self.text_path, "a", encoding="utf-8") as text:
            text.write(_text_line(record))
        if self._tensorboard is not None:
            for name, value in means.items():
                self._tensorboard.add_scalar(f"epoch/{name}", value, epoch)

    def _write(self, record: dict[str, Any]) -> None:
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(record) + "\n")
        # Flushed every line: the log is what people tail during a long run.
        self._jsonl.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def _text_line(record: dict[str, Any]) -> str:
    skip = ("kind", "epoch", "step", "seconds")
    terms = "; ".join(f"{k} - {v:.5f}" for k, v in record.items() if k not in skip)
    return f"{record['epoch']:08d}) {terms}\n"


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``, skipping a torn last line (a killed run)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def progress_bar(total: int, initial: int, description: str, enabled: bool) -> tqdm:
    """A per-epoch bar on stderr, shown only on a terminal and when ``enabled``."""
    return tqdm(total=total, initial=initial, desc=description, file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()), leave=False,
                dynamic_ncols=True)
