"""Whole photos in, whole photos out: detect every face, align it onto the model's crop,
de-occlude all faces of all photos in batches, paste each back with a feathered seam.

    photo, faces = deocclude_photo(model, image)               # one photo
    results = deocclude_photos(model, [a, b, c], batch_size=32)  # [(photo, faces), ...]

``model`` is an :class:`fsggan.api.FSGGAN` (anything with ``run(x) -> (y, g)``,
``image_size`` and ``data``, the data section of its training config). Photos are file
paths, RGB arrays (H, W, 3) - uint8, or float in [0, 1] - or PIL images (EXIF orientation
applied, read as :func:`fsggan.images.read_rgb` reads files: :func:`photo_array`); the
photo comes back as a uint8 array of the same size, never rescaled; pixels outside the
pasted faces are unchanged. Where the model changed little, the photo keeps its own detail
(``keep_detail``, :mod:`fsggan.photos.paste`); a black-and-white photo's faces come back grey
(``keep_grey``, :mod:`fsggan.photos.tone`).

Faces come from :func:`find_faces`, which calls ``fsggan.detect.detect_faces`` (the
detector, its landmarks and its ``min_face`` / ``max_side`` handling live there); ``detect=``
takes any callable ``image -> list of faces with box, landmarks, score`` instead.

The user's own masks (``masks=``, one per photo, white = occluded, the photo's size): each is
warped with its face into the crop (``PhotoFace.mask``) and given to the model as the region G
fills (``mask_mode`` "replace" or "union", :meth:`fsggan.api.FSGGAN.run`). In "replace"
mode the crop outside the mask comes back unchanged, so the paste-back changes the photo only
inside the mask and within the few pixels its interpolation and ``keep_detail`` blur reach.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from fsggan.images import pil_to_rgb, read_rgb, to_tensor, to_uint8

from .align import estimate_similarity, warp_to_crop
from .paste import feather_mask, paste_back
from .template import crop_template
from .tone import is_grey_face, to_grey

__all__ = ["FILL_TO_EDGE", "KEEP_GREY", "PhotoFace", "find_faces", "face_finder", "default_detector", "photo_array", "model_template",
           "align_faces", "warp_mask", "read_photo_mask", "photo_masks", "run_faces", "paste_faces", "deocclude_photos", "deocclude_photo"]

# Pixels the model replaced reach the crop's edge instead of fading out with the feather
# (fsggan.photos.paste; benchmarks/photo_roundtrip.py, docs/experiments.md "`fill_to_edge`, ...": the fixed
# crop's round trip -0.18 -> -0.01 dB, detected faces' -0.69 -> -0.63 dB at 128 px).
FILL_TO_EDGE = True
# A grey face comes back grey (fsggan.photos.tone): G learned its colours from colour photos.
KEEP_GREY = True


@dataclass
class PhotoFace:
    """One face of a photo. ``box`` (x0, y0, x1, y1), ``landmarks`` (5, 2) and ``score``
    are the detector's, in photo pixels; ``matrix`` (2, 3) maps photo pixels to crop pixels;
    ``input``, ``structure`` (None without a VAE) and ``output`` are the model's crops,
    uint8 (S, S, 3); ``region`` is the photo area the paste-back wrote (None if none);
    ``mask`` the user's mask warped into the crop, float32 (S, S) in [0, 1] (None if none)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    matrix: np.ndarray
    input: np.ndarray
    structure: np.ndarray | None = None
    output: np.ndarray | None = None
    region: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None

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
    """A photo as RGB uint8 (H, W, 3), from what a notebook holds: a file path (str or Path,
    read upright as ``fsggan-deocclude`` reads it), a PIL image (upright, converted as files
    are), a uint8 array (H, W, 3) as it is, or a float array (H, W, 3) in [0, 1] (rounded to
    uint8, as ``FSGGAN.deocclude`` reads float arrays). Anything else is a one-line ValueError."""
    if isinstance(image, (str, Path)):
        return read_rgb(image, upright=True)[0]
    if isinstance(image, Image.Image):
        return pil_to_rgb(ImageOps.exif_transpose(image))[0]
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a photo must be a file path, a PIL image or an RGB array (H, W, 3), got "
                         f"{type(image).__name__} of shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        if not (-1e-3 <= lo and hi <= 1 + 1e-3):  # also false for NaN
            raise ValueError(f"a float photo must hold values in [0, 1] (for [0, 255] pass uint8); got values in "
                             f"[{lo:g}, {hi:g}]")
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise ValueError(f"a photo array must be uint8 in [0, 255] or float in [0, 1], got {arr.dtype}")
    return arr


def warp_mask(mask: np.ndarray, photo_to_crop: np.ndarray, size: int) -> np.ndarray:
    """A photo's mask (H, W) in [0, 1] -> its ``size`` crop, float32 in [0, 1], warped as
    the face is (:func:`warp_to_crop`, at 8 bits)."""
    u8 = np.rint(np.clip(mask, 0.0, 1.0) * 255.0).astype(np.uint8)
    return warp_to_crop(np.repeat(u8[..., None], 3, axis=2), photo_to_crop, size)[..., 0].astype(np.float32) / 255.0


def align_faces(photo: np.ndarray, detect: Callable, template: np.ndarray, size: int,
                mask: np.ndarray | None = None) -> list[PhotoFace]:
    """Detect the faces of ``photo`` and cut each one's aligned ``size`` crop (no model yet);
    with ``mask`` (the photo's size), each face's part of it too."""
    faces = []
    for det in detect(photo):
        lm = np.asarray(det.landmarks, np.float64).reshape(5, 2)
        m = estimate_similarity(lm, template)
        faces.append(PhotoFace(box=tuple(float(v) for v in det.box), landmarks=lm.astype(np.float32),
                               score=float(det.score), matrix=m, input=warp_to_crop(photo, m, size),
                               mask=None if mask is None else warp_mask(mask, m, size)))
    return faces


def run_faces(model, faces: Sequence[PhotoFace], batch_size: int, mask_mode: str = "replace",
              keep_grey: bool = KEEP_GREY) -> None:
    """Fill ``output`` and ``structure`` of ``faces``, ``batch_size`` crops at a time (with
    their ``mask``, where they have one: a face without one gets an empty mask).
    ``keep_grey``: a face grey where the model kept it gets a grey output (:mod:`fsggan.photos.tone`)."""
    for start in range(0, len(faces), batch_size):
        chunk = faces[start:start + batch_size]
        x = torch.stack([to_tensor(f.input) for f in chunk])
        if any(f.mask is not None for f in chunk):
            fill = torch.stack([torch.from_numpy(f.mask if f.mask is not None else np.zeros(x.shape[-2:], np.float32))
                                for f in chunk]).unsqueeze(1)
            y, g = model.run(x, fill, mask_mode)
        else:
            y, g = model.run(x)
        ys = to_uint8(y)
        gs = to_uint8(g) if g is not None else [None] * len(chunk)
        for f, yo, go in zip(chunk, ys, gs):
            f.output, f.structure = (to_grey(yo) if keep_grey and is_grey_face(f.input, yo) else yo), go


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


def read_photo_mask(path, shape: tuple[int, int]) -> np.ndarray:
    """A photo's mask file -> (H, W) float32 in [0, 1] at the photo's ``shape``, upright as
    the photo is read (:func:`fsggan.masks.fit_mask`: a scaled copy is resized)."""
    from fsggan.masks import fit_mask, read_mask

    return fit_mask(read_mask(path, upright=True), shape, path)


def photo_masks(masks, photos: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """The user's masks, one per photo (None: no mask for that photo), each at its photo's
    size (:func:`fsggan.masks.fit_mask`: a scaled copy is resized, another shape refused)."""
    from fsggan.masks import MaskError, fit_mask, mask_array

    if masks is None:
        return [None] * len(photos)
    if isinstance(masks, (np.ndarray, Image.Image)) or len(masks) != len(photos):
        raise MaskError(f"masks: give a list with one mask (or None) per photo, {len(photos)} in all")
    out = []
    for k, (m, p) in enumerate(zip(masks, photos)):
        if m is not None:
            m = fit_mask(mask_array(m, f"masks[{k}]"), p.shape[:2], f"masks[{k}]")
        out.append(m)
    return out


def deocclude_photos(model, images: Sequence, *, detector: str | None = None, min_face: int = 20,
                     batch_size: int = 32, detect: Callable | None = None, keep_detail: bool = True,
                     fill_to_edge: bool = FILL_TO_EDGE, masks: Sequence | None = None,
                     mask_mode: str = "replace", keep_grey: bool = KEEP_GREY) -> list[tuple[np.ndarray, list[PhotoFace]]]:
    """De-occlude every face of every photo; returns ``(photo, faces)`` per input, the photo
    a new uint8 array of the input's size (a photo without faces comes back unchanged, with
    an empty list). All faces of all photos go through the model in batches of ``batch_size``.
    ``keep_detail=False`` pastes the warped output crop as it is; ``fill_to_edge``: see
    :func:`paste_faces`. ``masks``: one mask per photo (or None), white = occluded, the
    region G fills (``mask_mode``; module docstring). ``keep_grey``: a black-and-white photo's
    faces come back grey (:func:`run_faces`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    photos = [photo_array(im) for im in images]
    fills = photo_masks(masks, photos)
    detect = detect or face_finder(detector, min_face)
    template = model_template(model, detector)
    per_photo = [align_faces(p, detect, template, model.image_size, m) for p, m in zip(photos, fills)]
    run_faces(model, [f for faces in per_photo for f in faces], batch_size, mask_mode, keep_grey)
    mask = feather_mask(model.image_size)
    return [(paste_faces(p, faces, mask, keep_detail, fill_to_edge), faces) for p, faces in zip(photos, per_photo)]


def deocclude_photo(model, image, **options) -> tuple[np.ndarray, list[PhotoFace]]:
    """One photo: ``(de-occluded photo, faces)``; ``options`` as for :func:`deocclude_photos`."""
    return deocclude_photos(model, [image], **options)[0]
