"""Building blocks shared by the FSG-GAN networks.

The paper builds every network from BatchNorm + swish convolution
units, borrowed from NVAE (Vahdat & Kautz, 2020, "residual cells"): a down-sampling
module, a residual module and an up-sampling unit. All units here keep the spatial
size unless they say otherwise ("same" padding, dilation-aware).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvUnit", "ResidualBlock", "DownSample", "UpSample", "soft_clamp"]


def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Smoothly squash ``x`` into ``(low, high)``; close to the identity well inside.

    Used for log-sigma and log-variance outputs: unlike ``torch.clamp`` the gradient
    never becomes exactly zero, so a saturated output can still recover.
    """
    x = low + F.softplus(x - low)
    return high - F.softplus(high - x)


class ConvUnit(nn.Sequential):
    """conv -> BatchNorm -> swish (SiLU); "same" padding for odd kernels.

    ``stride=2`` halves the resolution (then it is the down-sampling unit).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
        )


class ResidualBlock(nn.Module):
    """NVAE-style residual cell: x + conv(swish(BN(conv(swish(BN(x)))))).

    Pre-activation ordering as in NVAE's encoder cell (BN-swish-conv, twice). The kernel
    sizes are configurable: the generator uses (3, 1) to keep its receptive fields at
    the sizes the paper states (see ``UNetGenerator``), the VAE uses (3, 3).
    """

    def __init__(self, channels: int, kernel_sizes: tuple[int, int] = (3, 3)):
        super().__init__()
        k1, k2 = kernel_sizes
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.SiLU(),
            nn.Conv2d(channels, channels, k1, padding=k1 // 2, bias=False),
            nn.BatchNorm2d(channels), nn.SiLU(),
            nn.Conv2d(channels, channels, k2, padding=k2 // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DownSample(ConvUnit):
    """Down-sampling module: 3x3 stride-2 conv + BN + swish (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=3, stride=2)


class UpSample(nn.Module):
    """Up-sampling unit: x2 up-sampling (``mode``: nearest-neighbour or bilinear) followed by a
    3x3 conv unit.

    Resize-then-convolve rather than a transposed conv avoids checkerboard artefacts.
    Nearest-neighbour copies each coarse feature into a 2x2 block; three of them in a row
    turn G's H/8 features into 8x8 blocks, whose edges show as a regular grid in regions that
    only the coarse features paint (large occluder fills). Bilinear interpolates instead.
    The mode has no parameters: one set of weights runs with either.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest"):
        super().__init__()
        self.mode = mode
        self.conv = ConvUnit(in_channels, out_channels, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corners = None if self.mode == "nearest" else False  # align_corners: only interpolating modes take it
        return self.conv(F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=corners))
