"""Training, Algorithm 1 of the paper, as two resumable, multi-GPU commands.

* Stage I  ``fsggan-train-vae`` -> :func:`fsggan.train.vae.train_vae` (one step: ``vae_step``)
* Stage II ``fsggan-train-gan`` -> :func:`fsggan.train.gan.train_gan` (``g_step``, ``d_step``)

Multi-GPU: ``torchrun --nproc_per_node N -m fsggan.cli.train_vae --config configs/vae.yaml``
(and likewise ``fsggan.cli.train_gan``); the command lines are :mod:`fsggan.cli.train`.

Configs are dataclasses (:mod:`fsggan.train.config`) filled from ``configs/*.yaml``.
The machinery both stages share, one topic per module: :mod:`~fsggan.train.runtime`
(devices, DDP, AMP, seeding and RNG states), :mod:`~fsggan.train.batches` (sampler,
loaders, training and validation sets), :mod:`~fsggan.train.housekeeping` (logging,
validation, periodic saves, stop signals, the non-finite guard), :mod:`~fsggan.train.resume`
(the checks made before a run writes anything: what may change on resume); the checkpoint
files are :mod:`fsggan.checkpoint`'s. Beyond the paper: :mod:`~fsggan.train.ema`,
:mod:`~fsggan.train.schedule`. Step speed (benchmarks, the GPU check): :mod:`~fsggan.train.speed`.
The stage modules are imported lazily.
"""

from .config import TrainGANConfig, TrainVAEConfig

__all__ = ["TrainVAEConfig", "TrainGANConfig", "train_vae", "vae_step", "train_gan", "g_step", "d_step"]

_LAZY = {"train_vae": "vae", "vae_step": "vae", "train_gan": "gan", "g_step": "gan", "d_step": "gan"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
