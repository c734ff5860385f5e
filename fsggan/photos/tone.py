"""A black-and-white photo's faces come back black and white.

G learned its colours from colour photos: on a grey face it may fill an occluder, or paint a
patch, in skin tones (docs/experiments.md, "A grey face's output made grey"). Where the face the
model was given is grey in every pixel the model kept, its output is made grey as well (ITU-R
BT.601 luma in all three channels), so the photo stays black and white. Only the pixels the model kept decide: a
coloured occluder it replaced does not count, one it left in place does (and keeps its
colour). A colour face is never changed here; tinted monochrome (sepia) is left as the model
gives it.

    if is_grey_face(face.input, face.output):
        face.output = to_grey(face.output)
"""

from __future__ import annotations

import numpy as np

from fsggan.images import LUMA

from .paste import change_weight

__all__ = ["GREY_LEVELS", "GREY_SHARE", "is_grey_face", "to_grey"]

GREY_LEVELS = 8    # a pixel is grey when its channels differ by at most this many levels (JPEG's chroma noise)
GREY_SHARE = 0.98  # a face is grey when this share of the pixels the model kept is grey
_KEPT_SHARE = 0.25  # ... and the model kept at least this share of the crop (else there is too little to tell)


def is_grey_face(input_crop: np.ndarray, output_crop: np.ndarray) -> bool:
    """Whether the face in ``input_crop`` (S, S, 3) uint8 is grey where the model kept it:
    the pixels :func:`fsggan.photos.paste.change_weight` counts as less than half replaced."""
    kept = change_weight(input_crop, output_crop) < 0.5
    if kept.mean() < _KEPT_SHARE:
        return False
    spread = input_crop.max(-1).astype(np.int16) - input_crop.min(-1)
    return bool((spread[kept] <= GREY_LEVELS).mean() >= GREY_SHARE)


def to_grey(crop: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 -> its luma in all three channels, uint8."""
    y = np.rint(crop.astype(np.float32) @ np.asarray(LUMA, np.float32))
    return np.repeat(np.clip(y, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
