"""Checkpoint files, for every caller: the layout (:func:`make_checkpoint`), save (atomic),
load (``weights_only``, one-line errors), resolve (a file or a run directory), and back
into objects (:func:`load_states`, :func:`model_from_checkpoint`).

Layout (DESIGN.md section 4): a plain dict ``{"version": 1, "step", "config": {resolved
config; the model sections are constructor kwargs}, "models": {name: state_dict},
"optimizers": {name: state_dict}, "scaler": {name: state_dict}, "rng": [per-rank states],
"data": {"epoch", "batch"}, "best": {...}, "data_yaml": {the data YAML as read at start}}``
- tensors, numbers, strings, lists and dicts only, so ``torch.load(path,
weights_only=True)`` reads it and a model can be rebuilt without the YAML. A run directory holds ``checkpoints/last.pt`` (the latest state; what a resumed
run continues), ``checkpoints/best.pt`` (chosen on the validation split; what inference
uses) and optional snapshots.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

__all__ = ["CHECKPOINT_VERSION", "CheckpointError", "make_checkpoint", "save_checkpoint", "resolve_checkpoint",
           "load_checkpoint", "load_states", "model_from_checkpoint"]

CHECKPOINT_VERSION = 1
STAGES = {"vae": "Stage I (VAE)", "generator": "Stage II (GAN)"}


class CheckpointError(ValueError):
    """A file is not an fsggan checkpoint (of the expected kind); the message names it."""


def make_checkpoint(*, step: int, config: dict, models: dict, optimizers: dict, scalers: dict, rng: list,
                    data_pos: tuple[int, int], best: dict, **extra) -> dict:
    """The checkpoint dict of a training run (see the module docstring); ``extra`` keys are
    stored as they are."""
    return {
        "version": CHECKPOINT_VERSION,
        "step": step,
        "config": config,
        "models": {k: m.state_dict() for k, m in models.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": {k: s.state_dict() for k, s in scalers.items()},
        "rng": rng,
        "data": {"epoch": data_pos[0], "batch": data_pos[1]},
        "best": dict(best),
        **extra,
    }


def load_states(ckpt: dict, *, models: dict, optimizers: dict, scalers: dict) -> tuple[int, tuple[int, int], dict]:
    """Load a checkpoint's states into the given objects; returns (step, (epoch, batch), best)."""
    for k, m in models.items():
        m.load_state_dict(ckpt["models"][k])
    for k, o in optimizers.items():
        o.load_state_dict(ckpt["optimizers"][k])
    for k, s in scalers.items():
        if ckpt["scaler"].get(k):
            s.load_state_dict(ckpt["scaler"][k])
    return ckpt["step"], (ckpt["data"]["epoch"], ckpt["data"]["batch"]), dict(ckpt.get("best", {}))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: temp file in the same folder, fsync, os.replace.

    A crash while saving leaves the previous file intact.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename durable too
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def resolve_checkpoint(path: str | Path, prefer: Sequence[str] = ("best.pt", "last.pt")) -> Path:
    """A checkpoint file as it is, or a run directory -> its first existing
    ``checkpoints/<name>`` (else ``<name>``) for name in ``prefer``.

    Inference prefers ``best.pt`` (the default); resuming wants ``prefer=("last.pt",)``.
    Raises FileNotFoundError naming the path and what was looked for.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [rel for name in prefer for rel in (f"checkpoints/{name}", name)]
        for rel in candidates:
            if (path / rel).is_file():
                return path / rel
        raise FileNotFoundError(f"{path}: run directory without a checkpoint (looked for {', '.join(candidates)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
    return path


def load_checkpoint(path: str | Path, *, require: str | None = None, version: int | None = None,
                    prefer: Sequence[str] = ("best.pt", "last.pt"), map_location="cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``: no pickled objects).

    path: a file or a run directory (see :func:`resolve_checkpoint`, ``prefer``).
    require: a model name ("vae", "generator", ...) that must be in ``models``, with its
        constructor kwargs in ``config``.
    version: the checkpoint version the caller reads (training resumes check it).
    Returns the dict with ``"path"`` (the resolved file) added. Raises FileNotFoundError
    or :class:`CheckpointError`, both one line naming the file.
    """
    path = resolve_checkpoint(path, prefer)
    if require is not None:
        stage = STAGES.get(require, f"'{require}'")
        expected = (f"an fsggan {stage} checkpoint: a dict with 'models': {{'{require}': state_dict}} and "
                    f"'config': {{'{require}': constructor kwargs}}")
    else:
        expected = "an fsggan checkpoint: a dict with 'models': {name: state_dict} and 'config'"
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # not a torch file, truncated, unsafe pickle, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg}); expected {expected}") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("models"), dict) or (
            require is None and not isinstance(ckpt.get("config"), dict)):
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: expected {expected}; found {found}")
    if require is not None:
        if require not in ckpt["models"]:
            raise CheckpointError(f"{path}: holds models {sorted(ckpt['models'])}, not '{require}'; "
                                  f"expected {expected}")
        if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt["config"].get(require), dict):
            raise CheckpointError(f"{path}: config['{require}'] (the constructor kwargs) is missing; "
                                  f"expected {expected}")
    if version is not None and ckpt.get("version") != version:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')}, this code reads {version}")
    ckpt["path"] = str(path)
    return ckpt


def model_from_checkpoint(cls: type[nn.Module], ckpt: dict, name: str, *, state: str | None = None) -> nn.Module:
    """``cls(**ckpt["config"][name])`` with the weights ``ckpt["models"][state or name]``,
    frozen and in eval mode (for inference). Raises CheckpointError when they do not fit."""
    kwargs, path = ckpt["config"][name], ckpt.get("path", "checkpoint")
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise CheckpointError(f"{path}: config['{name}'] does not fit {cls.__name__}: {exc}") from exc
    try:
        model.load_state_dict(ckpt["models"][state or name])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state dict of '{name}' does not fit {cls.__name__}({kwargs}): "
                              f"{str(exc).splitlines()[0]}") from exc
    return model.eval().requires_grad_(False)
