"""Configs: the reference's YAML format, bundled by name or read from a path.

A config is a plain nested dict (``config["model_params"]["common_params"]``
works as in the reference) with two extras: ``config.source``, the file it
came from, and ``config.image_size``, the model resolution. The reference
leaves the resolution implicit; our configs state it as the top-level key
``image_size``. A reference YAML without it gets ``dataset_params.frame_shape``
when that is set, else 256.

Every key is checked against the schema below: an unknown key (usually a
typo) or a missing required one is a :class:`ConfigError` naming the key
and the file.
"""

from __future__ import annotations

import copy
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tpsmm.errors import ConfigError

# A leaf is None; a dict is a section. Keys in REQUIRED must be present.
_AUGMENTATION = {
    "flip_param": {"horizontal_flip": None, "time_flip": None},
    "jitter_param": {"brightness": None, "contrast": None, "saturation": None, "hue": None},
    "crop_param": {"size": None},
    "resize_param": {"ratio": None},
    "rotation_param": {"degrees": None},
}
SCHEMA: dict[str, Any] = {
    "image_size": None,
    "dataset_params": {
        "root_dir": None, "frame_shape": None, "id_sampling": None, "pairs_list": None,
        "augmentation_params": _AUGMENTATION,
    },
    "model_params": {
        "common_params": {"num_tps": None, "num_channels": None, "bg": None, "multi_mask": None},
        "generator_params": {"block_expansion": None, "max_features": None,
                             "num_down_blocks": None},
        "dense_motion_params": {"block_expansion": None, "max_features": None,
                                "num_blocks": None, "scale_factor": None, "kp_variance": None,
                                # Ours: clamp the background transform's grid to the frame.
                                "clamp_background": None},
        "avd_network_params": {"id_bottle_size": None, "pose_bottle_size": None},
        # Ours: ResNet-18 base width of the detectors (64 = reference).
        "kp_detector_params": {"width": None},
        # Ours: "resnet" (the reference's, default) or "lucas_kanade" (no weights).
        "bg_predictor_params": {"kind": None, "width": None, "iterations": None},
    },
    "train_params": {
        "num_epochs": None, "num_repeats": None, "epoch_milestones": None,
        "lr_generator": None, "batch_size": None, "scales": None, "dataloader_workers": None,
        "checkpoint_freq": None, "dropout_epoch": None, "dropout_maxp": None,
        "dropout_startp": None, "dropout_inc_epoch": None, "bg_start": None,
        "transform_params": {"sigma_affine": None, "sigma_tps": None, "points_tps": None},
        "loss_weights": {"perceptual": None, "equivariance_value": None, "warp_loss": None,
                         "bg": None,
                         # Ours: weight of mean |prediction - driving| (absent = 0).
                         "pixel": None},
        # Ours: "imagenet" (torch hub cache), a file path, or "random".
        "perceptual_weights": None,
    },
    "train_avd_params": {
        "num_epochs": None, "num_repeats": None, "batch_size": None,
        "dataloader_workers": None, "checkpoint_freq": None, "epoch_milestones": None,
        "lr": None, "lambda_shift": None, "random_scale": None, "lambda_affine": None,
    },
    "visualizer_params": {"kp_size": None, "draw_border": None, "colormap": None},
}
REQUIRED = {
    "": ["model_params"],
    "model_params": ["common_params", "generator_params", "dense_motion_params"],
    "model_params.common_params": ["num_tps", "num_channels"],
    "model_params.generator_params": ["block_expansion", "max_features", "num_down_blocks"],
    "model_params.dense_motion_params": ["block_expansion", "max_features", "num_blocks"],
}
TRAIN_REQUIRED = [
    "num_epochs", "num_repeats", "epoch_milestones", "lr_generator", "batch_size", "scales",
    "dropout_epoch", "dropout_maxp", "dropout_startp", "dropout_inc_epoch", "bg_start",
    "transform_params", "loss_weights",
]


class Config(dict):
    """A loaded config: the YAML's nested dict plus ``source`` and ``image_size``."""

    source: str

    @property
    def name(self) -> str:
        return Path(self.source).stem

    @property
    def image_size(self) -> int:
        if self.get("image_size") is not None:
            return int(self["image_size"])
        frame_shape = self.get("dataset_params", {}).get("frame_shape")
        return int(frame_shape[0]) if frame_shape else 256

    @property
    def model_params(self) -> dict:
        return self["model_params"]

    @property
    def train_params(self) -> dict:
        """The training section, checked to hold every key training needs."""
        params = self.get("train_params")
        if params is None:
            raise ConfigError(f"{self.source}: no train_params section (needed to train)")
        missing = [key for key in TRAIN_REQUIRED if params.get(key) is None]
        if missing:
            raise ConfigError(f"{self.source}: train_params misses {', '.join(missing)}")
        return params


def bundled_configs() -> list[str]:
    """Names of the configs shipped in the package (e.g. ``vox-256``)."""
    folder = resources.files("tpsmm") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _check(data: dict, schema: dict, path: str, source: str) -> None:
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in schema:
            raise ConfigError(f"{source}: unknown key '{where}'")
        if schema[key] is not None:
            # An empty section ("dataset_params:" with nothing under it) reads as null.
            if value is None:
                raise ConfigError(f"{source}: section '{where}' is empty; give its keys or "
                                  "remove the line")
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{where}' must be a section of keys")
            _check(value, schema[key], where, source)
    for key in REQUIRED.get(path, []):
        where = f"{path}.{key}" if path else key
        if key not in data:
            raise ConfigError(f"{source}: missing required key '{where}'")
        if data[key] is None:
            raise ConfigError(f"{source}: required key '{where}' has no value")


def load_config(config: str | os.PathLike | dict) -> Config:
    """Load a config by bundled name (``"vox-256"``), YAML path, or dict.

    Raises :class:`ConfigError` for a missing file, bad YAML, unknown keys
    and missing required keys.
    """
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        data, source = copy.deepcopy(config), "<dict>"
    else:
        text, source = _read(config)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: invalid YAML ({' '.join(str(error).split())})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: not a config (expected a mapping of sections)")
    _check(data, SCHEMA, "", source)
    result = Config(data)
    result.source = source
    return result


def apply_override(data: dict, assignment: str) -> None:
    """Set one value of a config dict in place from ``"section.key=VALUE"``.

    The key is a dotted path (``train_params.loss_weights.pixel``); VALUE is
    read as YAML (``0``, ``2.0e-5``, ``[9]``, ``null``). Missing sections are
    created. Raises :class:`ConfigError` for a malformed assignment or a key
    that is not in the schema.
    """
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {assignment}: expected SECTION.KEY=VALUE")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {assignment}: the value is not valid YAML") from None
    # The whole path is checked before anything is changed.
    schema: dict | None = SCHEMA
    for depth, part in enumerate(parts):
        if schema is None or part not in schema:
            raise ConfigError(f"--set {assignment}: unknown key '{'.'.join(parts[:depth + 1])}'")
        schema = schema[part]
    section = data
    for part in parts[:-1]:
        if not isinstance(section.get(part), dict):
            section[part] = {}
        section = section[part]
    section[parts[-1]] = value


def _read(config: str | os.PathLike) -> tuple[str, str]:
    path = Path(config)
    if path.suffix in (".yaml", ".yml") or path.exists() or os.sep in str(config):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path.read_text(encoding="utf-8"), str(path)
    name = str(config)
    if name not in bundled_configs():
        raise ConfigError(
            f"{name}: no such config; give a YAML path or one of {', '.join(bundled_configs())}"
        )
    resource = resources.files("tpsmm") / "configs" / f"{name}.yaml"
    return resource.read_text(encoding="utf-8"), f"{name}.yaml (bundled)"


def plain(config: dict) -> dict:
    """A config as plain dicts and lists (Config is a dict subclass yaml refuses)."""
    return json.loads(json.dumps(config))
