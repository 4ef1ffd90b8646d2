"""Tests of stage 2 (tpsmm.training.avd, ``tpsmm train-avd``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import synthetic_root, tiny_config  # noqa: F401 (fixture)

from tpsmm import TPSMM, load_config
from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.cli import main
from tpsmm.errors import ConfigError
from tpsmm.training.avd import AVDOptions, random_scale, train_avd
from tpsmm.training.logs import read_log
from tpsmm.training.resume_state import LAST

pytestmark = pytest.mark.usefixtures("one_thread")


def avd_config() -> dict:
    config = tiny_config()
    config["train_avd_params"] = {"num_epochs": 2, "num_repeats": 2, "batch_size": 2,
                                  "dataloader_workers": 0, "checkpoint_freq": 1,
                                  "epoch_milestones": [1], "lr": 1e-3, "lambda_shift": 1,
                                  "random_scale": 0.25}
    return config


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 checkpoint (random weights) of the tiny config."""
    path = tmp_path_factory.mktemp("stage1") / "stage1.pth.tar"
    torch.manual_seed(1)
    TPSMM(load_config(avd_config())).save_checkpoint(path, epoch=0)
    return path


def options(out: Path, root: Path, stage1: Path, **changes) -> AVDOptions:
    values = {"out": out, "checkpoint": stage1, "config": avd_config(), "data": root,
              "quiet": True, "tensorboard": False, "checkpoint_minutes": None}
    values.update(changes)
    return AVDOptions(**values)


def test_random_scale_scales_each_axis_within_bounds() -> None:
    kp = torch.ones(64, 5, 2)
    scaled = random_scale(kp, 0.25)
    assert torch.all((scaled >= 0.75) & (scaled <= 1.25))
    assert torch.equal(scaled[:, 0], scaled[:, 4])  # one factor per sample and axis
    assert not torch.equal(scaled[:, 0, 0], scaled[:, 0, 1])


def test_avd_training_keeps_the_detector_frozen_and_resumes(
        synthetic_root: Path, stage1: Path, tmp_path: Path) -> None:  # noqa: F811
    whole = train_avd(options(tmp_path / "whole", synthetic_root, stage1))
    assert (whole.status, whole.epochs_done, whole.step) == ("finished", 2, 4)
    saved = read_checkpoint(tmp_path / "whole" / LAST)
    assert {"avd_network", "optimizer_avd", "kp_detector", "dense_motion_network",
            "inpainting_network", "bg_predictor", "epoch"} <= set(saved)
    original = read_checkpoint(stage1)
    for key, value in original["kp_detector"].items():  # eval mode: no BN drift
        assert torch.equal(saved["kp_detector"][key], value), key
    assert not torch.equal(saved["avd_network"]["decoder.9.weight"],
                           original["avd_network"]["decoder.9.weight"])
    model = TPSMM.from_checkpoint(tmp_path / "whole" / LAST,
                                  config=tmp_path / "whole" / "config.yaml")
    assert "avd_network" in model.loaded
    assert (tmp_path / "whole" / "train-vis" / "00000001-rec.png").exists()
    video = sorted((synthetic_root / "test").iterdir())[0]
    assert main(["animate", "--config", str(tmp_path / "whole" / "config.yaml"),
                 "--checkpoint", str(tmp_path / "whole" / LAST), "--mode", "avd",
                 "--source", str(video / "000001.png"), "--driving", str(video),
                 "--output", str(tmp_path / "avd.gif"), "--device", "cpu", "-q"]) == 0

    run = tmp_path / "resumed"
    assert train_avd(options(run, synthetic_root, stage1, max_steps=3)).status == "max-steps"
    resumed = train_avd(options(run, synthetic_root, None, config=None, resume="last"))
    assert (resumed.status, resumed.step) == ("finished", 4)
    expected = [r["shift"] for r in read_log(tmp_path / "whole" / "log.jsonl")]
    assert [r["shift"] for r in read_log(run / "log.jsonl")] == pytest.approx(expected, rel=1e-5)


def test_reference_train_mode_lets_batchnorm_drift(synthetic_root: Path, stage1: Path,  # noqa: F811
                                                   tmp_path: Path) -> None:
    train_avd(options(tmp_path / "run", synthetic_root, stage1, kp_train_mode=True, epochs=1,
                      visualize=False))
    saved = read_checkpoint(tmp_path / "run" / LAST)["kp_detector"]
    original = read_checkpoint(stage1)["kp_detector"]
    assert not torch.equal(saved["fg_encoder.bn1.running_mean"],
                           original["fg_encoder.bn1.running_mean"])


def test_errors(synthetic_root: Path, stage1: Path, tmp_path: Path,  # noqa: F811
                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="--checkpoint"):
        train_avd(options(tmp_path / "a", synthetic_root, None))
    with pytest.raises(ConfigError, match="--config"):
        train_avd(options(tmp_path / "b", synthetic_root, stage1, config=None))
    status = main(["train-avd", "--out", str(tmp_path / "c"), "--data", str(synthetic_root),
                   "--checkpoint", str(tmp_path / "missing.pth.tar"), "-q"])
    assert status == 2 and "checkpoint not found" in capsys.readouterr().err
