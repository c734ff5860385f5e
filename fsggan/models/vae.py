"""Stage I variational auto-encoder V (paper, Stage I; loss Eq. 4).

V maps an occluded face x to a blurry but complete facial structure g = V(x). The
decoder outputs a Gaussian over the clean face: a mean image (tanh, in [-1, 1]) and a
log standard deviation; Eq. 4 trains it with the Gaussian negative log-likelihood of the
clean face plus KL(q(z|x) || N(0, I)) (see ``fsggan.losses.vae_loss``).

Layout (C = base_channels, H = image_size, which must be divisible by 16):

    encoder  stem 3x3 conv unit (C, H)
             level 1: down + residual -> feature 1 (C,  H/2)
             level 2: down + residual -> feature 2 (2C, H/4)
             level 3: down + residual -> feature 3 (4C, H/8)
             down (4C, H/16) -> flatten -> linear -> mu, logvar (latent_dim each)
    decoder  linear -> (4C, H/16) -> 4 x [up-sample + residual] -> (C, H)
             -> 3x3 conv -> mean (tanh) [+ log-sigma]

The three encoder feature levels and the last down-sampling (H/16, ``VAEEncoder.down``)
are what the multi-receptive-field discriminator reuses as its feature extractor (paper's
multi-receptive-field D); ``VAEEncoder.body`` computes the three levels alone.

Choice of sigma (``sigma=``):
  * ``"pixel"`` (default): the decoder predicts a per-pixel, per-channel log-sigma map
    (a heteroscedastic Gaussian, the reading of Eq. 4 where the decoder outputs both
    mu and sigma);
  * ``"scalar"``: one learned log-sigma shared by all pixels (returned expanded to the
    image shape).
  Either way log-sigma is soft-clamped to ``LOG_SIGMA_RANGE`` so the likelihood cannot
  diverge by shrinking sigma to zero; log-variance of q(z|x) is soft-clamped likewise.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .blocks import ConvUnit, DownSample, ResidualBlock, UpSample, soft_clamp

__all__ = ["VAE", "VAEEncoder", "VAEDecoder", "VAEOutput", "LOG_SIGMA_RANGE", "LOGVAR_RANGE"]

LOG_SIGMA_RANGE = (-5.0, 2.0)   # sigma in (0.0067, 7.4) for images in [-1, 1]
LOGVAR_RANGE = (-20.0, 10.0)


class VAEOutput(NamedTuple):
    mean: torch.Tensor       # (B, 3, H, W) in [-1, 1]
    log_sigma: torch.Tensor  # (B, 3, H, W)
    mu: torch.Tensor         # (B, latent_dim)
    logvar: torch.Tensor     # (B, latent_dim)


def _check_size(image_size: int) -> None:
    if image_size < 16 or image_size % 16:
        raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")


class EncoderBody(nn.Module):
    """The convolutional part of the encoder: returns its 3 feature levels, shallow to deep."""

    def __init__(self, in_channels: int, base_channels: int):
        super().__init__()
        c = base_channels
        self.feature_channels = (c, 2 * c, 4 * c)
        self.stem = ConvUnit(in_channels, c, kernel_size=3)
        chans = (c,) + self.feature_channels
        self.levels = nn.ModuleList(
            nn.Sequential(DownSample(cin, cout), ResidualBlock(cout))
            for cin, cout in zip(chans[:-1], chans[1:])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(x)
        features = []
        for level in self.levels:
            h = level(h)
            features.append(h)
        return features


class VAEEncoder(nn.Module):
    """q(z|x): ``forward(x) -> (mu, logvar, features)``, features = 3 tensors, shallow to deep."""

    def __init__(self, in_channels: int = 3, base_channels: int = 32, latent_dim: int = 256,
                 image_size: int = 128):
        super().__init__()
        _check_size(image_size)
        self.image_size = image_size
        self.body = EncoderBody(in_channels, base_channels)
        self.feature_channels = self.body.feature_channels
        c = self.feature_channels[-1]
        self.down = DownSample(c, c)
        self.to_latent = nn.Linear(c * (image_size // 16) ** 2, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"VAE built for {self.image_size}x{self.image_size} images, "
                             f"got {tuple(x.shape[-2:])}")
        features = self.body(x)
        mu, logvar = self.to_latent(self.down(features[-1]).flatten(1)).chunk(2, dim=1)
        return mu, soft_clamp(logvar, *LOGVAR_RANGE), features


class VAEDecoder(nn.Module):
    """p(y|z): ``forward(z) -> (mean, log_sigma)``, mean in [-1, 1] (tanh)."""

    def __init__(self, out_channels: int = 3, base_channels: int = 32, latent_dim: int = 256,
                 image_size: int = 128, sigma: str = "pixel"):
        super().__init__()
        _check_size(image_size)
        if sigma not in ("pixel", "scalar"):
            raise ValueError(f"sigma must be 'pixel' or 'scalar', got {sigma!r}")
        c = base_channels
        self.sigma = sigma
        self.out_channels = out_channels
        self.start = (4 * c, image_size // 16, image_size // 16)
        self.from_latent = nn.Linear(latent_dim, 4 * c * (image_size // 16) ** 2)
        self.stem = nn.Sequential(nn.BatchNorm2d(4 * c), nn.SiLU())
        chans = (4 * c, 4 * c, 2 * c, c, c)
        self.ups = nn.Sequential(*(
            nn.Sequential(UpSample(cin, cout), ResidualBlock(cout))
            for cin, cout in zip(chans[:-1], chans[1:])
        ))
        n_out = 2 * out_channels if sigma == "pixel" else out_channels
        self.head = nn.Conv2d(c, n_out, kernel_size=3, padding=1)
        if sigma == "scalar":
            self.log_sigma = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(self.from_latent(z).view(-1, *self.start))
        out = self.head(self.ups(h))
        if self.sigma == "pixel":
            mean, raw = out.split(self.out_channels, dim=1)
        else:
            mean, raw = out, self.log_sigma.expand_as(out)
        return torch.tanh(mean), soft_clamp(raw, *LOG_SIGMA_RANGE)


class VAE(nn.Module):
    """Stage I network V. ``vae(x)`` is the structure image g (z = mu, deterministic)."""

    def __init__(self, in_channels: int = 3, base_channels: int = 32, latent_dim: int = 256,
                 image_size: int = 128, sigma: str = "pixel"):
        super().__init__()
        self.encoder = VAEEncoder(in_channels, base_channels, latent_dim, image_size)
        self.decoder = VAEDecoder(in_channels, base_channels, latent_dim, image_size, sigma)

    def reconstruct(self, x: torch.Tensor, sample: bool = True) -> VAEOutput:
        """Full pass for Eq. 4; ``sample=True`` draws z = mu + sigma * eps (reparameterisation)."""
        mu, logvar, _ = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        mean, log_sigma = self.decoder(z)
        return VAEOutput(mean, log_sigma, mu, logvar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x, sample=False).mean
