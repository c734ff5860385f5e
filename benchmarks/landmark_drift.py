#!/usr/bin/env python
"""How far occlusion moves a face's alignment: the detector on the occluded and on
the clean whole photo, and the crop each alignment rule then cuts.

    python benchmarks/landmark_drift.py --set runs/quickstart/data/set1-lfw [--limit 320]

The prepared set's occluders are rendered onto the full LFW photos as
``benchmarks/photo_roundtrip.py`` renders them. For each photo where the default detector finds
the face both clean and occluded, it prints the mean drift of each of the five landmarks (photo
px), and, per alignment rule applied to the occluded photo's detection, how far the crop's four
corners and centre land from where the similarity on the clean photo's landmarks puts them
(photo px; mean / median / 90th percentile). Rules: ``detected`` (the shipped least-squares
similarity on five points), ``eyes`` (two points), ``robust`` (iteratively reweighted), ``box``
(the detection box onto the clean photos' mean box), ``mixA`` (a blend of the detected and box
matrices, weight A on the box), ``dlib68`` (dlib's 68-point predictor run in the detector's box,
both photos; needs dlib, the ``landmarks`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_roundtrip import occluder_renderer, robust_similarity  # noqa: E402

from fsggan.images import read_rgb  # noqa: E402
from fsggan.photos.align import apply, estimate_similarity, invert  # noqa: E402
from fsggan.photos.deocclude import face_finder  # noqa: E402
from fsggan.photos.template import crop_template  # noqa: E402


def dlib_points():
    """``(image, box) -> five points`` of dlib's 68-point predictor in ``box``, or None without dlib."""
    try:
        import dlib

        from fsggan.detect.dlib_detect import PREDICTOR_FILE, five_points, model_folder
        predictor = dlib.shape_predictor(str(model_folder() / PREDICTOR_FILE))
    except Exception:  # noqa: BLE001 - dlib or its model files missing: the rule is skipped
        return None
    return lambda image, box: five_points(predictor(image, dlib.rectangle(*(int(v) for v in box)))).astype(np.float64)


def pairs(manifest: dict, data_config: str, limit: int | None):
    """(clean landmarks, occluded landmarks, clean box, occluded box[, dlib clean, dlib occluded])
    per photo found both ways."""
    render = occluder_renderer(manifest, data_config, 250)
    detect = face_finder(None, 20)
    dlib68 = dlib_points()
    out = []
    for it in manifest["images"][:limit]:
        photo = read_rgb(Path(manifest["dataset_root"]) / it["source"])[0]
        placements = it["placement"] if isinstance(it["placement"], list) else [it["placement"]]
        image = render(photo, placements)
        clean, occluded = detect(photo), detect(image)
        if not clean or not occluded:
            continue
        c = min(clean, key=lambda f: np.abs(np.mean(f.landmarks, 0) - 125.0).sum())
        o = min(occluded, key=lambda f: np.abs(np.mean(f.landmarks, 0) - np.mean(c.landmarks, 0)).sum())
        row = tuple(np.asarray(v, np.float64) for v in (c.landmarks, o.landmarks, c.box, o.box))
        out.append(row + ((dlib68(photo, c.box), dlib68(image, o.box)) if dlib68 else ()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, help="a prepared set folder (manifest.json)")
    ap.add_argument("--data-config", default="configs/data/lfw.yaml")
    ap.add_argument("--limit", type=int, default=320)
    args = ap.parse_args(argv)
    manifest = json.loads((Path(args.set) / "manifest.json").read_text())
    size = manifest["image_size"]
    template = crop_template({"dataset": {"kind": "lfw"}}, size, "mtcnn")
    rows = pairs(manifest, args.data_config, args.limit)
    clean_lm, occ_lm = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
    print(f"{len(rows)} photos with the face found clean and occluded")
    print("landmark drift (photo px; eyes, nose, mouth corners):", np.linalg.norm(occ_lm - clean_lm, axis=2).mean(0).round(2))
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size], [size / 2, size / 2]], np.float64)
    ref = [estimate_similarity(r[0], template) for r in rows]
    mean_box = np.mean([apply(m, r[2].reshape(2, 2)).ravel() for m, r in zip(ref, rows)], axis=0)

    def box_rule(box):
        (x0, y0), (x1, y1) = box.reshape(2, 2)
        b0, b1, b2, b3 = mean_box
        return estimate_similarity(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]),
                                   np.array([[b0, b1], [b2, b1], [b2, b3], [b0, b3]]))

    rules = {"detected": lambda r: estimate_similarity(r[1], template),
             "eyes": lambda r: estimate_similarity(r[1][:2], template[:2]),
             "robust": lambda r: robust_similarity(r[1], template),
             "box": lambda r: box_rule(r[3])}
    for a in (0.25, 0.5, 0.75):
        rules[f"mix{a}"] = lambda r, a=a: (1 - a) * estimate_similarity(r[1], template) + a * box_rule(r[3])
    dlib_template = crop_template({"dataset": {"kind": "lfw"}}, size, None)  # the 68-point reduction's means
    rules["dlib68"] = lambda r: estimate_similarity(r[5], dlib_template)
    refs = {"dlib68": [estimate_similarity(r[4], dlib_template) for r in rows] if len(rows[0]) > 4 else None}
    for name, rule in rules.items():
        reference = refs.get(name, ref)
        if reference is None:
            print(f"{name:9s} skipped: dlib is not installed")
            continue
        e = [np.linalg.norm(apply(invert(rule(r)), corners) - apply(invert(m), corners), axis=1).mean()
             for r, m in zip(rows, reference)]
        print(f"{name:9s} crop corners from the clean alignment: mean {np.mean(e):.1f}, median {np.median(e):.1f}, "
              f"90th percentile {np.percentile(e, 90):.1f} photo px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
