"""Exponential moving average of a network's weights (beyond the paper; ``train.ema``).

The average is a full copy of the network kept in eval mode: parameters follow
``ema = decay * ema + (1 - decay) * current`` after every optimisation step, buffers
(BatchNorm running statistics) are copied as they are. Validation, ``best.pt`` and
inference use the copy; it is stored in checkpoints as ``models["generator_ema"]``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._params = list(self.module.parameters())
        self._buffers = list(self.module.buffers())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One multi-tensor lerp over all parameters and one multi-tensor copy of the buffers
        (a couple of kernels per step on a GPU instead of one or two per tensor)."""
        torch._foreach_lerp_(self._params, list(model.parameters()), 1.0 - self.decay)
        if self._buffers:
            torch._foreach_copy_(self._buffers, list(model.buffers()))
