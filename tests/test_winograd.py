"""Winograd 3x3 convolutions: same values and gradients as direct convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tpsmm.networks.winograd import (
    F4_MIN_CHANNELS,
    MIN_PIXELS,
    WEIGHT_GRAD_MIN_CHANNELS,
    WEIGHT_GRAD_NARROW_MAX_SIDE,
    WinogradConv2d,
    _Conv3x3,
    _WinogradF4Conv3x3,
    f4_conv3x3,
    f4_conv3x3_input_grad,
    f4_conv3x3_weight_grad,
    f4_weight_grad_fits,
    use_winograd,
    winograd_available,
    winograd_kernel,
)

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not winograd_available(torch.device("cpu")), reason="no NNPACK"),
]


def _pair(bias: bool = True) -> tuple[torch.nn.Conv2d, WinogradConv2d]:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 8, 3, padding=1, bias=bias)
    return conv, WinogradConv2d.replacing(conv)


def _gradients(conv: torch.nn.Conv2d, modules, x: torch.Tensor,
               upstream: torch.Tensor) -> list[list[torch.Tensor]]:
    """For each module (sharing ``conv``'s parameters): the gradients of x, weight, bias."""
    grads = []
    for module in modules:
        conv.zero_grad()
        x.grad = None
        (module(x) * upstream).sum().backward()
        grads.append([x.grad.clone(), conv.weight.grad.clone()]
                     + ([conv.bias.grad.clone()] if conv.bias is not None else []))
    return grads


def _assert_same_gradients(grads: list[list[torch.Tensor]], tolerance: float = 1e-5) -> None:
    """Each gradient within ``tolerance`` of the largest value of the first module's."""
    for expected, actual in zip(*grads, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(actual, expected, rtol=0, atol=tolerance * scale)


def test_forward_matches_direct_convolution() -> None:
    conv, winograd = _pair()
    x = torch.randn(3, 16, 40, 29)
    with torch.no_grad():
        # Winograd rounds differently: ~1e-5 here on outputs of magnitude ~1.
        torch.testing.assert_close(winograd(x), conv(x), rtol=0, atol=1e-4)
    assert winograd.weight is conv.weight and winograd.bias is conv.bias


@pytest.mark.parametrize("bias", [True, False])
def test_gradients_match_direct_convolution(bias: bool) -> None:
    conv, winograd = _pair(bias)
    x = torch.randn(2, 16, 33, 37, requires_grad=True)
    upstream = torch.randn(2, 8, 33, 37)
    _assert_same_gradients(_gradients(conv, (conv, winograd), x, upstream))


def test_gradient_of_input_only_and_of_weights_only() -> None:
    conv, winograd = _pair()
    x = torch.randn(1, 16, 32, 32, requires_grad=True)
    conv.requires_grad_(False)  # a frozen network (VGG-19): the input's gradient only
    winograd(x).sum().backward()
    expected = torch.autograd.grad(F.conv2d(x, conv.weight, conv.bias, padding=1).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-4)
    conv.requires_grad_(True)
    winograd(torch.randn(1, 16, 32, 32)).sum().backward()  # weights only
    assert conv.weight.grad is not None and conv.bias.grad is not None


def test_falls_back_where_nnpack_does_not_apply_or_pay(monkeypatch) -> None:
    conv, winograd = _pair()
    calls = []
    monkeypatch.setattr(_Conv3x3, "apply", lambda *args: calls.append(args))
    x = torch.randn(1, 16, 8, 8)  # fewer than MIN_PIXELS
    assert x.shape[-2] * x.shape[-1] < MIN_PIXELS
    torch.testing.assert_close(winograd(x), conv(x), rtol=0, atol=0)
    assert not calls
    winograd(torch.randn(1, 16, 32, 32))
    assert len(calls) == 1
    monkeypatch.undo()
    x = torch.randn(1, 16, 32, 32)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert winograd(x).dtype == torch.bfloat16
        conv.double()  # the shared parameters too
        expected = F.conv2d(x.double(), conv.weight, conv.bias, padding=1)
        torch.testing.assert_close(winograd(x.double()), expected, rtol=0, atol=1e-12)


def test_use_winograd_replaces_only_fitting_convolutions() -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU()),
        torch.nn.Conv2d(4, 4, 3, padding=1, stride=2),
        torch.nn.Conv2d(4, 4, 7, padding=3),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=2),
    )
    keys = list(net.state_dict())
    assert use_winograd(net) == 2
    assert isinstance(net[0], WinogradConv2d) and isinstance(net[1][0], WinogradConv2d)
    assert not any(isinstance(m, WinogradConv2d) for m in net[2:])
    assert list(net.state_dict()) == keys


@pytest.mark.parametrize("shape", [(2, 5, 7, 9, 13), (1, 3, 2, 4, 4), (3, 4, 6, 8, 5)])
def test_f4_forward_and_input_gradient_match_direct_convolution(shape) -> None:
    """Sizes that are not multiples of the 4x4 tile exercise the padding and cropping."""
    batch, c_in, c_out, h, w = shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, h, w, generator=generator, requires_grad=True)
    weight = torch.randn(c_out, c_in, 3, 3, generator=generator)
    bias = torch.randn(c_out, generator=generator)
    upstream = torch.randn(batch, c_out, h, w, generator=generator)
    direct = F.conv2d(x, weight, bias, padding=1)
    expected_grad = torch.autograd.grad((direct * upstream).sum(), x)[0]
    kernel = winograd_kernel(weight)
    for actual, expected in ((f4_conv3x3(x.detach(), kernel, bias), direct),
                             (f4_conv3x3_input_grad(upstream, kernel), expected_grad)):
        scale = expected.abs().max().item()
        torch.testing.assert_close(actual, expected.detach(), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("shape", [(2, 5, 7, 9, 13), (1, 3, 2, 4, 4), (3, 4, 6, 8, 5)])
def test_f4_weight_gradient_matches_direct_convolution(shape) -> None:
    batch, c_in, c_out, h, w = shape
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, c_in, h, w, generator=generator)
    upstream = torch.randn(batch, c_out, h, w, generator=generator)
    weight = torch.randn(c_out, c_in, 3, 3, generator=generator, requires_grad=True)
    expected = torch.autograd.grad((F.conv2d(x, weight, padding=1) * upstream).sum(), weight)[0]
    scale = expected.abs().max().item()
    torch.testing.assert_close(f4_conv3x3_weight_grad(x, upstream), expected,
                               rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(("size", "nnpack"), [(32, True), (16, False)])
def test_wide_trained_layers_take_the_f4_weight_gradient(monkeypatch, size, nnpack) -> None:
    """A 128->128 layer, batch 2: NNPACK forward from 32x32, oneDNN's below (32 tiles);
    F(4x4) weight gradient on both (the bias gradient too), a frozen one on neither."""
    torch.manual_seed(0)
    width = WEIGHT_GRAD_MIN_CHANNELS
    conv = torch.nn.Conv2d(width, width, 3, padding=1)
    winograd = WinogradConv2d.replacing(conv)
    x = torch.randn(2, width, size, size, requires_grad=True)
    upstream = torch.randn(2, width, size, size)
    assert f4_weight_grad_fits(x, conv.weight)
    calls = []
    monkeypatch.setattr("tpsmm.networks.winograd.f4_conv3x3_weight_grad",
                        lambda *args: calls.append(1) or f4_conv3x3_weight_grad(*args))
    applied = []
    apply = _Conv3x3.apply
    monkeypatch.setattr(_Conv3x3, "apply", lambda *args: applied.append(args[-1]) or apply(*args))
    grads = _gradients(conv, (conv, winograd), x, upstream)
    assert applied == [nnpack] and calls == [1]
    # NNPACK's input gradient sums 128 channels here: up to ~2e-5 of the largest.
    _assert_same_gradients(grads, tolerance=3e-5)
    conv.requires_grad_(False)
    winograd(x).sum().backward()
    assert calls == [1]


def test_narrow_layers_and_few_tiles_keep_the_onednn_weight_gradient(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("tpsmm.networks.winograd.f4_conv3x3_weight_grad",
                        lambda *args: calls.append(1) or f4_conv3x3_weight_grad(*args))
    width = WEIGHT_GRAD_MIN_CHANNELS
    narrowest = WinogradConv2d.replacing(torch.nn.Conv2d(width // 4, width, 3, padding=1))
    narrowest(torch.randn(2, width // 4, 32, 32)).sum().backward()
    half = WinogradConv2d.replacing(torch.nn.Conv2d(width // 2, width, 3, padding=1))
    big = WEIGHT_GRAD_NARROW_MAX_SIDE + 4
    half(torch.randn(1, width // 2, big, big)).sum().backward()
    wide = WinogradConv2d.replacing(torch.nn.Conv2d(width, width, 3, padding=1))
    wide(torch.randn(1, width, 8, 8)).sum().backward()  # 4 output tiles
    assert not calls
    wide(torch.randn(8, width, 8, 8)).sum().backward()  # 32
    half(torch.randn(2, width // 2, 32, 32)).sum().backward()
    assert calls == [1, 1]


def _wide_pair() -> tuple[torch.nn.Conv2d, WinogradConv2d]:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(F4_MIN_CHANNELS, F4_MIN_CHANNELS, 3, padding=1)
    return conv, WinogradConv2d.replacing(conv)


def test_small_maps_of_wide_layers_take_f4_with_all_gradients(monkeypatch) -> None:
    conv, winograd = _wide_pair()
    x = torch.randn(8, F4_MIN_CHANNELS, 8, 8, requires_grad=True)  # 32 tiles of 4x4
    upstream = torch.randn(8, F4_MIN_CHANNELS, 8, 8)
    calls = []
    apply = _WinogradF4Conv3x3.apply
    monkeypatch.setattr(_WinogradF4Conv3x3, "apply",
                        lambda *args: calls.append(args) or apply(*args))
    grads = _gradients(conv, (conv, winograd), x, upstream)
    assert len(calls) == 1
    _assert_same_gradients(grads)
    # Too few tiles (batch 1) or too few channels: the direct convolution.
    with torch.no_grad():
        winograd(torch.randn(1, F4_MIN_CHANNELS, 8, 8))
        narrow = WinogradConv2d.replacing(torch.nn.Conv2d(F4_MIN_CHANNELS, 128, 3, padding=1))
        narrow(torch.randn(8, F4_MIN_CHANNELS, 8, 8))
    assert len(calls) == 1


def test_frozen_kernel_is_cached_until_the_weight_changes(monkeypatch) -> None:
    conv, winograd = _wide_pair()
    conv.requires_grad_(False)
    transforms = []
    monkeypatch.setattr("tpsmm.networks.winograd.winograd_kernel",
                        lambda weight: transforms.append(1) or winograd_kernel(weight))
    x = torch.randn(8, F4_MIN_CHANNELS, 8, 8)
    for _ in range(2):
        torch.testing.assert_close(winograd(x), conv(x), rtol=0, atol=1e-4)
    assert len(transforms) == 1
    with torch.no_grad():
        conv.weight.mul_(-1)  # in place: the version counter moves
    torch.testing.assert_close(winograd(x), conv(x), rtol=0, atol=1e-4)
    assert len(transforms) == 2
