"""Deterministic weights from a rule, shared with the reference's golden outputs.

``tests/data/*.npz`` hold outputs of the reference implementation for
weights rebuilt by this rule (``shared/golden/README.md`` of the project):
each state-dict entry is filled from a PCG64 stream seeded by the CRC32 of
its full name (``<network>.<key>``). The rule needs no stored weights, so
tests and benchmarks can reproduce the reference exactly at any size.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn


def rule_tensor(full_name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The value of one state-dict entry under the golden rule."""
    n = int(np.prod(shape)) if shape else 1
    u = np.random.Generator(np.random.PCG64(zlib.crc32(full_name.encode("utf-8")))).random(n)
    base = np.sqrt(3) * (2 * u - 1)
    last = full_name.rsplit(".", 1)[-1]
    if last == "running_var":
        value = 1 + 0.25 * base / np.sqrt(3)
    elif last == "running_mean":
        value = 0.1 * base
    elif last == "bias":
        value = 0.02 * base
    elif len(shape) < 2:
        value = 1 + 0.1 * base
    else:
        value = base * np.sqrt(1 / (n / shape[0]))
    return torch.from_numpy(value.reshape(shape).astype(np.float32))


def fill_with_rule(network: nn.Module, prefix: str) -> None:
    """Overwrite parameters and BatchNorm running statistics of ``network``.

    Other buffers (the anti-aliasing kernel) keep their computed values and
    ``num_batches_tracked`` stays as it is.
    """
    parameters = {name for name, _ in network.named_parameters()}
    state = network.state_dict()
    with torch.no_grad():
        for key, tensor in state.items():
            last = key.rsplit(".", 1)[-1]
            if key in parameters or last in ("running_mean", "running_var"):
                name = f"{prefix}.{key}" if prefix else key
                tensor.copy_(rule_tensor(name, tuple(tensor.shape)))
