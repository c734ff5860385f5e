"""The PatchGAN critic (pix2pix's N-layer D), ``gan.d_arch: patch``: an option beside the
paper's multi-receptive-field D (:mod:`.discriminator`) and its "regular D"
(:mod:`.global_discriminator`), reporting through the same ``DiscOutput``."""

from __future__ import annotations

import torch
from torch import nn

from .discriminator import DiscOutput, combine_heads, patch_log_probs

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """PatchGAN critic (pix2pix's N-layer D), ``d_arch: patch``: a local critic (each patch
    logit sees 70 px with the defaults), kept as an option beside the paper's "regular D"
    (:class:`~fsggan.models.global_discriminator.GlobalDiscriminator`).

    conv4x4/2 + LeakyReLU, (n_layers - 1) x [conv4x4/2 + BN + LeakyReLU],
    conv4x4/1 + BN + LeakyReLU, conv4x4/1 to one logit per patch. D = mean of the patch
    sigmoids, reported through the same ``DiscOutput`` (one head, weight 1).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3):
        super().__init__()
        c = base_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 4, 2, 1), nn.LeakyReLU(0.2)]
        for i in range(1, n_layers + 1):
            cin, cout = c * min(2 ** (i - 1), 8), c * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(c * min(2 ** n_layers, 8), 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> DiscOutput:
        log_d, log_one_minus_d = patch_log_probs(self.net(img))
        return combine_heads(log_d[:, None], log_one_minus_d[:, None], 0.0)
