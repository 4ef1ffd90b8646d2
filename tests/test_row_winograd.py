"""Winograd's F(2, 3) along rows, as exported for the decoder's residual blocks."""

from __future__ import annotations

import pytest
import torch

from tpsmm.deploy.row_winograd import RowWinogradConv2d, use_row_winograd
from tpsmm.networks.inpainting import InpaintingNetwork


@pytest.mark.parametrize(("channels", "size", "bias"),
                         [((3, 5), (4, 6), True), ((8, 2), (7, 10), False), ((2, 4), (5, 9), True)])
def test_row_winograd_equals_the_convolution(channels, size, bias) -> None:
    """Even widths through F(2, 3), the odd one (9) through the direct convolution."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(*channels, 3, padding=1, bias=bias).double()
    x = torch.randn(2, channels[0], *size, generator=generator, dtype=torch.float64)
    winograd = RowWinogradConv2d(conv)
    assert winograd.weight is conv.weight and winograd.bias is conv.bias  # shared, not copied
    with torch.no_grad():
        torch.testing.assert_close(winograd(x), conv(x), rtol=0, atol=1e-12)


def test_row_winograd_takes_the_residual_blocks_only() -> None:
    network = InpaintingNetwork(num_channels=3, block_expansion=4, max_features=16,
                                num_down_blocks=2)
    keys = list(network.state_dict())
    assert use_row_winograd(network) == 8  # 2 levels x 2 blocks x 2 convolutions
    assert list(network.state_dict()) == keys
    replaced = {name for name, m in network.named_modules() if isinstance(m, RowWinogradConv2d)}
    assert replaced == {f"resblock.{i}.conv{j}" for i in range(4) for j in (1, 2)}


@pytest.mark.parametrize("conv", [torch.nn.Conv2d(4, 4, 3, padding=0),
                                  torch.nn.Conv2d(4, 4, 3, padding=1, stride=2),
                                  torch.nn.Conv2d(4, 4, 5, padding=2),
                                  torch.nn.Conv2d(4, 4, 3, padding=1, groups=2)])
def test_row_winograd_refuses_other_convolutions(conv) -> None:
    assert not RowWinogradConv2d.fits(conv)
    with pytest.raises(ValueError, match="3x3"):
        RowWinogradConv2d(conv)
