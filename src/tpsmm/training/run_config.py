"""What ``tpsmm train`` asks for (:class:`TrainOptions`) and the config a stage-1 run
trains with (:func:`run_config`): the named config plus the command line's changes, or, when
resuming, the run's own saved config, which the command line may not change."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

from tpsmm.config import Config, apply_override, load_config, plain
from tpsmm.errors import ConfigError
from tpsmm.training.loop import RunOptions


@dataclass
class TrainOptions(RunOptions):
    """What ``tpsmm train`` asks for, besides :class:`RunOptions`; None = as in the config.

    Attributes:
        config: bundled config name, YAML path or dict. May be None when
            resuming: the run's own config is used then.
        data: the dataset folder; None uses ``dataset_params.root_dir``.
        init: a checkpoint whose networks initialise a new run (fine-tuning).
        image_size: train at this resolution; frames are resized to it.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast.
        channels_last: NHWC memory format for networks and batches.
        vgg_weights: VGG-19 weights of the perceptual loss: ``"imagenet"``, a
            path or ``"random"`` (overrides ``train_params.perceptual_weights``).
        sync_bn: SyncBatchNorm in the ResNets when distributed on GPUs.
        winograd: Winograd 3x3 convolutions where they apply (CPU, fp32,
            channels-first); False keeps torch's direct convolutions.
        overrides: ``"section.key=VALUE"`` assignments applied to a new run's
            config first, so the dedicated options (``epochs``, ...) win
            (see :func:`apply_override`).
    """

    config: str | os.PathLike | dict | None = None
    data: str | os.PathLike | None = None
    init: str | os.PathLike | None = None
    image_size: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    vgg_weights: str | None = None
    sync_bn: bool = False
    winograd: bool = True
    overrides: list[str] = field(default_factory=list)


def run_config(options: TrainOptions, saved: dict | None) -> Config:
    """The run's config: the saved one when resuming, else the given one, plus overrides."""
    if saved is not None:
        data = copy.deepcopy(saved)
        params = data["train_params"]
        fixed = {"batch_size": options.batch_size, "num_repeats": options.num_repeats}
        for key, value in fixed.items():
            if value is not None and value != params[key]:
                raise ConfigError(
                    f"cannot change {key} when resuming (the run uses {params[key]}); "
                    f"start a new run to train with {value}"
                )
        if options.image_size is not None and options.image_size != data.get("image_size"):
            raise ConfigError("cannot change the image size when resuming a run")
        saved_vgg = params.get("perceptual_weights")
        if options.vgg_weights is not None and str(options.vgg_weights) != str(saved_vgg):
            # The perceptual loss is part of what a resumed run replays exactly.
            raise ConfigError(f"cannot change --vgg-weights when resuming (the run uses "
                              f"{saved_vgg}); start a new run (--init the checkpoint) to "
                              "train with other VGG-19 weights")
        if options.overrides:
            # The saved config is what the run trained with; a resumed run replays it.
            raise ConfigError("cannot --set config values when resuming; start a new run "
                              "(--init the checkpoint to fine-tune it)")
    else:
        if options.config is None:
            raise ConfigError("--config is needed to start a new run")
        data = plain(load_config(options.config))
        for assignment in options.overrides:
            apply_override(data, assignment)
        params = data.setdefault("train_params", {})
        for key, value in (("batch_size", options.batch_size),
                           ("num_repeats", options.num_repeats)):
            if value is not None:
                params[key] = value
        size = options.image_size or load_config(data).image_size
        data["image_size"] = size
        if options.image_size is not None:
            data.setdefault("dataset_params", {})["frame_shape"] = [size, size, 3]
        if options.vgg_weights is None and params.get("perceptual_weights") is None:
            params["perceptual_weights"] = "imagenet"
    params = data["train_params"]
    if options.vgg_weights is not None:
        params["perceptual_weights"] = str(options.vgg_weights)
    if options.epochs is not None:
        params["num_epochs"] = options.epochs
    if options.epoch_milestones is not None:
        params["epoch_milestones"] = list(options.epoch_milestones)
    if options.workers is not None:
        params["dataloader_workers"] = options.workers
    if options.data is not None:
        data.setdefault("dataset_params", {})["root_dir"] = str(options.data)
    config = load_config(data)
    config.train_params  # noqa: B018 (raises ConfigError naming any missing key)
    return config
