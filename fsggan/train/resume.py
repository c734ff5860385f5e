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

import os
import sys
from dataclasses import replace
from pathlib import Path

from fsggan.config import ConfigError, from_dict, to_dict

from .runtime import TrainingError

__all__ = ["RESUMABLE_KEYS", "check_start", "changed_keys", "already_done", "run_folder", "holds_run", "located",
           "relocated", "check_weights"]

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
