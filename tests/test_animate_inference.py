"""Inference rewrites of the networks, precision and the choice of the best frame."""

from __future__ import annotations

import copy
import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_train import tiny_config

from tpsmm.animation import Animator
from tpsmm.animation.best_frame import (
    FaceLandmarks,
    keypoint_distances,
    normalize_shape,
    shape_distance,
)
from tpsmm.animation.inference import (
    Float32InstanceNorm2d,
    RowSplitConv2d,
    TransposedUpBlock2d,
    nearest_up_conv_kernel,
    optimize_for_inference,
)
from tpsmm.config import load_config
from tpsmm.devices import resolve_device
from tpsmm.errors import TPSMMError
from tpsmm.generator import generate
from tpsmm.networks.blocks import UpBlock2d
from tpsmm.networks.winograd import WinogradConv2d, winograd_available
from tpsmm.training.trainer import Stage1

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [(5, 5), (6, 9), (1, 4)])
def test_transposed_kernel_equals_nearest_upsampling_then_conv(size: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64)
    expected = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)
    fused = F.conv_transpose2d(x, nearest_up_conv_kernel(weight), bias, stride=2, padding=1)
    torch.testing.assert_close(fused, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("in_channels", "out_channels", "kernel", "size"),
                         [(5, 3, 7, (9, 6)), (4, 1, 5, (3, 11)), (2, 15, 7, (8, 8))])
def test_row_split_conv_equals_the_convolution(in_channels, out_channels, kernel, size) -> None:
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2).double()
    x = torch.randn(2, in_channels, *size, generator=generator, dtype=torch.float64)
    split = RowSplitConv2d(conv)
    assert split.weight is conv.weight and split.bias is conv.bias  # shared, not copied
    assert list(split.state_dict()) == ["weight", "bias"]
    with torch.no_grad():
        torch.testing.assert_close(split(x), conv(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("conv", "fits"), [
    (torch.nn.Conv2d(12, 3, 7, padding=3), True),
    (torch.nn.Conv2d(60, 15, 5, padding=2), True),
    (torch.nn.Conv2d(64, 16, 7, padding=3), False),  # fills a register already
    (torch.nn.Conv2d(11, 3, 7, padding=3), False),  # the column sum would cost > 1/4 more
    (torch.nn.Conv2d(12, 3, 3, padding=1), False),
    (torch.nn.Conv2d(12, 3, 7, padding=2), False),
    (torch.nn.Conv2d(12, 3, 7, padding=3, stride=2), False),
    (torch.nn.Conv2d(12, 3, 7, padding=3, padding_mode="reflect"), False),
    (torch.nn.Conv2d(12, 3, (7, 5), padding=(3, 2)), False),
])
def test_row_split_takes_same_convolutions_with_few_output_channels(conv, fits) -> None:
    assert RowSplitConv2d.fits(conv) == fits


def test_fp32_instance_norm_is_instance_norm_and_stays_fp32() -> None:
    norm = torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 7, 5) * 3 + 1
    replacement = Float32InstanceNorm2d.replacing(norm)
    torch.testing.assert_close(replacement(x), norm(x), rtol=0, atol=1e-5)
    assert replacement.weight is norm.weight  # shared, not copied
    assert replacement(x.bfloat16()).dtype == torch.float32
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(replacement(channels_last), norm(x), rtol=0, atol=1e-5)


def _golden_animation(model, case) -> tuple[torch.Tensor, ...]:
    """The golden source, its keypoints, the golden driving keypoints, and the standard-mode
    prediction of ``model`` (unoptimised) from them."""
    source, driving = case.tensor("input.source"), case.tensor("input.driving")
    with torch.no_grad():
        kp_source = model.kp_detector(source)["fg_kp"]
        kp_driving = model.kp_detector(driving)["fg_kp"]
        expected = generate(model.dense_motion_network, model.inpainting_network, source,
                            kp_source, kp_driving)["prediction"]
    return source, kp_source, kp_driving, expected


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_optimize_for_inference_keeps_outputs_and_state_dict(precision, tiny_case) -> None:
    model = tiny_case.model()
    source, kp_source, kp_driving, expected = _golden_animation(model, tiny_case)
    keys = list(model.state_dict())
    optimized = optimize_for_inference(copy.deepcopy(model), torch.device("cpu"), precision)
    modules = list(optimized.modules())
    assert not any(isinstance(m, UpBlock2d) for m in modules)
    # 3 in the inpainting network, 3 in the hourglass, 2 after it in the dense motion network.
    assert sum(isinstance(m, TransposedUpBlock2d) for m in modules) == 8
    # The dense motion network's maps and its 4 masks; the tiny inpainting network's final
    # (8 -> 3 channels) has too few input channels to gain.
    split = {name for name, m in optimized.named_modules() if isinstance(m, RowSplitConv2d)}
    assert split == {"dense_motion_network.maps",
                     *(f"dense_motion_network.occlusion.{i}" for i in range(4))}
    winograd = any(isinstance(m, WinogradConv2d) for m in optimized.inpainting_network.modules())
    assert winograd == winograd_available(torch.device("cpu"), precision)
    assert list(optimized.state_dict()) == keys
    with torch.no_grad():
        actual = generate(optimized.dense_motion_network, optimized.inpainting_network, source,
                          kp_source, kp_driving)["prediction"]
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-5)


def test_reduced_precision_runs_the_learned_convolutions_only(tiny_case) -> None:
    """bf16: the dense motion network's heads and the inpainting network's last convolution
    give bf16; the contribution maps, the flow and the masks stay fp32."""
    model = optimize_for_inference(tiny_case.model(), torch.device("cpu"), "bf16")
    seen = {}
    for name, layer in (("maps", model.dense_motion_network.maps),
                        ("occlusion", model.dense_motion_network.occlusion[-1]),
                        ("final", model.inpainting_network.final)):
        layer.register_forward_hook(lambda _, __, out, name=name: seen.update({name: out.dtype}))
    source, driving = tiny_case.tensor("input.source")[:1], tiny_case.tensor("input.driving")
    with torch.no_grad():
        kp_driving = model.kp_detector(driving)["fg_kp"]
        kp_source = model.kp_detector(source)["fg_kp"].expand_as(kp_driving)
        generated = generate(model.dense_motion_network, model.inpainting_network, source,
                             kp_source, kp_driving, precision="bf16")
    assert seen == dict.fromkeys(("maps", "occlusion", "final"), torch.bfloat16)
    motion = generated["motion"]
    assert motion["contribution_maps"].dtype == motion["deformation"].dtype == torch.float32
    assert {mask.dtype for mask in motion["occlusion_map"]} == {torch.float32}
    assert generated["prediction"].dtype == torch.float32


def test_batch_one_source_is_shared_by_every_keypoint_set(tiny_case) -> None:
    model = tiny_case.model()
    source = tiny_case.tensor("input.source")[:1]
    kp_driving = {"fg_kp": tiny_case.tensor("kp_detector.driving")}
    kp_source = {"fg_kp": tiny_case.tensor("kp_detector.source")[:1].expand(2, -1, -1)}
    with torch.no_grad():
        shared = model.dense_motion_network(source, kp_driving, kp_source)
        repeated = model.dense_motion_network(source.expand(2, -1, -1, -1), kp_driving, kp_source)
    torch.testing.assert_close(shared["deformation"], repeated["deformation"], rtol=0, atol=0)


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_auto_prefers_cuda_then_mps_then_the_cpu(cuda, mps, expected, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")


def test_unavailable_devices_are_refused_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device in ("cuda", "cuda:1", "mps"):
        with pytest.raises(TPSMMError, match=f"device {device}: not available"):
            resolve_device(device)


# --------------------------------------------------------------------------- best frame


def test_shape_normalisation_ignores_position_and_scale() -> None:
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (15, 2))
    moved = points * 1.7 + np.array([0.3, -0.2])
    np.testing.assert_allclose(normalize_shape(moved), normalize_shape(points), atol=1e-12)
    assert shape_distance(points, moved) < 1e-20
    assert shape_distance(points, points[::-1]) > 0.1


def test_keypoint_distances_pick_the_same_pose() -> None:
    source = torch.rand(1, 15, 2) - 0.5
    frames = torch.stack([torch.rand(15, 2) - 0.5, source[0] * 0.5 + 0.1, torch.rand(15, 2)])
    distances = keypoint_distances(source, frames)
    assert distances.shape == (3,) and int(np.argmin(distances)) == 1


def _brightest_pixels(image: np.ndarray) -> list[np.ndarray]:
    grey = image.astype(int).sum(-1)
    order = np.argsort(grey, axis=None)[-6:]
    return [np.stack([order % image.shape[1], order // image.shape[1]], -1)]


def fake_face_alignment(monkeypatch, hub: Path, landmarks=_brightest_pixels,
                        weights: bool = False) -> None:
    """A ``face_alignment`` package whose ``get_landmarks`` is ``landmarks`` (by default the
    image's brightest pixels), with the torch hub cache in ``hub`` (holding its weights'
    files when ``weights``): only the third-party package is replaced."""

    class FaceAlignment:
        def __init__(self, kind, flip_input, device):
            assert kind == "2D" and flip_input and device == "cpu"

        def get_landmarks(self, image: np.ndarray):
            return landmarks(image)

    module = types.ModuleType("face_alignment")
    module.__spec__ = importlib.machinery.ModuleSpec("face_alignment", None)
    module.LandmarksType = types.SimpleNamespace(TWO_D="2D")
    module.FaceAlignment = FaceAlignment
    monkeypatch.setitem(sys.modules, "face_alignment", module)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    if weights:
        (hub / "checkpoints").mkdir(parents=True)
        for name in ("s3fd-619a316812.pth", "2DFAN4-cd938726ad.zip"):
            (hub / "checkpoints" / name).write_bytes(b"")


def test_face_landmarks_need_the_package_and_its_weights(monkeypatch, tmp_path) -> None:
    fake_face_alignment(monkeypatch, tmp_path / "empty")
    assert FaceLandmarks.load(torch.device("cpu")) is None  # weights not downloaded
    fake_face_alignment(monkeypatch, tmp_path / "hub", weights=True)
    landmarks = FaceLandmarks.load(torch.device("cpu"))
    assert landmarks is not None
    image = np.zeros((8, 8, 3), np.uint8)
    image[2:4, 3:6] = 255
    assert landmarks(image).shape == (6, 2)
    monkeypatch.delitem(sys.modules, "face_alignment")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert FaceLandmarks.load(torch.device("cpu")) is None


@pytest.mark.parametrize("nnpack", ["no check", "no convolution", "unavailable"])
def test_without_nnpack_the_direct_convolutions_run(nnpack, tiny_case, monkeypatch) -> None:
    """Winograd goes through torch's private NNPACK calls; a torch without them (another
    build, a later version) must fall back to the direct convolutions, same outputs."""
    model = tiny_case.model()
    source, kp_source, kp_driving, expected = _golden_animation(model, tiny_case)
    if nnpack == "no check":
        monkeypatch.delattr(torch, "_nnpack_available", raising=False)
    elif nnpack == "no convolution":
        monkeypatch.delattr(torch, "_nnpack_spatial_convolution", raising=False)
    else:
        monkeypatch.setattr(torch, "_nnpack_available", lambda: False)
    assert not winograd_available(torch.device("cpu"))
    optimized = optimize_for_inference(copy.deepcopy(model), torch.device("cpu"), "fp32")
    assert not any(isinstance(m, WinogradConv2d) for m in optimized.modules())
    with torch.no_grad():
        actual = generate(optimized.dense_motion_network, optimized.inpainting_network, source,
                          kp_source, kp_driving)["prediction"]
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-5)
    stage = Stage1(load_config(tiny_config()))
    assert not any(isinstance(m, WinogradConv2d) for m in stage.model.modules())
    losses, _ = stage.step({key: torch.rand(1, 3, 64, 64) for key in ("source", "driving")}, 1)
    assert all(torch.isfinite(value) for value in losses.values())


@pytest.mark.slow(minutes=3)
def test_compiled_networks_give_the_same_frames(tiny_case) -> None:
    """``torch.compile`` (CPU: inductor's C++) for batches of 4; 6 frames make a second
    batch of 2, padded to 4."""
    frames = torch.cat([tiny_case.tensor("input.driving_initial"),
                        tiny_case.tensor("input.driving")] * 2)[:6]
    outputs = {}
    for compiled in (False, True):
        animator = Animator(tiny_case.model(), device="cpu", batch_size=4, compile=compiled)
        source = animator.prepare(tiny_case.tensor("input.source")[0])
        outputs[compiled] = torch.cat([animator.animate_frames(source, frames[:4]),
                                       animator.animate_frames(source, frames[4:],
                                                               reference=frames[:1])])
    torch.testing.assert_close(outputs[True], outputs[False], rtol=0, atol=1e-4)
