"""Real photos for the photo tests: LFW photos from ../shared/data (skipped where missing),
one with a real occluder cut-out over mouth and nose, and a stub face detector that knows
where they are: each 250x250 tile of a test photo that is not blank holds one LFW photo, whose
landmarks are the detector's mean landmarks on LFW, so the tests do not depend on a detector."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from fsggan.data.landmarks import MEAN_LANDMARKS
from fsggan.images import read_rgba

from helpers.files import SHARED, need

DATA = {"dataset": {"kind": "lfw", "crop": None, "image_size": 32}}
TILE = 250
LFW_PHOTO = SHARED / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
OTHER_PHOTO = SHARED / "lfw" / "Abdoulaye_Wade" / "Abdoulaye_Wade_0001.jpg"


def stub_detect(image: np.ndarray) -> list:
    """One face per non-blank 250x250 tile, with the default detector's mean landmarks on LFW
    (the points faces are aligned to)."""
    from fsggan.detect import DEFAULT_DETECTOR
    from fsggan.photos.template import DETECTOR_LFW_LANDMARKS

    mean = DETECTOR_LFW_LANDMARKS.get(DEFAULT_DETECTOR, MEAN_LANDMARKS["lfw"][0])
    faces = []
    for y in range(0, image.shape[0] - TILE + 1, TILE):
        for x in range(0, image.shape[1] - TILE + 1, TILE):
            if image[y:y + TILE, x:x + TILE].std() > 2:
                lm = (mean + np.array([x, y])).astype(np.float32)
                faces.append(SimpleNamespace(box=(x + 61.0, y + 66.0, x + 189.0, y + 194.0), landmarks=lm, score=1.0))
    return faces


def lfw(path=LFW_PHOTO) -> np.ndarray:
    need(path, "LFW")
    return np.asarray(Image.open(path).convert("RGB"))


def occluded(photo: np.ndarray) -> np.ndarray:
    """``photo`` with a real occluder cut-out (a surgical mask) composited over mouth and nose."""
    path = SHARED / "occluders" / "fsg" / "seen" / "SC-1.png"
    need(path, "occluders")
    rgba = np.asarray(Image.fromarray(read_rgba(path)).resize((90, 60), Image.Resampling.BICUBIC), np.float32)
    out = photo.astype(np.float32)
    y, x = 125, 80  # below the eyes, across nose and mouth of a 250x250 LFW photo
    a = rgba[..., 3:] / 255
    out[y:y + 60, x:x + 90] = out[y:y + 60, x:x + 90] * (1 - a) + rgba[..., :3] * a
    return np.rint(out).astype(np.uint8)
