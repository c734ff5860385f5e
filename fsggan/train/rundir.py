"""The run directory: created (and the resolved config written) only once the start has
been checked (:func:`prepare_run_dir`); on resume ``stats.jsonl`` is cut back to the
checkpoint's step (:func:`truncate_stats`) and the states loaded (:func:`restore_checkpoint`;
the file layout is :mod:`fsggan.checkpoint`'s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fsggan.checkpoint import load_states, remove_stale_temps
from fsggan.config import save_config

from .runtime import Env, restore_rng_states

__all__ = ["prepare_run_dir", "truncate_stats", "restore_checkpoint", "describe"]


def prepare_run_dir(cfg, env: Env, resume_step: int | None = None) -> Path:
    """Create the run directory and write config.yaml and data_config.yaml (rank 0).

    Called once everything that can fail at start has been checked (:mod:`.resume`), so
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
