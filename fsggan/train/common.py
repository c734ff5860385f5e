"""Machinery shared by both training stages (``fsggan.train.vae``, ``fsggan.train.gan``).

Everything here is a small free function or a tiny class, so the training functions
read top to bottom:

* command line: :func:`parse_args` (``--config``, ``--set``, ``--resume``, ``--run-dir``);
* processes and devices: :func:`setup_env` (CUDA when available, else CPU; DDP when
  launched by ``torchrun``), :func:`wrap_model` (channels_last, SyncBatchNorm, DDP,
  torch.compile);
* reproducibility: :func:`seed_everything`, :func:`rng_state` / :func:`set_rng_state`,
  :class:`ShardedBatchSampler` (data order from (seed, epoch), resumable mid-epoch);
* files: :func:`prepare_run_dir`, :func:`save_checkpoint` (atomic) /
  :func:`load_checkpoint` (``weights_only=True``), :class:`RunLog` (TensorBoard,
  ``stats.jsonl``, sample grids; rank 0 only);
* safety: :func:`check_finite` (non-finite loss -> :class:`NonFiniteLossError` naming the
  step and term), :class:`StopSignal` (Ctrl-C / SIGTERM -> finish the step, checkpoint,
  exit).

Checkpoint layout (DESIGN.md section 4): ``{"version": 1, "step", "config", "models":
{name: state_dict}, "optimizers": {name: state_dict}, "scaler": {name: state_dict},
"rng": [per-rank states], "data": {"epoch", "batch"}, "best": {...}, "data_config": {resolved
data-preparation config}}`` - tensors, plain
numbers, strings, lists and dicts only, so ``torch.load(path, weights_only=True)`` reads it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fsggan.config import ConfigError, apply_overrides, from_dict, load_config, save_config, to_dict

CHECKPOINT_VERSION = 1


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops without writing a checkpoint."""


class TrainingError(RuntimeError):
    """A problem found at start (missing files, inconsistent settings); the message says what to do."""


# Command line -----------------------------------------------------------------------

def parse_args(argv, config_cls, description: str, default_config: str,
               prog: str | None = None) -> tuple[Any, Path | None]:
    """Parse the training command line into ``(config, resume_checkpoint_or_None)``.

    Fresh run: config = YAML (``--config``) + ``--set`` overrides (+ ``--run-dir``).
    Resume (``--resume``: the run directory's ``checkpoints/last.pt``; ``--resume PATH``:
    a checkpoint file or a run directory): config = the checkpoint's resolved config +
    ``--set`` overrides (e.g. ``--set train.steps=200000`` to train longer), so the run
    continues with exactly the settings it started with.
    """
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog="Paths in the config are relative to the current directory.")
    p.add_argument("--config", default=None, help=f"YAML config (default when not resuming: {default_config})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.batch_size=32 (repeatable)")
    p.add_argument("--run-dir", default=None, help="run directory (overrides train.run_dir)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run: a checkpoint file or run directory (no PATH: the run "
                        "directory's checkpoints/last.pt)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = p.parse_args(argv)
    overrides = list(args.overrides)
    if args.run_dir is not None:
        overrides.append(f"train.run_dir={args.run_dir}")

    resume = None
    if args.resume is not None:
        if args.resume:
            resume = find_checkpoint(args.resume)
        else:  # the run directory named by --run-dir or the config
            base = load_config(config_cls, args.config or default_config, overrides)
            resume = find_checkpoint(base.train.run_dir)
        stored = load_checkpoint(resume)["config"]
        try:
            cfg = from_dict(config_cls, apply_overrides(stored, overrides))
        except ConfigError as e:
            raise ConfigError(f"{resume} (stored config) + --set: {e}") from None
    else:
        cfg = load_config(config_cls, args.config or default_config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        raise SystemExit(0)
    return cfg, resume


def run_main(argv, config_cls, train_fn, *, prog: str, doc: str, default_config: str) -> int:
    """Body of both ``main`` functions: parse, train, turn known errors into a one-line exit.

    Exit status: 0 done, 1 error (config, files, non-finite loss), 130 stopped by Ctrl-C /
    SIGTERM after saving ``last.pt``.
    """
    from fsggan.data import DatasetError, ImageError, OccluderError, SplitError
    from fsggan.models.identity import WeightsError

    try:
        cfg, resume = parse_args(argv, config_cls, doc, default_config, prog=prog)
        result = train_fn(**vars(cfg), resume=resume)
    except (ConfigError, TrainingError, NonFiniteLossError, WeightsError, DatasetError, ImageError, OccluderError,
            SplitError) as e:
        raise SystemExit(f"{prog}: error: {e}") from None
    except KeyboardInterrupt:  # a second Ctrl-C: nothing saved
        raise SystemExit(f"{prog}: aborted") from None
    if result["interrupted"]:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{prog}: stopped at step {result['step']}, checkpoint saved; continue with:\n"
                  f"  {prog} --resume {result['run_dir']}", file=sys.stderr)
        return 130
    return 0


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the ``checkpoints/last.pt`` of a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise TrainingError(f"cannot resume: no checkpoint at {path}")
    return path


# Processes and devices --------------------------------------------------------------

@dataclass
class Env:
    """Where this process runs: its DDP rank among ``world_size`` and its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (no communication when alone)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks."""
        if not self.distributed:
            return values
        t = values.to(self.device if self.device.type == "cuda" else "cpu").clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size


def setup_env(device: str = "auto") -> Env:
    """Pick the device and join the process group when launched by ``torchrun``.

    device: "auto" (CUDA when available, else CPU), "cuda" or "cpu". Under torchrun
    (``WORLD_SIZE`` > 1) each process uses ``cuda:LOCAL_RANK`` with the NCCL backend, or
    the CPU with gloo.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but CUDA is not available (use 'auto' or 'cpu')")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Env(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown_env(env: Env) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: Env, *, channels_last: bool = False, sync_bn: bool = False,
               compile: bool = False) -> nn.Module:
    """Move ``model`` to the device and return the module the training step should call.

    channels_last: NHWC memory format (faster convolutions on recent GPUs with AMP).
    sync_bn: under DDP on CUDA, BatchNorm statistics over the global batch
        (SyncBatchNorm); otherwise each process normalises over its own share and DDP
        copies rank 0's running statistics to the others at every forward.
    compile: torch.compile the forward.
    The caller keeps ``model`` itself for state dicts (the wrapper's keys are prefixed).
    """
    model.to(env.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if sync_bn and env.distributed and env.device.type == "cuda":
        # convert_sync_batchnorm replaces modules in place under the parent and keeps the
        # Parameter objects, so weight tying (tied D trunk) survives
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapped = model
    if env.distributed and any(p.requires_grad for p in model.parameters()):
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
    if compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def autocast(env: Env, amp: str):
    """Mixed precision context for the forward passes: amp is none | bf16 | fp16."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=env.device.type, dtype=dtype)


def make_scaler(env: Env, amp: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(env.device.type, enabled=amp == "fp16")


def to_device(batch: dict, env: Env, channels_last: bool = False) -> dict:
    """Move the tensors of a batch dict to the device (non-blocking from pinned memory)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(env.device, non_blocking=True)
            out[k] = v.contiguous(memory_format=fmt) if v.dim() == 4 else v
        else:
            out[k] = v
    return out


# Reproducibility --------------------------------------------------------------------

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


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Index batches for one process: the order depends only on (seed, epoch).

    Epoch ``e`` is a permutation of the dataset drawn from ``seed`` and ``e``, cut into
    global batches of ``batch_size`` (the incomplete last one is dropped); process
    ``rank`` takes its contiguous ``batch_size / world_size`` share of each global batch,
    so the global batches are the same whatever the number of processes (the job of
    DistributedSampler, plus resuming in the middle of an epoch: ``set_epoch(e, start)``
    skips the first ``start`` batches without loading them).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise TrainingError(f"train.batch_size ({batch_size}) must be divisible by the number of "
                                f"processes ({world_size})")
        if num_items < batch_size:
            raise TrainingError(f"the training set has {num_items} images, fewer than one batch ({batch_size})")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.local = rank, batch_size // world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.num_items // self.batch_size - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        for b in range(self.start, self.num_items // self.batch_size):
            first = b * self.batch_size + self.rank * self.local
            yield order[first:first + self.local]


def epoch_batches(loader, sampler: ShardedBatchSampler, dataset, epoch: int, batch: int):
    """Yield ``(epoch, batch_index, batch)`` forever, starting at (epoch, batch).

    A fresh iterator each epoch, after ``dataset.set_epoch(epoch)`` (new, reproducible
    occlusions per epoch; workers copy the dataset when the iterator starts).
    """
    while True:
        sampler.set_epoch(epoch, batch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for item in loader:
            yield epoch, batch, item
            batch += 1
        epoch, batch = epoch + 1, 0


# Files ------------------------------------------------------------------------------

def prepare_run_dir(cfg, env: Env, resuming: bool) -> Path:
    """Create the run directory (rank 0), refuse to overwrite another run, save config.yaml."""
    run_dir = Path(cfg.train.run_dir)
    if env.is_main:
        last = run_dir / "checkpoints" / "last.pt"
        if not resuming and last.exists():
            raise TrainingError(f"{run_dir} already holds a run ({last}); continue it with --resume "
                                f"or choose another --run-dir")
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    env.barrier()
    return run_dir


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


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a training checkpoint (``weights_only=True``: no pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "models" not in ckpt or "config" not in ckpt:
        raise TrainingError(f"{path} is not an fsggan training checkpoint (no 'models'/'config')")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(f"{path}: checkpoint version {ckpt.get('version')}, this code reads {CHECKPOINT_VERSION}")
    return ckpt


def make_checkpoint(*, step: int, cfg, models: dict, optimizers: dict, scalers: dict, rng: list,
                    data_pos: tuple[int, int], best: dict, data_config: dict | None = None) -> dict:
    """The checkpoint dict (see the module docstring)."""
    return {
        "version": CHECKPOINT_VERSION,
        "step": step,
        "config": to_dict(cfg),
        "models": {k: m.state_dict() for k, m in models.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": {k: s.state_dict() for k, s in scalers.items()},
        "rng": rng,
        "data": {"epoch": data_pos[0], "batch": data_pos[1]},
        "best": dict(best),
        "data_config": data_config,
    }


def restore_checkpoint(ckpt: dict, *, models: dict, optimizers: dict, scalers: dict, env: Env) -> tuple:
    """Load a checkpoint's states into the given objects; returns (step, (epoch, batch), best)."""
    for k, m in models.items():
        m.load_state_dict(ckpt["models"][k])
    for k, o in optimizers.items():
        o.load_state_dict(ckpt["optimizers"][k])
    for k, s in scalers.items():
        if ckpt["scaler"].get(k):
            s.load_state_dict(ckpt["scaler"][k])
    restore_rng_states(ckpt["rng"], env)
    return ckpt["step"], (ckpt["data"]["epoch"], ckpt["data"]["batch"]), dict(ckpt.get("best", {}))


def due(step: int, every: int, last: int) -> bool:
    """True on multiples of ``every`` (0 disables) and at the final step."""
    return step == last or (every > 0 and step % every == 0)


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


# Logging ----------------------------------------------------------------------------

class RunLog:
    """TensorBoard scalars/images, ``stats.jsonl`` and ``samples/*.png`` (rank 0 only;
    on other ranks every method does nothing)."""

    def __init__(self, run_dir: Path, env: Env):
        self.active = env.is_main
        self.run_dir = run_dir
        self.writer = None
        self.stats = None
        if self.active:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir))
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


# Data -------------------------------------------------------------------------------

def build_datasets(data, *, image_size: int, seed: int, run_dir: Path | None = None, stored: dict | None = None):
    """Training and validation datasets from the ``data`` section (see ``DataConfig``).

    Returns ``(train_set, val_set, data_config)``: train_set draws new occlusions every
    epoch (``set_epoch``; reproducible from (seed, epoch, index)); val_set is a fixed list
    of ``data.val_images`` occluded faces spread over the validation identities
    (occlusions from ``data.val_seed``, identical in every run and at every validation);
    data_config is the resolved data-preparation config as a plain dict. It is stored in
    every checkpoint and a resumed run uses that ``stored`` copy, so editing the YAML
    file later cannot change a run half-way. Also saved as ``run_dir/data_config.yaml``.
    """
    from fsggan.data.prepare import PrepareConfig, load_data_config, make_occluded_dataset

    prep = load_data_config(data.config, [*data.overrides, f"dataset.image_size={image_size}"])
    if stored is not None:
        if stored != to_dict(prep) and run_dir is not None:
            warnings.warn(f"{data.config} (+ data.overrides) differs from the data config stored in the checkpoint; "
                          f"the run continues with the stored one", stacklevel=2)
        prep = from_dict(PrepareConfig, stored)
    if run_dir is not None:
        save_config(prep, run_dir / "data_config.yaml")
    train_set = make_occluded_dataset(prep, "train", seed=seed, occlude=data.occlude_on == "workers")
    if data.max_images:
        train_set.records = train_set.records[:data.max_images]
    val_set = make_occluded_dataset(prep, "val", seed=data.val_seed)
    if len(val_set.records) > data.val_images:  # evenly over the identity-sorted records
        idx = np.linspace(0, len(val_set.records) - 1, data.val_images).round().astype(int)
        val_set.records = [val_set.records[i] for i in idx]
    val_set.set_epoch(0)
    return train_set, val_set, to_dict(prep)


def setup_data(data, train, *, image_size: int, env: Env, run_dir: Path, ckpt: dict | None):
    """Both stages' data: ``(train_set, val_set, data_config, sampler, loader, val)``.

    The training set is sharded over the DDP ranks by ``sampler`` (resumable order from
    ``train.seed``); ``val`` is the fixed validation set loaded into memory on rank 0 (None
    elsewhere). See :func:`build_datasets` for the rest.
    """
    train_set, val_set, data_config = build_datasets(
        data, image_size=image_size, seed=train.seed, run_dir=run_dir if env.is_main else None,
        stored=ckpt.get("data_config") if ckpt is not None else None)
    sampler = ShardedBatchSampler(len(train_set), train.batch_size, train.seed, env.rank, env.world_size)
    loader = make_loader(train_set, sampler, data, env)
    val = load_all(val_set, data.num_workers) if env.is_main else None
    return train_set, val_set, data_config, sampler, loader, val


def occlude_batch(dataset, batch: dict, epoch: int) -> dict:
    """``data.occlude_on: device``: occlude a batch of clean faces where it lies (GPU),
    image for image the same as the workers would (same per-item generators)."""
    from fsggan.data.synthesis import item_rng

    rngs = [item_rng(dataset.seed, epoch, int(i)) for i in batch["index"]]
    res = dataset.synthesizer(batch["clean"], batch["landmarks"], rngs)
    return {**batch, "occluded": res.occluded, "mask": res.mask}


def make_loader(dataset, sampler: ShardedBatchSampler, data, env: Env) -> torch.utils.data.DataLoader:
    """DataLoader over ``sampler``'s batches: workers, pinned memory on CUDA.

    It has its own generator, so creating an iterator never draws from the global torch
    RNG (which would make a resumed run differ from an uninterrupted one), and its workers
    ignore Ctrl-C, so that the main process can finish its step and save a checkpoint.
    """
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=data.num_workers,
        pin_memory=data.pin_memory and env.device.type == "cuda",
        generator=torch.Generator().manual_seed(0), worker_init_fn=_ignore_sigint,
        prefetch_factor=4 if data.num_workers > 0 else None)


def _ignore_sigint(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def load_all(dataset, num_workers: int = 0, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Load a (small) dataset into memory as one dict of stacked tensors."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list] = {}
    for b in loader:
        for k, v in b.items():
            if isinstance(v, torch.Tensor):
                parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


# Validation -------------------------------------------------------------------------

@torch.no_grad()
def validate(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], val: dict[str, torch.Tensor],
             env: Env, batch_size: int = 32, channels_last: bool = False) -> dict[str, float]:
    """PSNR / SSIM (fsggan.eval.metrics, DESIGN.md section 5) of each output of
    ``predict(x)`` against the clean faces, and of the occluded input itself.

    Returns ``{"val/<name>_psnr", "val/<name>_ssim"}`` for name in ("input", *outputs).
    """
    from fsggan.eval.metrics import psnr, ssim, summarize

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
    metrics = {}
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
    "val/output_ssim") selects ``checkpoints/best.pt``. Collective operations (rank
    means, RNG gathering) happen on every rank at the same steps; only rank 0 writes.
    """

    def __init__(self, *, cfg, env: Env, run_dir: Path, models: dict, optimizers: dict, scalers: dict,
                 predict: Callable, val: dict | None, best_key: str, best: dict, step: int,
                 data_config: dict | None = None):
        from tqdm import tqdm

        self.cfg, self.train, self.env, self.run_dir = cfg, cfg.train, env, run_dir
        self.models, self.optimizers, self.scalers = models, optimizers, scalers
        self.predict, self.val, self.best_key, self.best = predict, val, best_key, best
        self.data_config = data_config
        self.log = RunLog(run_dir, env)
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
                metrics = validate(self.predict, self.val, env, channels_last=train.channels_last)
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

    def save(self, names: list[str], step: int, pos: tuple[int, int], rng: list) -> None:
        if not self.env.is_main or not names:
            return
        state = make_checkpoint(step=step, cfg=self.cfg, models=self.models, optimizers=self.optimizers,
                                scalers=self.scalers, rng=rng, data_pos=pos, best=self.best,
                                data_config=self.data_config)
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
