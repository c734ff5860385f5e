#!/usr/bin/env python
"""Training-data throughput of one loader worker, and the workers a GPU needs.

    python -m benchmarks.loader_throughput [--config configs/lfw_gan.yaml] [--images 200] [--target 3000]

Runs the paper config's data pipeline (``data`` of configs/lfw_gan.yaml: LFW JPEGs from
../shared/data/lfw, the LFW crop to 128x128, the seen occluders) in this process on one
thread, as one DataLoader worker runs it, item by item through the training set's
``__getitem__``:

- decode + crop (``data.occlude_on: device``: the workers only load faces);
- decode + crop + occlusion synthesis (``data.occlude_on: workers``, the default);

and prints images/s per worker for each and the number of workers that would feed
``--target`` images/s (a GPU's training speed), assuming workers scale linearly (each is its
own process; with enough CPU cores they do). Figures depend on the CPU and on how busy it is.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import torch


def per_worker_rate(dataset, indices: list[int]) -> float:
    """Images/s of ``dataset[i]`` over ``indices`` (after two warm-up items)."""
    for i in indices[:2]:
        dataset[i]
    t0 = time.perf_counter()
    for i in indices:
        dataset[i]
    return len(indices) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/lfw_gan.yaml", help="training config whose data section is timed")
    p.add_argument("--images", type=int, default=200, help="items timed per row")
    p.add_argument("--target", type=float, default=3000.0, help="images/s the workers must feed")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # a loader worker runs torch on one thread
    warnings.filterwarnings("ignore", message="OccludedFaces: .* no landmarks")

    from fsggan.config import load_config
    from fsggan.data import make_occluded_dataset
    from fsggan.train.config import TrainGANConfig

    cfg = load_config(TrainGANConfig, args.config, ["gan.vae_checkpoint=unused.pt"])
    prep = cfg.data.prepare_config()
    if not os.path.isdir(prep.dataset.root):
        raise SystemExit(f"no faces at {prep.dataset.root} (the config's data.dataset.root): run from the "
                         f"repository root with ../shared/data beside it")
    step = 997  # a prime stride: items spread over the identities, not one person's images
    print(f"{args.config}: data {cfg.data.config}, {prep.dataset.image_size} px faces, one thread, "
          f"{args.images} items per row")
    rows = []
    for label, occlude in (("decode + crop (occlude_on: device)", False),
                           ("decode + crop + occlusion (occlude_on: workers)", True)):
        ds = make_occluded_dataset(prep, "train", seed=0, occlude=occlude)
        n = len(ds)
        indices = [(k * step) % n for k in range(args.images)]
        rate = per_worker_rate(ds, indices)
        rows.append((label, rate))
        print(f"  {label:50s} {rate:7.1f} images/s per worker, {1e3 / rate:6.2f} ms per image; "
              f"{math.ceil(args.target / rate):3d} workers for {args.target:.0f} images/s")
    (_, load), (_, full) = rows
    print(f"  occlusion synthesis alone: {1e3 / full - 1e3 / load:.2f} ms per image")


if __name__ == "__main__":
    main()
