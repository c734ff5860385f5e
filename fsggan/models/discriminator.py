"""The multi-receptive-field D of FSG-GAN (trained with paper Eq. 11) and the output type
every critic returns. The paper's "regular discriminator" ablation is the whole-image critic
in :mod:`fsggan.models.global_discriminator`; a PatchGAN critic is in
:mod:`fsggan.models.patch_discriminator`.

Multi-receptive-field D. Its feature extractor IS the VAE encoder (the paper shares
weights between V's encoder and D), and one shallow head reads each of the encoder levels
listed in ``levels``, whose receptive fields differ:

    level 1, 2, 3: V's encoder body (H/2, H/4, H/8); patch heads,
                   conv3x3 -> swish -> per-patch linear unit (1x1 conv to one logit),
                   N_i x N_i patch responses, each patch seeing 17 / 41 / 89 px
    level 4:       V's encoder's last down-sampling (H/16, the input of its latent head);
                   the whole-face head, conv3x3 -> swish -> one linear unit over the whole
                   H/16 map (a single "patch", N = 1): its logit depends on every pixel

(the fields are for V's layout, 3x3 convolutions throughout; ``tests/test_models.py``
measures them by back-propagation.) Without level 4 nothing judges the face as a whole:
a 3x3 patch head on the H/16 map would still see only 121 px of a 128 px face, hence the
linear unit over the whole map there - the paper's "global consistency" next to the
patch heads' "local details". Default ``levels=(1, 2, 3, 4)``; ``(1, 2, 3)`` keeps the
patch heads only.

Head i averages its patch sigmoids into d_i; the output is

    d_u = sum_i w_i d_i,   w = softmax(lam * d)      (per sample, differentiable)

lam = 0 gives the arithmetic mean of the d_i, lam -> inf their maximum (paper: lam = 1).
Everything is computed in log space, so log D and log(1 - D) stay finite when patch
logits saturate:

    log d_i     = logsumexp_patches(logsigmoid(l))  - log(N_i^2)
    log(1 - d_i) = logsumexp_patches(logsigmoid(-l)) - log(N_i^2)
    log d_u     = logsumexp_i(log w_i + log d_i)
    log(1 - d_u) = logsumexp_i(log w_i + log(1 - d_i))   (since sum_i w_i = 1)

How D holds the encoder (``trunk_mode``; docs/design.md, Decisions). The trunk is V's encoder
body (``trunk``) and, when level 4 is used, its last down-sampling unit (``trunk_down``);
the latent head (the mu/logvar projection) plays no part in D.

* ``"frozen"`` (default): the VAE encoder modules themselves, with their current weights;
  D's loss never updates them. They are NOT registered as sub-modules:
  ``disc.parameters()`` and ``disc.state_dict()`` hold the heads only, ``disc.train()``
  does not touch them, and ``disc.to(device)`` does not move them (move the VAE as well).
  They always run in eval mode (BN running statistics are used, never updated) and with
  detached weights, so gradients reach the input image (and through it G) but never the
  encoder, and the VAE's ``requires_grad`` flags are left as they were.
* ``"tied"``: the very same Parameter objects AND BatchNorm buffers as the VAE encoder,
  trainable and updated by D's loss (they appear in ``disc.parameters()`` and, under
  ``trunk.`` / ``trunk_down.``, in the state dict; construction sets
  ``requires_grad=True`` on them). Only the module objects are D's own, so ``disc.train()``
  leaves the VAE's train/eval mode alone. D in train mode normalises with batch
  statistics and updates the shared running statistics, so V - which runs in eval mode -
  always normalises with statistics of its current weights (an exponential average over
  D's recent inputs: clean faces and G's outputs), never with the Stage I statistics of
  weights that no longer exist. Conversions (``.to``, ``.double()``, ...) keep the buffers
  shared: converting D converts V's buffers too, as it does V's (shared) Parameters.
* ``"copy"``: a deep copy initialised from the VAE encoder and trained on its own.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

__all__ = ["DiscOutput", "MultiRFDiscriminator", "TRUNK_MODES", "LEVELS"]

TRUNK_MODES = ("frozen", "tied", "copy")
LEVELS = (1, 2, 3, 4)   # H/2, H/4, H/8 (V's encoder body), H/16 (its last down-sampling)


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
    """Patch head: conv3x3 -> swish -> per-patch linear unit (1x1 conv to one logit per patch)."""

    def __init__(self, in_channels: int, head_channels: int):
        super().__init__(nn.Conv2d(in_channels, head_channels, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(head_channels, 1, 1))


class _WholeFaceHead(nn.Sequential):
    """Whole-face head: conv3x3 -> swish -> one linear unit over the whole (size x size) map.

    Returns (B, 1, 1, 1): a single patch that covers the face.
    """

    def __init__(self, in_channels: int, head_channels: int, size: int):
        super().__init__(nn.Conv2d(in_channels, head_channels, 3, padding=1), nn.SiLU(), nn.Flatten(),
                         nn.Linear(head_channels * size * size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).view(-1, 1, 1, 1)


def _run_frozen(module: nn.Module, x: torch.Tensor):
    """``module(x)`` in eval mode with detached weights (no update, no gradient to them)."""
    was_training = module.training
    module.eval()
    try:
        params = {name: p.detach() for name, p in module.named_parameters()}
        return functional_call(module, params, (x,))
    finally:
        module.train(was_training)


class MultiRFDiscriminator(nn.Module):
    """The multi-receptive-field D (module docstring). ``trunk``: V's encoder (a bare
    ``VAEEncoder.body`` serves levels 1-3 only); ``trunk_mode``: frozen | tied | copy;
    ``head_channels``: width of each head's conv; ``lam``: softmax temperature of the fusion;
    ``levels``: which encoder levels get a head (4 = the whole-face head)."""

    def __init__(self, trunk: nn.Module, trunk_mode: str = "frozen", head_channels: int = 64,
                 lam: float = 1.0, levels: tuple[int, ...] = (1, 2, 3, 4)):
        super().__init__()
        if trunk_mode not in TRUNK_MODES:
            raise ValueError(f"trunk_mode must be one of {TRUNK_MODES}, got {trunk_mode!r}")
        lam = float(lam)
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam}")
        levels = tuple(int(v) for v in levels)
        if not levels or levels != tuple(sorted(set(levels))) or not set(levels) <= set(LEVELS):
            raise ValueError(f"levels must be distinct values from {LEVELS} in increasing order, got {levels}")
        body = getattr(trunk, "body", trunk)  # a VAEEncoder, or its body directly
        channels = tuple(trunk.feature_channels)
        down, size = None, None
        if 4 in levels:
            down = getattr(trunk, "down", None)
            if down is None or not hasattr(trunk, "image_size"):
                raise ValueError("level 4 (the whole-face head) reads the VAE encoder's last down-sampling: "
                                 "pass trunk=vae.encoder, or leave 4 out of levels")
            channels += (down[0].out_channels,)
            size = trunk.image_size // 16
        self.trunk_mode, self.lam, self.levels = trunk_mode, lam, levels
        self.__dict__["_sources"] = {"trunk": body, "trunk_down": down}
        for name, src in self._sources.items():
            if src is None or trunk_mode == "frozen":
                self.__dict__[name] = src  # shared but deliberately not a registered sub-module
            elif trunk_mode == "tied":
                # New module objects around the VAE's own Parameters and BatchNorm buffers.
                shared = {id(t): t for t in itertools.chain(src.parameters(), src.buffers())}
                setattr(self, name, copy.deepcopy(src, memo=shared).requires_grad_(True))
            else:
                setattr(self, name, copy.deepcopy(src).requires_grad_(True))
        self.heads = nn.ModuleList(
            _WholeFaceHead(channels[level - 1], head_channels, size) if level == 4
            else _Head(channels[level - 1], head_channels) for level in levels)

    def extra_repr(self) -> str:
        return f"trunk_mode={self.trunk_mode!r}, lam={self.lam}, levels={self.levels}"

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's feature maps at ``levels``, shallow to deep."""
        if self.trunk_mode == "frozen":
            feats = list(_run_frozen(self.trunk, img))
            if self.trunk_down is not None:
                feats.append(_run_frozen(self.trunk_down, feats[-1]))
        else:
            feats = list(self.trunk(img))
            if self.trunk_down is not None:
                feats.append(self.trunk_down(feats[-1]))
        return [feats[level - 1] for level in self.levels]

    def head_logits(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Per head, its patch logits (B, 1, N_i, N_i); N = 1 for the whole-face head."""
        return [head(f) for head, f in zip(self.heads, self.features(img))]

    def forward(self, img: torch.Tensor) -> DiscOutput:
        pairs = [patch_log_probs(logits) for logits in self.head_logits(img)]
        return combine_heads(torch.stack([p[0] for p in pairs], dim=1),
                             torch.stack([p[1] for p in pairs], dim=1), self.lam)

    def _apply(self, fn, recurse: bool = True):
        # Module conversions replace buffers by new tensors; share V's converted ones again.
        super()._apply(fn, recurse)
        if self.trunk_mode == "tied":
            for name, src in self._sources.items():
                if src is None:
                    continue
                for own, theirs in zip(getattr(self, name).modules(), src.modules()):
                    for key, buf in theirs._buffers.items():
                        if buf is not None:
                            theirs._buffers[key] = own._buffers[key] = fn(buf)
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Tolerant of the trunk: trunk entries are ignored in frozen mode (the trunk is the
        VAE's), and when they are missing in tied/copy mode the current trunk weights are
        kept (with a warning). ``assign=True`` is refused in tied mode (it would untie).
        A state dict with another number of heads fails naming ``levels`` (checkpoints saved
        before the whole-face head have three heads: ``levels=(1, 2, 3)``)."""
        state_dict = dict(state_dict)
        heads = {int(k.split(".")[1]) for k in state_dict if k.startswith("heads.")}
        if strict and heads and max(heads) + 1 != len(self.heads):
            raise RuntimeError(f"state dict has {max(heads) + 1} discriminator heads, this D has "
                               f"{len(self.heads)} (levels={self.levels}); a D saved before the whole-face "
                               f"head (3 heads) loads with levels=(1, 2, 3), i.e. discriminator.levels: [1, 2, 3]")
        for name in ("trunk", "trunk_down"):
            keys = [k for k in state_dict if k.startswith(name + ".")]
            if self.trunk_mode == "frozen":
                for k in keys:
                    del state_dict[k]
            elif getattr(self, name) is not None and not keys:
                warnings.warn(f"state dict has no {name} weights; keeping the current ones "
                              f"({self.trunk_mode} mode)", stacklevel=2)
                state_dict.update({f"{name}.{k}": v for k, v in getattr(self, name).state_dict().items()})
        if assign and self.trunk_mode == "tied":
            raise ValueError("assign=True would replace the tied trunk Parameters")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
