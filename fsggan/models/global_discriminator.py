"""The paper's "regular discriminator" (Table 4, Fig. 9): a whole-image critic after DeepFill.

FSG-GAN's ablation replaces the multi-receptive-field D by "a regular discriminator that
is the same as DeepFill", which "only determines the overall similarity without paying
attention to image details". This is DeepFill v1's global critic (Yu et al., "Generative
Image Inpainting with Contextual Attention", CVPR 2018): ``n_layers`` 5x5 stride-2
convolutions with C, 2C, 4C, 4C channels, each followed by LeakyReLU(0.2) and no
normalisation, then one linear unit over the whole last feature map. Its single logit
depends on every pixel (each unit of the last map sees 61 px; the linear unit reads all
of them), and it has no patch outputs: it judges the image as a whole.

Choices, and why:

* **The global critic alone**, not DeepFill v1's global + local pair. The paper describes
  its regular D as judging "the overall similarity" and contrasts it with the multi-RF
  D's attention to details - a description of the global critic; DeepFill's local critic
  would judge exactly the local details the ablation means to leave out. The local critic
  also reads a crop around the hole's bounding box, which D's interface (``disc(image)``,
  as ``g_step`` / ``d_step`` call it) does not have, and occluders here are arbitrary
  objects rather than DeepFill's rectangles. DeepFill v2 replaced both by SN-PatchGAN,
  a local patch critic (close to ``d_arch: patch``), so "regular D" cannot mean v2 either.
* **Capacity of the multi-RF heads.** DeepFill uses C = 64 (about 2.7 M parameters at
  128 px); the default C = 16 gives 0.17 M, the order of the multi-RF D's trainable heads
  (0.21 M), so the ablation compares designs, not sizes.
* **Loss.** DeepFill trains its critics with WGAN-GP; here every D variant is trained
  with the paper's Eq. 11 (sigmoid cross-entropy), so only the architecture changes. The
  output is the same ``DiscOutput`` as the multi-RF D's (one head, weight 1).
* **Image size.** At the paper's 128 px, 4 layers leave an 8x8 map, which the linear unit
  reads as DeepFill does; other sizes are average-pooled to that 8x8 grid first, so the
  critic needs no size argument (at 128 px the pooling is the identity).
"""

from __future__ import annotations

import torch
from torch import nn

from .discriminator import DiscOutput, combine_heads, patch_log_probs

__all__ = ["GlobalDiscriminator"]

GRID = 8  # the last feature map is read as GRID x GRID cells (128 px / 2^4)


class GlobalDiscriminator(nn.Module):
    """DeepFill v1 global critic: one logit per image (``d_arch: global``)."""

    def __init__(self, in_channels: int = 3, base_channels: int = 16, n_layers: int = 4):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(n_layers):
            cout = base_channels * min(2 ** i, 4)
            layers += [nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(GRID)
        self.linear = nn.Linear(cin * GRID * GRID, 1)

    def logit(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B,) raw logits."""
        return self.linear(self.pool(self.features(img)).flatten(1)).squeeze(1)

    def forward(self, img: torch.Tensor) -> DiscOutput:
        log_d, log_one_minus_d = patch_log_probs(self.logit(img).view(-1, 1, 1, 1))
        return combine_heads(log_d[:, None], log_one_minus_d[:, None], 0.0)
