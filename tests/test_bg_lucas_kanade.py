"""LucasKanadeBGMotion: the background motion measured without weights, and its config path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_train import tiny_config

from tpsmm import TPSMM, load_config
from tpsmm.checkpoint_file import read_checkpoint
from tpsmm.data import synthetic
from tpsmm.data.dataset import FramesDataset
from tpsmm.data.synthetic import generate_dataset
from tpsmm.errors import ConfigError
from tpsmm.evaluation.reconstruction import background_used
from tpsmm.geometry import apply_projective, make_coordinate_grid
from tpsmm.networks import LucasKanadeBGMotion
from tpsmm.networks.bg_lucas_kanade import _plausible
from tpsmm.testing.camera_truth import background_grid
from tpsmm.training.resume_state import LAST
from tpsmm.training.trainer import Stage1, TrainOptions, train

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 64


def lucas_kanade_config(**train_params) -> dict:
    config = tiny_config(**train_params)
    config["model_params"]["bg_predictor_params"] = {"kind": "lucas_kanade"}
    return config


def flow_error_px(affine: torch.Tensor, true: torch.Tensor) -> float:
    """Mean |dx| + |dy| in pixels between ``affine``'s grid (B, 3, 3) and ``true`` (B, S, S, 2)."""
    grid = apply_projective(affine, make_coordinate_grid((SIZE, SIZE)))
    return float((grid - true).abs().sum(dim=-1).mean()) * (SIZE - 1) / 2


def test_recovers_a_subpixel_affine_warp_of_a_texture() -> None:
    generator = torch.Generator().manual_seed(0)
    texture = F.avg_pool2d(torch.rand(1, 3, 2 * SIZE, 2 * SIZE, generator=generator), 3,
                           stride=1, padding=1)[..., ::2, ::2]
    true = torch.tensor([[[1.01, 0.005, 0.012], [-0.004, 0.99, -0.008], [0, 0, 1]],
                         [[1.0, 0.0, -0.02], [0.0, 1.0, 0.015], [0, 0, 1]]])
    grid = apply_projective(true, make_coordinate_grid((SIZE, SIZE)))
    source = texture.expand(2, -1, -1, -1)
    driving = F.grid_sample(source, grid, align_corners=True, padding_mode="border")
    estimate = LucasKanadeBGMotion()(source, driving)
    assert estimate.shape == (2, 3, 3)
    assert torch.equal(estimate[:, 2], torch.tensor([[0.0, 0, 1]] * 2))
    # 0.012 grid units are 0.38 px here; the estimate is within 0.01 px.
    assert flow_error_px(estimate, grid) < 0.01
    assert flow_error_px(torch.eye(3).expand(2, 3, 3), grid) > 0.4


def test_follows_the_synthetic_camera_past_the_moving_character() -> None:
    """Held-out clips of `tpsmm synth` (seed 1), the character in front of the background."""
    errors, still = [], []
    for identity in (0, 2):
        video = synthetic.render_video(seed=1, size=SIZE, num_frames=24, identity=identity)
        frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255
        true = torch.from_numpy(background_grid(1, SIZE, 24, identity))
        estimate = LucasKanadeBGMotion()(frames[:1].expand_as(frames), frames)
        errors.append(flow_error_px(estimate, true))
        still.append(flow_error_px(torch.eye(3).expand(24, 3, 3), true))
    # Measured: 0.07 and 0.04 px against the identity's 0.45 and 0.67 px (48 frames).
    assert np.mean(errors) < 0.25 * np.mean(still), (errors, still)


def test_flat_frames_give_the_identity() -> None:
    flat = torch.full((2, 3, SIZE, SIZE), 0.5)
    assert torch.allclose(LucasKanadeBGMotion()(flat, flat), torch.eye(3).expand(2, 3, 3))


def test_implausible_estimates_are_refused() -> None:
    def affine(a11: float, a22: float, shift: float) -> torch.Tensor:
        return torch.tensor([[a11, 0.0, shift], [0.0, a22, 0.0], [0.0, 0.0, 1.0]])

    candidates = torch.stack([affine(1.02, 0.99, 0.05), affine(1.0, 1.0, 0.3),
                              affine(2.0, 2.0, 0.0), affine(-1.0, 1.0, 0.0),
                              affine(float("nan"), 1.0, 0.0)])
    assert _plausible(candidates).tolist() == [True, False, False, False, False]


def test_config_kind_builds_it_and_unknown_kinds_are_refused() -> None:
    model = TPSMM.from_config(lucas_kanade_config())
    assert isinstance(model.bg_predictor, LucasKanadeBGMotion)
    assert not list(model.bg_predictor.parameters())
    config = lucas_kanade_config()
    config["model_params"]["bg_predictor_params"] = {"kind": "optical-flow"}
    with pytest.raises(ConfigError, match="bg_predictor_params.kind is 'optical-flow'"):
        TPSMM.from_config(config)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 4, size=SIZE, num_frames=8, clips_per_identity=1, test_fraction=0.3)
    return root


def test_training_with_it_has_no_background_optimizer_or_loss(synthetic_root: Path,
                                                             tmp_path: Path) -> None:
    stage = Stage1(load_config(lucas_kanade_config(bg_start=0, dropout_epoch=0)), seed=0)
    assert stage.optimizer_bg is None and stage.scheduler_bg is None
    dataset = FramesDataset(synthetic_root, id_sampling=True)
    item = dataset.sample_pair(0, np.random.default_rng(0))
    batch = {key: item[key][None] for key in ("source", "driving")}
    losses, generated = stage.step(batch, epoch=0)
    assert set(losses) == {"perceptual", "equivariance_value", "warp_loss"}
    assert generated["bg_param"].shape == (1, 3, 3)

    run = tmp_path / "run"
    train(TrainOptions(out=run, config=lucas_kanade_config(), data=synthetic_root, quiet=True,
                       tensorboard=False, checkpoint_minutes=None, max_steps=1,
                       visualize=False))
    checkpoint = read_checkpoint(run / LAST)
    assert checkpoint["bg_predictor"] == {} and "optimizer_bg_predictor" not in checkpoint
    model = TPSMM.from_checkpoint(run / LAST, config=run / "config.yaml")
    assert background_used(model)
    train(TrainOptions(out=run, data=synthetic_root, quiet=True, tensorboard=False,
                       checkpoint_minutes=None, resume="last", max_steps=2, visualize=False))
    assert read_checkpoint(run / LAST)["training"]["global_step"] == 2


def test_clamp_background_keeps_the_background_grid_in_the_frame() -> None:
    config = tiny_config()
    model = TPSMM.from_config(config).dense_motion_network
    config["model_params"]["dense_motion_params"]["clamp_background"] = True
    clamped = TPSMM.from_config(config).dense_motion_network
    assert not model.clamp_background and clamped.clamp_background
    kp = {"fg_kp": torch.rand(1, model.num_tps * 5, 2) * 2 - 1}
    zoom_out = torch.tensor([[[1.05, 0, 0.02], [0, 1.05, 0], [0, 0, 1]]])
    plain = model.create_transformations((16, 16), kp["fg_kp"], kp["fg_kp"], zoom_out)
    inside = clamped.create_transformations((16, 16), kp["fg_kp"], kp["fg_kp"], zoom_out)
    assert plain[:, 0].abs().max() > 1.05 and inside[:, 0].abs().max() == 1
    assert torch.equal(inside[:, 1:], plain[:, 1:])  # the TPS grids are not clamped
    assert torch.equal(inside[:, 0], plain[:, 0].clamp(-1, 1))


def test_init_from_a_learnt_predictor_drops_it(tmp_path: Path) -> None:
    torch.manual_seed(7)
    TPSMM(load_config(tiny_config())).save_checkpoint(tmp_path / "resnet-bg.pth.tar")
    stage = Stage1(load_config(lucas_kanade_config()), seed=0, init=tmp_path / "resnet-bg.pth.tar")
    assert set(stage.model.loaded) == {"kp_detector", "dense_motion_network",
                                       "inpainting_network"}
    saved = read_checkpoint(tmp_path / "resnet-bg.pth.tar")["inpainting_network"]
    for key, value in stage.model.inpainting_network.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_a_learnt_predictor_in_the_file_is_ignored(tmp_path: Path) -> None:
    torch.manual_seed(7)
    TPSMM(load_config(tiny_config())).save_checkpoint(tmp_path / "resnet-bg.pth.tar")
    model = TPSMM.from_checkpoint(tmp_path / "resnet-bg.pth.tar", config=lucas_kanade_config())
    assert "bg_predictor" not in model.loaded and background_used(model)
