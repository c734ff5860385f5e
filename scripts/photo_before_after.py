"""A before / after picture of whole photos for the README.

The photos are put side by side into one picture (a "group photo" of several people), which
is de-occluded as fsggan-deocclude does it (every face detected, aligned, de-occluded, pasted
back); the figure stacks the picture before and after, and the first face's pasted region
with a margin, enlarged up to 3x (as far as the pair fits the picture's width), where a seam
would show.

    python -m benchmarks.photo_roundtrip --set data128/set1-lfw --gan runs/cpu_gan128 --limit 3 \
        --one-per-identity --save-photos occluded      # whole LFW photos with the Set1 occluders
    python scripts/photo_before_after.py occluded/*.png --gan runs/cpu_gan128 --out before_after.jpg
    python scripts/photo_before_after.py --demo --gan runs/cpu_gan128 --out demo.png

The first two commands make the picture of docs/results.md ("Whole photos"): the first photo of each of
Set1-LFW's first three identities (people the model never saw), with the occluder that set
places on it (kinds from the training pool; ``--set data128/set2-lfw`` gives occluders it never
saw). It shows LFW faces and occluder cut-outs, third-party data: keep it out of the repository.

``--demo`` needs no data and makes the README's picture (docs/images/before_after.jpg, its
sources and licences in docs/images/README.md):

    python scripts/photo_before_after.py --demo --gan runs/cpu_gan128 --out docs/images/before_after.jpg
    python scripts/photo_before_after.py --demo --kinds bar polygon blob stripes --gan runs/cpu_gan128 \
        --out docs/images/unseen_kinds.jpg     # the drawn kinds the recipe leaves (docs/results.md)

Two public-domain portraits that ship inside scikit-image, ``astronaut`` (Eileen Collins, a NASA
photograph) and ``camera`` (Lav Varshney's cameraman, CC0; grey, made RGB), each with nothing over
it and under occluders of kinds no training pool holds (Set3's: a censor bar, round glasses, a
scarf and a striped patch, drawn by fsggan's procedural module), plus scikit-image's CC0
``coffee`` cup (:func:`coffee_cup`) held in front of the lower face. Each photo goes through the
photo path as ``fsggan-deocclude`` runs it; the figure shows each face before (top row of a
portrait) and after (bottom row), enlarged around the region pasted back.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from fsggan.images import read_rgb
from fsggan.photos import deocclude_photo
from fsggan.api import FSGGAN
from fsggan.data.procedural import PROCEDURAL_KINDS

DEMO_CASES = ((None, 0), ("bar", 3), ("round_glasses", 3), ("scarf", 3), ("stripes", 3), ("coffee", 0))  # (object, seed)


def side_by_side(photos: list[np.ndarray]) -> np.ndarray:
    h = max(p.shape[0] for p in photos)
    return np.concatenate([np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0)), mode="edge") for p in photos], axis=1)


def zoom(before: np.ndarray, after: np.ndarray, region, factor: int = 3, margin: int = 12) -> np.ndarray:
    """Both photos around ``region`` (x0, y0, x1, y1), side by side, enlarged (nearest) by
    ``factor`` or by the largest smaller factor that fits the pair into the photo's width."""
    h, w = before.shape[:2]
    x0, y0 = max(region[0] - margin, 0), max(region[1] - margin, 0)
    x1, y1 = min(region[2] + margin, w), min(region[3] + margin, h)
    factor = max(1, min(factor, (w - 8) // (2 * (x1 - x0))))
    parts = [np.kron(im[y0:y1, x0:x1], np.ones((factor, factor, 1), np.uint8)) for im in (before, after)]
    return np.concatenate([parts[0], np.full((parts[0].shape[0], 8, 3), 255, np.uint8), parts[1]], axis=1)


def coffee_cup():
    """scikit-image's CC0 ``coffee`` photograph's cup (rim, body and handle, without saucer and
    spoon) as an :class:`fsggan.data.occluders.Occluder` for the mouth region: the cut-out's
    alpha is a drawn outline (an ellipse for the rim, a polygon for the body, an ellipse for
    the handle), softened by one pixel."""
    from PIL import ImageDraw, ImageFilter
    from skimage.data import coffee

    from fsggan.data.occluders import Occluder

    rgb = np.ascontiguousarray(coffee())
    alpha = Image.new("L", (rgb.shape[1], rgb.shape[0]), 0)
    draw = ImageDraw.Draw(alpha)
    draw.ellipse((172, 18, 408, 206), fill=255)  # the rim
    draw.polygon([(175, 140), (407, 140), (388, 212), (356, 262), (300, 282), (232, 272), (192, 215)], fill=255)
    draw.ellipse((194, 225, 262, 306), fill=255)  # the handle
    alpha = np.asarray(alpha.filter(ImageFilter.GaussianBlur(1.0)))
    return Occluder("skimage/coffee_cup", np.dstack([rgb, alpha])[5:312, 165:415], category="mouth",
                    source="skimage.data.coffee (CC0)")


def occlude_demo(photo: np.ndarray, model, kind: str, seed: int) -> np.ndarray:
    """``photo`` (square) with one occluder on its face: ``"coffee"`` (:func:`coffee_cup`) or a
    procedural ``kind``, placed as the training data places occluders on a crop, then mapped
    into the photo."""
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
    objects = [coffee_cup()] if kind == "coffee" else procedural_occluders(count=1, seed=seed, kinds=[kind])
    library = OccluderLibrary(objects)
    placement = OcclusionSynthesizer(library, image_size=model.image_size).sample_placement(
        np.random.default_rng(seed), template, index=0)
    to_photo = np.vstack([invert(to_crop), [0.0, 0.0, 1.0]])
    placement["matrix"] = to_photo @ placement["matrix"]
    return OcclusionSynthesizer(library, image_size=photo.shape[0], supersample=2).occlude_photo(photo, [placement])


def demo_portraits() -> list[np.ndarray]:
    """scikit-image's public-domain portraits: the astronaut, and the cameraman made RGB."""
    from skimage.data import astronaut, camera

    return [np.ascontiguousarray(astronaut()), np.ascontiguousarray(np.repeat(camera()[..., None], 3, axis=2))]


def face_tile(photo: np.ndarray, box, size: int = 176) -> np.ndarray:
    """The square around a face's box (1.6x its side), resized to ``size`` pixels."""
    cx, cy, side = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.6 * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    x1, y1 = int(min(cx + side / 2, photo.shape[1])), int(min(cy + side / 2, photo.shape[0]))
    return np.asarray(Image.fromarray(photo[y0:y1, x0:x1]).resize((size, size), Image.BICUBIC))


def demo_figure(model, cases=DEMO_CASES) -> np.ndarray:
    """Per portrait, a row of faces before and a row after, one column per (object, seed) of
    ``cases`` (object None: nothing over the face)."""
    from fsggan.photos.deocclude import find_faces

    rows = []
    for n, photo in enumerate(demo_portraits()):
        box = find_faces(photo)[0].box   # the tiles' frame: the face as found without an occluder
        before, after = [], []
        for kind, seed in cases:
            occluded = photo if kind is None else occlude_demo(photo, model, kind, seed)
            out, faces = deocclude_photo(model, occluded)
            if not faces:   # shown unchanged, as fsggan-deocclude leaves a photo without a face
                print(f"portrait {n + 1}, {kind or 'nothing'} over it: no face found; shown unchanged")
            before.append(face_tile(occluded, box))
            after.append(face_tile(out, box))
        for tiles in (before, after):
            rows.append(np.concatenate(sum(([t, np.full((t.shape[0], 4, 3), 255, np.uint8)] for t in tiles), [])[:-1],
                                       axis=1))
            rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
        rows.append(np.full((8, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-2], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*")
    ap.add_argument("--demo", action="store_true", help="the README's picture: scikit-image's public-domain portraits "
                    "under drawn occluders of unseen kinds and a CC0 coffee cup, and with nothing over them")
    ap.add_argument("--kinds", nargs="+", choices=PROCEDURAL_KINDS, metavar="KIND",
                    help="with --demo: these drawn kinds instead of the README's cases (one column each, after "
                    f"a column with nothing over the face); any of {', '.join(PROCEDURAL_KINDS)}")
    ap.add_argument("--gan", default="runs/cpu_gan128")
    ap.add_argument("--out", default="before_after.png", help="PNG, or JPEG (quality 90) by the suffix")
    args = ap.parse_args()
    if bool(args.photos) == args.demo:
        ap.error("give photos, or --demo")
    if args.kinds and not args.demo:
        ap.error("--kinds goes with --demo")
    model = FSGGAN.from_checkpoints(gan=args.gan, device="cpu")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.demo:
        cases = DEMO_CASES if not args.kinds else ((None, 0), *((k, 3) for k in args.kinds))
        Image.fromarray(demo_figure(model, cases)).save(args.out, quality=90)
        print(f"wrote {args.out}")
        return
    before = side_by_side([read_rgb(p)[0] for p in args.photos])
    after, faces = deocclude_photo(model, before)
    print(f"{len(faces)} face(s) found in a {before.shape[1]}x{before.shape[0]} picture")
    gap = np.full((8, before.shape[1], 3), 255, np.uint8)
    rows = [before, gap, after]
    if faces and faces[0].region is not None:
        z = zoom(before, after, faces[0].region)
        z = np.pad(z, ((0, 0), (0, max(before.shape[1] - z.shape[1], 0)), (0, 0)), constant_values=255)
        rows += [gap, z[:, : before.shape[1]]]
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out, quality=90)  # PNG or JPEG by the suffix
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
