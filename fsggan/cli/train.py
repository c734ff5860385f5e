"""The training command lines: ``fsggan-train-vae`` (:func:`vae_main`, Stage I) and
``fsggan-train-gan`` (:func:`gan_main`, Stage II), one parser for both.

    fsggan-train-gan --config configs/gan.yaml [--config my_layer.yaml ...] [--set key=value ...]
                     [--run-dir DIR] [--resume [PATH]] [--print-config] [--device DEVICE] [--no-progress]
    torchrun --nproc_per_node 4 -m fsggan.cli.train_gan --config configs/gan.yaml   # multi-GPU

Fresh run: config = the YAML files (``--config``, layered in order; each may name its
``base:``) + ``--set`` overrides (+ ``--run-dir``). Resume (``--resume``: the run
directory's ``checkpoints/last.pt``; ``--resume PATH``: a checkpoint file or a run
directory): config = the checkpoint's resolved config + ``--set`` overrides of the keys
that may change on resume (``fsggan.train.state.RESUMABLE_KEYS``: ``train.steps`` to
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

from fsggan.cli import add_common_options, data_folders, fail, new_parser, training_device

PATHS_NOTE = "Paths in the config are relative to the current directory."
STAGES = {
    "vae": ("fsggan-train-vae", "configs/vae.yaml",
            "Train Stage I: the VAE V that turns an occluded face into its facial structure g = V(x). "
            "The run folder gets config.yaml, stats.jsonl, TensorBoard logs, samples/ and checkpoints/ "
            "(last.pt, best.pt)."),
    "gan": ("fsggan-train-gan", "configs/gan.yaml",
            "Train Stage II: the generator G that paints the occluded face, given the face and V's structure "
            "image, against the discriminators. The run folder gets config.yaml, stats.jsonl, TensorBoard "
            "logs, samples/ and checkpoints/ (last.pt, best.pt)."),
}
EPILOG = (f"{PATHS_NOTE} --device and --no-progress set train.device and train.progress; with --resume they may "
          "change, as may train.steps, the logging, validation and checkpoint periods, train.run_dir and the "
          "loader settings.\n\n"
          "Exit status: 0 done (or already complete); 1 stopped by a loss that is not finite; 2 a usage error "
          "found at start (one line: config, checkpoint, files, data; no run folder left behind); 130 stopped "
          "by Ctrl-C or SIGTERM after saving checkpoints/last.pt. The run folder may not lie in the data it "
          "reads (docs/cli.md).")


def build_parser(stage: str) -> argparse.ArgumentParser:
    """The parser of ``fsggan-train-<stage>`` ("vae" or "gan"); imports no torch."""
    prog, default_config, description = STAGES[stage]
    p = new_parser(prog, description, EPILOG)
    p.add_argument("--config", action="append", default=None, metavar="YAML",
                   help=f"config file, repeat to layer several (default: {default_config})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change one config key, e.g. train.batch_size=32 (repeatable)")
    p.add_argument("--run-dir", default=None, help="run folder (default: the config's train.run_dir)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue a run: its checkpoint or folder (default: the run folder's last.pt)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_common_options(p, device_default=None)
    return p


def parse_args(argv, config_cls, *, prog: str, description: str, default_config: str,
               stage: str) -> tuple[Any, str | None]:
    """The training command line -> ``(config, checkpoint to resume from or None)``;
    ``stage`` ("vae" / "gan") is the kind of checkpoint ``--resume`` takes."""
    from fsggan.checkpoint import CHECKPOINT_VERSION, load_checkpoint, resolve_checkpoint
    from fsggan.config import ConfigError, apply_overrides, from_dict, load_config, to_dict
    from fsggan.train.state import run_folder
    from fsggan.train.runtime import TrainingError

    p = build_parser(stage)
    args = p.parse_args(argv)
    try:
        device = training_device(args.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    overrides = list(args.overrides) + ([f"train.device={device}"] if device else [])
    if args.no_progress:
        overrides.append("train.progress=false")
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
    from fsggan.cli.safety import folder_overlap
    from fsggan.config import ConfigError
    from fsggan.data import DatasetError, ImageError, OccluderError, SplitError
    from fsggan.models.identity import WeightsError
    from fsggan.train.monitor import NonFiniteLossError
    from fsggan.train.runtime import TrainingError

    try:
        cfg, resume = parse_args(argv, config_cls, prog=prog, description=description,
                                 default_config=default_config, stage=stage)
        problem = folder_overlap("train.run_dir", cfg.train.run_dir, data_folders(cfg.data))
        if problem:  # samples/ and checkpoints/ would land among the faces the run reads
            raise ConfigError(problem)
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
    build_parser("vae").parse_args(argv)  # --help and option errors before torch is imported
    from fsggan.train import vae
    from fsggan.train.config import TrainVAEConfig

    return run(argv, TrainVAEConfig, vae.train_vae, prog="fsggan-train-vae", description=STAGES["vae"][2],
               default_config="configs/vae.yaml", stage="vae")


def gan_main(argv=None) -> int:
    """``fsggan-train-gan``: :func:`fsggan.train.gan.train_gan`."""
    build_parser("gan").parse_args(argv)  # --help and option errors before torch is imported
    from fsggan.train import gan
    from fsggan.train.config import TrainGANConfig

    return run(argv, TrainGANConfig, gan.train_gan, prog="fsggan-train-gan", description=STAGES["gan"][2],
               default_config="configs/gan.yaml", stage="gan")
