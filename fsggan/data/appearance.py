"""Occluder appearance augmentation for training (``synthesis.recolour``, ``synthesis.retexture``;
beyond the paper): the pool's few colours and textures widened, each object's shape kept."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["restyle"]


def restyle(w: torch.Tensor, clean: torch.Tensor, rngs: Sequence, placement) -> torch.Tensor:
    """Occluder appearance augmentation (``recolour``, ``retexture``; training only): each
    warped occluder ``w`` (B, 4, H, W, premultiplied RGB and alpha) whose generator is given
    has, by chance, its colour channels shuffled and scaled (gains 0.3-1.7), and/or its
    texture replaced by another patch of its own clean photo (mirrored and shifted), its
    shape kept; so a map learns "not this face" rather than the pool's few colours. Draws
    come from ``rngs`` only when an option is on: with both off nothing changes."""
    p, size = placement, w.shape[-1]
    rgb, a = w[:, :3].clone(), w[:, 3:4]
    for b, r in enumerate(rngs):
        if r is None:
            continue
        if p.recolour > 0 and r.random() < p.recolour:
            perm, gain = r.permutation(3).tolist(), r.uniform(0.3, 1.7, 3)
            rgb[b] = torch.minimum(torch.stack([rgb[b, c] * float(k) for c, k in zip(perm, gain)]), a[b])
        if p.retexture > 0 and r.random() < p.retexture:
            dy, dx = (int(v) for v in r.integers(size // 4, 3 * size // 4, 2))
            rgb[b] = torch.roll(clean[b].flip(-1), (dy, dx), (-2, -1)).add(1).div(2) * a[b]
    return torch.cat([rgb, a], 1)
