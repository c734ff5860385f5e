"""A before / after picture of whole photos for the README (issue 17).

The photos are put side by side into one picture (a "group photo" of several people), which
is de-occluded as fsggan-deocclude does it (every face detected, aligned, de-occluded, pasted
back); the figure stacks the picture before and after, and, enlarged 3x, the first face's
pasted region with a margin, where a seam would show.

    python scripts/photo_before_after.py occluded/*.png --gan runs/cpu_gan128 --out before_after.png
    python scripts/photo_before_after.py --demo --gan runs/cpu_gan128 --out docs/photos_before_after.png

``--demo`` needs no photo: scikit-image's ``astronaut`` (Eileen Collins, a NASA photograph in
the public domain, shipped inside scikit-image) twice, one with a drawn surgical mask and one
with drawn sunglasses (fsggan's procedural occluders, placed on the face by the training
data's occluder placement). The README's picture is made this way, so that the repository
holds no third-party face. Occluded whole LFW photos come from
``benchmarks/photo_roundtrip.py --save-photos DIR`` (those pictures stay out of the repository).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fsggan.images import read_rgb, save_png
from fsggan.photos import deocclude_photo
from fsggan.pipeline import FSGGAN

DEMO_OCCLUDERS = (("mask", 0), ("sunglasses", 1))  # (procedural kind, seed) per copy; MTCNN misses mask seed 3 here


def side_by_side(photos: list[np.ndarray]) -> np.ndarray:
    h = max(p.shape[0] for p in photos)
    return np.concatenate([np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), mode="edge") for p in photos], axis=1)


def zoom(before: np.ndarray, after: np.ndarray, region, factor: int = 3, margin: int = 12) -> np.ndarray:
    """Both photos around ``region`` (x0, y0, x1, y1), side by side, enlarged (nearest)."""
    h, w = before.shape[:2]
    x0, y0 = max(region[0] - margin, 0), max(region[1] - margin, 0)
    x1, y1 = min(region[2] + margin, w), min(region[3] + margin, h)
    parts = [np.kron(im[y0:y1, x0:x1], np.ones((factor, factor, 1), np.uint8)) for im in (before, after)]
    return np.concatenate([parts[0], np.full((parts[0].shape[0], 8, 3), 255, np.uint8), parts[1]], axis=1)


def occlude_demo(photo: np.ndarray, model, kind: str, seed: int) -> np.ndarray:
    """``photo`` (square) with one procedural ``kind`` occluder on its face, placed as the
    training data places occluders on a crop, then mapped into the photo."""
    from fsggan.data.occluders import OccluderLibrary
    from fsggan.data.procedural import procedural_occluders
    from fsggan.data.synthesis import OcclusionSynthesizer
    from fsggan.photos.align import estimate_similarity, invert
    from fsggan.photos.deocclude import find_faces, model_template

    faces = find_faces(photo)
    if not faces:
        raise SystemExit("photo_before_after.py: error: no face found in the demo photo")
    template = model_template(model)
    to_crop = estimate_similarity(np.asarray(faces[0].landmarks, np.float64), template)
    library = OccluderLibrary(procedural_occluders(count=1, seed=seed, kinds=[kind]))
    placement = OcclusionSynthesizer(library, image_size=model.image_size).sample_placement(
        np.random.default_rng(seed), template, index=0)
    to_photo = np.vstack([invert(to_crop), [0.0, 0.0, 1.0]])
    placement["matrix"] = to_photo @ placement["matrix"]
    return OcclusionSynthesizer(library, image_size=photo.shape[0], supersample=2).occlude_photo(photo, [placement])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*")
    ap.add_argument("--demo", action="store_true", help="scikit-image's astronaut with drawn occluders (no photo needed)")
    ap.add_argument("--gan", default="runs/cpu_gan128")
    ap.add_argument("--out", default="docs/photos_before_after.png")
    args = ap.parse_args()
    if bool(args.photos) == args.demo:
        ap.error("give photos, or --demo")
    model = FSGGAN.from_checkpoints(gan=args.gan, device="cpu")
    if args.demo:
        from skimage.data import astronaut

        photo = np.ascontiguousarray(astronaut())
        before = side_by_side([occlude_demo(photo, model, kind, seed) for kind, seed in DEMO_OCCLUDERS])
    else:
        before = side_by_side([read_rgb(p)[0] for p in args.photos])
    after, faces = deocclude_photo(model, before)
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
