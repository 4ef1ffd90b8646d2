"""One process or many: the process group that ``torchrun`` describes, or none.

``torchrun --nproc_per_node N -m tpsmm.cli train ...`` starts N copies of
the trainer and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
:func:`setup_distributed` reads them and joins the group (NCCL between
GPUs, gloo between CPU processes); without them it returns a
single-process context, so the same training code runs either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tpsmm.devices import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the group.

    ``rank`` is global (0 .. world_size-1), ``local_rank`` is the index on
    this machine and picks the GPU. Only the *main* process (rank 0) writes
    logs and checkpoints.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @classmethod
    def single_cpu(cls) -> DistributedContext:
        """One process on the CPU: what a stage built outside ``torchrun`` runs in."""
        return cls(0, 0, 1, torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average a tensor over the processes (for logging; no gradient)."""
        if not self.enabled:
            return values
        values = values.detach().to(self.device, torch.float64).clone()
        dist.all_reduce(values)
        return values / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on at least one (stop requests)."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every process.

        DDP broadcasts them at the start of each forward pass, so the
        processes differ only by what their last forward pass added.
        """
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def shutdown(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _pick_device(requested: str | None, local_rank: int) -> torch.device:
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = resolve_device(requested)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def setup_distributed(device: str | None = None) -> DistributedContext:
    """Join the ``torchrun`` process group if the environment describes one.

    ``device`` is ``"cpu"``, ``"cuda"`` (GPU ``LOCAL_RANK`` under torchrun) or
    ``"cuda:N"``; None picks CUDA when available. The backend follows the
    device: NCCL for CUDA, gloo for the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, local_rank, world_size, chosen)
