"""Training data whose order and content are pure functions of (seed, epoch, step).

The reference shuffles with the global RNG and samples frames from
per-worker states, so an interrupted run can never replay the batches it
lost. Here:

- :class:`EpochSampler` shuffles each epoch with a generator seeded by
  (seed, epoch), gives each process of a distributed run its own slice,
  and can start in the middle of an epoch (resume after a kill);
- :class:`TrainingPairs` draws each item (video of the id, frame pair,
  augmentation) from a generator seeded by (seed, epoch, position);
- :func:`derive_seed` gives the per-step seed of the model's own random
  draws (TPS dropout masks, the equivariance warp).

Together they make a resumed run see exactly the batches and random draws
of a run that was never interrupted, whatever the number of loader
workers.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tpsmm.data.dataset import FramesDataset, seed_worker
from tpsmm.errors import ConfigError, TPSMMError

# Stream tags, so that the shuffle, the items and the model draws of the
# same (seed, epoch) never share a random stream.
_SHUFFLE, _ITEM, _STEP = 1, 2, 3


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys, e.g. ``derive_seed(seed, epoch, step, rank)``.

    Uses numpy's SeedSequence, so nearby keys give unrelated streams.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def step_seed(seed: int, epoch: int, step_in_epoch: int, rank: int) -> int:
    """Seed of the model's random draws at one training step of one process."""
    return derive_seed(seed, _STEP, epoch, step_in_epoch, rank)


class TrainingPairs(Dataset):
    """``num_repeats`` passes over a train split per epoch, indexed by ``(epoch, position)``.

    Item ``(e, i)`` is the (source, driving) pair of
    ``dataset.sample_pair(i % len(dataset), rng)`` with ``rng`` seeded by
    (seed, e, i): ``{"source", "driving"}`` float32 (3, H, W) in [0, 1] and
    ``"name"``. Plays the role of the reference's ``DatasetRepeater``.
    """

    def __init__(self, dataset: FramesDataset, num_repeats: int, seed: int) -> None:
        if num_repeats < 1:
            raise ConfigError(f"num_repeats must be at least 1, got {num_repeats}")
        self.dataset = dataset
        self.num_repeats = int(num_repeats)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, position = key
        rng = np.random.default_rng([self.seed, _ITEM, epoch, position])
        return self.dataset.sample_pair(position % len(self.dataset), rng)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, position)`` keys of one process's share of an epoch.

    Each epoch is a permutation of ``range(size)`` seeded by (seed, epoch),
    cut to a multiple of ``world_size * batch_size`` (the reference drops
    the last incomplete batch too); process ``rank`` takes every
    ``world_size``-th entry. :meth:`set_epoch` chooses the epoch and the
    batch to start from.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = size // (world_size * batch_size)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"an epoch of {size} pairs (videos or ids x num_repeats) is smaller than one "
                f"batch of {batch_size} x {world_size} process(es); lower the batch size or "
                f"raise num_repeats"
            )
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Iterate over ``epoch`` from batch ``start_step`` on (0 = the whole epoch)."""
        self.epoch = epoch
        self.start_step = start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, _SHUFFLE, self.epoch]).permutation(self.size)
        used = self.steps_per_epoch * self.batch_size * self.world_size
        mine = order[:used][self.rank :: self.world_size]
        for position in mine[self.start_step * self.batch_size :]:
            yield self.epoch, int(position)


def _init_worker(worker_id: int) -> None:
    # Ctrl-C, and the SIGTERM of a job scheduler or `kill -- -PGID`, reach the
    # whole process group. The main process stops cleanly after its current
    # step and saves; a worker killed by the same signal would make it fail at
    # once instead (the DataLoader raises on its death), losing the steps since
    # the last save. Workers exit by themselves when the main process goes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed_worker(worker_id)


def make_loader(pairs: Dataset, sampler: EpochSampler, workers: int,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader of ``sampler.batch_size`` pairs per batch, in the sampler's order.

    Workers are restarted each epoch (not persistent) so that a change of
    epoch in the sampler is all it takes; their own randomness does not
    matter because every item is seeded by its key.
    """
    return DataLoader(
        pairs,
        batch_size=sampler.batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        pin_memory=pin_memory,
        worker_init_fn=_init_worker if workers else None,
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def batches(loader: DataLoader) -> Iterator[dict]:
    """The loader's batches; an error of ours raised in a loader worker comes out as its
    own one-line message, naming the file, and the workers are stopped at once.

    torch re-raises a worker's exception in the main process with the worker's traceback
    folded into the message ("Caught InputError in DataLoader worker process 0. Original
    Traceback ..."), which the command line would print whole.
    """
    iterator = iter(loader)
    try:
        yield from iterator
        return
    except TPSMMError as error:
        text = str(error)
        if "Original Traceback" not in text:
            raise
        # The last line is the worker's "tpsmm.errors.InputError: <the message>".
        kind, message = type(error), text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    finally:
        # torch's iterator stops its workers when exhausted or collected, but an error
        # raised through it leaves it in a reference cycle (traceback -> its frames), and
        # the workers ignore SIGTERM (_init_worker): without this they outlive the run.
        stop_workers = getattr(iterator, "_shutdown_workers", None)
        if stop_workers is not None:
            stop_workers()
    raise kind(message)
