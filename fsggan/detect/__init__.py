"""Find faces and their five landmarks in ordinary photos.

    from fsggan.detect import detect_faces
    faces = detect_faces(rgb_uint8)            # [DetectedFace(box, landmarks (5, 2), score), ...]

Detectors (``DETECTORS``; weights come from installed packages, nothing downloads):

- ``"dlib_hog"``: dlib's HOG frontal-face detector + its 68-point shape predictor
  (``pip install "fsggan[landmarks]"``).
- ``"dlib_cnn"``: dlib's MMOD CNN detector + the same predictor; slow on a CPU.
- ``"mtcnn"``: MTCNN (Zhang et al. 2016) written here in torch (:mod:`fsggan.detect.mtcnn`),
  reading the PNet / RNet / ONet weights (MIT) from the ``facenet-pytorch`` wheel, installed
  WITHOUT its dependencies because it pins an old torch:
  ``pip install --no-deps facenet-pytorch==2.6.0`` (fsggan never imports it), or from a folder
  holding ``pnet.pt``, ``rnet.pt``, ``onet.pt`` given as ``weights=`` or ``FSGGAN_MTCNN_WEIGHTS``.

The default is chosen from the measurement in docs/experiments.md, Whole photos, "Detection:
detectors on occluded whole photos": DEFAULT_REASON below says why.

Every photo is shrunk to at most ``max_side`` pixels on its longer side before detection and
the results are mapped back to the full photo (:mod:`fsggan.detect.base`), so a 12 MP photo
costs about what a 1024x768 one does. A detector whose package or weights are missing raises
:class:`DetectorError` with a one-line message naming the install command.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .base import DetectedFace, DetectorError, check_image, shrink, to_photo

__all__ = ["DetectedFace", "DetectorError", "DETECTORS", "DEFAULT_DETECTOR", "detect_faces", "get_detector"]

DETECTORS = ("mtcnn", "dlib_hog", "dlib_cnn")
DEFAULT_DETECTOR = "mtcnn"
DEFAULT_REASON = (
    "measured on occluded whole LFW photos (benchmarks/detectors.py, docs/experiments.md): mtcnn finds "
    "96.5 % / 95.0 % of the faces under the Set1 / Set2 occluders at 34 ms per photo, dlib_hog 80.0 % / "
    "64.5 % at 95 ms; its weights need one install line, pip install --no-deps facenet-pytorch==2.6.0"
)


def get_detector(name: str = DEFAULT_DETECTOR, weights: str | Path | None = None):
    """The detector object ``name`` (loaded once per process and weights folder): a callable
    ``(image, min_face, max_side) -> list[DetectedFace]`` in the image's pixels."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if weights is None and name == "mtcnn":
        from .mtcnn_nets import ENV_VAR

        weights = os.environ.get(ENV_VAR) or None
    return _load(name, None if weights is None else str(weights))


@functools.lru_cache(maxsize=8)
def _load(name: str, weights: str | None):
    if name == "mtcnn":
        from .mtcnn import MTCNN

        return MTCNN(weights=weights)
    from .dlib_detect import DlibDetector

    return DlibDetector(kind=name.split("_")[1], weights=weights)


def detect_faces(
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    *,
    min_face: int = 20,
    max_side: int = 1024,
    weights: str | Path | None = None,
) -> list[DetectedFace]:
    """Every face in ``image`` ((H, W, 3) uint8 RGB), best score first, in the photo's pixels.

    min_face: smallest face (box side, photo pixels) to look for and to return. Faces are
              also missed below the detector's own limit in the shrunk image (MTCNN 12 px;
              dlib upsamples down to about 20 px while the image stays under ``max_side``).
    max_side: the photo is shrunk (never enlarged) to this longer side for detection.
    weights:  a folder with the detector's files instead of the installed package's.
    """
    image = check_image(image)
    small, sx, sy = shrink(image, max_side)
    det = get_detector(detector, weights)
    found = det(small, min_face * min(sx, sy), max_side)
    faces = [to_photo(f, sx, sy) for f in found]
    faces = [f for f in faces if f.size >= min_face]
    return sorted(faces, key=lambda f: -f.score)
