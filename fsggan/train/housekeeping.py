"""Everything that happens between two optimisation steps, identical in both stages.

* :class:`Housekeeping`: scalars (TensorBoard + ``stats.jsonl``), sample grids,
  validation and ``best.pt``, ``last.pt`` / snapshots, the progress bar;
* :func:`validate` (PSNR / SSIM on the fixed validation set), :class:`RunLog`,
  :class:`Meter`, :func:`describe`;
* the run directory (:func:`prepare_run_dir`, written only once the start has been
  checked; on resume ``stats.jsonl`` is cut back to the checkpoint's step by
  :func:`truncate_stats`) and checkpoints in and out (:func:`restore_checkpoint`; the
  layout is :mod:`fsggan.checkpoint`'s);
* safety: :func:`check_finite` (non-finite loss -> :class:`NonFiniteLossError` naming the
  step and term), :class:`StopSignal` (Ctrl-C / SIGTERM -> finish the step, checkpoint,
  exit).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from fsggan.checkpoint import load_states, make_checkpoint, remove_stale_temps, save_checkpoint
from fsggan.config import save_config, to_dict
from fsggan.metrics import psnr, ssim, summarize

from .runtime import Env, gather_rng_states, restore_rng_states

__all__ = ["NonFiniteLossError", "check_finite", "StopSignal", "prepare_run_dir", "truncate_stats",
           "restore_checkpoint", "RunLog",
           "Meter", "validate", "describe", "due", "Housekeeping"]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops without writing a checkpoint."""


# Safety -----------------------------------------------------------------------------

def check_finite(terms: dict[str, torch.Tensor], step: int, run_dir: Path | None = None) -> dict[str, float]:
    """Loss terms of step ``step`` (1-based) as floats (one device sync); raise if any is
    NaN or infinite.

    The message names the step and the terms; nothing is saved, so ``checkpoints/last.pt``
    stays the last good state.
    """
    values = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()
    out = dict(zip(terms, values))
    bad = [f"{k}={v}" for k, v in out.items() if not math.isfinite(v)]
    if bad:
        where = f"; last good checkpoint: {run_dir / 'checkpoints' / 'last.pt'}" if run_dir else ""
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {', '.join(bad)}. Training stopped without saving"
            f"{where}. Try a lower optim.lr, train.amp=none, or check the data.")
    return out


class StopSignal:
    """Ctrl-C / SIGTERM: finish the current step, save a checkpoint, then stop.

    A second Ctrl-C aborts at once (KeyboardInterrupt, nothing saved). SIGTERM (what
    torchrun and cluster schedulers send) always asks for the graceful stop. Handlers are
    installed only in the main thread; elsewhere ``requested`` stays False.
    """

    def __init__(self, verbose: bool = True):
        self.requested = False
        self.verbose = verbose
        self._old = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        if not self.requested and self.verbose:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            print(f"\n{name}: stopping after this step and saving a checkpoint "
                  f"(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)
        self.requested = True

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# Run directory and checkpoints ------------------------------------------------------

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


def due(step: int, every: int, last: int) -> bool:
    """True on multiples of ``every`` (0 disables) and at the final step."""
    return step == last or (every > 0 and step % every == 0)


# Logging ----------------------------------------------------------------------------

class RunLog:
    """TensorBoard scalars/images, ``stats.jsonl`` and ``samples/*.png`` (rank 0 only;
    on other ranks every method does nothing)."""

    def __init__(self, run_dir: Path, env: Env, step: int = 0):
        self.active = env.is_main
        self.run_dir = run_dir
        self.writer = None
        self.stats = None
        if self.active:
            from torch.utils.tensorboard import SummaryWriter

            # resumed at ``step``: TensorBoard hides the events of later steps written before
            self.writer = SummaryWriter(str(run_dir), purge_step=step + 1 if step else None)
            self.stats = open(run_dir / "stats.jsonl", "a")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.active:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self.stats.write(json.dumps(record) + "\n")
        self.stats.flush()

    def image_grid(self, step: int, rows: dict[str, torch.Tensor]) -> Path | None:
        """One grid, a row per entry of ``rows`` (each (N, 3, H, W) in [-1, 1]); saved as
        ``samples/step_NNNNNNN.png`` and to TensorBoard. Returns the PNG path."""
        if not self.active:
            return None
        import torchvision

        names = list(rows)
        n = rows[names[0]].shape[0]
        grid = torchvision.utils.make_grid(torch.cat([rows[k].detach().float().cpu() for k in names]),
                                           nrow=n, padding=2, value_range=(-1, 1), normalize=True)
        self.writer.add_image("samples/" + "_".join(names), grid, step)
        path = self.run_dir / "samples" / f"step_{step:07d}.png"
        torchvision.utils.save_image(grid, path)
        return path

    def flush(self) -> None:
        if self.active:
            self.writer.flush()

    def close(self) -> None:
        if self.active:
            self.writer.close()
            self.stats.close()


class Meter:
    """Running means of per-step floats between two log points, plus images/second."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.images = 0
        self.start = time.perf_counter()

    def update(self, values: dict[str, float], images: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.images += images

    def means(self, env: Env) -> dict[str, float]:
        """Means over the steps since the last reset, averaged over ranks."""
        keys = sorted(self.sums)
        if not keys or not self.count:
            return {}
        t = env.mean(torch.tensor([self.sums[k] / self.count for k in keys], dtype=torch.float64))
        return dict(zip(keys, t.tolist()))

    def images_per_second(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)


# Validation -------------------------------------------------------------------------

@torch.no_grad()
def validate(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], val: dict[str, torch.Tensor],
             env: Env, batch_size: int = 32, channels_last: bool = False,
             judges: dict[str, Callable] | None = None) -> dict[str, float]:
    """PSNR / SSIM (fsggan.metrics; docs/design.md, Metrics) of each output of
    ``predict(x)`` against the clean faces, and of the occluded input itself.

    Returns ``{"val/<name>_psnr", "val/<name>_ssim"}`` for name in ("input", *outputs), and
    for each face recogniser in ``judges`` (name -> (B, 3, H, W) -> unit features) the mean
    cosine between the features of the input / the output and of the clean face,
    ``{"val/<name>_cos_<judge>"}``: the training recogniser's rising while an independent
    one's falls is G learning the training recogniser's blind spots.
    """
    judges = judges or {}
    cosines: dict[str, list[float]] = {}
    values: dict[str, tuple[list[float], list[float]]] = {}
    for i in range(0, len(val["clean"]), batch_size):
        x = val["occluded"][i:i + batch_size]
        y = val["clean"][i:i + batch_size]
        xd = x.to(env.device)
        if channels_last:
            xd = xd.contiguous(memory_format=torch.channels_last)
        outputs = {"input": x, **{k: v.float().cpu() for k, v in predict(xd).items()}}
        for name, out in outputs.items():
            p, s = values.setdefault(name, ([], []))
            for a, b in zip(out, y):
                p.append(psnr(a, b))
                s.append(ssim(a, b))
        for judge, net in judges.items():
            ref = net(y.to(env.device)).float()
            for name in ("input", "output"):
                if name in outputs:
                    feat = net(outputs[name].to(env.device)).float()
                    cosines.setdefault(f"val/{name}_cos_{judge}", []).extend((feat * ref).sum(1).cpu().tolist())
    metrics = {k: sum(v) / len(v) for k, v in cosines.items()}
    for name, (p, s) in values.items():  # summarize leaves out infinite PSNRs (identical images)
        metrics[f"val/{name}_psnr"] = summarize(p)["mean"]
        metrics[f"val/{name}_ssim"] = summarize(s)["mean"]
    return metrics


def describe(run_dir: Path, env: Env, n_train: int, n_val: int, n_params: dict[str, int]) -> None:
    if env.is_main:
        params = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in n_params.items())
        print(f"run dir {run_dir} | device {env.device} x{env.world_size} | train {n_train} images, "
              f"val {n_val} | params: {params}", flush=True)


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
        self.pbar = tqdm(total=self.train.steps, initial=step, disable=not (env.is_main and self.train.progress),
                         dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        self.last_val: dict[str, float] = {}

    def __call__(self, step: int, pos: tuple[int, int], values: dict[str, float], stop_requested: bool) -> bool:
        """Call after step ``step`` (1-based count of completed steps); True means stop now."""
        train, env = self.train, self.env
        t_start = time.perf_counter()
        self.meter.update(values, train.batch_size)
        self.pbar.update(1)
        stop = env.any(stop_requested)
        # scalars
        if due(step, train.log_every, train.steps):
            means = self.meter.means(env)
            means["speed/images_per_sec"] = self.meter.images_per_second()  # global batches
            means.update({f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()})
            self.log.scalars(step, means)
            self.pbar.set_postfix({k.split("/", 1)[-1]: f"{v:.4g}" for k, v in means.items()
                                   if k.endswith("total") or k == "speed/images_per_sec"}, refresh=False)
            self.meter.reset()
        # sample grid
        if env.is_main and self.val is not None and due(step, train.sample_every, train.steps):
            n = train.num_samples
            x, y = self.val["occluded"][:n], self.val["clean"][:n]
            outs = self.predict(x.to(env.device))
            self.log.image_grid(step, {"occluded": x, **outs, "clean": y})
        # validation, best.pt, last.pt
        val_due = due(step, train.val_every, train.steps)
        ckpt_due = due(step, train.ckpt_every, train.steps) or stop
        snap_due = train.snapshot_every > 0 and step % train.snapshot_every == 0
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
        # images/s counts training time only, not this bookkeeping
        self.meter.start += time.perf_counter() - max(t_start, self.meter.start)
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
