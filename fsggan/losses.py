"""FSG-GAN losses (paper Eq. 4, 7, 8, 11), as pure functions on tensors.

Reductions: ``vae_loss`` sums over pixels / latent dimensions and averages over the
batch ("per image", the usual ELBO convention); every other loss is a plain mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .models.vae import VAEOutput

__all__ = ["LossWeights", "vae_loss", "gaussian_nll", "kl_standard_normal", "pixel_loss",
           "masked_pixel_loss", "mask_loss", "gaussian_blur", "identity_loss", "generator_adversarial_loss", "discriminator_loss",
           "total_variation", "random_views"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class LossWeights:
    """Weights of the generator loss, Eq. 8 (paper: 100 * L1 + 50 * identity + 1 * adversarial).

    ``tv`` weights an optional total-variation term (not in the paper; the official code
    uses 0.5); 0 disables it. Beyond the paper (0 = off, the paper configs keep them off):
    ``pixel_hole`` weights an extra L1 term averaged over the occluded pixels only
    (:func:`masked_pixel_loss`), ``mask`` the binary cross-entropy between the blend
    head's predicted occlusion map and the synthesis mask (:func:`mask_loss`).
    """

    pixel: float = 100.0
    identity: float = 50.0
    adversarial: float = 1.0
    tv: float = 0.0
    pixel_hole: float = 0.0
    mask: float = 0.0


def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """-log N(target; mean, sigma^2), summed over all but the batch dim, mean over batch.

    Includes the constant 0.5 * log(2 pi) per element; uses exp(-log_sigma) rather than a
    division so a small sigma cannot divide by zero.
    """
    z = (target - mean) * torch.exp(-log_sigma)
    nll = log_sigma + 0.5 * z.square() + _HALF_LOG_2PI
    return nll.flatten(1).sum(1).mean()


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims, mean over batch."""
    kl = 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


def vae_loss(out: VAEOutput, target: torch.Tensor, kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Stage I loss, Eq. 4: NLL of the clean face under the decoder's Gaussian + KL.

    Returns {"nll", "kl", "total"} (scalars, per image); computed in float32.
    """
    nll = gaussian_nll(target.float(), out.mean.float(), out.log_sigma.float())
    kl = kl_standard_normal(out.mu.float(), out.logvar.float())
    return {"nll": nll, "kl": kl, "total": nll + kl_weight * kl}


def pixel_loss(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """L1 reconstruction term of Eq. 8: mean |y - G(x, g)|."""
    return F.l1_loss(pred, target)


def masked_pixel_loss(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |y - G(x, g)| over the pixels where ``mask`` (B, 1, H, W) is 1: the occluded
    region, whatever its size (0 when no pixel is occluded)."""
    diff = (pred.float() - target.float()).abs() * mask
    return diff.sum() / (mask.sum() * pred.shape[1]).clamp_min(1.0)


def mask_loss(pred_mask: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between a predicted occlusion map in (0, 1) and the true mask."""
    p = pred_mask.float().clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(p, mask.float())


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (kernel radius ceil(3 sigma), reflect padding); sigma <= 0: unchanged.

    Beyond the paper (``loss.identity_blur``): the identity term compares F on blurred
    faces, so G gains nothing from fine patterns that only move the recogniser's embedding.
    """
    if sigma <= 0:
        return img
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, device=img.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(img.dtype)
    c = img.shape[1]
    h = F.conv2d(F.pad(img, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(h, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def identity_loss(feat_target: torch.Tensor, feat_pred: torch.Tensor) -> torch.Tensor:
    """Identity-preserving term of Eq. 8: mean over the batch of 1 - cos(F(y), F(G(x, g)))."""
    return (1.0 - F.cosine_similarity(feat_target.float(), feat_pred.float(), dim=1, eps=1e-8)).mean()


def generator_adversarial_loss(log_prob_fake: torch.Tensor) -> torch.Tensor:
    """Adversarial term of Eq. 7-8: mean(-log D(G(x, g))) (non-saturating form)."""
    return -log_prob_fake.mean()


def discriminator_loss(log_prob_real: torch.Tensor, log_one_minus_prob_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 11: mean(-log D(y) - log(1 - D(G(x, g))))."""
    return (-log_prob_real - log_one_minus_prob_fake).mean()


def total_variation(img: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 total variation: mean |vertical diff| + mean |horizontal diff|."""
    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean()
    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().mean()
    return dx + dy


def random_views(*images: torch.Tensor, shift: float = 0.06, scale: tuple[float, float] = (0.9, 1.1),
                 blur: float = 1.0, down: tuple[float, float] = (0.5, 1.0),
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """The same random view of each image batch: per sample a random shift (up to ``shift``
    of the width), zoom (``scale``), horizontal flip, Gaussian blur (sigma up to ``blur``
    px) and down-and-up sampling (by a factor drawn from ``down``), all differentiable.

    Beyond the paper (``loss.identity_views``): the identity term compares F on such views
    of G(x, g) and y (an expectation over transformations), so a texture that moves F's
    embedding only on one exact pixel grid no longer pays off.
    """
    ref = images[0]
    b, dev = ref.shape[0], ref.device

    def draw(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(dev)

    zoom = draw(*scale)
    flip = torch.where(draw(0.0, 1.0) < 0.5, -1.0, 1.0).to(dev)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = flip / zoom, 1.0 / zoom
    theta[:, 0, 2], theta[:, 1, 2] = draw(-2 * shift, 2 * shift), draw(-2 * shift, 2 * shift)
    sigma = float(draw(0.0, blur, 1)) if blur > 0 else 0.0
    factor = float(draw(*down, 1))
    out = []
    for img in images:
        grid = F.affine_grid(theta.to(img.dtype), list(img.shape), align_corners=False)
        v = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        v = gaussian_blur(v, sigma)
        if factor < 1.0:
            h, w = img.shape[-2:]
            small = (max(8, round(h * factor)), max(8, round(w * factor)))
            v = F.interpolate(F.interpolate(v, size=small, mode="bilinear", align_corners=False, antialias=True),
                              size=(h, w), mode="bilinear", align_corners=False)
        out.append(v)
    return tuple(out)
