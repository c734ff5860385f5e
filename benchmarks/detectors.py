"""Face detectors on occluded whole photos: detection rate, landmark drift, time.

For each test identity of the data config (LFW: the 200 protocol identities) one seeded photo;
for each occluder pool (Set1: seen occluders, Set2: new ones) the occluder is rendered onto the
full 250x250 photo exactly where the prepared set puts it (benchmarks/photo_sets.py). Each
detector in ``fsggan.detect.DETECTORS`` then runs on the clean and the occluded photos:

- detected: some returned face matches the prepared sets' face box B (LFW: 61,66 - 189,194),
  i.e. its box centre lies inside B or its IoU with B is above 0.3;
- drift: for photos detected both clean and occluded, the mean distance of the five landmarks
  (occluded vs clean, the same detector), in clean eye distances: how far the occluder moves
  the alignment;
- extra: faces returned that do not match B, per photo (LFW photos do hold other faces);
- ms/photo: wall time of ``detect_faces`` on the 250x250 photo, after one warm-up call
  (dlib_cnn, seconds per photo on a CPU, runs on the first ``--cnn-limit`` photos only).
Then each detector is timed on 12 MP (4000x3000) photos: an LFW photo enlarged 12x (the face
about 1300 px) and the 250x250 photo pasted unscaled on a grey 4000x3000 canvas.

    python -m benchmarks.detectors --config configs/data/lfw.yaml
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from fsggan.data.config import load_data_config
from fsggan.detect import DETECTORS, DetectorError, detect_faces, get_detector

from benchmarks.photo_sets import POOLS, OccludedPhoto, pick_photos, render_set


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matches(face_box, truth) -> bool:
    cx, cy = (face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2
    return (truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]) or iou(face_box, truth) > 0.3


def run(name: str, image: np.ndarray, truth) -> tuple[np.ndarray | None, int, float]:
    """(landmarks of the best matching face or None, faces not matching, seconds)."""
    t0 = time.perf_counter()
    faces = detect_faces(image, name)
    dt = time.perf_counter() - t0
    hits = [f for f in faces if matches(f.box, truth)]
    return (hits[0].landmarks if hits else None), len(faces) - len(hits), dt


def drift(occluded: np.ndarray, clean: np.ndarray) -> float:
    eye = float(np.linalg.norm(clean[1] - clean[0]))
    return float(np.linalg.norm(occluded - clean, axis=1).mean() / max(eye, 1.0))


def score_detector(name: str, sets: dict[str, list[OccludedPhoto]]) -> dict:
    """Rows of the table for one detector: the clean photos, then each occluded set."""
    first = next(iter(sets.values()))
    run(name, first[0].clean, first[0].box)  # warm-up: weights, allocator, threads
    clean = {p.name: run(name, p.clean, p.box) for p in first}
    rows = {"clean": _row([c for c in clean.values()], [])}
    for s, photos in sets.items():
        res = [run(name, p.occluded, p.box) for p in photos]
        drifts = [drift(r[0], clean[p.name][0]) for p, r in zip(photos, res)
                  if r[0] is not None and clean[p.name][0] is not None]
        fsg = [r for p, r in zip(photos, res) if p.occluder.startswith("fsg/")]
        rows[s] = _row(res, drifts, fsg)
    return rows


def _row(res, drifts, fsg=None) -> dict:
    row = {"n": len(res), "detected": float(np.mean([r[0] is not None for r in res])),
           "extra": float(np.mean([r[1] for r in res])), "ms": 1000 * float(np.mean([r[2] for r in res])),
           "drift": float(np.mean(drifts)) if drifts else float("nan")}
    if fsg:
        row["fsg"] = (sum(r[0] is not None for r in fsg), len(fsg))
    return row


def twelve_mp(name: str, photo: np.ndarray, repeats: int = 3) -> list[tuple[str, float, int]]:
    """(case, median seconds, faces found) for the two 4000x3000 photos."""
    big = np.full((3000, 4000, 3), 110, np.uint8)
    big[:, 500:3500] = np.asarray(Image.fromarray(photo).resize((3000, 3000), Image.BICUBIC))
    pasted = np.full((3000, 4000, 3), 110, np.uint8)
    pasted[1375:1625, 1875:2125] = photo
    out = []
    for case, img in (("enlarged", big), ("pasted 250 px", pasted)):
        times, found = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            found = len(detect_faces(img, name))
            times.append(time.perf_counter() - t0)
        out.append((case, float(np.median(times)), found))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/data/lfw.yaml")
    p.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    p.add_argument("--sets", nargs="+", default=list(POOLS), choices=list(POOLS))
    p.add_argument("--limit", type=int, default=None, help="first N identities only (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="which photo of each identity")
    p.add_argument("--cnn-limit", type=int, default=50,
                   help="dlib_cnn takes seconds per photo on a CPU: only the first N photos (0: all)")
    a = p.parse_args()
    cfg = load_data_config(a.config)
    t0 = time.time()
    records = pick_photos(cfg, seed=a.seed, limit=a.limit)
    sets = {s: render_set(cfg, s, records) for s in a.sets}
    print(f"{len(records)} photos, sets {', '.join(a.sets)}, rendered in {time.time() - t0:.1f} s; "
          f"torch threads {torch.get_num_threads()}")
    print("| detector | photos | detected | of them fsg/ occluders | extra faces / photo | landmark drift (eye dist.) | ms / photo |")
    print("|---|---|---|---|---|---|---|")
    big = {}
    for name in a.detectors:
        try:
            get_detector(name)
        except DetectorError as e:
            print(f"| {name} | skipped: {e} |")
            continue
        n = a.cnn_limit if name == "dlib_cnn" and a.cnn_limit > 0 else None
        for s, r in score_detector(name, {k: v[:n] for k, v in sets.items()}).items():
            fsg = f"{r['fsg'][0]}/{r['fsg'][1]}" if "fsg" in r else ""
            print(f"| {name} | {s} | {100 * r['detected']:.1f} % | {fsg} | {r['extra']:.2f} | {r['drift']:.3f} | {r['ms']:.0f} |")
        big[name] = twelve_mp(name, sets[a.sets[0]][0].clean)
    print("\n12 MP photos (4000x3000), median of 3 calls, seconds (faces found):")
    for name, rows in big.items():
        print(f"- {name}: " + "; ".join(f"{case} {sec:.2f} s ({n})" for case, sec, n in rows))


if __name__ == "__main__":
    main()
