"""Similarity alignment of a face in a photo onto the model's crop, and back.

Coordinates are continuous pixel coordinates throughout (pixel (i, j) covers [i, i+1) x
[j, j+1); its centre is (i + 0.5, j + 0.5)), the convention of PIL's ``resize(box=...)``
and ``transform``, which :func:`fsggan.images.crop_resize` (the fixed crop of the data
pipeline) uses too. A transform is a (2, 3) float64 matrix ``[A | t]`` mapping a point
``p`` (x, y) to ``A @ p + t``.

    M = estimate_similarity(landmarks, template)    # photo -> crop, least squares
    crop = warp_to_crop(photo, M, size)             # the aligned face, size x size uint8
    invert(M)                                       # crop -> photo

Why two steps in :func:`warp_to_crop`: a face in a camera photo is often 10-30 times the
crop's size, and an affine warp alone samples without low-pass filtering (aliasing), while
the training crops were made with PIL's antialiased resize. The face's region is first
shrunk with that same resize to about the crop's scale, then warped (rotation and the
remaining sub-pixel scale and shift) with bicubic sampling. Only the face's region is read.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["estimate_similarity", "invert", "compose", "apply", "scale_of", "warp_to_crop", "region_of"]


def estimate_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation, uniform scale and translation (no reflection) that maps the points
    ``src`` (k, 2) onto ``dst`` (k, 2) with the least summed squared error, k >= 2;
    ``weights`` (k,), positive: the least weighted summed squared error.

    Umeyama's closed form (IEEE PAMI 13(4), 1991) in two dimensions: centre both sets,
    take the SVD of their cross-covariance, flip the last singular direction when the best
    orthogonal map would be a reflection, and read the scale off the singular values.
    Returns (2, 3) float64; raises ValueError for fewer than 2 points or coincident
    ``src`` points (no scale can be estimated).
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"need the same number (>= 2) of source and target points, got {len(src)} and {len(dst)}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks must be finite numbers")
    w = np.full(len(src), 1.0 / len(src)) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    mu_s, mu_d = w @ src, w @ dst
    s, d = src - mu_s, dst - mu_d
    var_s = (w * (s ** 2).sum(1)).sum()
    if var_s < 1e-12:
        raise ValueError("the source points coincide: no scale can be estimated")
    cov = (d * w[:, None]).T @ s
    u, sing, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sing) @ sign)) / var_s
    a = scale * rot
    return np.hstack([a, (mu_d - a @ mu_s)[:, None]])


def invert(m: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine map."""
    full = np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer`` after ``inner``: p -> outer(inner(p)), both (2, 3)."""
    o, i = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.hstack([o[:, :2] @ i[:, :2], (o[:, :2] @ i[:, 2] + o[:, 2])[:, None]])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (k, 2) through the (2, 3) transform ``m``."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return p @ np.asarray(m, np.float64)[:, :2].T + np.asarray(m, np.float64)[:, 2]


def scale_of(m: np.ndarray) -> float:
    """The uniform scale of a similarity (for a general affine map, the root of |det|)."""
    return math.sqrt(abs(float(np.linalg.det(np.asarray(m, np.float64)[:, :2]))))


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y]])


def region_of(crop_to_photo: np.ndarray, size: int, margin: float = 0.0) -> tuple[int, int, int, int]:
    """Integer bounds (x0, y0, x1, y1) of the photo area the ``size`` x ``size`` crop
    covers through ``crop_to_photo``, grown by ``margin`` photo pixels (not clipped)."""
    corners = apply(crop_to_photo, np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
    lo, hi = corners.min(0) - margin, corners.max(0) + margin
    return int(math.floor(lo[0])), int(math.floor(lo[1])), int(math.ceil(hi[0])), int(math.ceil(hi[1]))


def _read_region(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image[y0:y1, x0:x1]``; the parts outside the photo repeat its edge, as the data
    pipeline's crop does (:func:`fsggan.images.crop_resize`)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return image[y0:y1, x0:x1]
    rows = np.clip(np.arange(y0, y1), 0, h - 1)
    cols = np.clip(np.arange(x0, x1), 0, w - 1)
    return image[np.ix_(rows, cols)]


def _shrunk_region(image: np.ndarray, to_photo: np.ndarray, size: int, f: float,
                   margin: int = 3) -> tuple[Image.Image, np.ndarray]:
    """The photo around the crop, shrunk by ``f`` (photo px per crop px) with PIL's
    antialiased bicubic resize -> (image, its pixels -> photo pixels (2, 3)). The shrunk grid
    is laid on the crop's own pixel lattice, so an alignment without rotation (a face that
    sits as the template says) is cut exactly as the fixed crop of the data pipeline cuts it;
    ``margin`` crop pixels on each side feed the bicubic warp that follows."""
    corners = apply(to_photo, np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
    origin = to_photo[:, 2]  # where crop point (0, 0) lies in the photo
    start = origin + (np.floor((corners.min(0) - origin) / f) - margin) * f
    cells = (np.ceil((corners.max(0) - start) / f) + margin).astype(int)
    end = start + cells * f
    pad = 2.0 * f + 1.0  # the reach of the antialiasing filter, in photo pixels
    box = (math.floor(start[0] - pad), math.floor(start[1] - pad), math.ceil(end[0] + pad), math.ceil(end[1] + pad))
    region = Image.fromarray(np.ascontiguousarray(_read_region(image, box)))
    src = (start[0] - box[0], start[1] - box[1], end[0] - box[0], end[1] - box[1])
    small = region.resize((int(cells[0]), int(cells[1])), resample=Image.Resampling.BICUBIC, box=src)
    return small, np.array([[f, 0.0, start[0]], [0.0, f, start[1]]])


def warp_to_crop(image: np.ndarray, photo_to_crop: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` uint8 crop that ``photo_to_crop`` (2, 3) cuts out of the
    RGB uint8 photo ``image`` (H, W, 3): antialiased shrink of the face's region, then a
    bicubic warp (module docstring)."""
    to_photo = invert(photo_to_crop)
    f = 1.0 / scale_of(photo_to_crop)  # photo pixels per crop pixel
    if f > 1.25:
        region, region_to_photo = _shrunk_region(image, to_photo, size, f)
    else:  # the face is about the crop's size or smaller: warp the photo's pixels directly
        box = region_of(to_photo, size, margin=4.0)
        region = Image.fromarray(np.ascontiguousarray(_read_region(image, box)))
        region_to_photo = _translate(box[0], box[1])
    crop_to_region = compose(invert(region_to_photo), to_photo)
    out = region.transform((size, size), Image.Transform.AFFINE, data=tuple(crop_to_region.ravel()),
                           resample=Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)
