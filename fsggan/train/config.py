"""Training configurations: one dataclass per YAML section.

A YAML file (``configs/*.yaml``) fills these; ``--set section.key=value`` overrides any
key; unknown keys and wrong types fail at start, naming the valid keys (the generic
loader is :func:`fsggan.config.load_config`: several files are layered in order, and a
file may name its ``base:``). The resolved config is written to the run directory as
``config.yaml`` and stored in every checkpoint.

The model sections (``vae``, ``generator``, ``discriminator``, ``global_discriminator``,
``patch_discriminator``) are exactly the keyword arguments of the model constructors, so
``VAE(**asdict(cfg.vae))`` rebuilds the network - without the YAML - from the
``config`` stored in a checkpoint.

The ``data`` section is the whole data config (:class:`fsggan.data.PrepareConfig`, typed)
plus how training loads it; ``loss`` of Stage II is :class:`fsggan.losses.LossWeights`
plus the identity network.

Paths (``data.config``, ``data.dataset.root``, ``data.occluders``, ``loss.identity_weights``,
``gan.vae_checkpoint``, ``train.run_dir``) are relative to the current directory of the
process that starts the run, as every command-line tool reads them.

Every value is checked when its section is built (``__post_init__`` calls
:func:`check_section`; :func:`check_run` the options of a whole run that depend on each
other: G's input is the RGB face and V's structure image, ``loss.map_bce`` needs the blend
head, PatchGAN depth against the image size, ...), so a value the models, the losses or the
loop cannot take is a one-line :class:`fsggan.config.ConfigError` naming the key - when the
YAML is read, before any run directory, file or step - and not a traceback from inside a
constructor or the first step. Messages start with the key (``image_size=60: ...``);
:func:`fsggan.config.from_dict` puts the section in front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from fsggan.config import ConfigError, merge, read_layers
from fsggan.data import PrepareConfig
from fsggan.losses import LossWeights
from fsggan.models.deoccluder import check_structure_passes

__all__ = [
    "VAEKwargs", "GeneratorKwargs", "MultiRFKwargs", "GlobalKwargs", "PatchKwargs",
    "TrainDataSection", "VAELossSection", "GANLossSection", "OptimSection", "TrainSection", "GANSection",
    "TrainVAEConfig", "TrainGANConfig", "check_section", "check_run", "RGB",
]


# The values each section can take ---------------------------------------------------------

RGB = 3             # training faces: RGB
D_LEVELS = (1, 2, 3, 4)


def _at_least(section, least: int, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value < least:
            raise ValueError(f"{name}={value}: must be >= {least}")


def _finite(section, names, least: float = 0.0) -> None:
    for name in names:
        value = getattr(section, name)
        if not (math.isfinite(value) and value >= least):
            raise ValueError(f"{name}={value}: must be a finite number >= {least:g}")


def check_section(section) -> None:
    """Raise ValueError (starting with the key) when a section holds a value its model,
    loss or loop cannot take."""
    kind = type(section).__name__
    if kind == "VAEKwargs":
        _at_least(section, 1, "in_channels", "base_channels", "latent_dim")
        if section.image_size < 16 or section.image_size % 16:
            raise ValueError(f"image_size={section.image_size}: V halves the image 4 times, so it must be a "
                             f"multiple of 16 (e.g. 32, 64, 128)")
    elif kind == "GeneratorKwargs":
        _at_least(section, 1, "in_channels", "out_channels", "base_channels")
        rates = tuple(section.hdc_rates)
        if section.hdc and (not rates or min(rates) < 1):
            raise ValueError(f"hdc_rates={list(rates)}: give one or more dilation rates >= 1 (the paper's "
                             f"[1, 2, 5]), or hdc: false")
        if section.output == "blend" and section.in_channels < section.out_channels:
            raise ValueError(f"output=blend: needs the face x among G's inputs (in_channels "
                             f"{section.in_channels} >= out_channels {section.out_channels})")
    elif kind == "MultiRFKwargs":
        _at_least(section, 1, "head_channels")
        _finite(section, ("lam",))
        levels = tuple(section.levels)
        if not levels or levels != tuple(sorted(set(levels))) or not set(levels) <= set(D_LEVELS):
            raise ValueError(f"levels={list(levels)}: give distinct levels from {list(D_LEVELS)} in increasing "
                             f"order (1-3: patch heads, 4: the whole-face head)")
    elif kind in ("GlobalKwargs", "PatchKwargs"):
        _at_least(section, 1, "in_channels", "base_channels", "n_layers")
    elif kind == "VAELossSection":
        _finite(section, ("kl_weight",))
    elif kind == "GANLossSection":
        _finite(section, ("pixel", "identity", "adversarial", "tv", "pixel_hole", "map_bce"))
        start, end = section.identity_ramp
        if not 0 <= start <= end:
            raise ValueError(f"identity_ramp={list(section.identity_ramp)}: give [start, end] steps with "
                             f"0 <= start <= end ([0, 0]: the full weight from the first step)")
    elif kind == "TrainDataSection":
        _at_least(section, 0, "num_workers")
        _at_least(section, 1, "val_images")
        if section.max_images is not None:
            _at_least(section, 1, "max_images")
        if not 0.0 <= section.clean_share < 1.0:
            raise ValueError(f"clean_share={section.clean_share}: give a share in [0, 1) of the training faces "
                             "to leave un-occluded (0: every face occluded, the paper)")
        if not 0.0 <= section.grey_share <= 1.0:
            raise ValueError(f"grey_share={section.grey_share}: give a share in [0, 1] of the training faces "
                             "to make greyscale (0: colour faces only, the paper)")
    elif kind == "OptimSection":
        if not all(0.0 <= b < 1.0 for b in section.betas):
            raise ValueError(f"betas={list(section.betas)}: Adam's betas must be in [0, 1)")
        _finite(section, ("weight_decay",))


def check_run(cfg) -> None:
    """Raise ValueError (starting with the key) for options of a whole run that do not go
    together. ``cfg``: a TrainVAEConfig or TrainGANConfig."""
    if cfg.vae.in_channels != RGB:
        raise ValueError(f"vae.in_channels={cfg.vae.in_channels}: the training faces are RGB; use {RGB}")
    if not hasattr(cfg, "generator"):
        return
    g, size = cfg.generator, cfg.vae.image_size
    if g.in_channels != 2 * RGB:
        raise ValueError(f"generator.in_channels={g.in_channels}: Stage II feeds G the face x and V's structure "
                         f"image g (3 + 3 channels); use 6")
    if g.out_channels != RGB:
        raise ValueError(f"generator.out_channels={g.out_channels}: G draws an RGB face; use 3")
    if cfg.loss.map_bce and g.output != "blend":
        raise ValueError(f"loss.map_bce={cfg.loss.map_bce:g}: this term trains the blend head's occlusion map; set "
                         f"generator.output: blend, or loss.map_bce: 0")
    d_arch = cfg.gan.d_arch
    if d_arch in ("global", "patch"):
        d = cfg.global_discriminator if d_arch == "global" else cfg.patch_discriminator
        key = "global_discriminator" if d_arch == "global" else "patch_discriminator"
        if d.in_channels != RGB:
            raise ValueError(f"{key}.in_channels={d.in_channels}: D judges RGB faces; use {RGB}")
        if d_arch == "patch" and size // 2 ** d.n_layers - 2 < 1:  # n_layers halvings, then two 4x4 convs
            most = max(n for n in range(1, 12) if size // 2 ** n - 2 >= 1)
            raise ValueError(f"patch_discriminator.n_layers={d.n_layers}: too deep for {size}x{size} faces "
                             f"(vae.image_size), nothing is left to judge; use at most {most}")


class _Checked:
    """A section whose values are checked when it is built (:func:`check_section`)."""

    def __post_init__(self):
        check_section(self)


# Model constructor arguments ---------------------------------------------------------

@dataclass
class VAEKwargs(_Checked):
    """``fsggan.models.VAE(**vae)``."""
    in_channels: int = 3
    base_channels: int = 32
    latent_dim: int = 256
    image_size: int = 128
    sigma: Literal["pixel", "scalar"] = "pixel"


@dataclass
class GeneratorKwargs(_Checked):
    """``fsggan.models.UNetGenerator(**generator)``; ``hdc: false`` is the "w/o HDC" ablation."""
    in_channels: int = 6
    out_channels: int = 3
    base_channels: int = 64
    hdc: bool = True
    hdc_rates: tuple[int, ...] = (1, 2, 5)
    output: Literal["direct", "blend"] = "direct"   # blend: m * G_rgb + (1 - m) * x (beyond the paper)
    upsample: Literal["nearest", "bilinear"] = "nearest"   # bilinear: no 8x8 block grid in fills (beyond the paper)


@dataclass
class MultiRFKwargs(_Checked):
    """``fsggan.models.MultiRFDiscriminator(trunk=vae.encoder, **discriminator)``.

    trunk_mode: frozen (V's encoder as is, not updated), tied (V's encoder Parameters and
    BatchNorm buffers, updated by D - so g = V(x) drifts during Stage II, always with the
    statistics of the current weights), copy (a copy of V's encoder trained by D).
    levels: encoder levels that get a head - 1, 2, 3 (H/2, H/4, H/8: patch heads seeing
    17 / 41 / 89 px) and 4 (H/16: the whole-face head); [1, 2, 3]: patch heads only.
    """
    trunk_mode: Literal["frozen", "tied", "copy"] = "frozen"
    head_channels: int = 64
    lam: float = 1.0
    levels: tuple[int, ...] = (1, 2, 3, 4)


@dataclass
class GlobalKwargs(_Checked):
    """``fsggan.models.GlobalDiscriminator(**global_discriminator)`` (``gan.d_arch: global``):
    the paper's "regular D" ablation, DeepFill v1's whole-image critic."""
    in_channels: int = 3
    base_channels: int = 16
    n_layers: int = 4


@dataclass
class PatchKwargs(_Checked):
    """``fsggan.models.PatchDiscriminator(**patch_discriminator)`` (``gan.d_arch: patch``): a
    PatchGAN local critic, an option beside the paper's "regular D"."""
    in_channels: int = 3
    base_channels: int = 64
    n_layers: int = 3


# Data -------------------------------------------------------------------------------

@dataclass
class TrainDataSection(PrepareConfig):
    """Training faces: the data config (``name``, ``dataset``, ``split``, ``protocol``,
    ``occluders``, ``synthesis``, ``output``: :class:`fsggan.data.PrepareConfig`, what
    ``fsggan-prepare-data`` reads) is the single source of the dataset, its identity split,
    the "seen" occluder pool and the occlusion settings, so training and the prepared
    evaluation sets can never disagree: training reads the ``train`` identities only, model
    selection the ``val`` identities, and the test identities (Set1/Set2, the recognition
    protocol) are never loaded. The other keys say how training loads the faces.

    ``config`` names the data YAML the section starts from: when a config is loaded, that
    file lies under the section's own keys (``data: {config: configs/data/lfw.yaml,
    dataset: {root: /data/lfw}}``; ``--set data.dataset.root=...``), so the resolved
    section is the whole data config. ``dataset.image_size`` follows ``vae.image_size``.
    """
    config: str | None = None            # the data YAML (configs/data/*.yaml) under this section's keys
    num_workers: int = 4                 # loader processes per training process (0: main process)
    pin_memory: bool = True              # pinned host memory (CUDA only)
    persistent_workers: bool = True      # keep the loader processes from one epoch to the next
    occlude_on: Literal["workers", "device"] = "workers"   # device: composite whole batches on the GPU
    max_images: int | None = None        # cap the training images (smoke runs)
    val_images: int = 256                # fixed validation set: images spread over the val identities
    val_seed: int = 12345                # its occlusions, drawn once
    clean_share: float = 0.0             # beyond the paper: share of training faces left un-occluded
    grey_share: float = 0.0              # beyond the paper: share of training faces made greyscale

    def __post_init__(self):
        super().__post_init__()
        check_section(self)

    @staticmethod
    def layer(raw: dict) -> dict:
        """The raw section over the data YAML named by ``config``; :func:`fsggan.config.load_config`
        calls it. A section that already holds
        every data key (a saved config.yaml) is taken as it is."""
        raw = dict(raw)
        if raw.get("config") is not None and not isinstance(raw["config"], str):
            raise ConfigError(f"data.config: expected the path of a data YAML, got {raw['config']!r}")
        if raw.get("config") and not all(f.name in raw for f in fields(PrepareConfig)):
            raw = merge(read_layers(raw["config"]), raw)
        elif raw.get("config") and not Path(raw["config"]).is_file():  # a run's saved config.yaml, elsewhere
            raise ConfigError(f"data.config={raw['config']!r} is not found from {Path.cwd()}; this config already "
                              "holds every data key, so give --set data.config=null (or run from the folder the "
                              "run was started in)")
        return raw

    def prepare_config(self) -> PrepareConfig:
        """The data config alone (what ``fsggan-prepare-data`` and ``fsggan.data.build`` read)."""
        return PrepareConfig(**{f.name: getattr(self, f.name) for f in fields(PrepareConfig)})


# Losses -----------------------------------------------------------------------------

@dataclass
class VAELossSection(_Checked):
    """Stage I, Eq. 4: Gaussian NLL of the clean face + kl_weight * KL(q(z|x) || N(0, I))."""
    kl_weight: float = 1.0


@dataclass
class GANLossSection(_Checked, LossWeights):
    """Stage II generator loss: the weights of Eq. 8 and the options beyond the paper
    (:class:`fsggan.losses.LossWeights`: pixel, identity, adversarial, tv; pixel_hole, map_bce,
    identity_ramp) and the identity network F.

    identity: 0 trains without an identity loss and does not build F.
    identity_net: lightcnn29v2 (paper), lightcnn9, lightcnn29, mobilefacenet,
    arcface_r50, arcface_r100; identity_weights: its published checkpoint.
    """
    identity_net: str = "lightcnn29v2"
    identity_weights: str | None = "weights/LightCNN_29Layers_V2_checkpoint.pth.tar"


@dataclass
class OptimSection:
    """Adam, lr 1.0e-4, betas 0.5 / 0.999: the official FSG-GAN code's settings (the paper
    does not state an optimiser)."""
    lr: float = 1.0e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    lr_d: float | None = None            # Stage II: D's learning rate (null: same as lr)
    warmup_steps: int = 0                # beyond the paper: linear warm-up from 0 over this many steps
    decay: Literal["none", "cosine"] = "none"   # beyond the paper: cosine decay to min_lr_ratio * lr at the end
    min_lr_ratio: float = 0.0

    def __post_init__(self):
        for name in ("lr", "lr_d"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: a learning rate must be > 0 (e.g. 1.0e-4)")
        check_section(self)
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: must be >= 0 (0: no warm-up)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")


# Loop -------------------------------------------------------------------------------

@dataclass
class TrainSection:
    """The training loop. Counts are optimisation steps (one global batch each).

    amp: bf16 / fp16 autocast (fp16 with a GradScaler). On a CPU with AVX512-BF16/AMX, bf16
    trains Stage II 1.7-1.9x faster than fp32 (benchmarks/quickstart_throughput.py); where
    bf16 convolutions crash (AMX not enabled by the kernel, some VMs) training first tries
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, else falls back to fp32 with a warning
    (fsggan.train.runtime.cpu_bf16_usable). fp16 is for CUDA.
    compile: ``torch.compile`` every network a training step runs (Stage I: V; Stage II: G, D
    in G's step and in its own, V(x), F), so the whole step runs compiled.
    sync_bn: under DDP on CUDA, SyncBatchNorm (statistics over the global batch).
    Default off: each process normalises over its own share of the batch, and DDP copies
    rank 0's running statistics to the other processes at every forward (checkpoints hold
    rank 0's). BatchNorm has no synchronised version on CPU (gloo).
    Multi-GPU: ``torchrun --nproc_per_node N -m fsggan.cli.train_vae ...``; each process
    takes batch_size / N images of every global batch, only rank 0 writes files.
    cudnn_benchmark, tf32: CUDA speed settings, on by default (no effect on a CPU): cuDNN
    picks the fastest convolution algorithm for the fixed training shapes, and float32
    matmuls / convolutions may use TF32 tensor cores (fsggan.train.runtime.set_cuda_backends).
    bf16 (``amp``) and channels_last are what ``fsggan-quickstart --full`` adds on a GPU with
    bf16 (fsggan.train.runtime.gpu_speed_settings); scripts/gpu_check.py measures all of them.
    """
    steps: int = 100_000
    batch_size: int = 16                 # GLOBAL batch, split evenly over the DDP processes
    device: Literal["auto", "cuda", "cpu"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False                # DDP on CUDA: convert BatchNorm to SyncBatchNorm
    cudnn_benchmark: bool = True         # CUDA: cuDNN times its convolution algorithms for the fixed shapes
    tf32: bool = True                    # CUDA: float32 matmuls/convolutions on TF32 tensor cores (false: IEEE)
    seed: int = 0
    run_dir: str = "runs/fsggan"         # set per experiment in the YAML (or --run-dir)
    log_every: int = 50                  # TensorBoard scalars + stats.jsonl
    sample_every: int = 1000             # image grid (TensorBoard + samples/*.png)
    val_every: int = 2000                # PSNR/SSIM on the validation set; best.pt
    ckpt_every: int = 1000               # checkpoints/last.pt
    snapshot_every: int = 0              # keep checkpoints/step_NNNNNNN.pt (0: never)
    best_metric: Literal["psnr", "ssim"] = "ssim"
    ema: float = 0.0                     # beyond the paper: EMA decay of G's weights for validation/inference (0: off)
    num_samples: int = 8                 # images per sample grid
    progress: bool = True                # tqdm bar (rank 0)

    def __post_init__(self):
        for name in ("steps", "batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1) (0 disables), got {self.ema}")
        for name in ("log_every", "sample_every", "val_every", "ckpt_every", "snapshot_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")


@dataclass
class GANSection:
    """Stage II specifics."""
    vae_checkpoint: str = "runs/vae/checkpoints/best.pt"
    d_arch: Literal["multi_rf", "global", "patch"] = "multi_rf"   # global: the "regular D" ablation; patch: PatchGAN
    init_generator: str | None = None    # beyond the paper: start G from this Stage II checkpoint's G (its EMA
                                         # weights if any), e.g. a 64 px run fine-tuned at 128 px (G is fully
                                         # convolutional); read at a fresh start only
    structure_passes: int = 1            # beyond the paper (1): at inference and validation, G fills x again from V's
                                         # structure of its own output, this many passes in all
                                         # (fsggan.models.deoccluder); training steps are unchanged

    def __post_init__(self):
        check_structure_passes(self.structure_passes)


# Whole runs -------------------------------------------------------------------------

class _FacesOfVAESize:
    """Whole-run configs: ``data.dataset.image_size`` follows ``vae.image_size`` (the faces
    are the size the models work at)."""

    def __post_init__(self):
        d = self.data
        if d.dataset.image_size != self.vae.image_size:
            self.data = replace(d, dataset=replace(d.dataset, image_size=self.vae.image_size))
        check_run(self)  # the options that depend on each other


@dataclass
class TrainVAEConfig(_FacesOfVAESize):
    """``fsggan-train-vae``: Stage I."""
    vae: VAEKwargs = field(default_factory=VAEKwargs)
    data: TrainDataSection = field(default_factory=TrainDataSection)
    loss: VAELossSection = field(default_factory=VAELossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)


@dataclass
class TrainGANConfig(_FacesOfVAESize):
    """``fsggan-train-gan``: Stage II. ``vae`` is copied from the Stage I checkpoint at start
    (values given here are replaced), so the resolved config can rebuild V alone."""
    gan: GANSection = field(default_factory=GANSection)
    vae: VAEKwargs = field(default_factory=VAEKwargs)
    generator: GeneratorKwargs = field(default_factory=GeneratorKwargs)
    discriminator: MultiRFKwargs = field(default_factory=MultiRFKwargs)
    global_discriminator: GlobalKwargs = field(default_factory=GlobalKwargs)
    patch_discriminator: PatchKwargs = field(default_factory=PatchKwargs)
    data: TrainDataSection = field(default_factory=TrainDataSection)
    loss: GANLossSection = field(default_factory=GANLossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
