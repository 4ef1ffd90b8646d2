"""Checkpoint files in the reference's ``.pth.tar`` format: the model's weights on disk.

What a training run adds to them to resume exactly is :mod:`tpsmm.training.resume_state`.

A checkpoint is a flat dict: one state dict per network under its name
(``kp_detector``, ``dense_motion_network``, ``inpainting_network``,
``bg_predictor``, ``avd_network``), optionally optimizer states, and
``epoch``. Files are read with ``weights_only=True`` and written atomically
(a temporary file in the same folder, then a rename), so a crash never
leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tpsmm.errors import CheckpointError, OutputError
from tpsmm.files import atomic_write

NETWORK_NAMES = (
    "kp_detector",
    "dense_motion_network",
    "inpainting_network",
    "bg_predictor",
    "avd_network",
)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict; :class:`CheckpointError` if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    data = load_tensors(path, map_location, "checkpoint", CheckpointError)
    if not isinstance(data, dict) or not any(name in data for name in NETWORK_NAMES):
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not a TPSMM checkpoint (no network state dicts; found: {keys})"
        )
    return data


def load_tensors(path: Path, map_location: Any, what: str,
                 error_type: type[Exception]) -> Any:
    """``torch.load(path, weights_only=True)``, or ``error_type`` with one line naming
    ``path`` and ``what`` it should have held.

    A file that is not a pickle, or holds Python objects besides tensors, numbers, strings
    and containers, makes torch's weights-only unpickler suggest loading with
    ``weights_only=False``, which would run code from the file; the line says what was
    found instead.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        found = re.search(r"GLOBAL (\S+)", message)
        if found:
            reason = (f"it holds a Python object ({found[1]}), which is not loaded, for "
                      "safety (weights_only=True); save only the state dicts")
        else:
            detail = message.split("WeightsUnpickler error:")[-1].strip().split("\n\n")[0]
            reason = f"not a PyTorch file ({' '.join(detail.split())[:120]})"
    except EOFError:
        reason = "the file ends early (cut short by an interrupted copy or download?)"
    except Exception as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
    raise error_type(f"{path}: cannot read {what}: {reason}") from None


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: torch.save(obj, file))
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Networks saved through a DataParallel/DDP wrapper carry "module.".
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module."):]: value for key, value in state.items()}
    return state


def state_dict_mismatch(network: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between ``network`` and ``state``; empty if it fits."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("mis-shaped (file vs config)", shapes)):
        if items:
            shown = "; ".join(items[:3]) + ("; ..." if len(items) > 3 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    return problems


def checkpoint_mismatches(
    networks: dict[str, nn.Module | None], checkpoint: dict[str, Any]
) -> list[str]:
    """Every way the checkpoint's networks differ from ``networks``; empty if they fit.

    A network without state (LucasKanadeBGMotion) takes nothing from a file, so
    whatever the file holds under its name (a learnt predictor) is ignored.
    """
    problems = []
    for name, network in networks.items():
        if name not in checkpoint or _stateless(network):
            continue
        if network is None:
            problems.append(f"{name}: in the file but the config builds none")
            continue
        mismatch = state_dict_mismatch(network, _strip_prefix(checkpoint[name]))
        if mismatch:
            problems.append(f"{name}: " + ", ".join(mismatch))
    return problems


def _stateless(network: nn.Module | None) -> bool:
    return network is not None and not network.state_dict()


def load_networks(
    networks: dict[str, nn.Module | None], checkpoint: dict[str, Any], source: str
) -> list[str]:
    """Load every network present in ``checkpoint`` strictly.

    Returns the names loaded. Raises :class:`CheckpointError` listing all
    mismatches at once, rather than torch's first error.
    """
    problems = checkpoint_mismatches(networks, checkpoint)
    if problems:
        raise CheckpointError(f"{source}: does not fit the config: " + " | ".join(problems))
    loaded = []
    for name, network in networks.items():
        if name in checkpoint and network is not None and not _stateless(network):
            network.load_state_dict(_strip_prefix(checkpoint[name]), strict=True)
            loaded.append(name)
    return loaded
