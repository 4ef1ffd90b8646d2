"""Distributed training: 2 gloo processes on the CPU end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from test_train import options, synthetic_root, tiny_config  # noqa: F401 (fixture)
from torch.utils.data import default_collate

from tpsmm import TPSMM, load_config
from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.training.logs import read_log
from tpsmm.training.resume_state import LAST
from tpsmm.training.sampling import EpochSampler, TrainingPairs, step_seed
from tpsmm.training.trainer import Stage1, train, training_dataset

NETWORKS = ("kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: The paper's ablation without the perceptual loss: no loss uses the inpainting decoder.
NO_PERCEPTUAL = {"perceptual": [0, 0, 0, 0, 0], "equivariance_value": 10, "warp_loss": 10,
                 "bg": 10}


def _worker(rank: int, world_size: int, port: int, root: Path, out: Path,
            changes: dict) -> None:
    """One torchrun-like process: the environment torchrun would set, then train()."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    # bg_start 1: the second epoch switches to the DDP model with the background net.
    config = tiny_config(batch_size=2, num_repeats=1, bg_start=1, **changes)
    result = train(options(out / "run", root, config=config, device="cpu", threads=1))
    assert result.status == "finished" and result.step == 2
    weights = {name: getattr(result.model, name).state_dict() for name in NETWORKS}
    torch.save(weights, out / f"rank{rank}.pt")


def test_two_gloo_processes_hold_identical_weights(synthetic_root: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), synthetic_root, tmp_path, {}), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    saved = read_checkpoint(tmp_path / "run" / LAST)
    torch.manual_seed(0)  # the run's seed: its initial weights
    initial = TPSMM(load_config(tiny_config())).inpainting_network.state_dict()
    assert not torch.equal(initial["final.weight"], ranks[0]["inpainting_network"]["final.weight"])
    for name in NETWORKS:
        for key, value in ranks[0][name].items():
            torch.testing.assert_close(ranks[1][name][key], value, rtol=0, atol=0,
                                       msg=f"{name}.{key}")
            torch.testing.assert_close(saved[name][key], value, rtol=0, atol=0)
    # Only rank 0 logs: one record per step, losses averaged over the two processes.
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2]
    assert "bg" in records[-1] and "bg" not in records[0]
    # One process at the same global batch, each step as DDP splits it: every process's
    # half with its own random draws, gradients averaged.
    single = _one_process_steps(synthetic_root, tiny_config(batch_size=2, num_repeats=1,
                                                            bg_start=1), epochs=2)
    differences = sorted((ranks[0][name][key] - value.detach()).abs().max().item()
                         for name in NETWORKS
                         for key, value in getattr(single, name).named_parameters())
    # Measured: median 2e-8, largest 1.7e-5 (Adam's first steps, lr 2e-4, amplify rounding
    # where a gradient is near 0). One batch of both samples instead: median 4.6e-4.
    assert differences[len(differences) // 2] < 1e-6 and differences[-1] < 5e-5, differences


def _one_process_steps(root: Path, config: dict, epochs: int, world_size: int = 2,
                       seed: int = 0) -> TPSMM:
    """What DDP computes, in one process: each step the mean of the gradients of the
    ``world_size`` processes' batches (drawn and seeded as theirs are), then one update.
    (BatchNorm's batch statistics are per process in DDP, so a single batch of the whole
    global batch would normalise differently: each share is a batch of its own here too.)
    """
    config = dict(config, dataset_params={**config["dataset_params"], "root_dir": str(root)})
    stage = Stage1(load_config(config), seed=seed)
    pairs = TrainingPairs(training_dataset(stage.config), stage.params["num_repeats"], seed)
    per_process = stage.params["batch_size"] // world_size
    for epoch in range(epochs):
        samplers = [EpochSampler(len(pairs), per_process, seed, rank, world_size)
                    for rank in range(world_size)]
        for sampler in samplers:
            sampler.set_epoch(epoch)
        for step, keys in enumerate(zip(*[list(s) for s in samplers], strict=True)):
            for rank, key in enumerate(keys):
                torch.manual_seed(step_seed(seed, epoch, step, rank))
                stage.backward(default_collate([pairs[key]]), epoch, weight=1 / world_size)
            stage.update(epoch)
        stage.end_epoch()
    return stage.model



def test_a_loss_switched_off_trains_under_ddp(synthetic_root: Path,  # noqa: F811
                                              tmp_path: Path) -> None:
    """DDP stopped at the second step ("Expected to have finished reduction ...") when a
    loss term was off: any config one process trains must train under DDP too."""
    changes = {"loss_weights": NO_PERCEPTUAL}
    mp.spawn(_worker, args=(2, _free_port(), synthetic_root, tmp_path, changes), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name in NETWORKS:
        for key, value in ranks[0][name].items():
            torch.testing.assert_close(ranks[1][name][key], value, rtol=0, atol=0,
                                       msg=f"{name}.{key}")
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2]
    assert "perceptual" not in records[-1]
