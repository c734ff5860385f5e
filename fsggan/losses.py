"""FSG-GAN losses (paper Eq. 4, 7, 8, 11): pure functions on tensors, and
:class:`GeneratorLoss`, which combines them into Stage II's L_G for one step.

Reductions: ``vae_loss`` sums over pixels / latent dimensions and averages over the
batch ("per image", the usual ELBO convention); every other loss is a plain mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from .models.vae import VAEOutput

__all__ = ["LossWeights", "GeneratorLoss", "vae_loss", "gaussian_nll", "kl_standard_normal", "pixel_loss",
           "masked_pixel_loss", "map_bce_loss", "identity_loss", "generator_adversarial_loss", "discriminator_loss",
           "total_variation"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class LossWeights:
    """Weights of the generator loss, Eq. 8 (paper: 100 * L1 + 50 * identity + 1 * adversarial),
    and how its identity term is computed.

    ``tv`` weights an optional total-variation term (not in the paper; the official code
    uses 0.5); 0 disables it. Beyond the paper (0 / off in the paper configs):
    ``pixel_hole`` weights an extra L1 term averaged over the occluded pixels only
    (:func:`masked_pixel_loss`), ``map_bce`` the binary cross-entropy between the blend
    head's predicted occlusion map and the synthesis mask (:func:`map_bce_loss`), and
    ``identity_ramp`` switches the identity term on gradually (:func:`ramp`).
    """

    pixel: float = 100.0
    identity: float = 50.0
    adversarial: float = 1.0
    tv: float = 0.0
    pixel_hole: float = 0.0
    map_bce: float = 0.0
    identity_ramp: tuple[int, int] = (0, 0)  # beyond the paper: identity term 0 before step a, full
                                             # from step b, linear between; (0, 0) = full from the start


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


def map_bce_loss(occ_map: torch.Tensor, occ_mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between a predicted occlusion map in (0, 1) and the synthesis mask,
    in float32: mean(-t log p - (1 - t) log(1 - p)) with p clamped to [1e-6, 1 - 1e-6].

    Written out rather than ``F.binary_cross_entropy``, which CUDA autocast refuses ("unsafe
    to autocast") inside the bf16/fp16 region of the generator step; the terms are those of
    that function (``log1p(-p)``; its -100 floor never binds after the clamp), so CPU results
    are unchanged. G exposes the map after its sigmoid, not its logits, so
    ``binary_cross_entropy_with_logits`` would first have to undo the sigmoid."""
    with torch.autocast(occ_map.device.type, enabled=False):
        p = occ_map.float().clamp(1e-6, 1 - 1e-6)
        t = occ_mask.float()
        return -(t * torch.log(p) + (1 - t) * torch.log1p(-p)).mean()


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


def ramp(step: int, span: tuple[int, int]) -> float:
    """0 before step ``span[0]``, 1 from ``span[1]`` on, linear between; ``(0, 0)``: always 1.
    Scales the identity term (``loss.identity_ramp``: switched on once L1 has settled)."""
    start, end = span
    if step >= end:
        return 1.0
    if step < start:
        return 0.0
    return (step - start) / max(end - start, 1)


class GeneratorLoss:
    """Stage II's generator loss L_G (Eq. 8) and the terms beyond the paper, for one step.

        loss = GeneratorLoss(LossWeights(identity=100.0), identity_net=F)
        terms, total = loss(fake=G_out, occ_map=m, y=clean, occ_mask=synthesis_mask, disc=D, step=t)

    ``occ_map`` is the blend head's predicted occlusion map, ``occ_mask`` the synthesis mask
    (1 where the occluder is; both (B, 1, H, W)); ``weights.map_bce`` weights their BCE.
    ``terms`` maps each active term to its unweighted value; ``total`` is the weighted sum.
    F (``identity_net``, a frozen :class:`fsggan.models.identity.FaceEmbedder`) is only run
    when an identity term is on at ``step``; D only when ``weights.adversarial`` is not 0.
    """

    def __init__(self, weights: LossWeights, identity_net: nn.Module | None = None):
        if weights.identity and identity_net is None:
            raise ValueError("the identity term needs the identity network F (identity_net)")
        self.weights, self.identity_net = weights, identity_net

    def __call__(self, *, fake: torch.Tensor, occ_map: torch.Tensor | None, y: torch.Tensor,
                 occ_mask: torch.Tensor | None = None, disc: nn.Module | None = None,
                 step: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        w = self.weights
        if (w.pixel_hole or w.map_bce) and occ_mask is None:
            raise ValueError("loss.pixel_hole and loss.map_bce need the occlusion mask of the batch")
        terms = {"pixel": pixel_loss(y, fake)}
        if w.pixel_hole:
            terms["pixel_hole"] = masked_pixel_loss(y, fake, occ_mask)
        if w.map_bce:
            if occ_map is None:
                raise ValueError("loss.map_bce needs generator.output: blend (a predicted occlusion map)")
            terms["map_bce"] = map_bce_loss(occ_map, occ_mask)
        scale = ramp(step, tuple(w.identity_ramp))
        if scale and w.identity:
            terms["identity"] = self._identity_term(fake, y)
        if w.adversarial:
            terms["adversarial"] = generator_adversarial_loss(disc(fake).log_prob)
        if w.tv:
            terms["tv"] = total_variation(fake)
        weight = {k: getattr(w, k) * (scale if k.startswith("identity") else 1.0) for k in terms}
        return terms, sum(weight[k] * v.float() for k, v in terms.items())

    def _identity_term(self, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """1 - cos(F(y), F(G)) (F in float32 on a CPU: _identity_precision)."""
        net = self.identity_net
        with _identity_precision(y):
            with torch.no_grad():
                feat_real = net(y.float())
            feat_fake = net(fake.float())
        return identity_loss(feat_real, feat_fake)


def _identity_precision(t: torch.Tensor):
    """On CPU F runs in float32 even under bf16 autocast: MobileFaceNet's depthwise
    convolutions and PReLUs are slower in bf16 there (measured: fwd + bwd of a batch of 16,
    3.3-5.2 s in bf16 against 1.7-3.1 s in fp32, 2 threads; docs/experiments.md)."""
    return torch.autocast("cpu", enabled=False) if t.device.type == "cpu" else contextlib.nullcontext()
