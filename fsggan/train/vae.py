"""Stage I of Algorithm 1: train the VAE V that maps an occluded face x to its facial
structure g = V(x) (paper Eq. 4: Gaussian NLL of the clean face + KL).

    fsggan-train-vae --config configs/vae.yaml [--set train.batch_size=32 ...]
    fsggan-train-vae --resume runs/vae                      # continue exactly
    torchrun --nproc_per_node 4 -m fsggan.train.vae --config configs/vae.yaml   # multi-GPU

The run directory gets config.yaml, stats.jsonl, TensorBoard events, samples/*.png
(rows: occluded x, structure g, clean y) and checkpoints/{last,best}.pt; best.pt is
chosen on the validation identities (train.best_metric of g against the clean face).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict

import torch
from torch import nn

from fsggan.losses import vae_loss
from fsggan.models import VAE

from .common import (Housekeeping, StopSignal, autocast, check_finite, describe, epoch_batches, load_checkpoint,
                     make_scaler, occlude_batch, prepare_run_dir, restore_checkpoint, run_main, seed_everything,
                     setup_data, setup_env, teardown_env, to_device, wrap_model)
from .config import DataConfig, OptimConfig, TrainConfig, TrainVAEConfig, VAEKwargs, VAELossConfig

__all__ = ["train_vae", "vae_step", "main"]


class _Reconstruct(nn.Module):
    """DDP and torch.compile wrap ``forward``; Stage I trains ``reconstruct(x, sample=True)``."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor):
        return self.vae.reconstruct(x, sample=True)


def vae_step(net: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, x: torch.Tensor,
             y: torch.Tensor, kl_weight: float = 1.0, amp=None) -> dict[str, torch.Tensor]:
    """One VAE update (Eq. 4) on occluded faces ``x`` and clean targets ``y``.

    ``net(x)`` must return ``vae.reconstruct(x, sample=True)`` (see ``_Reconstruct``).
    Returns {"nll", "kl", "total"} as detached scalars.
    """
    with amp or contextlib.nullcontext():
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
    data: DataConfig,            # faces, identity splits, occluders, loader workers, validation set
    loss: VAELossConfig,         # kl_weight of Eq. 4
    optim: OptimConfig,          # Adam: lr, betas, weight_decay
    train: TrainConfig,          # steps, global batch, device, amp, logging / validation / checkpoint periods
    resume: str | None = None,   # checkpoint to continue from, exactly (None: fresh run)
) -> dict:
    """Train V; returns {"step", "run_dir", "best", "val", "interrupted"}."""
    cfg = TrainVAEConfig(vae=vae, data=data, loss=loss, optim=optim, train=train)

    # Processes, device, seeds
    env = setup_env(train.device)
    try:
        seed_everything(train.seed, env.rank)
        ckpt = load_checkpoint(resume) if resume else None
        run_dir = prepare_run_dir(cfg, env, resuming=ckpt is not None)

        # Data: training shards, fixed validation set
        train_set, val_set, data_config, sampler, loader, val = setup_data(
            data, train, image_size=vae.image_size, env=env, run_dir=run_dir, ckpt=ckpt)

        # Model, optimiser, loss scaler
        model = VAE(**asdict(vae))
        net = wrap_model(_Reconstruct(model), env, channels_last=train.channels_last, sync_bn=train.sync_bn,
                         compile=train.compile)
        opt = torch.optim.Adam(model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        scaler = make_scaler(env, train.amp)
        models, optimizers, scalers = {"vae": model}, {"vae": opt}, {"vae": scaler}

        # Resume
        step, pos, best = 0, (0, 0), {}
        if ckpt is not None:
            step, pos, best = restore_checkpoint(ckpt, models=models, optimizers=optimizers, scalers=scalers,
                                                 env=env)
            del ckpt
        describe(run_dir, env, len(train_set), len(val_set), {"vae": sum(p.numel() for p in model.parameters())})

        @torch.no_grad()
        def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
            model.eval()
            with autocast(env, train.amp):
                g = model(x)
            model.train()
            return {"structure": g.float().clamp(-1, 1)}

        house = Housekeeping(cfg=cfg, env=env, run_dir=run_dir, models=models, optimizers=optimizers,
                             scalers=scalers, predict=predict, val=val, best_key=f"val/structure_{train.best_metric}",
                             best=best, step=step, data_config=data_config)

        # Training loop
        batches = epoch_batches(loader, sampler, train_set, *pos)
        model.train()
        interrupted = False
        with StopSignal(verbose=env.is_main) as stop, house:
            while step < train.steps:
                epoch, index, batch = next(batches)
                b = to_device(batch, env, train.channels_last)
                if data.occlude_on == "device":
                    b = occlude_batch(train_set, b, epoch)
                terms = vae_step(net, opt, scaler, x=b["occluded"], y=b["clean"], kl_weight=loss.kl_weight,
                                 amp=autocast(env, train.amp))
                values = check_finite({f"loss/{k}": v for k, v in terms.items()}, step + 1, run_dir)
                step, pos = step + 1, (epoch, index + 1)
                if house(step, pos, values, stop.requested):
                    interrupted = step < train.steps
                    break
        return {"step": step, "run_dir": str(run_dir), "best": house.best, "val": house.last_val,
                "interrupted": interrupted}
    finally:
        teardown_env(env)


def main(argv=None) -> int:
    """``fsggan-train-vae``: parse the command line and call :func:`train_vae`."""
    return run_main(argv, TrainVAEConfig, train_vae, prog="fsggan-train-vae", doc=__doc__,
                    default_config="configs/vae.yaml")


if __name__ == "__main__":  # torchrun -m fsggan.train.vae ...
    raise SystemExit(main())
