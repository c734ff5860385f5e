"""The inference graph: a face x in, G(x, V(x)) out (paper, Eq. 8's G at test time).

``structure_passes`` (beyond the paper; 1 = the paper): V's structure of an occluded face
still carries part of the occluder, and G paints its fill from that structure. With
``structure_passes=k`` the output of one pass is given back to V, whose structure of a face
that is already mostly de-occluded is cleaner, and G fills x again from it:

    g_1 = V(x),  y_1 = G(x, g_1);   g_i = V(y_{i-1}),  y_i = G(x, g_i);   output y_k

G always fills the original x, so what it keeps outside its map is x itself, and on a face
with nothing to remove y_1 is close to x and every pass gives the same output again. The
measurement that made the 128 px recipe use 2 passes: docs/experiments.md, "SP-series".

One function holds the graph; :class:`fsggan.api.FSGGAN`, training's validation and the
ONNX export (:mod:`fsggan.onnx_export`) all call it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["deocclude", "check_structure_passes"]


def check_structure_passes(passes) -> int:
    """``passes`` as an int >= 1, or a one-line ValueError."""
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"structure_passes={passes!r}: must be an integer >= 1 (1: the paper's G(x, V(x)))")
    return passes


def deocclude(vae: nn.Module | None, generator: nn.Module, x: torch.Tensor, *, structure_passes: int = 1,
              fill_mask: torch.Tensor | None = None, mask_mode: str = "replace"):
    """(y, g, m): G's output, the structure g it was filled from (``None`` without V) and its
    map (``None`` for a ``direct`` head without ``fill_mask``).

    x (B, 3, S, S) in [-1, 1]; ``fill_mask`` / ``mask_mode``: the user's map, as
    :meth:`fsggan.models.UNetGenerator.forward` takes them (used in every pass). A generator
    without structure input (``in_channels == 3``) runs once, whatever ``structure_passes``."""
    check_structure_passes(structure_passes)
    uses_structure = getattr(generator, "in_channels", 6) != 3
    if uses_structure and vae is None:
        raise ValueError("this generator takes the structure image g: a VAE is needed")
    extra = {} if fill_mask is None else {"fill_mask": fill_mask, "mask_mode": mask_mode}
    if not uses_structure:
        y, m = generator(x, return_mask=True, **extra)
        return y, None, m
    y = x
    for _ in range(structure_passes):
        g = vae(y)
        y, m = generator(x, g, return_mask=True, **extra)
    return y, g, m
