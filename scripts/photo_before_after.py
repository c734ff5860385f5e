"""A before / after picture of whole photos for the README (issue 17).

The photos are put side by side into one picture (a "group photo" of several people), which
is de-occluded as fsggan-deocclude does it (every face detected, aligned, de-occluded, pasted
back); the figure stacks the picture before and after, and, enlarged 3x, the first face's
pasted region with a margin, where a seam would show.

    python scripts/photo_before_after.py occluded/*.png --gan runs/J7_ramp --out docs/photos_before_after.png

Occluded whole LFW photos come from ``benchmarks/photo_roundtrip.py --save-photos DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fsggan.images import read_rgb, save_png
from fsggan.photos import deocclude_photo
from fsggan.pipeline import FSGGAN


def side_by_side(paths: list[str]) -> np.ndarray:
    photos = [read_rgb(p)[0] for p in paths]
    h = max(p.shape[0] for p in photos)
    return np.concatenate([np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), mode="edge") for p in photos], axis=1)


def zoom(before: np.ndarray, after: np.ndarray, region, factor: int = 3, margin: int = 12) -> np.ndarray:
    """Both photos around ``region`` (x0, y0, x1, y1), side by side, enlarged (nearest)."""
    h, w = before.shape[:2]
    x0, y0 = max(region[0] - margin, 0), max(region[1] - margin, 0)
    x1, y1 = min(region[2] + margin, w), min(region[3] + margin, h)
    parts = [np.kron(im[y0:y1, x0:x1], np.ones((factor, factor, 1), np.uint8)) for im in (before, after)]
    return np.concatenate([parts[0], np.full((parts[0].shape[0], 8, 3), 255, np.uint8), parts[1]], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--gan", default="runs/J7_ramp")
    ap.add_argument("--out", default="docs/photos_before_after.png")
    args = ap.parse_args()
    before = side_by_side(args.photos)
    after, faces = deocclude_photo(FSGGAN.from_checkpoints(gan=args.gan, device="cpu"), before)
    print(f"{len(faces)} face(s) found in a {before.shape[1]}x{before.shape[0]} picture")
    gap = np.full((8, before.shape[1], 3), 255, np.uint8)
    rows = [before, gap, after]
    if faces and faces[0].region is not None:
        z = zoom(before, after, faces[0].region)
        z = np.pad(z, ((0, 0), (0, max(before.shape[1] - z.shape[1], 0)), (0, 0)), constant_values=255)
        rows += [gap, z[:, : before.shape[1]]]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_png(args.out, np.concatenate(rows, axis=0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
