"""Discriminators: the multi-receptive-field D of FSG-GAN (trained with paper Eq. 11) and a
PatchGAN critic for the "regular discriminator" ablation.

Multi-receptive-field D. Its feature extractor IS the VAE encoder (the paper shares
weights between V's encoder and D): three shallow heads read V's three feature levels,
whose receptive fields differ. Head i is conv3x3 -> swish -> per-patch linear unit
(1x1 conv to one logit) -> sigmoid, giving N_i x N_i patch responses whose mean is d_i.
The output is

    d_u = sum_i w_i d_i,   w = softmax(lam * d)      (per sample, differentiable)

lam = 0 gives the arithmetic mean of the d_i, lam -> inf their maximum (paper: lam = 1).
Everything is computed in log space, so log D and log(1 - D) stay finite when patch
logits saturate:

    log d_i     = logsumexp_patches(logsigmoid(l))  - log(N_i^2)
    log(1 - d_i) = logsumexp_patches(logsigmoid(-l)) - log(N_i^2)
    log d_u     = logsumexp_i(log w_i + log d_i)
    log(1 - d_u) = logsumexp_i(log w_i + log(1 - d_i))   (since sum_i w_i = 1)

How D holds the encoder (``trunk_mode``; DESIGN.md section 2):

* ``"frozen"`` (default): the VAE encoder module itself, with its current weights; D's
  loss never updates it. It is NOT registered as a sub-module: ``disc.parameters()`` and
  ``disc.state_dict()`` hold the heads only, ``disc.train()`` does not touch it, and
  ``disc.to(device)`` does not move it (move the VAE as well). It always runs in eval
  mode (BN running statistics are used, never updated) and with detached weights, so
  gradients reach the input image (and through it G) but never the encoder, and the
  VAE's ``requires_grad`` flags are left as they were.
* ``"tied"``: the very same Parameter objects as the VAE encoder, trainable and updated
  by D's loss (they appear in ``disc.parameters()`` and, under ``trunk.``, in the state
  dict; construction sets ``requires_grad=True`` on them). The module holding them is a
  shallow copy with its own BatchNorm buffers, so putting D in train mode does not change
  the VAE's running statistics or its train/eval mode.
* ``"copy"``: a deep copy initialised from the VAE encoder and trained on its own.

Only the encoder's convolutional body (``VAEEncoder.body``) is used; its latent head
(the mu/logvar projection) plays no part in D.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

__all__ = ["DiscOutput", "MultiRFDiscriminator", "PatchDiscriminator", "TRUNK_MODES"]

TRUNK_MODES = ("frozen", "tied", "copy")


class DiscOutput(NamedTuple):
    prob: torch.Tensor                # (B,) D(img) = d_u
    log_prob: torch.Tensor            # (B,) log D(img)
    log_one_minus_prob: torch.Tensor  # (B,) log(1 - D(img))
    head_probs: torch.Tensor          # (B, n_heads) d_i
    weights: torch.Tensor             # (B, n_heads) w_i


def patch_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, N, N) patch logits -> (log mean sigmoid, log mean (1 - sigmoid)), each (B,).

    Half-precision logits (autocast) are promoted to float32 first.
    """
    logits = logits.flatten(1)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    log_n = math.log(logits.shape[1])
    return (torch.logsumexp(F.logsigmoid(logits), dim=1) - log_n,
            torch.logsumexp(F.logsigmoid(-logits), dim=1) - log_n)


def combine_heads(log_d: torch.Tensor, log_one_minus_d: torch.Tensor, lam: float) -> DiscOutput:
    """Softmax-weighted fusion of head outputs (d_u above), in log space. Inputs (B, n_heads)."""
    d = log_d.exp()
    log_w = torch.log_softmax(lam * d, dim=1)
    log_prob = torch.logsumexp(log_w + log_d, dim=1)
    log_one_minus = torch.logsumexp(log_w + log_one_minus_d, dim=1)
    return DiscOutput(log_prob.exp(), log_prob, log_one_minus, d, log_w.exp())


class _Head(nn.Sequential):
    """conv3x3 -> swish -> per-patch linear unit (1x1 conv to one logit per patch)."""

    def __init__(self, in_channels: int, head_channels: int):
        super().__init__(nn.Conv2d(in_channels, head_channels, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(head_channels, 1, 1))


class MultiRFDiscriminator(nn.Module):
    def __init__(self, trunk: nn.Module, trunk_mode: str = "frozen", head_channels: int = 64,
                 lam: float = 1.0):
        super().__init__()
        if trunk_mode not in TRUNK_MODES:
            raise ValueError(f"trunk_mode must be one of {TRUNK_MODES}, got {trunk_mode!r}")
        lam = float(lam)
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam}")
        body = getattr(trunk, "body", trunk)  # a VAEEncoder, or its body directly
        channels = tuple(trunk.feature_channels)
        self.trunk_mode = trunk_mode
        self.lam = lam
        if trunk_mode == "frozen":
            self.__dict__["trunk"] = body  # shared but deliberately not a registered sub-module
        elif trunk_mode == "tied":
            # New module objects (own BN buffers) around the VAE's own Parameter objects.
            self.trunk = copy.deepcopy(body, memo={id(p): p for p in body.parameters()})
            self.trunk.requires_grad_(True)
        else:
            self.trunk = copy.deepcopy(body).requires_grad_(True)
        self.heads = nn.ModuleList(_Head(c, head_channels) for c in channels)

    def extra_repr(self) -> str:
        return f"trunk_mode={self.trunk_mode!r}, lam={self.lam}"

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's three feature levels for ``img``."""
        if self.trunk_mode != "frozen":
            return self.trunk(img)
        body, was_training = self.trunk, self.trunk.training
        body.eval()
        try:
            params = {name: p.detach() for name, p in body.named_parameters()}
            return functional_call(body, params, (img,))
        finally:
            body.train(was_training)

    def forward(self, img: torch.Tensor) -> DiscOutput:
        pairs = [patch_log_probs(head(f)) for head, f in zip(self.heads, self.features(img))]
        return combine_heads(torch.stack([p[0] for p in pairs], dim=1),
                             torch.stack([p[1] for p in pairs], dim=1), self.lam)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Tolerant of the trunk: "trunk." entries are ignored in frozen mode (the trunk is
        the VAE's), and when they are missing in tied/copy mode the current trunk weights are
        kept (with a warning). ``assign=True`` is refused in tied mode (it would untie)."""
        state_dict = dict(state_dict)
        trunk_keys = [k for k in state_dict if k.startswith("trunk.")]
        if self.trunk_mode == "frozen":
            for k in trunk_keys:
                del state_dict[k]
        elif not trunk_keys:
            warnings.warn(f"state dict has no trunk weights; keeping the current ones "
                          f"({self.trunk_mode} mode)", stacklevel=2)
            state_dict.update({f"trunk.{k}": v for k, v in self.trunk.state_dict().items()})
        if assign and self.trunk_mode == "tied":
            raise ValueError("assign=True would replace the tied trunk Parameters")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic (pix2pix's N-layer D) for the "regular discriminator" ablation.

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
