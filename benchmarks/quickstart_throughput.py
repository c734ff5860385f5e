"""Stage II training speed of the quickstart / CPU recipe, end to end, on real LFW faces.

Runs the real ``train_gan`` (data loader, occlusion synthesis, G/D steps, identity loss,
logging, validation, checkpoints) from ``configs/cpu/quickstart_gan.yaml`` for a few
steps in several variants and prints, for each:

* ``step img/s``: training images per second as the run log measures it
  (``speed/images_per_sec``: loader wait + steps, without the housekeeping);
* ``wall img/s``: images / wall time of the whole call (start-up, validation and
  checkpoints included).

    python -m benchmarks.quickstart_throughput                 # 60 steps per variant
    python -m benchmarks.quickstart_throughput --steps 100 --variants fp32 bf16_cl

Needs ../shared/data (LFW, occluders, MobileFaceNet weights). Run it on an otherwise idle
machine: two heavy processes on two cores halve each other's figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from dataclasses import fields
from pathlib import Path

import torch

from fsggan.config import load_config
from fsggan.train.config import TrainGANConfig, TrainVAEConfig
from fsggan.train.gan import train_gan
from fsggan.train.vae import train_vae

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: (description, overrides of configs/cpu/quickstart_gan.yaml)
    "fp32": ("fp32, contiguous, 1 loader worker", ["train.amp=none", "train.channels_last=false"]),
    "fp32_w0": ("fp32, contiguous, occlusion in the main process", ["train.amp=none", "train.channels_last=false",
                                                                    "data.num_workers=0"]),
    "bf16": ("bf16 autocast, contiguous", ["train.amp=bf16", "train.channels_last=false"]),
    "bf16_cl": ("bf16 autocast + channels_last (the quickstart config)", ["train.amp=bf16",
                                                                         "train.channels_last=true"]),
}


def run(cfg_cls, fn, path: Path, overrides: list[str]) -> tuple[float, float]:
    cfg = load_config(cfg_cls, path, overrides)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(**{f.name: getattr(cfg, f.name) for f in fields(cfg)})
    wall = time.perf_counter() - t0
    rates = [r["speed/images_per_sec"] for r in map(json.loads, (Path(cfg.train.run_dir) / "stats.jsonl").open())
             if "speed/images_per_sec" in r]
    step_rate = sum(rates[1:]) / len(rates[1:]) if len(rates) > 1 else float("nan")   # first window: warm-up
    return step_rate, cfg.train.steps * cfg.train.batch_size / wall


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)
    common = ["train.device=cpu", "train.progress=false", "train.log_every=10", f"train.steps={args.steps}",
              f"train.val_every={args.steps}", f"train.ckpt_every={args.steps}", f"train.sample_every={args.steps}"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Stage II of "
          f"configs/cpu/quickstart_gan.yaml, {args.steps} steps per variant")
    with tempfile.TemporaryDirectory() as tmp:
        vae_dir = Path(tmp) / "vae"
        run(TrainVAEConfig, train_vae, ROOT / "configs/cpu/quickstart_vae.yaml",
            ["train.device=cpu", "train.progress=false", "train.steps=5", f"train.run_dir={vae_dir}"])
        print(f"{'variant':<10} {'step img/s':>11} {'wall img/s':>11}  description")
        for name in args.variants:
            desc, extra = VARIANTS[name]
            step_rate, wall_rate = run(TrainGANConfig, train_gan, ROOT / "configs/cpu/quickstart_gan.yaml",
                                       [*common, *extra, f"train.run_dir={Path(tmp) / name}",
                                        f"gan.vae_checkpoint={vae_dir / 'checkpoints' / 'best.pt'}"])
            print(f"{name:<10} {step_rate:>11.1f} {wall_rate:>11.1f}  {desc}", flush=True)


if __name__ == "__main__":
    main()
