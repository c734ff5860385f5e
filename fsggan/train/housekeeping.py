"""Everything that happens between two optimisation steps, identical in both stages
(:class:`Housekeeping`): scalars (:mod:`.runlog`), sample grids, validation
(:mod:`.validation`) and ``best.pt``, ``last.pt`` / snapshots, the progress bar, the
graceful stop (:mod:`.safety`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from fsggan.checkpoint import make_checkpoint, save_checkpoint
from fsggan.config import to_dict

from .runlog import Meter, RunLog
from .runtime import Env, gather_rng_states
from .safety import MAX_UNCHECKED_STEPS, LossGuard
from .validation import validate

__all__ = ["due", "Housekeeping"]


def due(step: int, every: int, last: int) -> bool:
    """True on multiples of ``every`` (0 disables) and at the final step."""
    return step == last or (every > 0 and step % every == 0)


# Between steps ----------------------------------------------------------------------

class Housekeeping:
    """Everything that happens between two optimisation steps, identical in both stages:
    scalars (TensorBoard + stats.jsonl), sample grids, validation and ``best.pt``,
    ``last.pt`` / snapshots, the progress bar and the graceful stop.

    predict(x) -> {name: image batch} runs the stage's networks in eval mode (no grad) on
    occluded faces; val is the fixed validation set; ``best_key`` (e.g.
    "val/output_ssim") selects ``checkpoints/best.pt``; ``extra`` are more keys for every
    checkpoint (the data state of :func:`fsggan.train.batches.setup_data`). Collective
    operations (rank means, RNG gathering) happen on every rank at the same steps; only
    rank 0 writes.
    """

    def __init__(self, *, cfg, env: Env, run_dir: Path, models: dict, optimizers: dict, scalers: dict,
                 predict: Callable, val: dict | None, best_key: str, best: dict, step: int,
                 extra: dict | None = None, judges: dict | None = None):
        from tqdm import tqdm

        self.cfg, self.train, self.env, self.run_dir = cfg, cfg.train, env, run_dir
        self.models, self.optimizers, self.scalers = models, optimizers, scalers
        self.predict, self.val, self.best_key, self.best = predict, val, best_key, best
        self.extra = dict(extra or {})
        self.judges = judges
        self.log = RunLog(run_dir, env, step)
        self.meter = Meter()
        self.guard = LossGuard(env, run_dir)
        self.pbar = tqdm(total=self.train.steps, initial=step, disable=not (env.is_main and self.train.progress),
                         dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        self.last_val: dict[str, float] = {}

    def __call__(self, step: int, pos: tuple[int, int], terms: dict, stop_requested: bool) -> bool:
        """Call after step ``step`` (1-based count of completed steps) with its loss terms
        (detached tensors, left on the device); True means stop now.

        The terms are read back only at the steps that log, validate or save (and at least
        every :data:`~.safety.MAX_UNCHECKED_STEPS`), by :class:`~.safety.LossGuard`: the
        steps between never wait for the GPU. Under DDP a stop request is agreed on at those
        steps too (alone, at once)."""
        train, env = self.train, self.env
        self.guard.add(terms, step)
        self.pbar.update(1)
        val_due = due(step, train.val_every, train.steps)
        ckpt_due = due(step, train.ckpt_every, train.steps)
        snap_due = train.snapshot_every > 0 and step % train.snapshot_every == 0
        log_due = due(step, train.log_every, train.steps)
        sample_due = due(step, train.sample_every, train.steps)
        sync = (log_due or sample_due or val_due or ckpt_due or snap_due or step % MAX_UNCHECKED_STEPS == 0
                or (stop_requested and not env.distributed))
        if not sync:
            return False
        records, stop = self.guard.check(stop_requested)
        for values in records:
            self.meter.update(values, train.batch_size)
        ckpt_due = ckpt_due or stop
        # scalars
        if log_due:
            means = self.meter.means(env)
            means["speed/images_per_sec"] = self.meter.images_per_second()  # global batches, wall clock
            means.update({f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()})
            self.log.scalars(step, means)
            self.pbar.set_postfix({k.split("/", 1)[-1]: f"{v:.4g}" for k, v in means.items()
                                   if k.endswith("total") or k == "speed/images_per_sec"}, refresh=False)
            self.meter.reset()
        # sample grid
        if env.is_main and self.val is not None and sample_due:
            n = train.num_samples
            x, y = self.val["occluded"][:n], self.val["clean"][:n]
            outs = self.predict(x.to(env.device))
            self.log.image_grid(step, {"occluded": x, **outs, "clean": y})
        # validation, best.pt, last.pt
        if val_due or ckpt_due or snap_due:
            rng = gather_rng_states(env)  # collective: every rank, same steps
            if env.is_main and val_due and self.val is not None:
                t0 = time.perf_counter()
                metrics = validate(self.predict, self.val, env, channels_last=train.channels_last,
                                   judges=self.judges)
                metrics["val/seconds"] = time.perf_counter() - t0
                self.last_val = metrics
                self.log.scalars(step, metrics)
                value = metrics[self.best_key]
                if self.best.get("metric") != self.best_key or value > self.best["value"]:
                    self.best = {"metric": self.best_key, "value": value, "step": step}
                    self.save(["best.pt"], step, pos, rng)
                self.pbar.write(f"step {step}: " + ", ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items()
                                                             if k != "val/seconds"))
            names = (["last.pt"] if ckpt_due or val_due else []) + ([f"step_{step:07d}.pt"] if snap_due else [])
            self.save(names, step, pos, rng)
        if stop:
            self.log.flush()
        return stop

    def result(self, step: int) -> dict:
        """What a training function returns after step ``step``: {"step", "run_dir", "best",
        "val", "interrupted"} (interrupted: stopped before ``train.steps``)."""
        return {"step": step, "run_dir": str(self.run_dir), "best": self.best, "val": self.last_val,
                "interrupted": step < self.train.steps}

    def save(self, names: list[str], step: int, pos: tuple[int, int], rng: list) -> None:
        if not self.env.is_main or not names:
            return
        state = make_checkpoint(step=step, config=to_dict(self.cfg), models=self.models, optimizers=self.optimizers,
                                scalers=self.scalers, rng=rng, data_pos=pos, best=self.best, **self.extra)
        for name in names:
            save_checkpoint(self.run_dir / "checkpoints" / name, state)

    def close(self) -> None:
        self.pbar.close()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
