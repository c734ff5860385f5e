"""What happens between two optimisation steps, the same in both stages: reading the loss
terms back and stopping on a non-finite one, scalars, sample grids, validation and the
checkpoints it selects, the progress bar.

* :class:`Monitor`, called by the training loops after each step: :meth:`Monitor.due` (what
  falls on this step), scalars, sample grids, validation and ``best.pt``, ``last.pt`` / snapshots;
* :class:`RunLog` (TensorBoard scalars and images, ``stats.jsonl``, ``samples/*.png``; rank 0
  only) and :class:`Meter` (running means between two log points, images per second);
* :class:`LossGuard` / :class:`NonFiniteLossError` (a non-finite loss stops the run, naming the
  step and the term, before anything is saved; a stop asked for by
  :class:`fsggan.train.runtime.StopSignal` is agreed on by every rank here too);
* :func:`validate`: PSNR / SSIM of each output on the fixed validation set, the occluder
  residue, the harm done to the same faces un-occluded, and the recognisers' output-to-clean
  cosines.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from fsggan.checkpoint import make_checkpoint, save_checkpoint
from fsggan.config import to_dict
from fsggan.images import to_uint8
from fsggan.metrics import changed_share, occluder_residue, psnr_ssim_batch, spread, summarize

from .runtime import Env
from .state import gather_rng_states

__all__ = ["periodic", "Due", "Monitor", "RunLog", "Meter", "NonFiniteLossError", "LossGuard",
           "MAX_UNCHECKED_STEPS", "validate"]


def periodic(step: int, every: int, last: int) -> bool:
    """True on multiples of ``every`` (0 disables) and at the final step."""
    return step == last or (every > 0 and step % every == 0)


# Between steps ----------------------------------------------------------------------

@dataclass
class Due:
    """What falls on a step (:meth:`Monitor.due`): scalars, a sample grid, validation, the
    checkpoint files to write (``last.pt`` at checkpoint and validation steps and on a stop,
    ``step_NNNNNNN.pt`` snapshots) and whether the run stops now."""
    log: bool = False
    sample: bool = False
    val: bool = False
    saves: tuple[str, ...] = ()
    stop: bool = False


class Monitor:
    """What happens between two optimisation steps, identical in both stages, in the order a
    training loop calls it: :meth:`due` (what falls on the step; the loss terms read back and
    checked where something does), :meth:`log` (scalars to TensorBoard and stats.jsonl, the
    sample grid), :meth:`validate_and_save` (validation and ``best.pt``, ``last.pt`` and
    snapshots); the progress bar; :meth:`result`.

    predict(x) -> {name: image batch} runs the stage's networks in eval mode (no grad) on
    occluded faces; val is the fixed validation set; ``best_key`` (e.g.
    "val/output_ssim") selects ``checkpoints/best.pt``; ``extra`` are more keys for every
    checkpoint (the data state of :func:`fsggan.train.data.setup_data`). Collective
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
        self.runlog = RunLog(run_dir, env, step)
        self.meter = Meter()
        self.guard = LossGuard(env, run_dir)
        self.pbar = tqdm(total=self.train.steps, initial=step, disable=not (env.is_main and self.train.progress),
                         dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
        self.last_val: dict[str, float] = {}

    def due(self, step: int, terms: dict, stop_requested: bool) -> Due:
        """Call after step ``step`` (1-based count of completed steps) with its loss terms
        (detached tensors, left on the device): what falls on this step.

        The terms are read back only at the steps that log, sample, validate or save (and at
        least every :data:`MAX_UNCHECKED_STEPS`), by :class:`LossGuard`, which raises
        :class:`NonFiniteLossError` before anything is saved: the steps between never wait for
        the GPU. Under DDP a stop request is agreed on at those steps too (alone, at once)."""
        train, env = self.train, self.env
        self.guard.add(terms, step)
        self.pbar.update(1)
        val = periodic(step, train.val_every, train.steps)
        ckpt = periodic(step, train.ckpt_every, train.steps)
        snap = train.snapshot_every > 0 and step % train.snapshot_every == 0
        log = periodic(step, train.log_every, train.steps)
        sample = periodic(step, train.sample_every, train.steps)
        if not (log or sample or val or ckpt or snap or step % MAX_UNCHECKED_STEPS == 0
                or (stop_requested and not env.distributed)):
            return Due()
        records, stop = self.guard.check(stop_requested)
        for values in records:
            self.meter.update(values, train.batch_size)
        saves = (("last.pt",) if ckpt or val or stop else ()) + ((f"step_{step:07d}.pt",) if snap else ())
        return Due(log=log, sample=sample, val=val, saves=saves, stop=stop)

    def log(self, step: int, due: Due) -> None:
        """Scalars at log steps (:meth:`log_scalars`), the sample grid at sample steps."""
        if due.log:
            self.log_scalars(step)
        if due.sample:
            self.sample_grid(step)

    def log_scalars(self, step: int) -> None:
        """The running means since the last log step (over ranks), images per second and the
        learning rates, to TensorBoard, ``stats.jsonl`` and the progress bar."""
        means = self.meter.means(self.env)
        means["speed/images_per_sec"] = self.meter.images_per_second()  # global batches, wall clock
        means.update({f"lr/{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()})
        self.runlog.scalars(step, means)
        self.pbar.set_postfix({k.split("/", 1)[-1]: f"{v:.4g}" for k, v in means.items()
                               if k.endswith("total") or k == "speed/images_per_sec"}, refresh=False)
        self.meter.reset()

    def sample_grid(self, step: int) -> None:
        """``samples/step_NNNNNNN.png``: the first ``train.num_samples`` validation faces,
        occluded, each output of ``predict``, clean (rank 0)."""
        if not self.env.is_main or self.val is None:
            return
        n = self.train.num_samples
        x, y = self.val["occluded"][:n], self.val["clean"][:n]
        outs = self.predict(x.to(self.env.device))
        self.runlog.image_grid(step, {"occluded": x, **outs, "clean": y})

    def validate_and_save(self, step: int, pos: tuple[int, int], due: Due) -> None:
        """At validation and checkpoint steps: every rank's RNG states gathered (a collective:
        every rank, the same steps), :meth:`validate` (``best.pt``), then ``last.pt`` and
        snapshots (:meth:`save`); on a stop the log is flushed."""
        if not due.saves:
            return
        rng = gather_rng_states(self.env)
        if due.val:
            self.validate(step, pos, rng)
        self.save(due.saves, step, pos, rng)
        if due.stop:
            self.runlog.flush()

    def validate(self, step: int, pos: tuple[int, int], rng: list) -> None:
        """:func:`validate` on the validation set (rank 0), its scalars logged; ``best.pt``
        written when ``best_key`` improves."""
        if not self.env.is_main or self.val is None:
            return
        t0 = time.perf_counter()
        metrics = validate(self.predict, self.val, self.env, channels_last=self.train.channels_last,
                           judges=self.judges)
        metrics["val/seconds"] = time.perf_counter() - t0
        self.last_val = metrics
        self.runlog.scalars(step, metrics)
        value = metrics[self.best_key]
        if self.best.get("metric") != self.best_key or value > self.best["value"]:
            self.best = {"metric": self.best_key, "value": value, "step": step}
            self.save(["best.pt"], step, pos, rng)
        self.pbar.write(f"step {step}: " + ", ".join(f"{k[4:]} {v:.4f}" for k, v in metrics.items()
                                                     if k != "val/seconds"))

    def save(self, names, step: int, pos: tuple[int, int], rng: list) -> None:
        """One checkpoint (states, every rank's RNG states ``rng``, the data position ``pos``)
        written under each of ``names`` in ``checkpoints/`` (rank 0)."""
        if not self.env.is_main or not names:
            return
        state = make_checkpoint(step=step, config=to_dict(self.cfg), models=self.models, optimizers=self.optimizers,
                                scalers=self.scalers, rng=rng, data_pos=pos, best=self.best, **self.extra)
        for name in names:
            save_checkpoint(self.run_dir / "checkpoints" / name, state)

    def result(self, step: int) -> dict:
        """What a training function returns after step ``step``: {"step", "run_dir", "best",
        "val", "interrupted"} (interrupted: stopped before ``train.steps``)."""
        return {"step": step, "run_dir": str(self.run_dir), "best": self.best, "val": self.last_val,
                "interrupted": step < self.train.steps}

    def close(self) -> None:
        self.pbar.close()
        self.runlog.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# What a run writes as it goes ---------------------------------------------------------------

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
    """Running means of per-step floats between two log points (each over the steps that
    reported it), plus images/second."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # per key: a term may be missing on some steps (identity_ramp)
        self.count = 0
        self.images = 0
        self.start = time.perf_counter()

    def update(self, values: dict[str, float], images: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1
        self.images += images

    def means(self, env: Env) -> dict[str, float]:
        """Means over the steps since the last reset, averaged over ranks."""
        keys = sorted(self.sums)
        if not keys or not self.count:
            return {}
        t = env.mean(torch.tensor([self.sums[k] / self.counts[k] for k in keys], dtype=torch.float64))
        return dict(zip(keys, t.tolist()))

    def images_per_second(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)


# Safety between steps ----------------------------------------------------------------------

MAX_UNCHECKED_STEPS = 1000  # the loss terms are read back at least this often (log_every: 0)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops without writing a checkpoint."""


class LossGuard:
    """The loss terms of every step, kept on the device until :meth:`check` reads them back.

    Reading a CUDA scalar (``.item()``, ``.tolist()``, ``float()``) makes the host wait for
    the GPU to drain its queue; doing it after every step leaves the GPU idle while Python
    launches the next step's kernels. :meth:`add` only stacks the detached terms on the
    device (an asynchronous kernel); :meth:`check`, at the steps that log or save, copies all
    of them back at once (one synchronisation), raises :class:`NonFiniteLossError` naming the
    first step with a non-finite term, and returns each step's values for the running means.
    Checks happen before every checkpoint, so a non-finite loss is never saved.

    Under DDP every rank checks at the same steps, and one all-reduce tells every rank the
    first bad step of any rank and whether any rank was asked to stop: every rank raises (no
    rank is left waiting in a collective) and every rank stops together.
    """

    def __init__(self, env=None, run_dir: Path | None = None):
        self.env, self.run_dir = env, run_dir
        self.pending: list[tuple[int, tuple[str, ...], torch.Tensor]] = []

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """The terms of step ``step`` (1-based): no host synchronisation."""
        self.pending.append((step, tuple(terms), torch.stack([v.detach().float().reshape(()) for v in terms.values()])))

    def check(self, stop_requested: bool = False) -> tuple[list[dict[str, float]], bool]:
        """(the values of each step since the last check, whether any rank asked to stop);
        raises :class:`NonFiniteLossError` when a term was NaN or infinite."""
        pending, self.pending = self.pending, []
        flat = torch.cat([vec for _, _, vec in pending]).tolist() if pending else []
        records, bad_step, bad, i = [], math.inf, "", 0
        for step, keys, _ in pending:
            values = dict(zip(keys, flat[i:i + len(keys)]))
            i += len(keys)
            records.append(values)
            wrong = [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]
            if wrong and step < bad_step:
                bad_step, bad = step, ", ".join(wrong)
        first, stop = self._agree(bad_step, stop_requested)
        if math.isfinite(first):
            what = bad if first == bad_step else "a term on another process"
            where = f"; last good checkpoint: {self.run_dir / 'checkpoints' / 'last.pt'}" if self.run_dir else ""
            raise NonFiniteLossError(
                f"non-finite loss at step {int(first)}: {what}. Training stopped without saving"
                f"{where}. Try a lower optim.lr, train.amp=none, or check the data.")
        return records, stop

    def _agree(self, bad_step: float, stop: bool) -> tuple[float, bool]:
        """The first bad step over all ranks and whether any rank stops (one all-reduce)."""
        env = self.env
        if env is None or not env.distributed:
            return bad_step, stop
        t = torch.tensor([bad_step, -float(stop)], dtype=torch.float64,
                         device=env.device if env.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        first, neg_stop = t.tolist()
        return first, neg_stop < 0


# Validation -----------------------------------------------------------------------------------

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

    With masks in ``val``: ``val/<name>_residue``, the median occluder residue of each output
    (:func:`fsggan.metrics.occluder_residue`: 1 = the occluder untouched, 0 = gone). And the
    harm to clean faces: ``predict`` run on the clean faces themselves, ``val/clean_psnr``
    (median PSNR of its output against them, dB; ``inf`` when most come back unchanged) and
    ``val/clean_changed`` (mean share of pixels changed by more than 8/255).
    """
    residues: dict[str, list[float]] = {}
    harm: dict[str, list[float]] = {"psnr": [], "changed": []}
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
            batch_psnr, batch_ssim = psnr_ssim_batch(out, y)  # the whole batch at once
            p.extend(batch_psnr)
            s.extend(batch_ssim)
        if "mask" in val:
            _residue_and_harm(predict, outputs, y, val["mask"][i:i + batch_size], env, channels_last,
                              residues, harm)
        for judge, net in judges.items():
            ref = net(y.to(env.device)).float()
            for name in ("input", "output"):
                if name in outputs:
                    feat = net(outputs[name].to(env.device)).float()
                    cosines.setdefault(f"val/{name}_cos_{judge}", []).extend((feat * ref).sum(1).cpu().tolist())
    metrics = {k: sum(v) / len(v) for k, v in cosines.items()}
    metrics.update({f"val/{name}_residue": spread(r)["median"] for name, r in residues.items()})
    if harm["psnr"]:
        metrics["val/clean_psnr"] = spread(harm["psnr"])["median"]
        metrics["val/clean_changed"] = sum(harm["changed"]) / len(harm["changed"])
    for name, (p, s) in values.items():  # summarize leaves out infinite PSNRs (identical images)
        metrics[f"val/{name}_psnr"] = summarize(p)["mean"]
        metrics[f"val/{name}_ssim"] = summarize(s)["mean"]
    return metrics


def _residue_and_harm(predict, outputs: dict[str, torch.Tensor], y: torch.Tensor, mask: torch.Tensor, env: Env,
                      channels_last: bool, residues: dict[str, list[float]], harm: dict[str, list[float]]) -> None:
    """Add one batch's occluder residue of each output, and the harm ``predict`` does to the
    same faces with nothing over them (PSNR against them, share of pixels changed)."""
    x8, y8, m = to_uint8(outputs["input"]), to_uint8(y), mask.numpy() > 0.5
    for name, out in outputs.items():
        if name != "input":
            residues.setdefault(name, []).extend(occluder_residue(to_uint8(out), x8, y8, m).tolist())
    if "output" not in outputs:
        return
    yd = y.to(env.device)
    if channels_last:
        yd = yd.contiguous(memory_format=torch.channels_last)
    kept = predict(yd)["output"].float().cpu()
    harm["psnr"].extend(psnr_ssim_batch(kept, y)[0])
    harm["changed"].extend(changed_share(to_uint8(kept), y8).tolist())
