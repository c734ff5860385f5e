"""Paste a de-occluded crop back into the full-resolution photo without a visible seam.

The output crop is warped back through the inverse of the alignment and blended with a
feathered mask: the crop's square, eroded by 2 crop pixels (so that no edge of the crop,
where bicubic sampling met the outside, reaches the photo) and blurred (so that the crop
fades into the photo instead of ending in a line). Both are made in crop pixels and warped
with the crop, so the feather keeps its share of the face at any photo resolution.

The feather is narrow because everything it hands back to the photo keeps the occluder: on
the quickstart's G (64 px) the round trip lost 0.55 dB with the earlier size / 16 (4 px),
0.43 dB with 2 px, 0.39 dB with 1 px, and no seam showed at 1 px (docs/experiments.md,
"Where the round trip loses, split (64 px)").

Where the model replaced pixels (an occluder it removed; :func:`change_weight`), the feather
is not needed and costs the most: an occluder that reaches the crop's border would keep a
2 px rim there. ``fill_to_edge`` gives those pixels the model's output up to the crop's own
edge (the blend weight is the larger of the feather and the change weight), leaving the
feather where the model kept the face; the crop is edge-padded before it is warped, so its
outermost pixels do not pull in black. Measured in docs/experiments.md, Whole photos,
"`fill_to_edge`, a wider view for G, a public-domain picture".

Only the bounding region of the warped crop is touched, at the photo's own resolution (a
12-megapixel photo with one face costs the face's area, not the photo's). Pixels the mask
gives weight 0 keep their exact values; elsewhere the result is rounded to uint8.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .align import compose, invert, region_of

__all__ = ["feather_mask", "change_weight", "paste_back"]


def _feather_profile(size: int, erode: int, sigma: float) -> np.ndarray:
    """1-D profile: ones on [erode, size - erode), blurred by a Gaussian truncated at
    ``erode - 1`` pixels, so the outermost crop pixel keeps weight exactly 0."""
    line = np.zeros(size, np.float64)
    line[erode:size - erode] = 1.0
    radius = max(erode - 1, 0)
    if radius == 0 or sigma <= 0:
        return line
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return np.convolve(line, kernel / kernel.sum(), mode="same")


def feather_mask(size: int, erode: int | None = None, sigma: float | None = None) -> np.ndarray:
    """The blend weight (size, size) float32 in [0, 1] of a ``size`` crop: its square eroded
    by ``erode`` px (default 2) then blurred with ``sigma`` (default erode / 2). Separable,
    because eroding and blurring a square is."""
    erode = 2 if erode is None else int(erode)
    if not 0 <= 2 * erode < size:
        raise ValueError(f"erode={erode}: must leave part of the {size} px crop (0 <= 2 * erode < {size})")
    sigma = erode / 2.0 if sigma is None else float(sigma)
    p = _feather_profile(size, erode, sigma)
    return np.outer(p, p).astype(np.float32)


def change_weight(input_crop: np.ndarray, output_crop: np.ndarray, full: float = 0.1, sigma: float = 1.5) -> np.ndarray:
    """How much the model changed each crop pixel, (S, S) float32 in [0, 1]: the mean absolute
    RGB change (of 1) blurred by ``sigma`` crop px, divided by ``full`` and clipped (a change
    of ``full`` or more counts as a replaced pixel). Visible skin the model keeps changes by a
    few levels (JPEG noise, the model's own error), an occluder it removes by tens."""
    from scipy.ndimage import gaussian_filter

    d = np.abs(output_crop.astype(np.float32) - input_crop.astype(np.float32)).mean(-1) / 255.0
    return np.clip(gaussian_filter(d, sigma) / full, 0.0, 1.0).astype(np.float32)


def _warp(crop: np.ndarray, to_crop: np.ndarray, size: tuple[int, int], resample, pad: int = 0) -> np.ndarray:
    """``crop`` (uint8 RGB or float32 weights) warped into a region of ``size`` (W, H) whose
    pixels map to crop pixels through ``to_crop`` (2, 3); zero outside the crop, or, with
    ``pad``, outside the crop edge-padded by ``pad`` px (so that the interpolation kernel at
    the crop's border reads the border, not black)."""
    if pad:
        crop = np.pad(crop, ((pad, pad), (pad, pad)) + ((0, 0),) * (crop.ndim - 2), mode="edge")
        to_crop = to_crop + np.array([[0.0, 0.0, pad], [0.0, 0.0, pad]])
    im = Image.fromarray(np.ascontiguousarray(crop))
    out = im.transform(size, Image.Transform.AFFINE, data=tuple(to_crop.ravel()), resample=resample)
    return np.asarray(out, np.float32)


def paste_back(photo: np.ndarray, crop: np.ndarray, photo_to_crop: np.ndarray, mask: np.ndarray | None = None,
               input_crop: np.ndarray | None = None, *, keep_detail: bool = True,
               fill_to_edge: bool = False) -> tuple[int, int, int, int] | None:
    """Blend ``crop`` (S, S, 3) uint8 into ``photo`` (H, W, 3) uint8 in place, where the
    alignment ``photo_to_crop`` (2, 3) took it from. ``mask``: the crop's blend weight
    (default :func:`feather_mask`). Returns the region written (x0, y0, x1, y1), or None
    when the crop lies outside the photo.

    ``input_crop`` (the crop the model was given) tells where the model changed the face
    (:func:`change_weight`). With it, ``keep_detail`` keeps the photo's own detail where the
    model changed little: there the photo gets the model's change (output - input, warped)
    added instead of being replaced by the warped crop, which is blurrier than the photo
    whenever the face is larger than the crop; where the model replaced pixels the warped
    output replaces them. ``fill_to_edge``: where the model replaced pixels, its output
    reaches the crop's edge instead of fading out with the feather (module docstring).
    Without ``input_crop`` both are off: the warped crop is pasted as it is."""
    size = crop.shape[0]
    mask = feather_mask(size) if mask is None else np.asarray(mask, np.float32)
    changed = change_weight(input_crop, crop) if input_crop is not None and (keep_detail or fill_to_edge) else None
    if changed is not None and fill_to_edge:
        mask = np.maximum(mask, changed)
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = region_of(invert(photo_to_crop), size, margin=1.0)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    to_crop = compose(photo_to_crop, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]))  # region px -> crop px
    out = (x1 - x0, y1 - y0)
    a = np.clip(_warp(mask, to_crop, out, Image.Resampling.BILINEAR), 0.0, 1.0)
    rows, cols = np.nonzero(a.any(1))[0], np.nonzero(a.any(0))[0]
    if not len(rows):
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1  # only where the mask has weight
    to_crop = compose(to_crop, np.array([[1.0, 0.0, c0], [0.0, 1.0, r0]]))
    out = (c1 - c0, r1 - r0)
    a = a[r0:r1, c0:c1, None]
    region = photo[y0 + r0:y0 + r1, x0 + c0:x0 + c1]
    base = region.astype(np.float32)
    target = base  # what the warped output replaces
    if changed is not None and keep_detail:
        keep = 1.0 - _warp(changed, to_crop, out, Image.Resampling.BILINEAR)[..., None]
        target = base + keep * (_warp(input_crop, to_crop, out, Image.Resampling.BICUBIC, pad=2) - base)
    blended = base + a * (_warp(crop, to_crop, out, Image.Resampling.BICUBIC, pad=2) - target)
    region[...] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return x0 + c0, y0 + r0, x0 + c1, y0 + r1
