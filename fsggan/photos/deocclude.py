"""Whole photos in, whole photos out: detect every face, align it onto the model's crop,
de-occlude all faces of all photos in batches, paste each back with a feathered seam.

    photo, faces = deocclude_photo(model, image)               # one photo
    results = deocclude_photos(model, [a, b, c], batch_size=32)  # [(photo, faces), ...]

``model`` is an :class:`fsggan.pipeline.FSGGAN` (anything with ``run(x) -> (y, g)``,
``image_size`` and ``data``, the data section of its training config). Photos are RGB
uint8 arrays (H, W, 3) or PIL images (EXIF orientation applied, read as
:func:`fsggan.images.pil_to_rgb` reads them); the photo comes back as a uint8 array of the
same size, never rescaled; pixels outside the pasted faces are unchanged. Where the model
changed little, the photo keeps its own detail (``keep_detail``, :mod:`fsggan.photos.paste`).

Faces come from :func:`find_faces`, which calls ``fsggan.detect.detect_faces`` (the
detector, its landmarks and its ``min_face`` / ``max_side`` handling live there); ``detect=``
takes any callable ``image -> list of faces with box, landmarks, score`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from fsggan.images import pil_to_rgb, to_tensor, to_uint8

from .align import estimate_similarity, warp_to_crop
from .paste import feather_mask, paste_back
from .template import crop_template

__all__ = ["FILL_TO_EDGE", "PhotoFace", "find_faces", "face_finder", "default_detector", "photo_array", "model_template",
           "align_faces", "run_faces", "paste_faces", "deocclude_photos", "deocclude_photo"]

# Pixels the model replaced reach the crop's edge instead of fading out with the feather
# (fsggan.photos.paste; benchmarks/photo_roundtrip.py, docs/experiments.md "`fill_to_edge`, ...": the fixed
# crop's round trip -0.18 -> -0.01 dB, detected faces' -0.69 -> -0.63 dB at 128 px).
FILL_TO_EDGE = True


@dataclass
class PhotoFace:
    """One face of a photo. ``box`` (x0, y0, x1, y1), ``landmarks`` (5, 2) and ``score``
    are the detector's, in photo pixels; ``matrix`` (2, 3) maps photo pixels to crop pixels;
    ``input``, ``structure`` (None without a VAE) and ``output`` are the model's crops,
    uint8 (S, S, 3); ``region`` is the photo area the paste-back wrote (None if none)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    matrix: np.ndarray
    input: np.ndarray
    structure: np.ndarray | None = None
    output: np.ndarray | None = None
    region: tuple[int, int, int, int] | None = None

    def to_json(self) -> dict:
        """What the JSON sidecar of a photo records for this face."""
        return {"box": [round(float(v), 2) for v in self.box],
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
                "score": round(float(self.score), 4)}


def _detect_module():
    """``fsggan.detect`` (the detectors), or a one-line ImportError saying what to do."""
    try:
        from fsggan import detect
    except ImportError as exc:
        raise ImportError(f"face detection is not available ({exc}); for face crops use --aligned") from None
    return detect


def find_faces(image: np.ndarray, detector: str | None = None, *, min_face: int = 20) -> list:
    """The faces ``fsggan.detect.detect_faces`` finds in ``image`` (its default detector when
    ``detector`` is None)."""
    return face_finder(detector, min_face)(image)


def photo_array(image) -> np.ndarray:
    """A photo as RGB uint8 (H, W, 3): PIL images upright (EXIF orientation) and converted
    as files are; arrays (H, W, 3) uint8 as they are."""
    if isinstance(image, Image.Image):
        return pil_to_rgb(ImageOps.exif_transpose(image))[0]
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"a photo must be an RGB uint8 array (H, W, 3) or a PIL image, got {arr.dtype} {arr.shape}")
    return arr


def align_faces(photo: np.ndarray, detect: Callable, template: np.ndarray, size: int) -> list[PhotoFace]:
    """Detect the faces of ``photo`` and cut each one's aligned ``size`` crop (no model yet)."""
    faces = []
    for det in detect(photo):
        lm = np.asarray(det.landmarks, np.float64).reshape(5, 2)
        m = estimate_similarity(lm, template)
        faces.append(PhotoFace(box=tuple(float(v) for v in det.box), landmarks=lm.astype(np.float32),
                               score=float(det.score), matrix=m, input=warp_to_crop(photo, m, size)))
    return faces


def run_faces(model, faces: Sequence[PhotoFace], batch_size: int) -> None:
    """Fill ``output`` and ``structure`` of ``faces``, ``batch_size`` crops at a time."""
    for start in range(0, len(faces), batch_size):
        chunk = faces[start:start + batch_size]
        y, g = model.run(torch.stack([to_tensor(f.input) for f in chunk]))
        ys = to_uint8(y)
        gs = to_uint8(g) if g is not None else [None] * len(chunk)
        for f, yo, go in zip(chunk, ys, gs):
            f.output, f.structure = yo, go


def paste_faces(photo: np.ndarray, faces: Sequence[PhotoFace], mask: np.ndarray,
                keep_detail: bool = True, fill_to_edge: bool = FILL_TO_EDGE) -> np.ndarray:
    """A copy of ``photo`` with every face's output pasted back (``region`` set).
    ``keep_detail``: keep the photo's own detail where the model changed little;
    ``fill_to_edge``: replaced pixels reach the crop's edge (:func:`fsggan.photos.paste.paste_back`)."""
    photo = photo.copy()
    for f in faces:
        f.region = paste_back(photo, f.output, f.matrix, mask, input_crop=f.input, keep_detail=keep_detail,
                              fill_to_edge=fill_to_edge)
    return photo


def face_finder(detector: str | None, min_face: int) -> Callable:
    """``image -> faces`` through ``fsggan.detect.detect_faces`` with these settings; an
    unknown ``detector`` name is a ValueError naming the choices, raised here, before any
    photo is read."""
    det = _detect_module()
    names = tuple(getattr(det, "DETECTORS", ()))
    if detector is not None and names and detector not in names:
        raise ValueError(f"unknown detector {detector!r}; choose from {', '.join(names)}")
    kwargs = {"min_face": min_face} if detector is None else {"detector": detector, "min_face": min_face}

    def detect(image):
        return det.detect_faces(image, **kwargs)
    return detect


def default_detector() -> str | None:
    """The name of ``detect_faces``'s default detector (None when detection is unavailable)."""
    import inspect

    try:
        det = _detect_module()
    except ImportError:
        return None
    default = inspect.signature(det.detect_faces).parameters.get("detector")
    return None if default is None or default.default is inspect.Parameter.empty else default.default


def model_template(model, detector: str | None = None) -> np.ndarray:
    """The crop landmarks (5, 2) faces are aligned to for ``model`` and ``detector``
    (None: the default detector)."""
    return crop_template(getattr(model, "data", None) or {}, model.image_size, detector or default_detector())


def deocclude_photos(model, images: Sequence, *, detector: str | None = None, min_face: int = 20,
                     batch_size: int = 32, detect: Callable | None = None, keep_detail: bool = True,
                     fill_to_edge: bool = FILL_TO_EDGE) -> list[tuple[np.ndarray, list[PhotoFace]]]:
    """De-occlude every face of every photo; returns ``(photo, faces)`` per input, the photo
    a new uint8 array of the input's size (a photo without faces comes back unchanged, with
    an empty list). All faces of all photos go through the model in batches of ``batch_size``.
    ``keep_detail=False`` pastes the warped output crop as it is; ``fill_to_edge``: see
    :func:`paste_faces`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    photos = [photo_array(im) for im in images]
    detect = detect or face_finder(detector, min_face)
    template = model_template(model, detector)
    per_photo = [align_faces(p, detect, template, model.image_size) for p in photos]
    run_faces(model, [f for faces in per_photo for f in faces], batch_size)
    mask = feather_mask(model.image_size)
    return [(paste_faces(p, faces, mask, keep_detail, fill_to_edge), faces) for p, faces in zip(photos, per_photo)]


def deocclude_photo(model, image, **options) -> tuple[np.ndarray, list[PhotoFace]]:
    """One photo: ``(de-occluded photo, faces)``; ``options`` as for :func:`deocclude_photos`."""
    return deocclude_photos(model, [image], **options)[0]
