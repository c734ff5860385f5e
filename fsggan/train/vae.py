"""Stage I of Algorithm 1: train the VAE V that maps an occluded face x to its facial
structure g = V(x) (paper Eq. 4: Gaussian NLL of the clean face + KL).

    fsggan-train-vae --config configs/vae.yaml [--set train.batch_size=32 ...]
    fsggan-train-vae --resume runs/vae                      # continue exactly
    torchrun --nproc_per_node 4 -m fsggan.cli.train_vae --config configs/vae.yaml   # multi-GPU

The run directory gets config.yaml, stats.jsonl, TensorBoard events, samples/*.png
(rows: occluded x, structure g, clean y) and checkpoints/{last,best}.pt; best.pt is
chosen on the validation identities (train.best_metric of g against the clean face).

:func:`train_vae` reads top to bottom: setup, then one loop - the step, then what falls on
it (scalars and sample grids, validation and checkpoints, :class:`fsggan.train.monitor.Monitor`).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from functools import partial

import torch
from torch import nn

from fsggan.checkpoint import CHECKPOINT_VERSION, load_checkpoint
from fsggan.losses import vae_loss
from fsggan.models import VAE

from .config import TrainDataSection, OptimSection, TrainSection, TrainVAEConfig, VAEKwargs, VAELossSection
from .data import device_batches, setup_data
from .monitor import Monitor
from .runtime import Env, StopSignal, adam, autocast, lr_factor, make_scaler, set_lr, setup_env, wrap_model
from .state import (already_done, check_start, check_weights, describe, prepare_run_dir,
                    restore_checkpoint, seed_everything)

__all__ = ["train_vae", "vae_step"]


def train_vae(
    *,
    vae: VAEKwargs,               # VAE constructor arguments (fsggan.models.VAE)
    data: TrainDataSection,       # faces, identity splits, occluders, loader workers, validation set
    loss: VAELossSection,         # kl_weight of Eq. 4
    optim: OptimSection,          # Adam: lr, betas, weight_decay
    train: TrainSection,          # steps, global batch, device, amp, logging / validation / checkpoint periods
    resume: str | None = None,    # checkpoint to continue from, exactly (None: fresh run)
) -> dict:
    """Train V; returns {"step", "run_dir", "best", "val", "interrupted"}."""
    cfg = TrainVAEConfig(vae=vae, data=data, loss=loss, optim=optim, train=train)
    with setup_env(train.device, cudnn_benchmark=train.cudnn_benchmark, tf32=train.tf32) as env:
        # Seeds, and the checkpoint to continue from
        seed_everything(train.seed, env.rank)
        ckpt = load_checkpoint(resume, stage="vae", version=CHECKPOINT_VERSION, resumable=True,
                               prefer=("last.pt",)) if resume else None
        # May the run start? A complete one stops here, writing nothing
        done = check_start(cfg, ckpt)
        if done:
            check_weights(ckpt, {"vae": VAE(**asdict(vae))})  # complete, but its weights must fit too
            return already_done(done, ckpt, cfg, env)
        # Data: training faces at vae.image_size (occluded as they are drawn) and the fixed validation set
        train_set, val_set, data_state, sampler, loader, val = setup_data(cfg.data, train, env=env, ckpt=ckpt)
        # V, its optimiser and loss scaler; restored when resuming
        model = VAE(**asdict(cfg.vae))
        net = wrap_model(_Reconstruct(model), env, channels_last=train.channels_last, sync_bn=train.sync_bn,
                         compile=train.compile)
        opt = adam(model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay,
                   device=env.device)
        scaler = make_scaler(env, train.amp)
        states = {"models": {"vae": model}, "optimizers": {"vae": opt}, "scalers": {"vae": scaler}}
        step, pos, best = (0, (0, 0), {}) if ckpt is None else restore_checkpoint(ckpt, env=env, **states)
        del ckpt
        # The run folder, written only now that the start is known to succeed, and what watches the run
        run_dir = prepare_run_dir(cfg, env, resume_step=step if resume is not None else None)
        describe(run_dir, env, len(train_set), len(val_set), {"vae": sum(p.numel() for p in model.parameters())})
        predict = partial(_structure, model, env, train.amp)
        monitor = Monitor(cfg=cfg, env=env, run_dir=run_dir, **states, predict=predict, val=val,
                          best_key=f"val/structure_{train.best_metric}", best=best, step=step, extra=data_state)
        batches = device_batches(loader, sampler, train_set, pos, cfg.data, train, env)  # from the resume position

        # Training loop
        model.train()
        with StopSignal(verbose=env.is_main) as stop, monitor:
            while step < train.steps:
                # The batch, and the learning rate of this step (warm-up, decay)
                epoch, index, b = next(batches)
                set_lr(opt, optim.lr * lr_factor(step, train.steps, optim.warmup_steps, optim.decay,
                                                 optim.min_lr_ratio))
                # One step: Eq. 4 on the occluded faces against the clean ones
                terms = vae_step(net, opt, scaler, x=b["occluded"], y=b["clean"], kl_weight=loss.kl_weight,
                                 cast=autocast(env, train.amp))
                step, pos = step + 1, (epoch, index + 1)

                # What falls on this step; the loss terms stay on the device until one of these needs them
                due = monitor.due(step, {f"loss/{k}": v for k, v in terms.items()}, stop.requested)
                # Scalars (loss/*, images/s, learning rate); sample grid (occluded, V's structure, clean)
                monitor.log(step, due)
                # Validation (best.pt on a better val/structure_<best_metric>), then last.pt and snapshots
                monitor.validate_and_save(step, pos, due)
                if due.stop:
                    break
        return monitor.result(step)


# The step --------------------------------------------------------------------------------

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


class _Reconstruct(nn.Module):
    """DDP and torch.compile wrap ``forward``; Stage I trains ``reconstruct(x, sample=True)``."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor):
        return self.vae.reconstruct(x, sample=True)


@torch.no_grad()
def _structure(model: VAE, env: Env, amp: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """V's structure g = V(x) in eval mode: what validation and the sample grids show."""
    model.eval()
    with autocast(env, amp):
        g = model(x)
    model.train()
    return {"structure": g.float().clamp(-1, 1)}
