"""Check (or measure) the crop template that whole photos are aligned to, for one detector.

fsggan-deocclude aligns each detected face onto LFW's mean landmarks in the model's crop
(fsggan.data.landmarks.MEAN_LANDMARKS, measured with dlib's HOG detector and 68-point
predictor). A detector that puts its five points elsewhere on the face would align faces to
another crop than the one the model was trained on. This runs the detector on LFW photos
(every Nth file), takes the face nearest the centre, and prints:

- its mean five landmarks in 250x250 photo pixels and their std over faces;
- their offset from the template, per point;
- how the crop an aligned face lands on differs from the fixed LFW crop, on average: the
  similarity from the detected points to the template, as scale, rotation and the shift of
  the crop's centre (in crop widths). 1.000 / 0.0 deg / 0.000 is the fixed crop exactly.

When the offset is more than a fraction of a pixel, put the printed mean into
fsggan.photos.template.DETECTOR_LFW_LANDMARKS under the detector's name.

    python scripts/photo_template.py [--lfw ../shared/data/lfw] [--every 20] [--detector NAME]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from fsggan.data.faces import DEFAULT_CROPS
from fsggan.data.landmarks import LANDMARK_NAMES, MEAN_LANDMARKS
from fsggan.detect import detect_faces
from fsggan.images import read_rgb
from fsggan.photos.align import apply, estimate_similarity


def centre_face(photo: np.ndarray, detector: str | None):
    faces = detect_faces(photo) if detector is None else detect_faces(photo, detector)
    if not faces:
        return None
    h, w = photo.shape[:2]
    return min(faces, key=lambda f: np.sum((np.asarray(f.landmarks, float).mean(0) - [w / 2, h / 2]) ** 2))


def crop_offset(found: np.ndarray, template: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Scale, rotation (deg) and centre shift (crop widths) of the crop that aligning
    ``found`` onto ``template`` cuts, relative to the fixed LFW crop."""
    box = DEFAULT_CROPS["lfw"].box_for(250, 250)
    m = estimate_similarity(found, template)  # photo -> photo frame of the template
    centre = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])
    inv_centre = apply(np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2], centre)  # where the crop centre lands
    scale = math.hypot(m[0, 0], m[1, 0])
    return 1.0 / scale, math.degrees(math.atan2(m[1, 0], m[0, 0])), (inv_centre - centre)[0] / (box[2] - box[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", default="../shared/data/lfw")
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--detector", default=None, help="a name of fsggan.detect.DETECTORS (default: its default)")
    args = p.parse_args()
    files = sorted(Path(args.lfw).rglob("*.jpg"))[:: args.every]
    template = MEAN_LANDMARKS["lfw"][0].astype(np.float64)
    found, offsets = [], []
    for f in files:
        face = centre_face(read_rgb(f)[0], args.detector)
        if face is not None:
            lm = np.asarray(face.landmarks, np.float64)
            found.append(lm)
            offsets.append(crop_offset(lm, template))
    found = np.stack(found)
    mean = found.mean(0)
    print(f"detector {args.detector or 'default'}: a face in {len(found)} of {len(files)} LFW photos")
    print("mean landmarks (250x250 px):", np.round(mean, 1).tolist())
    print("std over faces (px):        ", np.round(found.std(0), 1).tolist())
    for name, d in zip(LANDMARK_NAMES, mean - template):
        print(f"  {name:12s} offset from the template: ({d[0]:+.2f}, {d[1]:+.2f}) px")
    s, r, c = (np.array([o[i] for o in offsets]) for i in range(3))
    print(f"aligned crop vs the fixed LFW crop: scale {s.mean():.3f} (std {s.std():.3f}), rotation "
          f"{r.mean():+.1f} deg (std {r.std():.1f}), centre shift ({c[:, 0].mean():+.3f}, {c[:, 1].mean():+.3f}) "
          f"crop widths (std {c[:, 0].std():.3f}, {c[:, 1].std():.3f})")
    s_mean, r_mean, c_mean = crop_offset(mean, template)
    print(f"mean landmarks aligned: scale {s_mean:.3f}, rotation {r_mean:+.2f} deg, centre shift "
          f"({c_mean[0]:+.3f}, {c_mean[1]:+.3f}) crop widths")


if __name__ == "__main__":
    main()
