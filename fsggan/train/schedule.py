"""Learning-rate schedule (beyond the paper, whose configs keep it off): linear warm-up,
then constant or cosine decay. Stateless - the rate is a function of the step - so a
resumed run follows exactly the same schedule."""

from __future__ import annotations

import math

import torch

__all__ = ["lr_factor", "set_lr"]


def lr_factor(step: int, total: int, warmup_steps: int = 0, decay: str = "none", min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate for optimisation step ``step`` (0-based) of ``total``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "none":
        return 1.0
    if decay != "cosine":
        raise ValueError(f"decay must be 'none' or 'cosine', got {decay!r}")
    span = max(total - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
