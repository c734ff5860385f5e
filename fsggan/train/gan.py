"""Stage II of Algorithm 1: with V frozen, alternate generator and discriminator updates.

    fsggan-train-gan --config configs/gan.yaml [--set gan.vae_checkpoint=runs/vae/checkpoints/best.pt]
    fsggan-train-gan --config configs/ablations/no_hdc.yaml     # a layer over configs/gan.yaml
    fsggan-train-gan --resume runs/gan                      # continue exactly
    torchrun --nproc_per_node 4 -m fsggan.cli.train_gan --config configs/gan.yaml   # multi-GPU

Generator loss (paper Eq. 8), with F the frozen identity network:

    L_G = 100 * |y - G(x, g)|_1 + 50 * (1 - cos(F(y), F(G(x, g)))) + 1 * (-log D(G(x, g)))  [+ tv * TV]

Discriminator loss (Eq. 11): L_D = -log D(y) - log(1 - D(G(x, g))).

Each iteration (BasicSR order) runs :func:`g_step` - D's parameters do not require grad,
but the adversarial gradient flows through D into G - then :func:`d_step` on the same
G(x, g), detached. g = V(x) is computed without gradient: V is frozen (eval mode,
requires_grad False). D's feature extractor is V's encoder (``discriminator.trunk_mode``):

* frozen (default): V's encoder weights as they are; D trains its heads only.
* tied: the SAME Parameters and BatchNorm buffers as V's encoder, and D's optimiser
  updates them. V's encoder therefore changes during Stage II, so g = V(x) drifts away
  from what Stage I trained (always normalised with the running statistics of the
  current weights, which D's train-mode passes keep up to date); G learns on the drifting
  g. The Stage II checkpoint stores V ("vae") as it is at that step, which is what G must
  be used with.
* copy: a copy of V's encoder, trained by D alone; V does not change.

``gan.d_arch: global`` replaces D by DeepFill's whole-image critic (the paper's "regular D"
ablation), ``gan.d_arch: patch`` by a PatchGAN critic.
Checkpoints hold models {"generator", "discriminator", "vae"}; config["vae"] are V's
constructor arguments, copied from the Stage I checkpoint.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, replace

import torch
from torch import nn

from fsggan.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint, load_state
from fsggan.config import ConfigError, from_dict, to_dict
from fsggan.losses import (LossWeights, discriminator_loss, gaussian_blur, generator_adversarial_loss,
                           identity_loss, mask_loss, masked_pixel_loss, pixel_loss, random_views,
                           total_variation)
from fsggan.models import VAE, GlobalDiscriminator, MultiRFDiscriminator, PatchDiscriminator, UNetGenerator

from .batches import device_batches, setup_data
from .config import (DataConfig, GANConfig, GANLossConfig, GeneratorKwargs, GlobalKwargs, MultiRFKwargs,
                     OptimConfig, PatchKwargs, TrainConfig, TrainGANConfig, VAEKwargs)
from .ema import EMA
from .housekeeping import Housekeeping, StopSignal, check_finite, describe, prepare_run_dir, restore_checkpoint
from .resume import already_done, check_start, check_weights, located
from .runtime import Env, TrainingError, autocast, make_scaler, seed_everything, setup_env, wrap_model
from .schedule import lr_factor, ramp, set_lr

__all__ = ["train_gan", "g_step", "d_step", "build_identity_net"]


def g_step(gen: nn.Module, disc: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *,
           x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, weights: LossWeights,
           identity_net: nn.Module | None = None, amp=None, mask: torch.Tensor | None = None,
           identity_feat: torch.Tensor | None = None, identity_blur: float = 0.0,
           identity_views: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One generator update (Eq. 8). Returns ({term: detached scalar}, G(x, g)).

    D is held fixed - its parameters stop requiring grad for the step - but it stays in
    the graph, so -log D(G(x, g)) sends its gradient to G. Pass D itself, not its DDP
    wrapper (DDP would wait for D gradients that this step never makes).
    ``mask`` (B, 1, H, W), the synthesis mask, is needed by the terms beyond the paper
    (``weights.pixel_hole``, ``weights.mask``); ``identity_feat`` = F(y) when already known;
    ``identity_blur`` > 0 compares F on Gaussian-blurred faces (sigma in pixels);
    ``identity_views`` on the same random view of both faces (``losses.random_views``).
    """
    if (weights.pixel_hole or weights.mask) and mask is None:
        raise ValueError("loss.pixel_hole and loss.mask need the occlusion mask of the batch")
    disc.requires_grad_(False)
    with amp or contextlib.nullcontext():
        fake, pred_mask = gen(x, g, return_mask=True)
        terms = {"pixel": pixel_loss(y, fake)}
        if weights.pixel_hole:
            terms["pixel_hole"] = masked_pixel_loss(y, fake, mask)
        if weights.mask:
            if pred_mask is None:
                raise ValueError("loss.mask needs generator.output: blend (a predicted occlusion map)")
            terms["mask"] = mask_loss(pred_mask, mask)
        if identity_net is not None and weights.identity:
            with _identity_precision(y):
                real_f, fake_f = gaussian_blur(y.float(), identity_blur), gaussian_blur(fake.float(), identity_blur)
                if identity_views:
                    real_f, fake_f = random_views(real_f, fake_f)
                    identity_feat = None
                with torch.no_grad():
                    feat_real = identity_net(real_f) if identity_feat is None else identity_feat
                feat_fake = identity_net(fake_f)
            terms["identity"] = identity_loss(feat_real, feat_fake)
        if weights.adversarial:
            terms["adversarial"] = generator_adversarial_loss(disc(fake).log_prob)
        if weights.tv:
            terms["tv"] = total_variation(fake)
        total = sum(getattr(weights, k) * v.float() for k, v in terms.items())
    opt.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(opt)
    scaler.update()
    disc.requires_grad_(True)
    terms["total"] = total
    return {k: v.detach() for k, v in terms.items()}, fake


def _identity_precision(t: torch.Tensor):
    """On CPU F runs in float32 even under bf16 autocast: MobileFaceNet's depthwise
    convolutions and PReLUs are slower in bf16 there (measured: fwd + bwd of a batch of 16,
    3.3-5.2 s in bf16 against 1.7-3.1 s in fp32, 2 threads; docs/experiments.md)."""
    return torch.autocast("cpu", enabled=False) if t.device.type == "cpu" else contextlib.nullcontext()


def d_step(disc: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *,
           real: torch.Tensor, fake: torch.Tensor, amp=None) -> dict[str, torch.Tensor]:
    """One discriminator update (Eq. 11) on clean faces and detached G outputs.

    Returns {"loss", "real", "fake", "real_d{i}", "fake_d{i}", "real_w{i}", "fake_w{i}"}:
    batch means of D's output, of each head's d_i and of its softmax weight w_i.
    """
    with amp or contextlib.nullcontext():
        out_real = disc(real)
        out_fake = disc(fake.detach())
        loss = discriminator_loss(out_real.log_prob, out_fake.log_one_minus_prob)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    terms = {"loss": loss, "real": out_real.prob.mean(), "fake": out_fake.prob.mean()}
    for name, out in (("real", out_real), ("fake", out_fake)):
        for i, (d, w) in enumerate(zip(out.head_probs.mean(0), out.weights.mean(0)), start=1):
            terms[f"{name}_d{i}"] = d
            terms[f"{name}_w{i}"] = w
    return {k: v.detach() for k, v in terms.items()}


def build_identity_net(loss: GANLossConfig, env: Env, channels_last: bool = False) -> nn.Module | None:
    """The frozen face-recognition network F of the identity loss, or None when
    ``loss.identity`` is 0. A missing weights file stops the run here (WeightsError names
    the file and where to download the official weights). ``channels_last``
    (``train.channels_last``): F's weights in NHWC too (on a CPU they always are)."""
    if not loss.identity:
        return None
    from fsggan.models.identity import build_embedder

    # An unset path is reported like a missing file, so the message says where to get it.
    weights = loss.identity_weights or "<loss.identity_weights is not set>"
    net = build_embedder(loss.identity_net, weights).place(env.device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def train_gan(
    *,
    gan: GANConfig,                          # vae_checkpoint (Stage I), d_arch: multi_rf | global | patch
    vae: VAEKwargs,                          # replaced by the Stage I checkpoint's VAE arguments
    generator: GeneratorKwargs,              # UNetGenerator constructor arguments
    discriminator: MultiRFKwargs,            # MultiRFDiscriminator arguments (trunk_mode, head_channels, lam, levels)
    global_discriminator: GlobalKwargs,      # GlobalDiscriminator arguments (d_arch: global, the paper's "regular D")
    patch_discriminator: PatchKwargs,        # PatchDiscriminator arguments (d_arch: patch)
    data: DataConfig,                        # faces, identity splits, occluders, workers, validation set
    loss: GANLossConfig,                     # Eq. 8 weights; identity network and its weights file
    optim: OptimConfig,                      # Adam for G and D (lr_d: D's own learning rate)
    train: TrainConfig,                      # steps, global batch, device, amp, periods
    resume: str | None = None,               # Stage II checkpoint to continue from, exactly
) -> dict:
    """Train G and D against the frozen V; returns {"step", "run_dir", "best", "val", "interrupted"}."""
    # Processes, device, seeds
    with setup_env(train.device, cudnn_benchmark=train.cudnn_benchmark, tf32=train.tf32) as env:
        seed_everything(train.seed, env.rank)
        ckpt = load_checkpoint(resume, stage="gan", version=CHECKPOINT_VERSION, resumable=True,
                               prefer=("last.pt",)) if resume else None

        # V from Stage I (or, when resuming, V as this run left it), frozen
        source = ckpt if ckpt is not None else _load_stage1(gan.vae_checkpoint)
        if vae != VAEKwargs() and asdict(vae) != source["config"]["vae"]:
            warnings.warn("the vae section is ignored in Stage II: V is rebuilt from the Stage I checkpoint",
                          stacklevel=2)
        vae = VAEKwargs(**source["config"]["vae"])
        v_net = VAE(**asdict(vae))
        load_state(v_net, source, "vae", config=source["config"]["vae"])
        v_net.eval().requires_grad_(False).to(env.device)
        if train.channels_last:
            v_net.to(memory_format=torch.channels_last)
        try:  # the options that depend on V's size are checked again with V's own
            cfg = TrainGANConfig(gan=gan, vae=vae, generator=generator, discriminator=discriminator,
                                 global_discriminator=global_discriminator, patch_discriminator=patch_discriminator,
                                 data=data, loss=loss, optim=optim, train=train)
        except ValueError as exc:
            raise ConfigError(f"{exc} (V of {source['path']}: {vae})") from None
        done = check_start(cfg, ckpt)  # nothing is written before this and the loading below succeed
        if done:  # complete, but its weights must fit the config too
            check_weights(ckpt, {"generator": UNetGenerator(**asdict(generator)), "discriminator": _build_d(cfg, v_net),
                                 **({"generator_ema": UNetGenerator(**asdict(generator))} if train.ema else {})})
            return already_done(done, ckpt, cfg, env)
        if ckpt is not None:  # relative to the directory the run started from, when it is there
            loss = replace(loss, identity_weights=located(loss.identity_weights, ckpt.get("origin")))
        identity_net = build_identity_net(loss, env, train.channels_last)

        # Data: training shards, fixed validation set (faces at V's image_size: cfg.data)
        train_set, val_set, data_state, sampler, loader, val = setup_data(cfg.data, train, env=env, ckpt=ckpt)

        # G and D (D's feature extractor is V's encoder: one line, trunk_mode says how)
        gen = UNetGenerator(**asdict(generator))
        if gan.init_generator and ckpt is None:
            _init_generator(gen, gan.init_generator, asdict(generator))
        disc = _build_d(cfg, v_net)
        wrap = dict(channels_last=train.channels_last, sync_bn=train.sync_bn, compile=train.compile)
        gen_net, disc_net = wrap_model(gen, env, **wrap), wrap_model(disc, env, **wrap)
        betas, wd = optim.betas, optim.weight_decay
        opt_g = torch.optim.Adam(gen.parameters(), lr=optim.lr, betas=betas, weight_decay=wd)
        opt_d = torch.optim.Adam(disc.parameters(), lr=optim.lr_d or optim.lr, betas=betas, weight_decay=wd)
        scaler_g, scaler_d = make_scaler(env, train.amp), make_scaler(env, train.amp)
        ema = EMA(gen, train.ema) if train.ema else None   # beyond the paper: averaged G for val/inference
        models = {"vae": v_net, "generator": gen, "discriminator": disc,
                  **({"generator_ema": ema.module} if ema else {})}
        optimizers, scalers = {"generator": opt_g, "discriminator": opt_d}, {"generator": scaler_g,
                                                                            "discriminator": scaler_d}

        # Resume
        step, pos, best = 0, (0, 0), {}
        if ckpt is not None:
            step, pos, best = restore_checkpoint(ckpt, models=models, optimizers=optimizers, scalers=scalers,
                                                 env=env)
        del ckpt, source
        run_dir = prepare_run_dir(cfg, env, resume_step=step if resume else None)
        describe(run_dir, env, len(train_set), len(val_set),
                 {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()})

        @torch.no_grad()
        def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
            net = ema.module if ema else gen
            net.eval()
            with autocast(env, train.amp):
                g = v_net(x)
                out = net(x, g)
            gen.train()
            return {"structure": g.float().clamp(-1, 1), "output": out.float().clamp(-1, 1)}

        house = Housekeeping(cfg=cfg, env=env, run_dir=run_dir, models=models, optimizers=optimizers,
                             scalers=scalers, predict=predict, val=val, best_key=f"val/output_{train.best_metric}",
                             best=best, step=step, extra=data_state, judges=validation_judges(loss, identity_net, env))

        # Training loop
        batches = device_batches(loader, sampler, train_set, pos, data, train, env)
        gen.train()
        disc.train()
        with StopSignal(verbose=env.is_main) as stop, house:
            while step < train.steps:
                epoch, index, b = next(batches)
                x, y = b["occluded"], b["clean"]
                factor = lr_factor(step, train.steps, optim.warmup_steps, optim.decay, optim.min_lr_ratio)
                set_lr(opt_g, optim.lr * factor)
                set_lr(opt_d, (optim.lr_d or optim.lr) * factor)
                with torch.no_grad(), autocast(env, train.amp):
                    g = v_net(x)
                weights = replace(loss, identity=loss.identity * ramp(step, loss.identity_ramp))
                g_terms, fake = g_step(gen_net, disc, opt_g, scaler_g, x=x, g=g, y=y, weights=weights,
                                       identity_net=identity_net, amp=autocast(env, train.amp), mask=b.get("mask"),
                                       identity_blur=loss.identity_blur, identity_views=loss.identity_views)
                d_terms = d_step(disc_net, opt_d, scaler_d, real=y, fake=fake, amp=autocast(env, train.amp))
                if ema:
                    ema.update(gen)
                values = check_finite({**{f"g/{k}": v for k, v in g_terms.items()},
                                       **{f"d/{k}": v for k, v in d_terms.items()}}, step + 1, run_dir)
                step, pos = step + 1, (epoch, index + 1)
                if house(step, pos, values, stop.requested):
                    break
        return house.result(step)


def validation_judges(loss: GANLossConfig, identity_net: nn.Module | None, env: Env) -> dict[str, nn.Module]:
    """The recognisers whose output-to-clean cosine validation logs: the identity loss's own
    network (``train_<name>``) and dlib's, the independent judge (``judge_dlib``; its weights
    ship with fsggan, left out if they are missing)."""
    from fsggan.models.identity.dlib_resnet import DlibResNetEmbedder, packaged_weights

    judges = {f"train_{loss.identity_net}": identity_net} if identity_net is not None else {}
    if env.is_main and packaged_weights() is not None and loss.identity_net != "dlib_resnet":
        judges["judge_dlib"] = DlibResNetEmbedder().place(env.device)
    return judges


def _init_generator(gen: nn.Module, path: str, kwargs: dict) -> None:
    """Copy G's weights (the EMA ones when saved) from the Stage II checkpoint ``path``;
    a one-line error when it is not one or its G was built differently."""
    try:
        src = load_checkpoint(path, stage="gan", version=CHECKPOINT_VERSION)
    except (FileNotFoundError, CheckpointError) as exc:
        raise CheckpointError(f"gan.init_generator: {exc}") from None
    if to_dict(from_dict(GeneratorKwargs, src["config"].get("generator") or {})) != to_dict(GeneratorKwargs(**kwargs)):
        raise CheckpointError(f"gan.init_generator: {src['path']} holds a G built with {src['config'].get('generator')}, "
                              f"this run builds {kwargs}: set the generator section alike")
    load_state(gen, src, "generator", state="generator_ema" if "generator_ema" in src["models"] else None,
               config=kwargs)


def _build_d(cfg: TrainGANConfig, v_net: VAE) -> nn.Module:
    """D of ``gan.d_arch``; the multi-RF D's feature extractor is V's encoder."""
    if cfg.gan.d_arch == "multi_rf":
        return MultiRFDiscriminator(trunk=v_net.encoder, **asdict(cfg.discriminator))
    if cfg.gan.d_arch == "global":
        return GlobalDiscriminator(**asdict(cfg.global_discriminator))
    return PatchDiscriminator(**asdict(cfg.patch_discriminator))


def _load_stage1(path: str) -> dict:
    """The Stage I checkpoint named by ``gan.vae_checkpoint``: TrainingError when there is
    none, CheckpointError (prefixed with the key) when the file is not a Stage I checkpoint."""
    try:
        return load_checkpoint(path, stage="vae", version=CHECKPOINT_VERSION)
    except FileNotFoundError:
        raise TrainingError(f"gan.vae_checkpoint: no Stage I checkpoint at {path}; train V first "
                            f"(fsggan-train-vae --config configs/vae.yaml) or set "
                            f"--set gan.vae_checkpoint=PATH") from None
    except CheckpointError as exc:
        raise CheckpointError(f"gan.vae_checkpoint: {exc}") from None
