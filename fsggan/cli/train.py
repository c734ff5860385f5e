"""The training command lines: ``fsggan-train-vae`` (:func:`vae_main`, Stage I) and
``fsggan-train-gan`` (:func:`gan_main`, Stage II), one parser for both.

    fsggan-train-gan --config configs/gan.yaml [--config my_layer.yaml ...] [--set key=value ...]
                     [--run-dir DIR] [--resume [PATH]] [--print-config]
    torchrun --nproc_per_node 4 -m fsggan.cli.train_gan --config configs/gan.yaml   # multi-GPU

Fresh run: config = the YAML files (``--config``, layered in order; each may name its
``base:``) + ``--set`` overrides (+ ``--run-dir``). Resume (``--resume``: the run
directory's ``checkpoints/last.pt``; ``--resume PATH``: a checkpoint file or a run
directory): config = the checkpoint's resolved config + ``--set`` overrides of the keys
that may change on resume (``fsggan.train.resume.RESUMABLE_KEYS``: ``train.steps`` to
train longer, the logging / validation / checkpoint periods, ``train.progress``,
``train.run_dir``, the device and loader settings), so the run continues with exactly the
settings it started with. It continues in the folder of the checkpoint given (a copied or
moved run folder continues where it now lies; the original is not touched), or in
``--run-dir``, which may not hold another run. Everything is checked - the checkpoint file, its stage, the
overrides, the weights against the config - before anything in the run directory changes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fsggan.cli import fail

PATHS_NOTE = "Paths in the config are relative to the current directory."


def parse_args(argv, config_cls, *, prog: str, description: str, default_config: str,
               stage: str) -> tuple[Any, str | None]:
    """The training command line -> ``(config, checkpoint to resume from or None)``;
    ``stage`` ("vae" / "gan") is the kind of checkpoint ``--resume`` takes."""
    from fsggan.checkpoint import CHECKPOINT_VERSION, load_checkpoint, resolve_checkpoint
    from fsggan.config import ConfigError, apply_overrides, from_dict, load_config, to_dict
    from fsggan.train.resume import run_folder
    from fsggan.train.runtime import TrainingError

    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PATHS_NOTE)
    p.add_argument("--config", action="append", default=None,
                   help=f"YAML config; several are layered in order (default when not resuming: {default_config})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.batch_size=32 (repeatable)")
    p.add_argument("--run-dir", default=None, help="run directory (overrides train.run_dir)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run: a checkpoint file or run directory (no PATH: the run "
                        "directory's checkpoints/last.pt); with it, --set may change train.steps, the "
                        "logging/validation/checkpoint periods, train.progress, train.run_dir and the "
                        "device/loader settings only (fsggan.train.resume.RESUMABLE_KEYS)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = p.parse_args(argv)
    overrides = list(args.overrides)
    if args.run_dir is not None:
        overrides.append(f"train.run_dir={args.run_dir}")
    configs = args.config or [default_config]

    resume = None
    if args.resume is not None:
        # a file as it is; a run directory (named here, or by --run-dir / the config): its last.pt
        where = args.resume or load_config(config_cls, configs, overrides).train.run_dir
        try:
            resume = resolve_checkpoint(where, prefer=("last.pt",))
        except FileNotFoundError as e:
            raise TrainingError(f"cannot resume: {e}") from None
        # only its config is needed here (the training function loads the weights): map, don't read
        stored = dict(load_checkpoint(resume, stage=stage, version=CHECKPOINT_VERSION, resumable=True,
                                      mmap=True)["config"])
        merged = apply_overrides(stored, overrides)
        if not any(o.partition("=")[0].strip() == "train.run_dir" for o in overrides):
            # the run continues in the folder given (a moved or copied run: its new place), never in the
            # folder stored in the checkpoint
            merged["train"] = {**(merged.get("train") or {}), "run_dir": str(run_folder(resume))}
        try:
            cfg = from_dict(config_cls, merged)
        except ConfigError as e:
            raise ConfigError(f"{resume} (stored config) + --set: {e}") from None
    else:
        cfg = load_config(config_cls, configs, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        raise SystemExit(0)
    return cfg, None if resume is None else str(resume)


def run(argv, config_cls, train_fn, *, prog: str, description: str, default_config: str, stage: str) -> int:
    """Parse, train, turn known errors into a one-line exit.

    Exit status: 0 done (or nothing to do: the resumed run is already complete), 2 a user
    error found at start (config, checkpoint, files, data: one line on stderr, nothing
    written), 1 a non-finite loss, 130 stopped by Ctrl-C / SIGTERM after saving ``last.pt``.
    """
    from fsggan.checkpoint import CheckpointError
    from fsggan.config import ConfigError
    from fsggan.data import DatasetError, ImageError, OccluderError, SplitError
    from fsggan.models.identity import WeightsError
    from fsggan.train.safety import NonFiniteLossError
    from fsggan.train.runtime import TrainingError

    try:
        cfg, resume = parse_args(argv, config_cls, prog=prog, description=description,
                                 default_config=default_config, stage=stage)
        existed = Path(cfg.train.run_dir).exists()
        try:
            result = train_fn(**vars(cfg), resume=resume)
        except BaseException:
            if not existed:  # a start that failed before its first checkpoint leaves no run folder behind
                _remove_unfinished(Path(cfg.train.run_dir))
            raise
    except NonFiniteLossError as e:
        return fail(prog, e, status=1)
    except (ConfigError, CheckpointError, TrainingError, WeightsError, DatasetError, ImageError, OccluderError,
            SplitError, FileNotFoundError) as e:
        return fail(prog, e)
    except KeyboardInterrupt:  # a second Ctrl-C: nothing saved
        raise SystemExit(f"{prog}: aborted") from None
    if result["interrupted"]:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{prog}: stopped at step {result['step']}, checkpoint saved; continue with:\n"
                  f"  {prog} --resume {result['run_dir']}", file=sys.stderr)
        return 130
    return 0


def _remove_unfinished(run_dir: Path) -> None:
    """Remove a run folder this start created when no checkpoint was saved in it (rank 0)."""
    import shutil

    if int(os.environ.get("RANK", "0")) == 0 and run_dir.is_dir() and not any(run_dir.glob("checkpoints/*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def vae_main(argv=None) -> int:
    """``fsggan-train-vae``: :func:`fsggan.train.vae.train_vae`."""
    from fsggan.train import vae
    from fsggan.train.config import TrainVAEConfig

    return run(argv, TrainVAEConfig, vae.train_vae, prog="fsggan-train-vae", description=vae.__doc__,
               default_config="configs/vae.yaml", stage="vae")


def gan_main(argv=None) -> int:
    """``fsggan-train-gan``: :func:`fsggan.train.gan.train_gan`."""
    from fsggan.train import gan
    from fsggan.train.config import TrainGANConfig

    return run(argv, TrainGANConfig, gan.train_gan, prog="fsggan-train-gan", description=gan.__doc__,
               default_config="configs/gan.yaml", stage="gan")
