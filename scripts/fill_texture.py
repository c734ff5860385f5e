#!/usr/bin/env python
"""How regular is the texture a model paints into occluded regions? (the target "no regular
texture in the fills", as a number beside the eye's verdict)

G's decoder up-samples its H/8 features three times; with nearest-neighbour up-sampling a
region painted only from those features is made of 8x8 blocks, aligned to the image's 8 px
lattice, whose edges show as a grid. This script measures that grid. Per image, on the
occluded region (the set's true mask, eroded by 3 px to leave the occluder's edge out):

* the high-pass residual ``r = gray - blur(gray)`` (Gaussian, sigma 2), zero outside the region;
* its power spectrum; the **grid index** is the share of the power on the lattice's
  frequencies (rows and columns at multiples of S/8 cycles, S the image size, the zero
  frequency left out) divided by the share those frequencies hold of all frequencies:
  about 1 for texture with no preferred 8 px period, above 1 for a grid.

Prints the mean grid index of the model's output, of the occluded input and of the clean
face (the natural level) over the images whose mask covers at least ``--min-cover`` of the face.

    python scripts/fill_texture.py runs/cpu_gan128 data128/set1-lfw [--limit 300]
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from fsggan.data import PreparedSet
from fsggan.losses import gaussian_blur
from fsggan.pipeline import FSGGAN

PERIOD = 8  # px: G's H/8 features through three x2 up-samplings


def lattice(size: int) -> torch.Tensor:
    """(S, S) bool: the frequencies on the 8 px lattice (rows or columns at multiples of S/8,
    the zero frequency left out)."""
    step = size // PERIOD
    on = torch.zeros(size, dtype=torch.bool)
    on[::step] = True
    grid = on[:, None] | on[None, :]
    grid[0, 0] = False
    return grid


def grid_index(images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per image grid index of (B, 3, S, S) images in [-1, 1] on (B, 1, S, S) regions in {0, 1}."""
    gray = images.mean(dim=1, keepdim=True)
    resid = (gray - gaussian_blur(gray, 2.0)) * region
    power = torch.fft.fft2(resid[:, 0]).abs().square()
    power[:, 0, 0] = 0.0
    on = lattice(images.shape[-1])
    share = (power[:, on].sum(dim=1) / power.sum(dim=(1, 2)).clamp_min(1e-12))
    return share / (on.sum() / (on.numel() - 1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gan", help="Stage II run directory or checkpoint")
    p.add_argument("set", help="a prepared set (with its mask/ folder), e.g. data128/set1-lfw")
    p.add_argument("--limit", type=int, default=300, help="images scored at most (default 300)")
    p.add_argument("--min-cover", type=float, default=0.15, help="smallest mask share of the face (default 0.15)")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    model = FSGGAN.from_checkpoints(gan=args.gan, device="cpu")
    prepared = PreparedSet(args.set, masks=True)
    scores = {"output": [], "input": [], "clean": []}
    batch = []

    def flush() -> None:
        x = torch.stack([b["occluded"] for b in batch])
        y = torch.stack([b["clean"] for b in batch])
        m = torch.stack([b["mask"] for b in batch])
        region = 1.0 - F.max_pool2d(1.0 - m, 7, 1, 3)  # eroded by 3 px
        with torch.inference_mode():
            out, _ = model.run(x)
        if out.shape[-1] != x.shape[-1]:
            raise SystemExit(f"the model works at {out.shape[-1]} px and the set is {x.shape[-1]} px: use the "
                             "set of the model's size")
        for name, imgs in (("output", out), ("input", x), ("clean", y)):
            scores[name] += grid_index(imgs.float(), region).tolist()
        batch.clear()

    for i in range(len(prepared)):
        item = prepared[i]
        if item["mask"].mean() < args.min_cover:
            continue
        batch.append(item)
        if len(batch) == args.batch_size:
            flush()
        if len(scores["output"]) + len(batch) >= args.limit:
            break
    if batch:
        flush()
    n = len(scores["output"])
    print(f"{args.gan} on {args.set}: {n} faces with at least {args.min_cover:.0%} occluded")
    for name, vals in scores.items():
        mean = sum(vals) / max(n, 1)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(n, 1))
        print(f"  grid index {name:<6} {mean:.2f} (std {std:.2f})")


if __name__ == "__main__":
    main()
