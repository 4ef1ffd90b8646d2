"""The TPSMM model: its five networks built from a config, and checkpoints."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from tpsmm.checkpoint_file import (
    atomic_save,
    checkpoint_mismatches,
    load_networks,
    read_checkpoint,
)
from tpsmm.config import Config, bundled_configs, load_config
from tpsmm.errors import CheckpointError, ConfigError
from tpsmm.networks import (
    AVDNetwork,
    BGMotionPredictor,
    DenseMotionNetwork,
    InpaintingNetwork,
    KPDetector,
    LucasKanadeBGMotion,
)

BG_PREDICTORS = {"resnet": BGMotionPredictor, "lucas_kanade": LucasKanadeBGMotion}


class TPSMM(nn.Module):
    """The five networks of a config, as attributes named as in checkpoints.

    - ``kp_detector``: :class:`KPDetector`
    - ``dense_motion_network``: :class:`DenseMotionNetwork`
    - ``inpainting_network``: :class:`InpaintingNetwork`
    - ``bg_predictor``: :class:`BGMotionPredictor` (or, with
      ``bg_predictor_params.kind: lucas_kanade``, :class:`LucasKanadeBGMotion`),
      or None when the config has ``common_params.bg: False``
    - ``avd_network``: :class:`AVDNetwork`

    ``loaded`` lists the networks whose weights came from a checkpoint.
    """

    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        params = config.model_params
        common = params["common_params"]
        self.kp_detector = KPDetector(**common, **params.get("kp_detector_params", {}))
        try:
            self.dense_motion_network = DenseMotionNetwork(
                **common, **params["dense_motion_params"])
        except ConfigError as error:
            raise ConfigError(f"{config.source}: {error}") from None
        self.inpainting_network = InpaintingNetwork(**common, **params["generator_params"])
        self.bg_predictor = bg_predictor(config) if common.get("bg") else None
        self.avd_network = AVDNetwork(
            num_tps=common["num_tps"], **params.get("avd_network_params", {})
        )
        self.loaded: list[str] = []

    @property
    def networks(self) -> dict[str, nn.Module | None]:
        return {
            "kp_detector": self.kp_detector,
            "dense_motion_network": self.dense_motion_network,
            "inpainting_network": self.inpainting_network,
            "bg_predictor": self.bg_predictor,
            "avd_network": self.avd_network,
        }

    @classmethod
    def from_config(cls, config: str | os.PathLike | dict) -> TPSMM:
        """Randomly initialised networks for a bundled config name, YAML path or dict."""
        return cls(load_config(config))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        config: str | os.PathLike | dict = "vox-256",
        map_location: Any = "cpu",
    ) -> TPSMM:
        """Load a reference-format checkpoint (any subset of the networks).

        Optimizer states and other entries are ignored. The model is put in
        eval mode. Raises :class:`CheckpointError` when the file cannot be
        read or does not fit the config, naming a bundled config that would.
        """
        config = load_config(config)
        checkpoint = read_checkpoint(path, map_location)
        model = cls(config)
        try:
            model.loaded = load_networks(model.networks, checkpoint, str(path))
        except CheckpointError as error:
            fits = fitting_configs(checkpoint)
            hint = f"; it fits the bundled config {' or '.join(fits)}" if fits else ""
            raise CheckpointError(f"{error} (config {config.source}){hint}") from None
        if isinstance(map_location, (str, torch.device)):
            model = model.to(map_location)
        return model.eval()

    def checkpoint_dict(self, epoch: int | None = None, **extra: Any) -> dict[str, Any]:
        """The reference's checkpoint layout: a state dict per network, ``epoch``."""
        data: dict[str, Any] = {
            name: network.state_dict()
            for name, network in self.networks.items()
            if network is not None
        }
        if epoch is not None:
            data["epoch"] = epoch
        data.update(extra)
        return data

    def save_checkpoint(self, path: str | os.PathLike, epoch: int | None = None,
                        **extra: Any) -> None:
        """Write :meth:`checkpoint_dict` atomically to ``path``."""
        atomic_save(self.checkpoint_dict(epoch, **extra), path)


def bg_predictor(config: Config) -> nn.Module:
    """The background motion predictor ``bg_predictor_params.kind`` names (default resnet)."""
    params = dict(config.model_params.get("bg_predictor_params") or {})
    kind = params.pop("kind", None) or "resnet"
    if kind not in BG_PREDICTORS:
        raise ConfigError(f"{config.source}: model_params.bg_predictor_params.kind is {kind!r}; "
                          f"expected one of {', '.join(BG_PREDICTORS)}")
    return BG_PREDICTORS[kind](**params)


def trainable(network: nn.Module | None) -> bool:
    """Whether ``network`` exists and has weights to learn (LucasKanadeBGMotion has none)."""
    return network is not None and next(network.parameters(), None) is not None


def fitting_configs(checkpoint: dict[str, Any]) -> list[str]:
    """The bundled configs whose networks the checkpoint fits.

    The candidates are built on the meta device: shapes only, no memory.
    """
    names = []
    for name in bundled_configs():
        with torch.device("meta"):
            candidate = TPSMM(load_config(name))
        if not checkpoint_mismatches(candidate.networks, checkpoint):
            names.append(name)
    return names
