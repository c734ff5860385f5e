"""What every face detector returns, and the shared steps around it.

A detector sees the photo shrunk so that its longer side is at most ``max_side`` (a 12 MP
camera image is detected at about 1024x768, which is what keeps it fast) and its results are
mapped back to the full photo's pixels here, so each detector only deals with one image.

Coordinates: boxes are edges in continuous pixel coordinates (pixel ``i`` spans ``[i, i+1)``);
landmarks are pixel positions where the centre of pixel ``i`` is ``i``, the convention of
dlib and of fsggan's landmark templates (``fsggan.data.landmarks``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DetectedFace", "DetectorError", "package_folder", "shrink", "to_photo"]


class DetectorError(RuntimeError):
    """A detector's package or weight files are missing; the message names the fix in one line."""


@dataclass(frozen=True)
class DetectedFace:
    """One face in a photo, in the photo's own pixels.

    box:       (x0, y0, x1, y1) floats, the detector's face box (its own framing: dlib's HOG box
               is tighter than MTCNN's, so align on the landmarks, not on the box).
    landmarks: (5, 2) float32 (x, y): left eye centre, right eye centre, nose tip, left mouth
               corner, right mouth corner, in the order of ``fsggan.data.landmarks.LANDMARK_NAMES``.
               Left and right are as seen in the IMAGE (the left eye is the one with the smaller
               x on an upright frontal face, the subject's right eye), the convention of
               fsggan's landmark templates and of the prepared data sets.
    score:     the detector's confidence (MTCNN: ONet's face probability in [0, 1]; dlib: the
               HOG / CNN detector's margin, unbounded). Comparable within one detector only.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray = field(compare=False)
    score: float

    def __post_init__(self):
        lm = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        lm.flags.writeable = False
        object.__setattr__(self, "landmarks", lm)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))

    @property
    def size(self) -> float:
        """The box's mean side in pixels (what ``min_face`` is compared with)."""
        x0, y0, x1, y1 = self.box
        return ((x1 - x0) + (y1 - y0)) / 2


def package_folder(module: str) -> Path | None:
    """The folder of an installed package, found WITHOUT importing it (``face_recognition_models``
    imports ``pkg_resources``, which recent setuptools no longer has; ``facenet_pytorch`` pins an
    old torch). None when it is not installed."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def check_image(image: np.ndarray) -> np.ndarray:
    """The photo as a C-contiguous (H, W, 3) uint8 array; ValueError for anything else."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"detect_faces needs an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def shrink(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """``image`` reduced (never enlarged) so its longer side is at most ``max_side``.

    Returns (detection image, sx, sy) with sx = detection width / photo width (and sy for the
    heights). PIL's bilinear filter with ``reducing_gap`` first box-reduces by an integer factor,
    so a 4000x3000 photo shrinks in tens of milliseconds and without aliasing.
    """
    h, w = image.shape[:2]
    if max_side < 32:
        raise ValueError(f"max_side={max_side}: must be at least 32")
    if max(h, w) <= max_side:
        return image, 1.0, 1.0
    f = max_side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    small = Image.fromarray(image).resize((nw, nh), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), nw / w, nh / h


def to_photo(face: DetectedFace, sx: float, sy: float) -> DetectedFace:
    """``face`` found in the detection image mapped back to the full photo (see :func:`shrink`)."""
    if sx == 1.0 and sy == 1.0:
        return face
    x0, y0, x1, y1 = face.box
    lm = face.landmarks.astype(np.float64)
    lm = np.stack([(lm[:, 0] + 0.5) / sx - 0.5, (lm[:, 1] + 0.5) / sy - 0.5], 1)
    return DetectedFace(box=(x0 / sx, y0 / sy, x1 / sx, y1 / sy), landmarks=lm, score=face.score)
