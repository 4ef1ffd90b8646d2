"""Tests of stage-1 training: tpsmm.training (trainer, sampling, logs, checkpoints) and the CLI."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from tpsmm import TPSMM, load_config
from tpsmm.animation import Animator
from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.cli import main
from tpsmm.data.dataset import FramesDataset
from tpsmm.data.images import to_tensor, to_uint8
from tpsmm.data.synthetic import generate_dataset
from tpsmm.data.video import open_video, open_writer
from tpsmm.errors import CheckpointError, ConfigError, InputError
from tpsmm.evaluation.reconstruction import reconstruct
from tpsmm.generator import generate
from tpsmm.networks.winograd import WinogradConv2d, winograd_available
from tpsmm.training.logs import TrainingLog, read_log
from tpsmm.training.lr_schedule import load_step_schedule, step_schedule
from tpsmm.training.resume_state import LAST, TRAINING_KEY, numbered_name
from tpsmm.training.sampling import EpochSampler, TrainingPairs, derive_seed
from tpsmm.training.trainer import WINOGRAD_NETWORKS, Stage1, TrainOptions, train
from tpsmm.training.visualizer import visualize

DATA = Path(__file__).parent / "data"

# Tiny models: one thread (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**train_params) -> dict:
    """The tiny-64 golden model with narrow ResNets, a 2-epoch schedule and random VGG."""
    meta = json.loads((DATA / "tiny-64.json").read_text())
    model = copy.deepcopy(meta["model_params"])
    model["kp_detector_params"] = {"width": 8}
    model["bg_predictor_params"] = {"width": 8}
    params = dict(meta["train_params"], num_epochs=2, num_repeats=1, batch_size=1,
                  dataloader_workers=0, scales=[1, 0.5], bg_start=1, checkpoint_freq=1,
                  epoch_milestones=[1], perceptual_weights="random")
    params.update(train_params)
    augmentation = {"flip_param": {"horizontal_flip": True, "time_flip": True},
                    "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1,
                                     "hue": 0.1}}
    return {"image_size": 64, "model_params": model, "train_params": params,
            "dataset_params": {"id_sampling": True, "augmentation_params": augmentation}}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 training characters x 2 clips of 8 frames at 64x64 (+1 test character)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 6, size=64, num_frames=8, clips_per_identity=2, test_fraction=0.3)
    return root


def test_no_vgg_is_loaded_when_the_perceptual_loss_is_off(tmp_path: Path) -> None:
    """An ablation without the perceptual loss needs no VGG-19 file (it used to demand one,
    which fails offline)."""
    loss_weights = {"perceptual": [0, 0, 0, 0, 0], "equivariance_value": 10, "warp_loss": 10,
                    "bg": 10}
    config = load_config(tiny_config(loss_weights=loss_weights,
                                     perceptual_weights=str(tmp_path / "absent-vgg19.pth")))
    stage = Stage1(config)
    assert stage.vgg is None
    batch = {key: torch.rand(1, 3, 64, 64) for key in ("source", "driving")}
    losses, _ = stage.step(batch, epoch=1)
    assert "perceptual" not in losses and set(losses) == {"equivariance_value", "warp_loss", "bg"}


def options(out: Path, root: Path, **changes) -> TrainOptions:
    values = {"out": out, "config": tiny_config(), "data": root, "quiet": True,
              "tensorboard": False, "checkpoint_minutes": None}
    values.update(changes)
    return TrainOptions(**values)


def test_derive_seed_separates_keys() -> None:
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    assert len({derive_seed(0, e, s) for e in range(5) for s in range(5)}) == 25


def test_sampler_shards_and_resumes() -> None:
    whole = list(EpochSampler(10, batch_size=2, seed=3))
    assert len(whole) == 10 and sorted(p for _, p in whole) == list(range(10))
    ranks = [list(EpochSampler(10, 2, 3, rank=r, world_size=2)) for r in range(2)]
    assert all(len(r) == 4 for r in ranks)  # 10 // (2*2) = 2 steps of 2 each
    assert not set(ranks[0]) & set(ranks[1])
    sampler = EpochSampler(10, 2, 3)
    sampler.set_epoch(0, start_step=2)
    assert list(sampler) == whole[4:]
    sampler.set_epoch(1)
    assert list(sampler) != whole
    with pytest.raises(ConfigError, match="smaller than one batch"):
        EpochSampler(3, batch_size=2, seed=0, world_size=2)


def test_training_pairs_are_functions_of_their_key(synthetic_root: Path) -> None:
    config = load_config(tiny_config())
    dataset = FramesDataset(synthetic_root, id_sampling=True,
                            augmentation_params=config["dataset_params"]["augmentation_params"])
    pairs = TrainingPairs(dataset, num_repeats=2, seed=5)
    assert len(pairs) == 4
    first, again, other = pairs[(1, 4)], pairs[(1, 4)], pairs[(2, 4)]
    assert torch.equal(first["source"], again["source"])
    assert torch.equal(first["driving"], again["driving"])
    assert not torch.equal(first["driving"], other["driving"])
    assert first["source"].shape == (3, 64, 64)


def test_a_few_steps_lower_the_loss(synthetic_root: Path) -> None:
    config = load_config(tiny_config(lr_generator=1e-3, bg_start=0, dropout_epoch=0))
    stage = Stage1(config, seed=0)
    dataset = FramesDataset(synthetic_root, id_sampling=True)
    items = [dataset.sample_pair(i, np.random.default_rng(i)) for i in range(2)]
    batch = {key: torch.stack([item[key] for item in items]) for key in ("source", "driving")}

    def total_loss() -> float:
        torch.manual_seed(0)  # the same equivariance warp each time
        with torch.no_grad():
            losses, _ = stage.full_model(epoch=0)(batch, 0)
        return sum(value.item() for value in losses.values())

    before = total_loss()
    for step in range(4):
        torch.manual_seed(step)
        losses, generated = stage.step(batch, epoch=0)
    after = total_loss()
    assert set(losses) == {"perceptual", "equivariance_value", "warp_loss", "bg"}
    assert after < 0.9 * before, (before, after)
    grid = visualize(batch["source"], batch["driving"], generated)
    # source, transformed, driving, deformed, prediction, 4 masks, 2 per transform, sum
    assert grid.shape == (2 * 64, (9 + 2 * 4 + 1) * 64, 3) and grid.dtype == np.uint8


def test_pixel_loss_is_the_weighted_l1_of_the_prediction(synthetic_root: Path) -> None:
    weights = {"perceptual": [10] * 5, "equivariance_value": 10, "warp_loss": 10, "bg": 10}
    dataset = FramesDataset(synthetic_root, id_sampling=True)
    item = dataset.sample_pair(0, np.random.default_rng(0))
    batch = {key: item[key][None] for key in ("source", "driving")}
    for pixel in (None, 0, 7.5):
        stage = Stage1(load_config(tiny_config(
            loss_weights={**weights, **({} if pixel is None else {"pixel": pixel})})))
        with torch.no_grad():
            losses, generated = stage.full_model(epoch=0)(batch, 0)
        assert ("pixel" in losses) == bool(pixel)
        if pixel:
            expected = pixel * (generated["prediction"] - batch["driving"]).abs().mean()
            torch.testing.assert_close(losses["pixel"], expected)


@pytest.mark.skipif(not winograd_available(torch.device("cpu")), reason="no NNPACK")
def test_winograd_convolutions_where_they_pay_and_nowhere_else() -> None:
    config = load_config(tiny_config())
    keys = list(TPSMM(config).state_dict())

    def winograd_networks(stage: Stage1) -> set[str]:
        networks = {**stage.model.networks, "vgg": stage.vgg}
        return {name for name, net in networks.items() if net is not None
                and any(isinstance(m, WinogradConv2d) for m in net.modules())}

    assert winograd_networks(Stage1(config)) == {*WINOGRAD_NETWORKS, "vgg"}
    assert winograd_networks(Stage1(config, winograd=False)) == set()
    assert winograd_networks(Stage1(config, channels_last=True)) == set()
    assert winograd_networks(Stage1(config, precision="bf16")) == set()
    assert list(Stage1(config).model.state_dict()) == keys


# Largest relative difference of a loss term to fp32's, measured on this step: bf16 0.13
# (the equivariance term; the others 0.02-0.03), fp16 0.01.
LOSS_TOLERANCE = {"bf16": 0.15, "fp16": 0.02}


@pytest.mark.parametrize("precision", ["bf16", pytest.param("fp16", marks=pytest.mark.slow)])
def test_mixed_precision_steps(synthetic_root: Path, precision: str) -> None:
    """The step runs in reduced precision (its losses differ from fp32's, by little) and
    updates the weights; fp16 may instead skip a step whose gradients overflowed, which its
    scaler shows by lowering its scale (a disabled scaler always reports 1)."""
    dataset = FramesDataset(synthetic_root, id_sampling=True)
    item = dataset.sample_pair(0, np.random.default_rng(0))
    batch = {key: item[key][None] for key in ("source", "driving")}
    losses = {}
    for name in ("fp32", precision):
        stage = Stage1(load_config(tiny_config(bg_start=0)), precision=name)
        before = stage.model.inpainting_network.final.weight.clone()
        torch.manual_seed(1)  # the same equivariance transform for both
        losses[name], _ = stage.step(batch, epoch=0)
    reduced, full = losses[precision], losses["fp32"]
    assert all(torch.isfinite(value) for value in reduced.values())
    assert any(reduced[key] != full[key] for key in full)
    for key in full:
        assert float(reduced[key]) == pytest.approx(float(full[key]),
                                                    rel=LOSS_TOLERANCE[precision], abs=1e-6)
    changed = not torch.equal(before, stage.model.inpainting_network.final.weight)
    if precision == "bf16":
        assert changed and stage.scaler.get_scale() == 1.0  # no scaler: nothing to skip
    else:
        assert changed or stage.scaler.get_scale() < 2.0**16


def test_init_starts_from_given_weights(tmp_path: Path) -> None:
    config = load_config(tiny_config())
    torch.manual_seed(7)
    TPSMM(config).save_checkpoint(tmp_path / "init.pth.tar")
    stage = Stage1(config, seed=0, init=tmp_path / "init.pth.tar")
    saved = read_checkpoint(tmp_path / "init.pth.tar")["dense_motion_network"]
    for key, value in stage.model.dense_motion_network.state_dict().items():
        assert torch.equal(value, saved[key]), key


def _weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = read_checkpoint(path)
    return {f"{net}.{key}": value for net in ("kp_detector", "dense_motion_network",
                                              "inpainting_network", "bg_predictor")
            for key, value in checkpoint[net].items()}


def test_new_milestones_on_resume_give_the_new_schedules_lr() -> None:
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = step_schedule(optimizer, [2])
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    saved = copy.deepcopy((optimizer.state_dict(), scheduler.state_dict()))

    def resumed(milestones: list[int]) -> torch.optim.lr_scheduler.MultiStepLR:
        fresh = torch.optim.SGD([weight], lr=1.0)
        fresh.load_state_dict(saved[0])
        schedule = step_schedule(fresh, milestones)
        load_step_schedule(schedule, saved[1], milestones)
        return schedule

    same = resumed([2])
    assert same.get_last_lr() == pytest.approx([0.1])
    assert same.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    stretched = resumed([5, 6])  # epoch 3 is before both drops now
    assert stretched.get_last_lr() == pytest.approx([1.0])
    lrs = []
    for _ in range(4):
        stretched.step()
        lrs.append(stretched.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([1.0, 0.1, 0.01, 0.01])  # epochs 4, 5, 6, 7
    assert resumed([0, 1, 3]).get_last_lr() == pytest.approx([1e-3])


def test_resume_can_stretch_the_schedule(synthetic_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(options(run, synthetic_root, epochs=1))  # epoch 0 at 2e-4, before the drop at 1
    stretched = train(options(run, synthetic_root, config=None, resume="last", epochs=3,
                              epoch_milestones=[2, 3]))
    assert (stretched.status, stretched.epochs_done) == ("finished", 3)
    lrs = [(r["epoch"], r["lr"]) for r in read_log(run / "log.jsonl") if r["kind"] == "step"]
    assert lrs == [(0, 2e-4)] * 2 + [(1, 2e-4)] * 2 + [(2, pytest.approx(2e-5))] * 2
    checkpoint = read_checkpoint(run / LAST)
    assert checkpoint[TRAINING_KEY]["config"]["train_params"]["epoch_milestones"] == [2, 3]
    # The background predictor's schedule changes too: [1] would leave 2e-5 after epoch 2.
    assert checkpoint["optimizer_bg_predictor"]["param_groups"][0]["lr"] == pytest.approx(2e-6)


def test_set_changes_a_new_runs_config_and_is_refused_on_resume(synthetic_root: Path,
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(options(run, synthetic_root, max_steps=1,
                  overrides=["train_params.loss_weights.pixel=40", "train_params.bg_start=0"]))
    saved = read_checkpoint(run / LAST)[TRAINING_KEY]["config"]["train_params"]
    assert (saved["loss_weights"]["pixel"], saved["bg_start"]) == (40, 0)
    [step] = [r for r in read_log(run / "log.jsonl") if r["kind"] == "step"]
    assert step["pixel"] > 0
    with pytest.raises(ConfigError, match="cannot --set config values when resuming"):
        train(options(run, synthetic_root, config=None, resume="last",
                      overrides=["train_params.loss_weights.pixel=0"]))
    # --vgg-weights was applied to a resumed run silently, which broke its exact replay.
    with pytest.raises(ConfigError, match="cannot change --vgg-weights when resuming"):
        train(options(run, synthetic_root, config=None, resume="last",
                      vgg_weights=str(tmp_path / "other-vgg.pth")))


def test_resumed_run_replays_the_uninterrupted_run(synthetic_root: Path, tmp_path: Path) -> None:
    whole = train(options(tmp_path / "whole", synthetic_root))
    assert (whole.status, whole.epochs_done, whole.step) == ("finished", 2, 4)

    run = tmp_path / "resumed"
    first = train(options(run, synthetic_root, max_steps=1))  # stops mid-epoch 0
    assert (first.status, first.step, first.epochs_done) == ("max-steps", 1, 0)
    state = read_checkpoint(run / LAST)[TRAINING_KEY]
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 1, 1)
    # Work done after the last save and lost in a kill is redone: fake a lost step.
    with open(run / "log.jsonl", "a") as log:
        log.write(json.dumps({"kind": "step", "epoch": 0, "step": 2, "loss": -1.0}) + "\n")
    with pytest.raises(CheckpointError, match="--resume"):
        train(options(run, synthetic_root))
    # Loader workers do not change the batches: every item is seeded by its key.
    second = train(options(run, synthetic_root, config=None, resume="last", max_steps=3,
                           workers=1))
    assert (second.status, second.step, second.epochs_done) == ("max-steps", 3, 1)
    third = train(options(run, synthetic_root, config=None, resume="last"))
    assert (third.status, third.step, third.epochs_done) == ("finished", 4, 2)

    expected, got = read_log(tmp_path / "whole" / "log.jsonl"), read_log(run / "log.jsonl")
    assert [(r["kind"], r["epoch"], r["step"]) for r in got] == [
        (r["kind"], r["epoch"], r["step"]) for r in expected]
    for want, have in zip(expected, got, strict=True):
        for key in want:
            if key not in ("seconds", "kind"):
                assert have[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
    assert [r["lr"] for r in got if r["kind"] == "step"] == [2e-4] * 2 + [2e-5] * 2
    reference = _weights(tmp_path / "whole" / LAST)
    for key, value in _weights(run / LAST).items():
        torch.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-6, msg=key)
    assert (run / numbered_name(0)).exists() and (run / numbered_name(1)).exists()
    assert (run / "train-vis" / "00000001-rec.png").exists()
    assert len((run / "log.txt").read_text().splitlines()) == 2


def test_checkpoints_load_as_models(synthetic_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(options(run, synthetic_root, max_steps=1, visualize=False))
    checkpoint = read_checkpoint(run / LAST)
    # Reference keys at the top level; the AVD network is not trained in stage 1.
    assert {"kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor",
            "optimizer", "optimizer_bg_predictor", "epoch"} <= set(checkpoint)
    assert "avd_network" not in checkpoint and checkpoint["epoch"] == -1
    model = TPSMM.from_checkpoint(run / LAST, config=run / "config.yaml")
    assert set(model.loaded) == {"kp_detector", "dense_motion_network", "inpainting_network",
                                 "bg_predictor"}
    source = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp = model.kp_detector(source)["fg_kp"]
        prediction = generate(model.dense_motion_network, model.inpainting_network, source,
                              kp, kp)["prediction"]
    assert prediction.shape == (1, 3, 64, 64) and torch.isfinite(prediction).all()


def test_checkpoints_load_in_tpsmm_animate(synthetic_root: Path, tmp_path: Path) -> None:
    """The command animates every driving frame with the trained weights: its frames are
    the Animator's on the same checkpoint, exactly (PNG output, nothing lossy)."""
    run = tmp_path / "run"
    train(options(run, synthetic_root, max_steps=1, visualize=False))
    video = sorted(p for p in (synthetic_root / "test").iterdir() if p.is_dir())[0]
    output = tmp_path / "animation"
    status = main(["animate", "--config", str(run / "config.yaml"), "--checkpoint",
                   str(run / LAST), "--source", str(video / "000003.png"), "--driving",
                   str(video), "--output", str(output), "--device", "cpu", "-q"])
    assert status == 0
    written = np.stack(list(open_video(output)))
    driving = np.stack(list(open_video(video)))
    assert written.shape == driving.shape
    animator = Animator.from_checkpoint(run / LAST, run / "config.yaml", device="cpu")
    source = animator.prepare(video / "000003.png")
    expected = to_uint8(animator.animate_frames(source, to_tensor(driving)))
    assert np.abs(written.astype(int) - expected).max() <= 1
    assert np.abs(written.astype(int) - driving).mean() > 1  # not the input passed through


def test_input_errors_before_training(synthetic_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        train(options(tmp_path / "a", tmp_path / "missing"))
    with pytest.raises(ConfigError, match="--image-size 64"):
        train(options(tmp_path / "b", synthetic_root, config=dict(tiny_config(), image_size=32)))
    with pytest.raises(ConfigError, match="--config"):
        train(options(tmp_path / "c", synthetic_root, config=None))
    with pytest.raises(ConfigError, match="smaller than one batch"):
        train(options(tmp_path / "d", synthetic_root, batch_size=3))
    with pytest.raises(ConfigError, match="precision"):
        train(options(tmp_path / "e", synthetic_root, precision="fp8"))
    TPSMM(load_config(tiny_config())).save_checkpoint(tmp_path / "published.pth.tar")
    with pytest.raises(CheckpointError, match="--init"):
        train(options(tmp_path / "f", synthetic_root, resume=str(tmp_path / "published.pth.tar")))


def test_cli_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    status = main(["train", "--config", str(config), "--data", str(tmp_path / "none"),
                   "--out", str(tmp_path / "run"), "-q"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tpsmm train: error:") and "none" in err[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_video_broken_past_its_header_stops_training_in_one_line(
        synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """With loader workers, torch re-raised the error with the worker's whole traceback in
    its message, which the command printed. The logs are closed however a run ends (they
    were closed only on success)."""
    closed = []
    close = TrainingLog.close
    monkeypatch.setattr(TrainingLog, "close", lambda log: (closed.append(log), close(log)))
    root = tmp_path / "data"
    for split in ("train", "test"):
        shutil.copytree(synthetic_root / split, root / split)
    noise = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    cut = root / "train" / "zz-cut.mp4"
    with open_writer(cut, 25) as writer:
        writer.write(noise)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 4])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(num_epochs=1)))
    status = main(["train", "--config", str(config), "--data", str(root), "--out",
                   str(tmp_path / "run"), "--workers", str(workers), "--threads", "1", "-q"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tpsmm train: error: ") and "zz-cut.mp4: " in err[0]
    assert multiprocessing.active_children() == []  # the loader's workers are gone
    assert len(closed) == 1


@pytest.mark.slow
def test_sigkill_loses_at_most_the_work_since_the_last_save(synthetic_root: Path,
                                                            tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(num_epochs=3)))
    command = [sys.executable, "-m", "tpsmm.cli", "train", "--config", str(config), "--data",
               str(synthetic_root), "--out", str(tmp_path / "run"), "--resume", "-q",
               "--checkpoint-minutes", "0.0001", "--no-visualize", "--threads", "1"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    process = subprocess.Popen(command, env=env)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and any(r["step"] >= 3 for r in read_log(log)):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = read_checkpoint(tmp_path / "run" / LAST)[TRAINING_KEY]["global_step"]
    assert saved >= 2  # a save after every step (checkpoint-minutes ~ 0)
    subprocess.run(command, env=env, check=True, timeout=300)
    records = read_log(log)
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps == list(range(1, 7))
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1, 2]


@pytest.mark.slow(minutes=3)
def test_sigkill_at_random_moments_always_resumes(synthetic_root: Path, tmp_path: Path) -> None:
    """Fault injection: a run is killed with SIGKILL at random moments (while starting up,
    in a step, inside checkpoint writes: it saves after every step) and resumed each time.
    Every kill leaves a checkpoint that loads and loses at most the step since the last save;
    the finished run equals one never interrupted."""
    epochs = 12  # 24 steps
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(num_epochs=epochs)))
    run, log = tmp_path / "run", tmp_path / "run" / "log.jsonl"
    command = [sys.executable, "-m", "tpsmm.cli", "train", "--config", str(config), "--data",
               str(synthetic_root), "--out", str(run), "--resume", "-q",
               "--checkpoint-minutes", "0.0001", "--no-visualize", "--threads", "1"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")

    def logged_step() -> int:
        records = read_log(log) if log.exists() else []
        return max((r["step"] for r in records if r["kind"] == "step"), default=0)

    rng = np.random.default_rng(18)
    # Kill once while starting up, then after random steps, a random fraction of a step on.
    targets = [0, *sorted(rng.choice(np.arange(1, 2 * epochs - 1), size=7, replace=False))]
    saved_before, kills = 0, []
    for target in targets:
        process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 120
        while target and logged_step() < target and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if not (run / LAST).exists():
            continue  # killed before its first save: the next start is a new run
        saved = read_checkpoint(run / LAST)[TRAINING_KEY]["global_step"]  # it loads
        assert saved >= saved_before  # nothing already saved is lost
        assert logged_step() - saved <= 1  # only the step whose save the kill interrupted
        kills.append(saved)
        saved_before = saved
    assert len(set(kills)) >= 5, kills  # the kills fell at different points of the run
    subprocess.run(command, env=env, check=True, timeout=300)
    assert not [p.name for p in run.iterdir() if ".tmp-" in p.name]
    records = read_log(log)
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 2 * epochs + 1))
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(epochs))
    whole = train(options(tmp_path / "whole", synthetic_root,
                          config=tiny_config(num_epochs=epochs)))
    assert whole.step == 2 * epochs
    reference = _weights(tmp_path / "whole" / LAST)
    for key, value in _weights(run / LAST).items():
        torch.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_the_last_step(synthetic_root: Path,
                                                          tmp_path: Path) -> None:
    """A scheduler or ``kill -- -PGID`` signals the loader workers too; they must leave
    the stopping to the main process, which saves after its current step."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(num_epochs=50, dataloader_workers=1)))
    command = [sys.executable, "-m", "tpsmm.cli", "train", "--config", str(config), "--data",
               str(synthetic_root), "--out", str(tmp_path / "run"), "-q", "--no-visualize",
               "--threads", "1", "--checkpoint-minutes", "1000"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and any(r["step"] >= 3 for r in read_log(log)):
            break  # into the second epoch: its end has not been saved yet
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr  # "interrupted", not a crash
    steps = [r["step"] for r in read_log(log) if r["kind"] == "step"]
    saved = read_checkpoint(tmp_path / "run" / LAST)[TRAINING_KEY]["global_step"]
    assert saved == steps[-1] and saved > 2


def _disk_video(rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a two-colour disk gliding over a plain background.

    The disk travels up to a quarter of the frame from the centre, so copying
    the source frame is wrong wherever the disk has moved; the colour
    gradient across it gives the keypoints something to lock onto.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    background = rng.uniform(0.1, 0.9, 3)
    left, right = rng.uniform(0.1, 0.9, (2, 3))
    radius = rng.uniform(0.15, 0.25) * size
    t = np.arange(num_frames)[:, None]
    centres = size / 2 + size / 4 * np.sin(2 * np.pi * rng.uniform(0.03, 0.08, 2) * t
                                            + rng.uniform(0, 2 * np.pi, 2))
    frames = []
    for cx, cy in centres:
        inside = np.clip(radius - np.hypot(x - cx, y - cy) + 0.5, 0, 1)[..., None]
        u = np.clip((x - cx) / (2 * radius) + 0.5, 0, 1)[..., None]
        disk = left * (1 - u) + right * u
        frames.append(background * (1 - inside) + disk * inside)
    return np.rint(np.stack(frames) * 255).astype(np.uint8)


@pytest.mark.slow(minutes=8)  # 7-8 min on one core of two, the rest of the suite beside it
def test_training_learns_motion_on_held_out_videos(tmp_path: Path) -> None:
    """600 steps of the tiny model predict unseen videos better than copying
    the source frame, and better than a blurred copy of it (so the gain is
    motion, not smoothing)."""
    size = 32
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 6)):
        for index in range(count):
            folder = tmp_path / "data" / split / f"disk{index:02d}"
            folder.mkdir(parents=True)
            for t, frame in enumerate(_disk_video(rng, 24, size)):
                Image.fromarray(frame).save(folder / f"{t:03d}.png")
    # A fast schedule for a short run: a higher learning rate, the background
    # predictor from the start, no TPS dropout, two perceptual scales (a
    # 32x32 frame has no room for three).
    config = tiny_config(num_epochs=1000, num_repeats=1, batch_size=4, bg_start=0,
                         scales=[1, 0.5], epoch_milestones=[1000], lr_generator=1e-3,
                         dropout_epoch=1000)
    config["image_size"] = size
    config["dataset_params"]["frame_shape"] = [size, size, 3]
    config["model_params"]["dense_motion_params"]["scale_factor"] = 0.5
    train(options(tmp_path / "run", tmp_path / "data", config=config, max_steps=600,
                  visualize=False))

    model = TPSMM.from_checkpoint(tmp_path / "run" / LAST, config=config)
    test = FramesDataset(tmp_path / "data", is_train=False)
    with torch.no_grad():
        trained = reconstruct(test, model, save_png=False).l1
        copied = reconstruct(test, baseline="copy-source", save_png=False).l1
        blurred = np.mean([
            (F.avg_pool2d(video[:1], 5, 1, 2, count_include_pad=False) - video).abs().mean()
            for video in (test[i]["video"].transpose(0, 1) for i in range(len(test)))
        ])
    assert trained < 0.95 * copied and trained < 0.95 * blurred, (trained, copied, blurred)
