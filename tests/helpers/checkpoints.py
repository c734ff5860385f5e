"""Checkpoints for the tests: well-formed ones written with fsggan's own helpers
(:func:`fsggan.checkpoint.make_checkpoint`, :func:`~fsggan.checkpoint.save_checkpoint`) and
damaged ones of every kind a user meets."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import torch
from torch import nn

from fsggan.checkpoint import make_checkpoint, save_checkpoint


def write_checkpoint(path: Path, models: dict[str, nn.Module], config: dict, *, step: int = 1,
                     optimizers: dict | None = None) -> Path:
    """Save ``models`` with ``config`` at ``path`` as training does (no scalers, data position 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, make_checkpoint(step=step, config=config, models=models, optimizers=optimizers or {},
                                          scalers={}, rng=[torch.get_rng_state()], data_pos=(0, 0), best={}))
    return path


class Evil:
    """Unpickling this would run a shell command; weights_only refuses to import os.system."""

    def __reduce__(self):
        return (os.system, ("echo owned",))


KINDS = ["truncated", "empty", "garbage", "text", "forbidden global", "raw pickle", "wrong stage"]


def damage(path: Path, kind: str, good: Path, gan_ckpt: Path) -> str:
    """Write a damaged checkpoint of ``kind`` (one of :data:`KINDS`) at ``path`` from the good
    one; returns what the error message says is wrong."""
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
        return "truncated or damaged (an incomplete torch.save zip archive)"
    if kind == "empty":
        path.write_bytes(b"")
        return "empty file (0 bytes)"
    if kind == "garbage":
        path.write_bytes(bytes((i * 97 + 13) % 256 for i in range(4000)))
        return "not a PyTorch checkpoint (unrecognised binary content)"
    if kind == "text":
        path.write_text("step: 3\nmodels: none\n")
        return "a text file, not a PyTorch checkpoint"
    if kind == "forbidden global":
        torch.save({"models": {"vae": {}}, "hook": Evil()}, path)
        return "refused: loading it would import posix.system (code, not data)"
    if kind == "raw pickle":
        path.write_bytes(pickle.dumps(Evil(), protocol=4))
        return "refused: loading it would import posix.system (code, not data)"
    if kind == "wrong stage":
        shutil.copy(gan_ckpt, path)
        return "a Stage II (GAN) checkpoint (models: discriminator, generator, vae)"
    raise ValueError(kind)


def copy_with_misfit_weights(stage1: Path, tmp_path: Path) -> Path:
    """A copy of the Stage I run whose last.pt config says base_channels 8 (its weights are 4)."""
    run = Path(shutil.copytree(stage1.parents[1], tmp_path / "run"))
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["config"]["vae"]["base_channels"] = 8
    torch.save(ckpt, last)
    return run
