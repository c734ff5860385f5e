"""Stage I of Algorithm 1: train the VAE V that maps an occluded face x to its facial
structure g = V(x) (paper Eq. 4: Gaussian NLL of the clean face + KL).

    fsggan-train-vae --config configs/vae.yaml [--set train.batch_size=32 ...]
    fsggan-train-vae --resume runs/vae                      # continue exactly
    torchrun --nproc_per_node 4 -m fsggan.cli.train_vae --config configs/vae.yaml   # multi-GPU

The run directory gets config.yaml, stats.jsonl, TensorBoard events, samples/*.png
(rows: occluded x, structure g, clean y) and checkpoints/{last,best}.pt; best.pt is
chosen on the validation identities (train.best_metric of g against the clean face).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict

import torch
from torch import nn

from fsggan.checkpoint import CHECKPOINT_VERSION, load_checkpoint
from fsggan.losses import vae_loss
from fsggan.models import VAE

from .config import TrainDataSection, OptimSection, TrainSection, TrainVAEConfig, VAEKwargs, VAELossSection
from .data import device_batches, setup_data
from .monitor import Housekeeping, StopSignal
from .runtime import Env, adam, autocast, lr_factor, make_scaler, set_lr, setup_env, wrap_model
from .state import already_done, check_start, check_weights, describe, prepare_run_dir, restore_checkpoint, seed_everything

__all__ = ["train_vae", "vae_step"]


class _Reconstruct(nn.Module):
    """DDP and torch.compile wrap ``forward``; Stage I trains ``reconstruct(x, sample=True)``."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor):
        return self.vae.reconstruct(x, sample=True)


def vae_step(net: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, x: torch.Tensor,
             y: torch.Tensor, kl_weight: float = 1.0, cast=None) -> dict[str, torch.Tensor]:
    """One VAE update (Eq. 4) on occluded faces ``x`` and clean targets ``y``.

    ``net(x)`` must return ``vae.reconstruct(x, sample=True)`` (see ``_Reconstruct``).
    Returns {"nll", "kl", "total"} as detached scalars.
    """
    with cast or contextlib.nullcontext():
        out = net(x)
    terms = vae_loss(out, y, kl_weight=kl_weight)
    opt.zero_grad(set_to_none=True)
    scaler.scale(terms["total"]).backward()
    scaler.step(opt)
    scaler.update()
    return {k: v.detach() for k, v in terms.items()}


def train_vae(
    *,
    vae: VAEKwargs,              # VAE constructor arguments (fsggan.models.VAE)
    data: TrainDataSection,            # faces, identity splits, occluders, loader workers, validation set
    loss: VAELossSection,         # kl_weight of Eq. 4
    optim: OptimSection,          # Adam: lr, betas, weight_decay
    train: TrainSection,          # steps, global batch, device, amp, logging / validation / checkpoint periods
    resume: str | None = None,   # checkpoint to continue from, exactly (None: fresh run)
) -> dict:
    """Train V; returns {"step", "run_dir", "best", "val", "interrupted"}."""
    cfg = TrainVAEConfig(vae=vae, data=data, loss=loss, optim=optim, train=train)
    with setup_env(train.device, cudnn_benchmark=train.cudnn_benchmark, tf32=train.tf32) as env:
        seed_everything(train.seed, env.rank)
        ckpt = load_checkpoint(resume, stage="vae", version=CHECKPOINT_VERSION, resumable=True,
                               prefer=("last.pt",)) if resume else None
        done = check_start(cfg, ckpt)  # nothing is written before this and the loading below succeed
        if done:
            check_weights(ckpt, {"vae": VAE(**asdict(vae))})  # complete, but its weights must fit too
            return already_done(done, ckpt, cfg, env)
        model, net, opt, scaler, house, batches, step, pos = _setup(cfg, ckpt, env, resumed=resume is not None)
        del ckpt

        # Training loop
        model.train()
        with StopSignal(verbose=env.is_main) as stop, house:
            while step < train.steps:
                epoch, index, b = next(batches)
                set_lr(opt, optim.lr * lr_factor(step, train.steps, optim.warmup_steps, optim.decay,
                                                 optim.min_lr_ratio))
                terms = vae_step(net, opt, scaler, x=b["occluded"], y=b["clean"], kl_weight=loss.kl_weight,
                                 cast=autocast(env, train.amp))
                step, pos = step + 1, (epoch, index + 1)
                if house(step, pos, {f"loss/{k}": v for k, v in terms.items()}, stop.requested):
                    break
        return house.result(step)


def _setup(cfg: TrainVAEConfig, ckpt: dict | None, env: Env, resumed: bool) -> tuple:
    """Stage I before its first step: data (faces at vae.image_size: cfg.data), V, its
    optimiser and loss scaler (restored when resuming), the run directory (written only
    now) and the housekeeping between steps. Returns (V, V as trained, optimiser, scaler,
    housekeeping, batches, step, (epoch, batch))."""
    train = cfg.train
    train_set, val_set, data_state, sampler, loader, val = setup_data(cfg.data, train, env=env, ckpt=ckpt)
    model = VAE(**asdict(cfg.vae))
    net = wrap_model(_Reconstruct(model), env, channels_last=train.channels_last, sync_bn=train.sync_bn,
                     compile=train.compile)
    opt = adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay,
               device=env.device)
    scaler = make_scaler(env, train.amp)
    states = {"models": {"vae": model}, "optimizers": {"vae": opt}, "scalers": {"vae": scaler}}
    step, pos, best = (0, (0, 0), {}) if ckpt is None else restore_checkpoint(ckpt, env=env, **states)
    run_dir = prepare_run_dir(cfg, env, resume_step=step if resumed else None)
    describe(run_dir, env, len(train_set), len(val_set), {"vae": sum(p.numel() for p in model.parameters())})

    @torch.no_grad()
    def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
        model.eval()
        with autocast(env, train.amp):
            g = model(x)
        model.train()
        return {"structure": g.float().clamp(-1, 1)}

    house = Housekeeping(cfg=cfg, env=env, run_dir=run_dir, **states, predict=predict, val=val,
                         best_key=f"val/structure_{train.best_metric}", best=best, step=step, extra=data_state)
    return model, net, opt, scaler, house, device_batches(loader, sampler, train_set, pos, cfg.data, train, env), step, pos
