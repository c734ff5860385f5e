"""Hybrid dilated convolution (HDC) module of the FSG-GAN generator (paper, Stage II).

A 1x1 convolution runs in parallel with 3x3 convolutions dilated at ``rates``
(paper: 1, 2, 5; co-prime rates avoid the "gridding" holes of a single large
dilation). Every branch is conv + BN + swish; the branches are concatenated and fused
by a 1x1 conv + BN + swish. The receptive field of the module is that of its widest
branch, 2 * max(rates) + 1 pixels of its input.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvUnit

__all__ = ["HDCModule"]


class HDCModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...] = (1, 2, 5),
                 branch_channels: int | None = None):
        super().__init__()
        rates = tuple(int(r) for r in rates)
        if not rates or min(rates) < 1:
            raise ValueError(f"HDC rates must be positive integers, got {rates}")
        branch_channels = branch_channels or out_channels
        self.rates = rates
        self.branches = nn.ModuleList(
            [ConvUnit(in_channels, branch_channels, kernel_size=1)]
            + [ConvUnit(in_channels, branch_channels, kernel_size=3, dilation=r) for r in rates]
        )
        self.fuse = ConvUnit(branch_channels * len(self.branches), out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
