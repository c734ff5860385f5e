"""Training, Algorithm 1 of the paper, as two resumable, multi-GPU commands.

* Stage I  ``fsggan-train-vae`` -> :func:`fsggan.train.vae.train_vae` (one step: ``vae_step``)
* Stage II ``fsggan-train-gan`` -> :func:`fsggan.train.gan.train_gan` (``g_step``, ``d_step``)

Multi-GPU: ``torchrun --nproc_per_node N -m fsggan.cli.train_vae --config configs/vae.yaml``
(and likewise ``fsggan.cli.train_gan``); the command lines are :mod:`fsggan.cli.train`.

Configs are dataclasses (:mod:`fsggan.train.config`, with the checks of their values) filled
from ``configs/*.yaml``. What both stages share, one module a topic: :mod:`~fsggan.train.data`
(sampler, loaders, training and validation sets), :mod:`~fsggan.train.runtime` (devices, DDP,
the optimiser and its learning-rate schedule, AMP, stop signals), :mod:`~fsggan.train.state`
(the checks made before a run writes anything, the run folder, RNG states for a bitwise
resume, the EMA of G), :mod:`~fsggan.train.monitor` (between steps: logging, sample grids,
validation, checkpoints, the non-finite guard); the checkpoint files are :mod:`fsggan.checkpoint`'s.
Each stage module reads top to bottom: setup, then one training loop.
Step speed (benchmarks, the GPU check): :mod:`~fsggan.train.speed`.
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
