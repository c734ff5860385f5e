"""What a run keeps and gets back: the checks made before a run writes anything (what may
change on resume), the run folder, loading a checkpoint's states, the RNG states of every
rank (so a resumed run is bitwise identical to an uninterrupted one) and the exponential
moving average of G's weights. The checkpoint files themselves are :mod:`fsggan.checkpoint`'s.

* :func:`check_start`, :func:`already_done`, :func:`check_weights`, :data:`RESUMABLE_KEYS`;
  :func:`run_folder`, :func:`holds_run`, :func:`located`, :func:`relocated` (run folders that travel);
* :func:`prepare_run_dir`, :func:`truncate_stats`, :func:`restore_checkpoint`, :func:`describe`;
* :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state`, :func:`gather_rng_states` /
  :func:`restore_rng_states`;
* :class:`EMA` (``train.ema``, beyond the paper).

Starting a run: a fresh run may not start in a directory that already holds one. A resumed run continues
with the config stored in its checkpoint, and only the keys of :data:`RESUMABLE_KEYS` may
differ from it (``--set`` on the command line, or the config given to ``train_vae`` /
``train_gan`` with ``resume=``): they change how long the run goes, what it logs, where
it writes and how fast it runs - never the models, the losses, the optimiser, the seed or
the data. Any other difference is refused with one line naming the keys (start a new run,
in another directory, to change them). A run already at or past ``train.steps`` is
reported and left as it is.

The weights themselves are checked against the models the config builds when they are
loaded (:func:`fsggan.checkpoint.load_states`), which also happens before the first write -
for a complete run too (:func:`check_weights`), so a mismatch is never hidden behind
"nothing to train".

Run folders travel: a resumed run writes into the folder it is given (the command line
takes the folder of the checkpoint named by ``--resume``, or ``--run-dir``), never into the
one stored in the checkpoint, and may not write into a folder that holds another run.
Relative paths of the stored config (the data, the identity weights) are read relative to
the directory the run was started from (``origin``, kept in every checkpoint) when they
are there, else relative to the current directory (:func:`located`), so a run resumes
from any working directory.
"""

from __future__ import annotations

import copy
import json
import os
import random
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fsggan.checkpoint import load_states, remove_stale_temps
from fsggan.config import ConfigError, from_dict, save_config, to_dict

from .runtime import Env, TrainingError

__all__ = ["RESUMABLE_KEYS", "check_start", "changed_keys", "already_done", "run_folder", "holds_run", "located",
           "relocated", "check_weights", "prepare_run_dir", "truncate_stats", "restore_checkpoint", "describe",
           "seed_everything", "rng_state", "set_rng_state", "gather_rng_states", "restore_rng_states", "EMA"]


# Starting a run: what may change on resume ------------------------------------------------

RESUMABLE_KEYS = (
    "train.steps",           # train longer (a decaying learning rate then follows the new length)
    "train.log_every", "train.sample_every", "train.val_every", "train.ckpt_every", "train.snapshot_every",
    "train.num_samples", "train.progress",
    "train.run_dir",         # continue in another directory (a moved or forked run)
    "train.device", "train.compile", "train.channels_last",   # where and how fast, not what
    "train.cudnn_benchmark", "train.tf32",
    "data.num_workers", "data.pin_memory", "data.persistent_workers", "data.occlude_on",
)


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(old: dict, new: dict) -> dict[str, tuple]:
    """``{"a.b": (old value, new value)}`` for every leaf key whose value differs."""
    a, b = _flat(old), _flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_start(cfg, ckpt: dict | None) -> str | None:
    """Raise TrainingError when the run may not start as configured; return a note (the
    run is already complete: nothing to train) or None.

    cfg: the whole-run config (``TrainVAEConfig`` / ``TrainGANConfig``) the run would use;
    ckpt: the checkpoint it resumes (``load_checkpoint(..., resumable=True)``), or None.
    """
    run_dir = Path(cfg.train.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingError(f"train.run_dir {run_dir}: a file, not a folder; choose another --run-dir")
    if ckpt is None:
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            raise TrainingError(f"{run_dir} already holds a run ({last}); continue it with --resume "
                                f"or choose another --run-dir")
        return None
    path = ckpt.get("path", "checkpoint")
    source = run_folder(path)
    found = holds_run(run_dir)
    if found and not _same_folder(run_dir, source):
        raise TrainingError(f"{run_dir} holds another run ({found}); resume {path} in its own folder ({source}) "
                            f"or in a new one (--run-dir), so that no run is overwritten")
    try:
        stored = to_dict(from_dict(type(cfg), ckpt["config"]))
    except ConfigError as exc:
        raise TrainingError(f"{path}: its stored config no longer reads: {exc}") from None
    refused = {k: v for k, v in changed_keys(stored, to_dict(cfg)).items()
               if not any(k == s or k.startswith(s + ".") for s in RESUMABLE_KEYS)}
    if refused:
        changes = ", ".join(f"{k} ({old!r} in the checkpoint, {new!r} now)" for k, (old, new) in refused.items())
        raise TrainingError(f"cannot resume {path} with a changed {changes}: only {', '.join(RESUMABLE_KEYS)} "
                            f"may change on resume; start a new run (another --run-dir) to change the others")
    step, steps = int(ckpt["step"]), cfg.train.steps
    if step >= steps:
        return (f"{path} is already at step {step} of train.steps={steps}: nothing to train, nothing written "
                f"(to continue, raise it: --set train.steps=N with N > {step})")
    return None


def already_done(note: str, ckpt: dict, cfg, env) -> dict:
    """What ``train_vae`` / ``train_gan`` return for a run that :func:`check_start` found
    complete (the note is printed on rank 0; nothing is written)."""
    if env.is_main:
        print(note, file=sys.stderr, flush=True)
    return {"step": int(ckpt["step"]), "run_dir": str(cfg.train.run_dir), "best": dict(ckpt.get("best") or {}),
            "val": {}, "interrupted": False, "note": note}


# Run folders that travel -----------------------------------------------------------------

def run_folder(checkpoint: str | Path) -> Path:
    """The run folder a checkpoint file belongs to: ``<run>/checkpoints/<name>.pt`` -> ``<run>``
    (a checkpoint elsewhere: the folder it lies in)."""
    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def holds_run(folder: str | Path) -> str | None:
    """The first file that shows ``folder`` holds a run (a checkpoint, its config or its
    stats), or None."""
    folder = Path(folder)
    for rel in ("checkpoints/last.pt", "checkpoints/best.pt", "config.yaml", "stats.jsonl"):
        if (folder / rel).is_file():
            return str(folder / rel)
    return None


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def located(path: str | None, origin: str | None) -> str | None:
    """A path of a stored config, to read now: a relative one is taken relative to
    ``origin`` (the directory the run was started from) when it is there, else as given
    (relative to the current directory)."""
    if not path or not origin or Path(path).is_absolute():
        return path
    there = Path(origin) / path
    return str(there) if there.exists() else path


def relocated(prep, origin: str | None):
    """A data config (:class:`fsggan.data.PrepareConfig`) with its relative paths
    :func:`located` against ``origin``."""
    if not origin:
        return prep

    def source(s):
        if s.path == "procedural":
            return s
        return replace(s, path=located(s.path, origin), anchors=located(s.anchors, origin))

    occ = prep.occluders
    return replace(prep, dataset=replace(prep.dataset, root=located(prep.dataset.root, origin)),
                   split=replace(prep.split, test_list=located(prep.split.test_list, origin)),
                   occluders=replace(occ, seen=[source(s) for s in occ.seen], new=[source(s) for s in occ.new]))


def check_weights(ckpt: dict, models: dict) -> None:
    """Raise :class:`fsggan.checkpoint.CheckpointError` (one line) when the checkpoint's
    weights do not fit the models the config builds; nothing is changed in them."""
    from fsggan.checkpoint import load_state

    for name, model in models.items():
        load_state(model, ckpt, name)


# The run folder ---------------------------------------------------------------------------

def prepare_run_dir(cfg, env: Env, resume_step: int | None = None) -> Path:
    """Create the run directory and write config.yaml and data_config.yaml (rank 0).

    Called once everything that can fail at start has been checked (:func:`check_start`), so
    a failed start leaves nothing behind. A resumed run (``resume_step``: the checkpoint's
    step) also gets ``stats.jsonl`` cut back to that step - the records of steps after it
    are written again, once - and the temp files of killed saves removed.
    """
    run_dir = Path(cfg.train.run_dir)
    if env.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        save_config(cfg.data.prepare_config(), run_dir / "data_config.yaml")  # what fsggan-prepare-data reads
        remove_stale_temps(run_dir / "checkpoints")
        if resume_step is not None:
            truncate_stats(run_dir / "stats.jsonl", resume_step)
    env.barrier()
    return run_dir


def truncate_stats(path: Path, step: int) -> int:
    """Keep the records of ``stats.jsonl`` up to ``step`` (and drop a line cut by a kill);
    returns how many were dropped. The file is replaced atomically."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    return dropped


def restore_checkpoint(ckpt: dict, *, models: dict, optimizers: dict, scalers: dict, env: Env) -> tuple:
    """Load a checkpoint's states into the given objects and this rank's RNG streams;
    returns (step, (epoch, batch), best)."""
    state = load_states(ckpt, models=models, optimizers=optimizers, scalers=scalers)
    restore_rng_states(ckpt["rng"], env)
    return state


def describe(run_dir: Path, env: Env, n_train: int, n_val: int, n_params: dict[str, int]) -> None:
    if env.is_main:
        params = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in n_params.items())
        print(f"run dir {run_dir} | device {env.device} x{env.world_size} | train {n_train} images, "
              f"val {n_val} | params: {params}", flush=True)


# Random streams (bitwise resume) ------------------------------------------------------

def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch; each rank gets its own stream (seed + rank), model
    initialisation is made identical across ranks by DDP broadcasting rank 0's weights."""
    s = seed + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def rng_state() -> dict:
    """This process's RNG states as tensors and plain lists (``weights_only``-loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # this process's GPU only (get_rng_state_all would open a context on every GPU)
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def gather_rng_states(env: Env) -> list[dict]:
    """Every rank's RNG state, in rank order (on all ranks)."""
    state = rng_state()
    if not env.distributed:
        return [state]
    states = [None] * env.world_size
    dist.all_gather_object(states, state)
    return states


def restore_rng_states(states: list[dict], env: Env) -> None:
    if len(states) == env.world_size:
        set_rng_state(states[env.rank])
    elif env.is_main:
        warnings.warn(f"checkpoint holds RNG states of {len(states)} processes, this run has "
                      f"{env.world_size}: random streams are reseeded, the run is not bitwise "
                      f"identical to an uninterrupted one", stacklevel=2)


# Averaged weights -----------------------------------------------------------------------

class EMA:
    """Exponential moving average of a network's weights (beyond the paper; ``train.ema``).

    The average is a full copy of the network kept in eval mode: parameters follow
    ``ema = decay * ema + (1 - decay) * current`` after every optimisation step, buffers
    (BatchNorm running statistics) are copied as they are. Validation, ``best.pt`` and
    inference use the copy; it is stored in checkpoints as ``models["generator_ema"]``.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._params = list(self.module.parameters())
        self._buffers = list(self.module.buffers())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One multi-tensor lerp over all parameters and one multi-tensor copy of the buffers
        (a couple of kernels per step on a GPU instead of one or two per tensor)."""
        torch._foreach_lerp_(self._params, list(model.parameters()), 1.0 - self.decay)
        if self._buffers:
            torch._foreach_copy_(self._buffers, list(model.buffers()))
