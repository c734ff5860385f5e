"""Stage II generator G: a U-Net with HDC encoder blocks (paper, Stage II).

Input: the occluded face x and the VAE's structure image g concatenated (6 channels).
Output: the de-occluded face y_hat = G(x, g) in [-1, 1] (tanh).

    encoder block i (i = 1..3): down-sampling module (3x3 stride-2 conv unit)
                                -> HDC module (1x1 || 3x3 dilated at rates 1, 2, 5)
                                -> residual module (BN-swish-conv3x3-BN-swish-conv1x1 + skip)
        widths C, 2C, 4C at H/2, H/4, H/8
    decoder block j (j = 1..3): up-sampling unit (x2 + 3x3 conv unit) -> 3x3 conv unit;
        block 1 takes encoder block 3, blocks 2 and 3 take
        concat(previous decoder output, symmetric encoder block output)
    output: 3x3 conv -> tanh

Receptive fields (theoretical, in input pixels; the paper says "about a quarter, a half
and the whole image" at 128x128). With the default rates (1, 2, 5):

    block 1: 3 (down) + 2*5*2 (HDC at stride 2) + 2*2 (residual 3x3)      =  27 px (0.21 H)
    block 2: 27 + 2*2 + 2*5*4 + 2*4                                         =  79 px (0.62 H)
    block 3: 79 + 2*4 + 2*5*8 + 2*8                                         = 183 px (> H)

The residual module's second conv is 1x1 for this reason: with two 3x3 convs the
second block would see 91 px (0.71 H), more than "about half". tests/test_models.py
measures these numbers by back-propagating from one output unit of each block.
``hdc=False`` (the "w/o HDC" ablation) replaces each HDC module by a plain 3x3 conv
unit of the same width, keeping the depth.

Output head (``output``):

* ``"direct"`` (the paper): ``y_hat = tanh(conv(d))``, every pixel synthesised.
* ``"blend"`` (beyond the paper, off in the paper configs): one more output channel is a
  soft occlusion map ``m = sigmoid(.)`` and ``y_hat = m * tanh(rgb) + (1 - m) * x``, so
  pixels G judges visible pass through untouched. The decoder's last skip is at H/2, so a
  direct head cannot copy the visible face at full resolution; the blend can. Inference
  still needs no mask: G predicts it. ``forward(..., return_mask=True)`` also returns m
  (for the optional map loss, ``loss.map_bce``). docs/experiments.md has the measurements.

Up-sampling (``upsample``): ``"nearest"`` (default; the paper names no method) or
``"bilinear"`` (beyond the paper: no 8x8 block grid in large fills, see
:class:`fsggan.models.blocks.UpSample`). Same parameters either way.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvUnit, DownSample, ResidualBlock, UpSample
from .hdc import HDCModule

__all__ = ["UNetGenerator", "OUTPUT_MODES", "UPSAMPLE_MODES", "MASK_MODES"]

OUTPUT_MODES = ("direct", "blend")
UPSAMPLE_MODES = ("nearest", "bilinear")
MASK_MODES = ("replace", "union")  # how a user's occlusion map meets the blend head's (forward)


class EncoderBlock(nn.Sequential):
    """Down-sampling module -> HDC module (or a 3x3 conv unit) -> residual module."""

    def __init__(self, in_channels: int, out_channels: int, hdc: bool, rates: tuple[int, ...]):
        super().__init__(
            DownSample(in_channels, out_channels),
            HDCModule(out_channels, out_channels, rates) if hdc
            else ConvUnit(out_channels, out_channels, kernel_size=3),
            ResidualBlock(out_channels, kernel_sizes=(3, 1)),
        )


class DecoderBlock(nn.Sequential):
    """Up-sampling unit -> 3x3 conv unit."""

    def __init__(self, in_channels: int, out_channels: int, upsample: str = "nearest"):
        super().__init__(UpSample(in_channels, out_channels, upsample),
                         ConvUnit(out_channels, out_channels, kernel_size=3))


class UNetGenerator(nn.Module):
    def __init__(self, in_channels: int = 6, out_channels: int = 3, base_channels: int = 64,
                 hdc: bool = True, hdc_rates: tuple[int, ...] = (1, 2, 5), output: str = "direct",
                 upsample: str = "nearest"):
        super().__init__()
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}, got {output!r}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if output == "blend" and in_channels < out_channels:
            raise ValueError("output='blend' needs x among the inputs (in_channels >= out_channels)")
        c = base_channels
        self.output = output
        self.in_channels = in_channels
        self.encoders = nn.ModuleList([
            EncoderBlock(in_channels, c, hdc, hdc_rates),
            EncoderBlock(c, 2 * c, hdc, hdc_rates),
            EncoderBlock(2 * c, 4 * c, hdc, hdc_rates),
        ])
        self.decoders = nn.ModuleList([
            DecoderBlock(4 * c, 2 * c, upsample),          # H/8 -> H/4
            DecoderBlock(2 * c + 2 * c, c, upsample),      # cat(dec1, enc2), H/4 -> H/2
            DecoderBlock(c + c, c, upsample),              # cat(dec2, enc1), H/2 -> H
        ])
        self.out = nn.Conv2d(c, out_channels + (output == "blend"), kernel_size=3, padding=1)

    def encode(self, x: torch.Tensor, g: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The three encoder block outputs (H/2, H/4, H/8). ``g=None``: x already has 6 channels."""
        h = x if g is None else torch.cat([x, g], dim=1)
        if h.shape[1] != self.in_channels:
            raise ValueError(f"generator expects {self.in_channels} input channels "
                             f"(x and g concatenated), got {h.shape[1]}")
        if h.shape[-1] % 8 or h.shape[-2] % 8:
            raise ValueError(f"image height and width must be divisible by 8, got {tuple(h.shape[-2:])}")
        features = []
        for block in self.encoders:
            h = block(h)
            features.append(h)
        return features

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None, return_mask: bool = False,
                fill_mask: torch.Tensor | None = None, mask_mode: str = "replace"):
        """G(x, g) in [-1, 1]; with ``return_mask`` the pair (G(x, g), m), where m is the
        predicted occlusion map (B, 1, H, W) of the blend head (None for ``direct``).

        ``fill_mask`` (B, 1, H, W) in [0, 1], 1 = occluded: a map given by the user, which
        enters where the blend head's m does (``y = m * tanh(rgb) + (1 - m) * x``):
        ``mask_mode="replace"`` uses it instead of m, so pixels where it is 0 come back as x,
        bit for bit; ``"union"`` uses max(m, fill_mask). A direct head predicts no map, so
        either mode blends its output with x through ``fill_mask``."""
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        n = self.out.out_channels - (self.output == "blend")
        rgb, logits = self._heads(x, g)
        if self.output == "direct" and fill_mask is None:
            return (torch.tanh(rgb), None) if return_mask else torch.tanh(rgb)
        mask = torch.sigmoid(logits) if self.output == "blend" else fill_mask
        if fill_mask is not None:
            mask = (fill_mask.to(mask.dtype) if mask_mode == "replace"
                    else torch.maximum(mask, fill_mask.to(mask.dtype)))
        out = mask * torch.tanh(rgb) + (1.0 - mask) * x[:, :n]
        return (out, mask) if return_mask else out

    def _heads(self, x: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: the RGB logits (before tanh) and the map logits (empty for ``direct``)."""
        e1, e2, e3 = self.encode(x, g)
        d = self.decoders[0](e3)
        d = self.decoders[1](torch.cat([d, e2], dim=1))
        d = self.decoders[2](torch.cat([d, e1], dim=1))
        h = self.out(d)
        n = self.out.out_channels - (self.output == "blend")
        return h[:, :n], h[:, n:]
