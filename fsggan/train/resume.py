"""Starting a run: the checks made before anything in the run directory is written.

A fresh run may not start in a directory that already holds one. A resumed run continues
with the config stored in its checkpoint, and only the keys of :data:`RESUMABLE_KEYS` may
differ from it (``--set`` on the command line, or the config given to ``train_vae`` /
``train_gan`` with ``resume=``): they change how long the run goes, what it logs, where
it writes and how fast it runs - never the models, the losses, the optimiser, the seed or
the data. Any other difference is refused with one line naming the keys (start a new run,
in another directory, to change them). A run already at or past ``train.steps`` is
reported and left as it is.

The weights themselves are checked against the models the config builds when they are
loaded (:func:`fsggan.checkpoint.load_states`), which also happens before the first write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fsggan.config import ConfigError, from_dict, to_dict

from .config import config_of_checkpoint
from .runtime import TrainingError

__all__ = ["RESUMABLE_KEYS", "check_start", "changed_keys", "already_done"]

RESUMABLE_KEYS = (
    "train.steps",           # train longer (a decaying learning rate then follows the new length)
    "train.log_every", "train.sample_every", "train.val_every", "train.ckpt_every", "train.snapshot_every",
    "train.num_samples", "train.progress",
    "train.run_dir",         # continue in another directory (a moved or forked run)
    "train.device", "train.compile", "train.channels_last",   # where and how fast, not what
    "train.cudnn_benchmark", "train.tf32",
    "data.num_workers", "data.pin_memory", "data.occlude_on",
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
    if ckpt is None:
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            raise TrainingError(f"{run_dir} already holds a run ({last}); continue it with --resume "
                                f"or choose another --run-dir")
        return None
    path = ckpt.get("path", "checkpoint")
    try:
        stored = to_dict(from_dict(type(cfg), config_of_checkpoint(ckpt)))
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
