#!/usr/bin/env python
"""Size and load time of a model folder (fsggan-export) beside the training checkpoint it comes from.

    python -m benchmarks.model_file                      # the paper widths (V 32/256, G 64) at 128 px
    python -m benchmarks.model_file --run runs/lfw_gan   # a real run
    python -m benchmarks.model_file --preset cpu64       # the CPU recipe's widths at 64 px

Without --run, writes a training checkpoint of untrained networks of the preset's size, with
what a Stage II checkpoint holds besides them (D, the EMA copy, Adam's two moments for G and
D), so the sizes are those of a real run of that shape. Prints the checkpoint's size, the
folder's (per file), and the median load time (of --repeats, after one warm-up) of
``FSGGAN.from_checkpoints`` and ``FSGGAN.from_pretrained`` (sha256 check included), and of the
sha256 check alone. One torch thread by default (--threads), as on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fsggan.export import verify_model_folder, write_model_folder
from fsggan.models import VAE, MultiRFDiscriminator, UNetGenerator
from fsggan.api import FSGGAN

PRESETS = {  # (VAE kwargs, generator kwargs)
    "paper128": ({"base_channels": 32, "latent_dim": 256, "image_size": 128}, {"base_channels": 64, "output": "blend"}),
    "cpu64": ({"base_channels": 8, "latent_dim": 64, "image_size": 64}, {"base_channels": 32, "output": "blend"}),
}


def write_checkpoint(path: Path, preset: str) -> None:
    """A Stage II checkpoint of untrained networks with a run's extra state."""
    vae_kw, gen_kw = PRESETS[preset]
    vae, gen, ema = VAE(**vae_kw), UNetGenerator(**gen_kw), UNetGenerator(**gen_kw)
    disc = MultiRFDiscriminator(trunk=vae.encoder)
    opts = {}
    for name, net in (("generator", gen), ("discriminator", disc)):
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad])
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()  # Adam's moments exist after a step, as in a run's checkpoint
        opts[name] = opt.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"version": 1, "step": 1, "optimizers": opts, "scaler": {}, "rng": [torch.get_rng_state()],
                "data": {"epoch": 0, "batch": 0}, "best": {},
                "models": {"generator": gen.state_dict(), "generator_ema": ema.state_dict(),
                           "discriminator": disc.state_dict(), "vae": vae.state_dict()},
                "config": {"generator": gen_kw, "vae": vae_kw, "data": {"dataset": {"kind": "lfw", "crop": None}}}},
               path)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: imports, page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="Stage II run folder or checkpoint (default: write one of --preset's size)")
    ap.add_argument("--preset", choices=PRESETS, default="paper128")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "gan" / "checkpoints" / "best.pt"
        if not args.run:
            torch.manual_seed(0)
            write_checkpoint(run, args.preset)
        model = FSGGAN.from_checkpoints(gan=run, device="cpu")
        folder = Path(tmp) / "model"
        write_model_folder(model, folder)
        ckpt = Path(model.checkpoints["gan"])
        print(f"training checkpoint {ckpt.name}: {ckpt.stat().st_size / 1e6:.2f} MB")
        total = 0
        for p in sorted(folder.iterdir()):
            total += p.stat().st_size
            print(f"  model folder {p.name:24s} {p.stat().st_size / 1e6:8.3f} MB")
        print(f"model folder in all: {total / 1e6:.2f} MB ({total / ckpt.stat().st_size:.0%} of the checkpoint)")
        t_ckpt = median_time(lambda: FSGGAN.from_checkpoints(gan=run, device="cpu"), args.repeats)
        t_folder = median_time(lambda: FSGGAN.from_pretrained(folder, device="cpu"), args.repeats)
        t_sha = median_time(lambda: verify_model_folder(folder), args.repeats)
        print(f"load (median of {args.repeats}, {args.threads} thread(s)): from_checkpoints {t_ckpt * 1e3:.0f} ms, "
              f"from_pretrained {t_folder * 1e3:.0f} ms (of which the sha256 check {t_sha * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
