"""Whole photos: find every face, align it onto the model's training crop, de-occlude the
faces in batches and paste them back into the full-resolution photo.

One job per module:

    align.py       similarity transform from five landmarks (least squares), warp to the crop
    template.py    where the model's training crops put the five landmarks
    paste.py       feathered paste-back at the photo's own resolution
    tone.py        a black-and-white photo's faces come back grey
    deocclude.py   photos in memory -> (photo, faces): deocclude_photo, deocclude_photos
    files.py       photo files -> photo files, JSON sidecars, face crops (fsggan-deocclude)

Faces are found by ``fsggan.detect.detect_faces``; the layer sits below ``fsggan.api``
(``FSGGAN.deocclude_photo`` calls it) and above ``fsggan.data`` and ``fsggan.images``.
"""

from .align import estimate_similarity, invert, warp_to_crop
from .deocclude import PhotoFace, deocclude_photo, deocclude_photos, find_faces
from .files import PhotoSummary, deocclude_photo_files
from .paste import feather_mask, paste_back
from .template import crop_template

__all__ = [
    "PhotoFace", "deocclude_photo", "deocclude_photos", "find_faces", "deocclude_photo_files",
    "PhotoSummary", "estimate_similarity", "invert", "warp_to_crop",
    "feather_mask", "paste_back", "crop_template",
]
