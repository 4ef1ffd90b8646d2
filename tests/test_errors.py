"""Error paths of configs, checkpoints and VGG weights: one clear message."""

from __future__ import annotations

import argparse
import copy
from importlib import resources

import pytest
import torch
import yaml

from tpsmm import TPSMM, load_config
from tpsmm.cli import main
from tpsmm.config import apply_override
from tpsmm.errors import CheckpointError, ConfigError
from tpsmm.networks import vgg as vgg_module
from tpsmm.networks.vgg import load_vgg19


def test_unknown_config_key_names_key_and_file(tmp_path):
    path = tmp_path / "typo.yaml"
    text = resources.files("tpsmm").joinpath("configs/vox-256.yaml").read_text()
    path.write_text(text.replace("num_tps: 10", "num_tpss: 10"))
    expected = r"typo\.yaml: unknown key 'model_params\.common_params\.num_tpss'"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_required_key(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text("model_params:\n  common_params: {num_tps: 10, num_channels: 3}\n")
    expected = r"short\.yaml: missing required key 'model_params\.generator_params'"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


@pytest.mark.parametrize("section", [
    "dataset_params", "model_params.kp_detector_params", "model_params.common_params",
    "model_params.dense_motion_params", "train_params.loss_weights",
    "model_params.common_params.num_tps",
])
def test_empty_config_sections_are_refused_naming_key_and_file(tmp_path, section):
    """A section or required value left empty in the YAML reads as null; it used to pass the
    schema and crash later (AttributeError in image_size, TypeError building networks)."""
    data = yaml.safe_load(resources.files("tpsmm").joinpath("configs/vox-256.yaml").read_text())
    *parents, last = section.split(".")
    holder = data
    for part in parents:
        holder = holder[part]
    holder[last] = None
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump(data))
    key = section.replace(".", r"\.")
    with pytest.raises(ConfigError, match=rf"empty\.yaml: .*'{key}' (is empty|has no value)"):
        TPSMM.from_config(path)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model_params: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="no such config; give a YAML path or one of"):
        load_config("vox-512")


def test_override_sets_yaml_values_and_refuses_unknown_keys():
    data = {"model_params": {"common_params": {"num_tps": 10}}}
    apply_override(data, "train_params.loss_weights.pixel=40")
    apply_override(data, "train_params.epoch_milestones=[9, 11]")
    apply_override(data, "model_params.common_params.num_tps=5")
    apply_override(data, "train_params.lr_generator=2.0e-5")
    assert data["train_params"] == {"loss_weights": {"pixel": 40}, "epoch_milestones": [9, 11],
                                    "lr_generator": 2.0e-5}
    assert data["model_params"]["common_params"]["num_tps"] == 5
    before = copy.deepcopy(data)
    with pytest.raises(ConfigError, match=r"unknown key 'train_params\.loss_weights\.pixl'"):
        apply_override(data, "train_params.loss_weights.pixl=1")
    with pytest.raises(ConfigError, match=r"unknown key 'train_params\.lr_generator\.x'"):
        apply_override(data, "train_params.lr_generator.x=1")
    for bad in ("train_params.lr_generator", "=1", "train_params..lr_generator=1"):
        with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
            apply_override(data, bad)
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_override(data, "train_params.scales=[1, 0.5")
    assert data == before  # a refused assignment changes nothing


def test_train_params_checked_when_training_needs_them():
    config = load_config({"model_params": load_config("vox-256")["model_params"]})
    with pytest.raises(ConfigError, match="no train_params section"):
        _ = config.train_params


def test_dense_motion_too_shallow_for_its_masks_names_file_and_fix(tmp_path):
    """At scale_factor 1 all four occlusion masks come from the hourglass: 4 blocks."""
    path = tmp_path / "full-res.yaml"
    data = yaml.safe_load(resources.files("tpsmm").joinpath("configs/synthetic-64.yaml")
                          .read_text())
    data["model_params"]["dense_motion_params"]["scale_factor"] = 1.0
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"full-res\.yaml: dense_motion_params: .* "
                       r"need 4 hourglass outputs, but num_blocks 3 .* num_blocks >= 4"):
        TPSMM.from_config(path)
    config = load_config(path)
    config["model_params"]["dense_motion_params"].update(num_blocks=4, block_expansion=4,
                                                          max_features=8)
    masks = TPSMM(config).dense_motion_network(
        torch.rand(1, 3, 64, 64), *[{"fg_kp": torch.rand(1, 50, 2) * 2 - 1}] * 2
    )["occlusion_map"]
    assert [m.shape[-1] for m in masks] == [8, 16, 32, 64]


def test_reference_yaml_without_image_size_defaults_to_256():
    data = dict(load_config("ted-384"))
    del data["image_size"]
    assert load_config(data).image_size == 256
    data["dataset_params"] = {"frame_shape": [384, 384, 3]}
    assert load_config(data).image_size == 384


def test_checkpoint_for_another_config_lists_keys_and_suggests(tmp_path, tiny_case):
    path = tmp_path / "tiny.pth.tar"
    tiny_case.model().save_checkpoint(path)
    with pytest.raises(CheckpointError) as error:
        TPSMM.from_checkpoint(path, config="mgif-256")
    message = str(error.value)
    assert "tiny.pth.tar: does not fit the config" in message
    assert "mis-shaped (file vs config)" in message
    assert "fg_encoder.fc.weight (30, 512) vs (100, 512)" in message
    assert "bg_predictor: in the file but the config builds none" in message
    assert "\n" not in message


def test_published_checkpoint_with_wrong_published_config_suggests_right_one(tmp_path):
    """A vox-shaped file loaded as mgif is told which bundled configs fit."""
    with torch.device("meta"):
        model = TPSMM.from_config("vox-256")
    data = {"bg_predictor": {k: torch.zeros(v.shape) for k, v in
                             model.bg_predictor.state_dict().items()}}
    path = tmp_path / "vox.pth.tar"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="it fits the bundled config .*vox-256"):
        TPSMM.from_checkpoint(path, config="mgif-256")


def test_missing_wrong_or_unreadable_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        TPSMM.from_checkpoint(tmp_path / "none.pth.tar", config="vox-256")
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth.tar: cannot read checkpoint: "
                       "not a PyTorch file") as error:
        TPSMM.from_checkpoint(garbage, config="vox-256")
    assert "weights_only" not in str(error.value)  # not torch's advice to load unsafely
    pickled = tmp_path / "pickled.pth.tar"
    torch.save({"kp_detector": {}, "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(CheckpointError, match=r"pickled.pth.tar: .*Python object "
                       r"\(argparse.Namespace\), which is not loaded, for safety"):
        TPSMM.from_checkpoint(pickled, config="vox-256")
    other = tmp_path / "other.pth.tar"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a TPSMM checkpoint .*found: weights"):
        TPSMM.from_checkpoint(other, config="vox-256")


def test_missing_vgg_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as error:
        load_vgg19("imagenet")
    message = str(error.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert vgg_module.VGG19_URL in message
    assert "--vgg-weights" in message and "'random'" in message
    with pytest.raises(ConfigError, match="VGG-19 weight file not found"):
        load_vgg19(tmp_path / "nope.pth")
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"\x80\x02")  # a pickle's first bytes, as an interrupted copy
    with pytest.raises(ConfigError, match=r"vgg19.pth: cannot read VGG-19 weights: the file "
                       "ends early"):
        load_vgg19(weights)
    weights.write_text("<html>a login page saved as the weights</html>")
    with pytest.raises(ConfigError, match=r"vgg19.pth: cannot read VGG-19 weights: not a "
                       r"PyTorch file \(.+\)$") as error:
        load_vgg19(weights)
    assert "\n" not in str(error.value) and "weights_only" not in str(error.value)
    torch.save(torch.zeros(3), weights)
    with pytest.raises(ConfigError, match="vgg19.pth: not a torchvision VGG-19 state dict "
                       r"\(it holds a Tensor\)"):
        load_vgg19(weights)


def test_vgg_loads_torchvision_format_strictly(tmp_path):
    reference = load_vgg19("random")
    full = {f"features.{k}": v for k, v in reference.features.state_dict().items()}
    full["classifier.0.weight"] = torch.zeros(2, 2)  # a full vgg19() file has these too
    path = tmp_path / "vgg19.pth"
    torch.save(full, path)
    loaded = load_vgg19(path)
    for key, value in reference.features.state_dict().items():
        assert torch.equal(value, loaded.features.state_dict()[key])
    del full["features.0.weight"]
    torch.save(full, path)
    with pytest.raises(ConfigError, match="not a torchvision VGG-19 state dict"):
        load_vgg19(path)


@pytest.mark.parametrize("command", [["demo"], ["train", "--config", "vox-256", "--out", "x"]])
def test_a_device_that_does_not_exist_is_one_line(command, tmp_path, monkeypatch, capsys):
    """``--device gpu`` ended in torch's traceback."""
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device 'gpu': not a device" in err[0], err
    assert list(tmp_path.iterdir()) == []
