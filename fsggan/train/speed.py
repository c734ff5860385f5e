"""How fast the training steps run: the real Stage I / Stage II step functions on a fixed
random batch, wrapped and autocast as the training loops do, timed and FLOP-counted.

* :class:`StepSpec` (stage, batch, size, widths, identity network, amp, channels_last,
  compile) -> :func:`build_step`: a callable making one optimisation step - Stage I
  :func:`fsggan.train.vae.vae_step`; Stage II V(x), :func:`fsggan.train.gan.g_step` and
  :func:`fsggan.train.gan.d_step`, called as :func:`fsggan.train.gan.train_gan` calls them;
* :func:`seconds_per_step` (warm-up steps, then timed steps);
* :func:`flops_per_step` (``torch.utils.flop_counter.FlopCounterMode``: forward and
  backward, a multiply-add counts 2; optimiser updates and elementwise ops are not counted).

Used by ``benchmarks/train_throughput.py`` and ``scripts/gpu_check.py``; it measures the
networks and optimisers, not data loading. Identity networks have random weights (speed only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from fsggan.losses import GeneratorLoss, LossWeights
from fsggan.models import VAE, MultiRFDiscriminator, UNetGenerator

from .gan import d_step, g_step
from .runtime import Env, adam, autocast, make_scaler, wrap_model
from .vae import _Reconstruct, vae_step

__all__ = ["StepSpec", "build_step", "seconds_per_step", "flops_per_step"]


@dataclass(frozen=True)
class StepSpec:
    """One training step to measure. identity_net: an ``EMBEDDER_NAMES`` entry or None
    (Stage II without the identity term); amp: none | bf16 | fp16 (``train.amp``)."""
    stage: Literal["vae", "gan"]
    batch_size: int = 32
    image_size: int = 128
    vae_width: int = 32
    gen_width: int = 64
    head_width: int = 64
    identity_net: str | None = "lightcnn29v2"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False


def build_step(spec: StepSpec, env: Env, seed: int = 0) -> Callable[[], dict[str, torch.Tensor]]:
    """A callable that runs one optimisation step of ``spec`` on ``env.device`` and returns its
    losses ({term: detached scalar on the device}; Stage II: G's)."""
    torch.manual_seed(seed)
    dev, fmt = env.device, torch.channels_last if spec.channels_last else torch.contiguous_format
    x = torch.rand(spec.batch_size, 3, spec.image_size, spec.image_size, device=dev).mul(2).sub(1)
    x = x.contiguous(memory_format=fmt)
    y = torch.rand_like(x).mul(2).sub(1).contiguous(memory_format=fmt)
    wrap = dict(channels_last=spec.channels_last, compile=spec.compile)
    v = VAE(base_channels=spec.vae_width, image_size=spec.image_size)
    adam_args = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=0.0, device=dev)
    if spec.stage == "vae":
        net = wrap_model(_Reconstruct(v), env, **wrap)
        opt, scaler = adam(v.parameters(), **adam_args), make_scaler(env, spec.amp)

        def step() -> dict[str, torch.Tensor]:
            return vae_step(net, opt, scaler, x=x, y=y, cast=autocast(env, spec.amp))
        return step

    v.eval().requires_grad_(False).to(dev, memory_format=fmt)
    gen = UNetGenerator(base_channels=spec.gen_width)
    disc = MultiRFDiscriminator(trunk=v.encoder, trunk_mode="frozen", head_channels=spec.head_width)
    gen_net, disc_net = wrap_model(gen, env, **wrap), wrap_model(disc, env, **wrap)
    opt_g, opt_d = adam(gen.parameters(), **adam_args), adam(disc.parameters(), **adam_args)
    scaler_g, scaler_d = make_scaler(env, spec.amp), make_scaler(env, spec.amp)
    ident = None
    if spec.identity_net:
        from fsggan.models.identity import build_embedder

        ident = build_embedder(spec.identity_net, None).place(dev)
        if spec.channels_last:
            ident.to(memory_format=torch.channels_last)
    loss = GeneratorLoss(LossWeights(identity=50.0 if ident is not None else 0.0), ident)
    cast = autocast(env, spec.amp)

    def step() -> dict[str, torch.Tensor]:
        with torch.no_grad(), cast:
            g = v(x)
        losses, fake = g_step(gen_net, disc, opt_g, scaler_g, x=x, g=g, y=y, loss=loss, cast=cast)
        d_step(disc_net, opt_d, scaler_d, real=y, fake=fake, cast=cast)
        return losses
    return step


def _sync(env: Env) -> None:
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)


def seconds_per_step(step: Callable[[], None], env: Env, *, warmup: int = 1, steps: int = 3,
                     min_seconds: float = 0.0) -> float:
    """Mean wall time of one step: ``warmup`` untimed steps (compilation, cuDNN's
    algorithm search), then at least ``steps`` timed ones, more until ``min_seconds``."""
    for _ in range(warmup):
        step()
    _sync(env)
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        if n >= steps:
            _sync(env)
            if time.perf_counter() - t0 >= min_seconds:
                return (time.perf_counter() - t0) / n


def flops_per_step(step: Callable[[], None]) -> float:
    """FLOPs of one call of ``step`` (forward and backward passes of every network)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())
