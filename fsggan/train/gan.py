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

:func:`train_gan` reads top to bottom: setup, then one loop - the step, then what falls on
it (scalars and sample grids, validation and checkpoints, :class:`fsggan.train.monitor.Monitor`).
Below it: the step functions, then the pieces of the setup in the order it calls them.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, replace

import torch
from torch import nn

from fsggan.checkpoint import CHECKPOINT_VERSION, CheckpointError, load_checkpoint, load_state
from fsggan.config import ConfigError, from_dict, to_dict
from fsggan.losses import GeneratorLoss, discriminator_loss
from fsggan.models import VAE, GlobalDiscriminator, MultiRFDiscriminator, PatchDiscriminator, UNetGenerator, deocclude

from .config import (TrainDataSection, GANSection, GANLossSection, GeneratorKwargs, GlobalKwargs, MultiRFKwargs,
                     OptimSection, PatchKwargs, TrainSection, TrainGANConfig, VAEKwargs)
from .data import device_batches, setup_data
from .monitor import Monitor
from .runtime import (Env, StopSignal, TrainingError, adam, autocast, compiled, lr_factor, make_scaler, set_lr,
                      setup_env, unused_parameters, wrap_model)
from .state import (EMA, already_done, check_start, check_weights, describe, located,
                    prepare_run_dir, restore_checkpoint, seed_everything)

__all__ = ["train_gan", "g_step", "d_step", "build_identity_net"]


def train_gan(
    *,
    gan: GANSection,                         # vae_checkpoint (Stage I), d_arch: multi_rf | global | patch
    vae: VAEKwargs,                          # replaced by the Stage I checkpoint's VAE arguments
    generator: GeneratorKwargs,              # UNetGenerator constructor arguments
    discriminator: MultiRFKwargs,            # MultiRFDiscriminator arguments (trunk_mode, head_channels, lam, levels)
    global_discriminator: GlobalKwargs,      # GlobalDiscriminator arguments (d_arch: global, the paper's "regular D")
    patch_discriminator: PatchKwargs,        # PatchDiscriminator arguments (d_arch: patch)
    data: TrainDataSection,                  # faces, identity splits, occluders, workers, validation set
    loss: GANLossSection,                    # Eq. 8 weights and the options beyond it; identity network F
    optim: OptimSection,                     # Adam for G and D (lr_d: D's own learning rate)
    train: TrainSection,                     # steps, global batch, device, amp, periods
    resume: str | None = None,               # Stage II checkpoint to continue from, exactly
) -> dict:
    """Train G and D against the frozen V; returns {"step", "run_dir", "best", "val", "interrupted"}."""
    sections = {k: v for k, v in locals().items() if k != "resume"}
    with setup_env(train.device, cudnn_benchmark=train.cudnn_benchmark, tf32=train.tf32) as env:
        # Seeds, and the checkpoint to continue from
        seed_everything(train.seed, env.rank)
        ckpt = load_checkpoint(resume, stage="gan", version=CHECKPOINT_VERSION, resumable=True,
                               prefer=("last.pt",)) if resume else None
        # V (frozen) and the config checked with V's size; a complete run stops here, writing nothing
        v_net, cfg = _frozen_v(ckpt, env, **sections)
        done = check_start(cfg, ckpt)
        if done:  # complete, but its weights must fit the config too
            check_weights(ckpt, _Nets(cfg, v_net, env).models())
            return already_done(done, ckpt, cfg, env)
        # The identity network F; on resume its weights relative to the directory the run started from
        loss = cfg.loss
        if ckpt is not None:
            loss = replace(loss, identity_weights=located(loss.identity_weights, ckpt.get("origin")))
        identity_net = build_identity_net(loss, env, train.channels_last)
        # Data: training faces (occluded as they are drawn) and the fixed validation set
        train_set, val_set, data_state, sampler, loader, val = setup_data(cfg.data, train, env=env, ckpt=ckpt)
        # G (and its EMA), D on V's encoder, Adam and a loss scaler each; restored when resuming
        nets = _Nets(cfg, v_net, env, init=ckpt is None)
        step, pos, best = (0, (0, 0), {}) if ckpt is None else restore_checkpoint(ckpt, env=env, **nets.states())
        del ckpt
        # The run folder, written only now that the start is known to succeed, and what watches the run
        run_dir = prepare_run_dir(cfg, env, resume_step=step if resume is not None else None)
        describe(run_dir, env, len(train_set), len(val_set), nets.sizes())
        monitor = Monitor(cfg=cfg, env=env, run_dir=run_dir, **nets.states(), predict=nets.predict, val=val,
                          best_key=f"val/output_{train.best_metric}", best=best, step=step, extra=data_state,
                          judges=validation_judges(loss, identity_net, env))
        g_loss = GeneratorLoss(loss, compiled(identity_net, train.compile))
        cast = autocast(env, train.amp)
        batches = device_batches(loader, sampler, train_set, pos, cfg.data, train, env)  # from the resume position

        # Training loop
        nets.train()
        with StopSignal(verbose=env.is_main) as stop, monitor:
            while step < train.steps:
                # The batch, and the learning rates of this step (warm-up, decay)
                epoch, index, b = next(batches)
                x, y = b["occluded"], b["clean"]
                nets.set_lr(lr_factor(step, train.steps, optim.warmup_steps, optim.decay, optim.min_lr_ratio))
                # One step: g = V(x) without gradient, G's update (Eq. 8), then D's (Eq. 11) on the same G(x, g)
                with torch.no_grad(), cast:
                    g = nets.v_step(x)
                g_terms, fake = g_step(nets.gen_net, nets.disc_g, nets.opt_g, nets.scaler_g, x=x, g=g, y=y,
                                       loss=g_loss, occ_mask=b.get("mask"), step=step, cast=cast)
                d_terms = d_step(nets.disc_net, nets.opt_d, nets.scaler_d, real=y, fake=fake, cast=cast)
                if nets.ema:
                    nets.ema.update(nets.gen)
                terms = {**{f"g/{k}": v for k, v in g_terms.items()}, **{f"d/{k}": v for k, v in d_terms.items()}}
                step, pos = step + 1, (epoch, index + 1)

                # What falls on this step; the loss terms stay on the device until one of these needs them
                due = monitor.due(step, terms, stop.requested)
                # Scalars (g/*, d/*, images/s, learning rates); sample grid (occluded, structure, G's output, clean)
                monitor.log(step, due)
                # Validation (best.pt on a better val/output_<best_metric>), then last.pt and snapshots
                monitor.validate_and_save(step, pos, due)
                if due.stop:
                    break
        return monitor.result(step)


# The step --------------------------------------------------------------------------------

def g_step(gen: nn.Module, disc: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *,
           x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, loss: GeneratorLoss, occ_mask: torch.Tensor | None = None,
           step: int = 0, cast=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One generator update (Eq. 8). Returns ({term: detached scalar}, G(x, g)).

    D is held fixed - its parameters stop requiring grad for the step - but it stays in
    the graph, so -log D(G(x, g)) sends its gradient to G. Pass D itself, not its DDP
    wrapper (DDP would wait for D gradients that this step never makes). ``occ_mask``
    (B, 1, H, W), the synthesis mask, is needed by the terms beyond the paper
    (``loss.pixel_hole``, ``loss.map_bce``); ``step`` places the identity ramp.
    """
    disc.requires_grad_(False)
    with cast or contextlib.nullcontext():
        fake, occ_map = gen(x, g, return_mask=True)
        terms, total = loss(fake=fake, occ_map=occ_map, y=y, occ_mask=occ_mask, disc=disc, step=step)
    opt.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(opt)
    scaler.update()
    disc.requires_grad_(True)
    terms["total"] = total
    return {k: v.detach() for k, v in terms.items()}, fake


def d_step(disc: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *,
           real: torch.Tensor, fake: torch.Tensor, cast=None) -> dict[str, torch.Tensor]:
    """One discriminator update (Eq. 11) on clean faces and detached G outputs.

    Returns {"loss", "real", "fake", "real_d{i}", "fake_d{i}", "real_w{i}", "fake_w{i}"}:
    batch means of D's output, of each head's d_i and of its softmax weight w_i.
    """
    with cast or contextlib.nullcontext():
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



# Setup ---------------------------------------------------------------------------------

def _frozen_v(ckpt: dict | None, env: Env, **sections) -> tuple[VAE, TrainGANConfig]:
    """V rebuilt from the Stage I checkpoint ``gan.vae_checkpoint`` (or from ``ckpt`` when
    resuming), frozen on the device, and the run's config with V's own arguments (the
    options that depend on V's size are checked again with them)."""
    source = ckpt if ckpt is not None else _load_stage1(sections["gan"].vae_checkpoint)
    given, vae = sections["vae"], VAEKwargs(**source["config"]["vae"])
    if given != VAEKwargs() and asdict(given) != source["config"]["vae"]:
        warnings.warn("the vae section is ignored in Stage II: V is rebuilt from the Stage I checkpoint",
                      stacklevel=3)
    v_net = VAE(**asdict(vae))
    load_state(v_net, source, "vae", config=source["config"]["vae"])
    v_net.eval().requires_grad_(False).to(env.device)
    if sections["train"].channels_last:
        v_net.to(memory_format=torch.channels_last)
    try:
        cfg = TrainGANConfig(**{**sections, "vae": vae})
    except ValueError as exc:
        raise ConfigError(f"{exc} (V of {source['path']}: {vae})") from None
    return v_net, cfg


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


def build_identity_net(loss: GANLossSection, env: Env, channels_last: bool = False) -> nn.Module | None:
    """The frozen face-recognition network F of the identity term, or None when
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


def validation_judges(loss: GANLossSection, identity_net: nn.Module | None, env: Env) -> dict[str, nn.Module]:
    """The recognisers whose output-to-clean cosine validation logs: the identity loss's own
    network (``train_<name>``) and dlib's, the independent judge (``judge_dlib``; its weights
    ship with fsggan, left out if they are missing)."""
    from fsggan.models.identity.dlib_resnet import DlibResNetEmbedder, packaged_weights

    judges = {f"train_{loss.identity_net}": identity_net} if identity_net is not None else {}
    if env.is_main and packaged_weights() is not None and loss.identity_net != "dlib_resnet":
        judges["judge_dlib"] = DlibResNetEmbedder().place(env.device)
    return judges


class _Nets:
    """Stage II's trained networks and their optimisers: G (and its EMA), D on V's encoder
    (``discriminator.trunk_mode``), Adam and a loss scaler for each; ``init`` starts G
    from ``gan.init_generator`` when that is set."""

    def __init__(self, cfg: TrainGANConfig, v_net: VAE, env: Env, init: bool = False):
        train, optim = cfg.train, cfg.optim
        self.cfg, self.v_net, self.env = cfg, v_net, env
        self.gen = UNetGenerator(**asdict(cfg.generator))
        if init and cfg.gan.init_generator:
            _init_generator(self.gen, cfg.gan.init_generator, asdict(cfg.generator))
        self.disc = _build_d(cfg, v_net)
        wrap = dict(channels_last=train.channels_last, sync_bn=train.sync_bn, compile=train.compile)
        self.gen_net = wrap_model(self.gen, env, **wrap)
        self.disc_net = wrap_model(self.disc, env, **wrap, find_unused=env.distributed and _unused_in_d(self.disc, cfg))
        # what each step calls besides those: V(x), and D inside G's step (never DDP-wrapped: no D gradients
        # there); with train.compile the whole step runs compiled
        self.v_step, self.disc_g = compiled(v_net, train.compile), compiled(self.disc, train.compile)
        opt = dict(betas=optim.betas, weight_decay=optim.weight_decay, device=env.device)
        self.opt_g = adam(self.gen.parameters(), lr=optim.lr, **opt)
        self.opt_d = adam(self.disc.parameters(), lr=optim.lr_d or optim.lr, **opt)
        self.scaler_g, self.scaler_d = make_scaler(env, train.amp), make_scaler(env, train.amp)
        self.ema = EMA(self.gen, train.ema) if train.ema else None   # beyond the paper: averaged G for val/inference

    def train(self) -> None:
        self.gen.train()
        self.disc.train()

    def set_lr(self, factor: float) -> None:
        """Both learning rates times ``factor`` (the schedule's, :func:`.runtime.lr_factor`)."""
        optim = self.cfg.optim
        set_lr(self.opt_g, optim.lr * factor)
        set_lr(self.opt_d, (optim.lr_d or optim.lr) * factor)

    def models(self) -> dict[str, nn.Module]:
        ema = {"generator_ema": self.ema.module} if self.ema else {}
        return {"vae": self.v_net, "generator": self.gen, "discriminator": self.disc, **ema}

    def states(self) -> dict[str, dict]:
        """What a checkpoint holds: models, optimizers, scalers (keyword arguments)."""
        return {"models": self.models(), "optimizers": {"generator": self.opt_g, "discriminator": self.opt_d},
                "scalers": {"generator": self.scaler_g, "discriminator": self.scaler_d}}

    def sizes(self) -> dict[str, int]:
        return {k: sum(p.numel() for p in m.parameters()) for k, m in self.models().items()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's output (the EMA G when there is one) in eval mode, run as inference runs it
        (``gan.structure_passes``), and the structure it filled from (the last pass's)."""
        net = self.ema.module if self.ema else self.gen
        net.eval()
        with autocast(self.env, self.cfg.train.amp):
            out, g, _ = deocclude(self.v_net, net, x, structure_passes=self.cfg.gan.structure_passes)
        self.gen.train()
        return {"structure": g.float().clamp(-1, 1), "output": out.float().clamp(-1, 1)}


def _init_generator(gen: nn.Module, path: str, kwargs: dict) -> None:
    """Copy G's weights (the EMA ones when saved) from the Stage II checkpoint ``path``;
    a one-line error when it is not one or its G was built differently (``upsample`` may
    differ: it has no weights)."""
    try:
        src = load_checkpoint(path, stage="gan", version=CHECKPOINT_VERSION)
    except (FileNotFoundError, CheckpointError) as exc:
        raise CheckpointError(f"gan.init_generator: {exc}") from None
    stored = to_dict(from_dict(GeneratorKwargs, src["config"].get("generator") or {}))
    if {**stored, "upsample": None} != {**to_dict(GeneratorKwargs(**kwargs)), "upsample": None}:
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


def _unused_in_d(disc: nn.Module, cfg: TrainGANConfig) -> bool:
    """Whether some of D's trainable parameters get no gradient (a tied or copied trunk whose
    deepest level has no head, ``discriminator.levels: [1, 2]``): DDP must then be told."""
    size = cfg.vae.image_size
    dev = next(disc.parameters()).device
    return bool(unused_parameters(disc, lambda d: d(torch.zeros(1, 3, size, size, device=dev)).log_prob.sum()))
