"""A model as ONNX graphs, with a manifest that says how to chain them.

Animation splits into the work done once per source and the work done per driving frame,
as the :class:`~tpsmm.animation.Animator` does, so the graphs are:

- ``kp_detector.onnx``: ``image (B, 3, S, S)`` in [0, 1] -> ``kp (B, K*5, 2)`` in [-1, 1];
- ``source_encoder.onnx``: ``source (1, 3, S, S)`` -> the inpainting encoder's maps
  ``encoder_map_i (1, C_i, S/2^i, S/2^i)``, once per source;
- ``transformations.onnx``: ``source``, ``kp_source (1, K*5, 2)``, ``kp_driving (B, K*5, 2)``
  -> the K+1 sampling grids ``transformations (B, K+1, S/s, S/s, 2)`` (background, then the
  keypoint TPS) and ``dense_motion_input (B, 1 + K*5 + 3(K+1), S/s, S/s)``, what the dense
  motion network sees of them (keypoint heatmaps, the source deformed by each);
- ``dense_motion.onnx``: ``dense_motion_input`` -> ``contribution_logits (B, K+1, S/s,
  S/s)`` and the occlusion masks ``occlusion_i`` (the last one is the decoder's, the others
  are there for checking and for the flow graph);
- ``optical_flow.onnx``: ``source``, ``contribution_logits``, ``transformations``, the
  occlusion masks and the encoder maps -> the flow ``deformation (B, S/s, S/s, 2)`` (the
  grids blended by the softmax of the logits), the encoder maps warped by it and masked,
  ``warped_map_i (B, C_i, S/2^i, S/2^i)``, and the warped source ``deformed (B, 3, S, S)``;
- ``inpainting_decoder.onnx``: the warped maps, ``deformed`` and the last occlusion mask ->
  ``prediction (B, 3, S, S)`` in [0, 1];
- ``avd_network.onnx`` when the checkpoint has one: ``kp_source (B, K*5, 2)``,
  ``kp_driving (B, K*5, 2)`` -> ``kp (B, K*5, 2)``.

The generator is four graphs so that an engine can run each in its own precision: the
dense motion network's hourglass and the inpainting decoder hold nearly all of the
per-frame convolutions and can run in bf16, while the TPS solves, the softmax and every
sampling grid must stay in fp32 (measured with OpenVINO, vox-256: 32 dB against fp32 with
the dense motion network and its TPS solves and grids in one bf16 graph, 54.4 dB with this
split, 53.7 dB since the decoder's Winograd; ``benchmarks/animate.py`` prints the latter).
The batch B is dynamic. How driving keypoints become the ``kp_driving`` the transformations
graph takes (relative motion, its scale) is a few lines of arithmetic on keypoints, left to
the caller (:mod:`tpsmm.animation.keypoints`, described in the manifest).

The graphs are exported from the networks as :func:`optimize_for_inference` rewrites them
(fused up-convolutions, the 7x7 heads split into rows, fp32 instance norm, exported as one
InstanceNormalization node), with the direct convolutions (Winograd's NNPACK calls exist
only in torch) except in the decoder's residual blocks, whose 3x3 convolutions are exported
as Winograd's F(2, 3) along each row (:mod:`tpsmm.deploy.row_winograd`). ONNX has no matrix
inverse, so the 8x8 TPS systems are solved inside the graph by Gauss-Jordan elimination
with partial pivoting (:func:`tpsmm.geometry.tps.gauss_jordan_inverse`).
"""

from __future__ import annotations

import copy
import importlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.nn.functional as F
from torch import nn

from tpsmm.animation.inference import optimize_for_inference
from tpsmm.config import plain
from tpsmm.deploy.row_winograd import use_row_winograd
from tpsmm.errors import ConfigError, OutputError
from tpsmm.files import atomic_write
from tpsmm.model import TPSMM
from tpsmm.networks.dense_motion import blend_transformations
from tpsmm.networks.inpainting import deform_input

OPSET = 17  # GridSample needs 16
MANIFEST = "manifest.json"
# 3: the generator as four graphs (2: two graphs).
MANIFEST_VERSION = 3
# The graphs that make frames from a source and driving keypoints, in the order they run.
GENERATOR_GRAPHS = ("transformations", "dense_motion", "optical_flow", "inpainting_decoder")
_EXAMPLE_BATCH = 2


class _KeypointGraph(nn.Module):
    def __init__(self, model: TPSMM) -> None:
        super().__init__()
        self.kp_detector = model.kp_detector

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.kp_detector(image)["fg_kp"]


class _SourceEncoderGraph(nn.Module):
    def __init__(self, model: TPSMM) -> None:
        super().__init__()
        self.inpainting_network = model.inpainting_network

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.inpainting_network.encode(source))


class _TransformationsGraph(nn.Module):
    """The K+1 transforms and the dense motion network's input: TPS solves, grids and their
    sampling, no learned weight (fp32 in every precision)."""

    def __init__(self, model: TPSMM) -> None:
        super().__init__()
        self.dense_motion_network = model.dense_motion_network

    def forward(self, source: torch.Tensor, kp_source: torch.Tensor,
                kp_driving: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kp_source = kp_source.expand(kp_driving.shape[0], -1, -1)
        dense_motion_input, transformations, _ = self.dense_motion_network.prepare(
            source, kp_driving, kp_source)
        return transformations, dense_motion_input


class _DenseMotionGraph(nn.Module):
    """The dense motion network's learned part: convolutions, may run in reduced precision."""

    def __init__(self, model: TPSMM) -> None:
        super().__init__()
        self.dense_motion_network = model.dense_motion_network

    def forward(self, dense_motion_input: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, occlusion = self.dense_motion_network.predict(dense_motion_input)
        return (logits, *occlusion)


class _OpticalFlowGraph(nn.Module):
    """The flow and every sampling by it (fp32 in every precision)."""

    def __init__(self, model: TPSMM, masks: int) -> None:
        super().__init__()
        self.inpainting_network = model.inpainting_network
        self.masks = masks

    def forward(self, source: torch.Tensor, contribution_logits: torch.Tensor,
                transformations: torch.Tensor, *masks_and_maps: torch.Tensor,
                ) -> tuple[torch.Tensor, ...]:
        occlusion, encoder_maps = masks_and_maps[:self.masks], masks_and_maps[self.masks:]
        deformation = blend_transformations(F.softmax(contribution_logits, dim=1),
                                            transformations)
        warped, _ = self.inpainting_network.warp(list(encoder_maps), deformation,
                                                 list(occlusion))
        deformed = deform_input(source, deformation)
        # Warped maps shallowest first, numbered as the encoder maps they come from.
        return (*warped[::-1], deformed, deformation)


class _InpaintingDecoderGraph(nn.Module):
    """The inpainting network's decoder: every convolution per frame, no sampling."""

    def __init__(self, model: TPSMM) -> None:
        super().__init__()
        self.inpainting_network = model.inpainting_network

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *warped, deformed, occlusion_last = inputs
        return self.inpainting_network.decode(warped[::-1], occlusion_last, deformed)


class _AVDGraph(nn.Module):
    def __init__(self, model: TPSMM) -> None:
        super().__init__()
        self.avd_network = model.avd_network

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        return self.avd_network({"fg_kp": kp_source}, {"fg_kp": kp_driving})["fg_kp"]


def _onnx():
    """The ``onnx`` package (the deploy extra), or one line saying how to install it."""
    try:
        return importlib.import_module("onnx")
    except ImportError:
        raise ConfigError("exporting to ONNX needs the onnx package: "
                          "pip install 'tpsmm[deploy]'") from None


def _spec(name: str, tensor: torch.Tensor, batch_axis: bool, value_range: str) -> dict:
    shape: list[Any] = list(tensor.shape)
    if batch_axis:
        shape[0] = "batch"
    return {"name": name, "shape": shape, "dtype": "float32", "range": value_range}


def _write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """:func:`atomic_write`, with :class:`OutputError` when the folder cannot take it."""
    try:
        atomic_write(path, write)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None


def _export(module: nn.Module, inputs: dict[str, tuple[torch.Tensor, bool, str]],
            outputs: dict[str, tuple[torch.Tensor, bool, str]], path: Path,
            reduced_precision: bool = False) -> dict:
    """Export ``module`` called on the ``inputs`` (name: example, batch axis?, range) and
    return the manifest entry; ``outputs`` are the module's outputs, likewise.
    ``reduced_precision``: whether an engine may run the graph in bf16 / fp16."""
    dynamic = {name: {0: "batch"} for name, (_, batched, _) in {**inputs, **outputs}.items()
               if batched}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's, which does
        # not yet take these networks; and it warns that eval-mode InstanceNorm ignores
        # running statistics, which these norms do not keep.
        warnings.simplefilter("ignore")
        _write(path, lambda file: torch.onnx.export(
            module, tuple(t for t, _, _ in inputs.values()), file, dynamo=False,
            opset_version=OPSET, input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=dynamic))
    onnx = _onnx()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return {"file": path.name,
            "reduced_precision": reduced_precision,
            "inputs": [_spec(n, *spec) for n, spec in inputs.items()],
            "outputs": [_spec(n, *spec) for n, spec in outputs.items()]}


def export_onnx(model: TPSMM, folder: str | Path) -> Path:
    """Write ``model``'s graphs and ``manifest.json`` into ``folder``; returns the manifest.

    ``model`` is not changed (a copy is rewritten for inference). Each file is written
    whole or not at all, and an earlier export's manifest is removed before the first
    graph is replaced and written again last, so an interrupted export into a used folder
    leaves graphs without a manifest, never a manifest over a mix of two models' graphs.
    Raises :class:`ConfigError` without the ``onnx`` package, :class:`OutputError` when
    ``folder`` cannot be written.
    """
    _onnx()  # a missing package is said before any work
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"{folder}: cannot write ({error.strerror or error})") from None
    has_avd = not model.loaded or "avd_network" in model.loaded
    model = optimize_for_inference(copy.deepcopy(model).cpu(), torch.device("cpu"), "fp32",
                                   winograd=False)
    use_row_winograd(model.inpainting_network)
    size = model.config.image_size
    image = torch.rand(_EXAMPLE_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    source = image[:1]
    unit, signed = "[0, 1]", "[-1, 1]"
    with torch.no_grad():
        kp = model.kp_detector(image)["fg_kp"]
        maps = model.inpainting_network.encode(source)
        transformations, dense_motion_input = _TransformationsGraph(model)(source, kp[:1], kp)
        logits, *occlusion = _DenseMotionGraph(model)(dense_motion_input)
        flow = _OpticalFlowGraph(model, len(occlusion))(source, logits, transformations,
                                                         *occlusion, *maps)
        warped, (deformed, deformation) = flow[:len(maps)], flow[len(maps):]
        prediction = _InpaintingDecoderGraph(model)(*warped, deformed, occlusion[-1])
    source_spec = {"source": (source, False, unit)}
    map_specs = {f"encoder_map_{i}": (m, False, ">= 0") for i, m in enumerate(maps)}
    transformation_specs = {
        "transformations": (transformations, True, "source coordinates, about [-1, 1]"),
        "dense_motion_input": (dense_motion_input, True, "heatmaps [-1, 1], images [0, 1]")}
    logit_spec = {"contribution_logits": (logits, True, "real")}
    occlusion_specs = {f"occlusion_{i}": (m, True, unit) for i, m in enumerate(occlusion)}
    warped_specs = {f"warped_map_{i}": (m, True, ">= 0") for i, m in enumerate(warped)}
    warped_specs["deformed"] = (deformed, True, unit)
    last_occlusion = list(occlusion_specs)[-1]
    graphs = {
        "kp_detector": _export(_KeypointGraph(model), {"image": (image, True, unit)},
                               {"kp": (kp, True, signed)}, folder / "kp_detector.onnx"),
        "source_encoder": _export(_SourceEncoderGraph(model), source_spec, map_specs,
                                  folder / "source_encoder.onnx"),
        "transformations": _export(
            _TransformationsGraph(model),
            {**source_spec, "kp_source": (kp[:1], False, signed),
             "kp_driving": (kp, True, signed)},
            transformation_specs, folder / "transformations.onnx"),
        "dense_motion": _export(
            _DenseMotionGraph(model),
            {"dense_motion_input": transformation_specs["dense_motion_input"]},
            {**logit_spec, **occlusion_specs}, folder / "dense_motion.onnx",
            reduced_precision=True),
        "optical_flow": _export(
            _OpticalFlowGraph(model, len(occlusion)),
            {**source_spec, **logit_spec,
             "transformations": transformation_specs["transformations"], **occlusion_specs,
             **map_specs},
            {**warped_specs,
             "deformation": (deformation, True, "source coordinates, about [-1, 1]")},
            folder / "optical_flow.onnx"),
        "inpainting_decoder": _export(
            _InpaintingDecoderGraph(model),
            {**warped_specs, last_occlusion: occlusion_specs[last_occlusion]},
            {"prediction": (prediction, True, unit)}, folder / "inpainting_decoder.onnx",
            reduced_precision=True),
    }
    if has_avd:
        graphs["avd_network"] = _export(
            _AVDGraph(model), {"kp_source": (kp, True, signed), "kp_driving": (kp, True, signed)},
            {"kp": (kp, True, signed)}, folder / "avd_network.onnx")
    manifest = {
        "format": "tpsmm-onnx",
        "version": MANIFEST_VERSION,
        "opset": OPSET,
        "image_size": size,
        "num_keypoints": int(kp.shape[1]),
        "layout": "NCHW, RGB, float32",
        "config": plain(model.config),
        "graphs": graphs,
        "chain": [
            "once per source image: kp_source = kp_detector(source); "
            "encoder maps = source_encoder(source)",
            "per batch of driving frames: kp = kp_detector(frames)",
            "mode standard: kp_driving = kp; mode avd: kp_driving = avd_network(kp_source "
            "repeated to the batch, kp)",
            "mode relative: kp_driving = kp_source + (kp - kp_first) * scale, kp_first the "
            "first driving frame's keypoints, scale = sqrt(convex hull area of kp_source / "
            "that of kp_first)",
            "transformations, dense_motion_input = transformations(source, kp_source, "
            "kp_driving)",
            "contribution_logits, occlusion masks = dense_motion(dense_motion_input)",
            "warped maps, deformed, deformation = optical_flow(source, contribution_logits, "
            "transformations, occlusion masks, encoder maps)",
            f"prediction = inpainting_decoder(warped maps, deformed, {last_occlusion})",
        ],
    }
    path = folder / MANIFEST
    text = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
    _write(path, lambda file: file.write(text))
    return path
