"""Training configurations: one dataclass per YAML section.

A YAML file (``configs/*.yaml``) fills these; ``--set section.key=value`` overrides any
key; unknown keys and wrong types fail at start, naming the valid keys (the generic
loader is :func:`fsggan.config.load_config`). The resolved config is written to the run
directory as ``config.yaml`` and stored in every checkpoint.

The model sections (``vae``, ``generator``, ``discriminator``, ``patch_discriminator``)
are exactly the keyword arguments of the model constructors, so
``VAE(**asdict(cfg.vae))`` rebuilds the network - without the YAML - from the
``config`` stored in a checkpoint.

Paths (``data.root``, ``data.occluders``, ``loss.identity_weights``,
``gan.vae_checkpoint``, ``train.run_dir``) are relative to the current directory of the
process that starts the run, as every command-line tool reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "VAEKwargs", "GeneratorKwargs", "MultiRFKwargs", "PatchKwargs",
    "DataConfig", "VAELossConfig", "GANLossConfig", "OptimConfig", "TrainConfig", "GANConfig",
    "TrainVAEConfig", "TrainGANConfig",
]


# Model constructor arguments ---------------------------------------------------------

@dataclass
class VAEKwargs:
    """``fsggan.models.VAE(**vae)``."""
    in_channels: int = 3
    base_channels: int = 32
    latent_dim: int = 256
    image_size: int = 128
    sigma: Literal["pixel", "scalar"] = "pixel"


@dataclass
class GeneratorKwargs:
    """``fsggan.models.UNetGenerator(**generator)``; ``hdc: false`` is the "w/o HDC" ablation."""
    in_channels: int = 6
    out_channels: int = 3
    base_channels: int = 64
    hdc: bool = True
    hdc_rates: tuple[int, ...] = (1, 2, 5)


@dataclass
class MultiRFKwargs:
    """``fsggan.models.MultiRFDiscriminator(trunk=vae.encoder, **discriminator)``.

    trunk_mode: frozen (V's encoder as is, not updated), tied (V's encoder Parameters,
    updated by D's loss - so g = V(x) drifts during Stage II), copy (a copy of V's encoder
    trained by D).
    """
    trunk_mode: Literal["frozen", "tied", "copy"] = "frozen"
    head_channels: int = 64
    lam: float = 1.0


@dataclass
class PatchKwargs:
    """``fsggan.models.PatchDiscriminator(**patch_discriminator)`` ("regular D" ablation)."""
    in_channels: int = 3
    base_channels: int = 64
    n_layers: int = 3


# Data -------------------------------------------------------------------------------

@dataclass
class DataConfig:
    """Training faces: a data-preparation config (configs/data/*.yaml) is the single
    source of the dataset, its identity split, the "seen" occluder pool and the occlusion
    settings, so training and the prepared evaluation sets can never disagree: training
    reads the ``train`` identities only, model selection the ``val`` identities, and the
    test identities (Set1/Set2, the recognition protocol) are never loaded.

    The face size is set to ``vae.image_size`` automatically.
    """
    config: str = "configs/data/celeba.yaml"   # data-preparation config
    overrides: list[str] = field(default_factory=list)   # its keys, e.g. ["dataset.root=/data/celeba"]
    num_workers: int = 4                 # loader processes per training process (0: main process)
    pin_memory: bool = True              # pinned host memory (CUDA only)
    occlude_on: Literal["workers", "device"] = "workers"   # device: composite whole batches on the GPU
    max_images: int | None = None        # cap the training images (smoke runs)
    val_images: int = 256                # fixed validation set: images spread over the val identities
    val_seed: int = 12345                # its occlusions, drawn once


# Losses -----------------------------------------------------------------------------

@dataclass
class VAELossConfig:
    """Stage I, Eq. 4: Gaussian NLL of the clean face + kl_weight * KL(q(z|x) || N(0, I))."""
    kl_weight: float = 1.0


@dataclass
class GANLossConfig:
    """Stage II generator loss, Eq. 8 (weights), and the identity network F.

    identity: 0 trains without an identity loss and does not build F.
    identity_net: lightcnn29v2 (paper), lightcnn9, lightcnn29, mobilefacenet,
    arcface_r50, arcface_r100; identity_weights: its published checkpoint.
    """
    pixel: float = 100.0
    identity: float = 50.0
    adversarial: float = 1.0
    tv: float = 0.0
    identity_net: str = "lightcnn29v2"
    identity_weights: str | None = "weights/LightCNN_29Layers_V2_checkpoint.pth.tar"


@dataclass
class OptimConfig:
    """Adam (paper settings: lr 1.0e-4, betas 0.5 / 0.999)."""
    lr: float = 1.0e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    lr_d: float | None = None            # Stage II: D's learning rate (null: same as lr)

    def __post_init__(self):
        if self.lr <= 0 or (self.lr_d is not None and self.lr_d <= 0):
            raise ValueError("learning rates must be > 0")


# Loop -------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """The training loop. Counts are optimisation steps (one global batch each).

    amp: bf16 / fp16 autocast (fp16 with a GradScaler) - for CUDA. On CPU both are slow,
    and on machines whose kernel does not enable AMX (some VMs) oneDNN's bf16 matmul dies
    with "Illegal instruction"; ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 avoids that.
    sync_bn: under DDP on CUDA, SyncBatchNorm (statistics over the global batch).
    Default off: each process normalises over its own share of the batch, and DDP copies
    rank 0's running statistics to the other processes at every forward (checkpoints hold
    rank 0's). BatchNorm has no synchronised version on CPU (gloo).
    Multi-GPU: ``torchrun --nproc_per_node N -m fsggan.train.vae ...``; each process
    takes batch_size / N images of every global batch, only rank 0 writes files.
    """
    steps: int = 100_000
    batch_size: int = 16                 # GLOBAL batch, split evenly over the DDP processes
    device: Literal["auto", "cuda", "cpu"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False                # DDP on CUDA: convert BatchNorm to SyncBatchNorm
    seed: int = 0
    run_dir: str = "runs/fsggan"         # set per experiment in the YAML (or --run-dir)
    log_every: int = 50                  # TensorBoard scalars + stats.jsonl
    sample_every: int = 1000             # image grid (TensorBoard + samples/*.png)
    val_every: int = 2000                # PSNR/SSIM on the validation set; best.pt
    ckpt_every: int = 1000               # checkpoints/last.pt
    snapshot_every: int = 0              # keep checkpoints/step_NNNNNNN.pt (0: never)
    best_metric: Literal["psnr", "ssim"] = "ssim"
    num_samples: int = 8                 # images per sample grid
    progress: bool = True                # tqdm bar (rank 0)

    def __post_init__(self):
        for name in ("steps", "batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("log_every", "sample_every", "val_every", "ckpt_every", "snapshot_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")


@dataclass
class GANConfig:
    """Stage II specifics."""
    vae_checkpoint: str = "runs/vae/checkpoints/best.pt"
    d_arch: Literal["multi_rf", "patch"] = "multi_rf"   # patch: the "regular D" ablation


# Whole runs -------------------------------------------------------------------------

@dataclass
class TrainVAEConfig:
    """``fsggan-train-vae``: Stage I."""
    vae: VAEKwargs = field(default_factory=VAEKwargs)
    data: DataConfig = field(default_factory=DataConfig)
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class TrainGANConfig:
    """``fsggan-train-gan``: Stage II. ``vae`` is copied from the Stage I checkpoint at start
    (values given here are replaced), so the resolved config can rebuild V alone."""
    gan: GANConfig = field(default_factory=GANConfig)
    vae: VAEKwargs = field(default_factory=VAEKwargs)
    generator: GeneratorKwargs = field(default_factory=GeneratorKwargs)
    discriminator: MultiRFKwargs = field(default_factory=MultiRFKwargs)
    patch_discriminator: PatchKwargs = field(default_factory=PatchKwargs)
    data: DataConfig = field(default_factory=DataConfig)
    loss: GANLossConfig = field(default_factory=GANLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
