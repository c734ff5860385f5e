"""Where a model expects the five landmarks: the crop template a photo's face is aligned to.

A model was trained on fixed crops of its dataset (``data.dataset.kind`` and ``crop`` in
the checkpoint's config: for LFW the box (61, 66, 189, 194) of the 250x250 photo, resized
to ``image_size``). Aligning a detected face onto the mean landmarks of those crops puts
it where the training faces were. The means are :data:`fsggan.data.landmarks.MEAN_LANDMARKS`:
for LFW measured with dlib's HOG detector and 68-point predictor reduced to five points
(eye centre = mean of the six eye-contour points), on 337 photos.

A detector whose points sit elsewhere on the face (pupils instead of eye-contour centres,
say) needs its own mean, measured the same way on LFW photos (``scripts/photo_template.py
--detector NAME`` of commit 9d7745f, a one-off tool since removed; docs/experiments.md);
:data:`DETECTOR_LFW_LANDMARKS` holds such measurements (250x250 LFW photo pixels) and is used for
LFW-trained models. That tool also gave how far a detector's mean lies from the template, which
is how the template was checked.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np

from fsggan.data.build import face_crop
from fsggan.data.faces import DEFAULT_CROPS, FaceCrop, landmarks_to_crop
from fsggan.data.landmarks import MEAN_LANDMARKS, template_landmarks

__all__ = ["DETECTOR_LFW_LANDMARKS", "data_section", "model_crop", "crop_template"]

# Detector name -> its mean five landmarks on LFW photos (250x250 px, continuous coordinates),
# for detectors whose points differ from dlib's 68-point reduction (measured as the docstring says).
DETECTOR_LFW_LANDMARKS: dict[str, np.ndarray] = {
    # MTCNN's points: its mean alone, aligned onto dlib's template, gives a crop 2 % larger
    # (a face in 337 of 337 photos)
    "mtcnn": np.array([[105.1, 113.0], [146.0, 112.6], [126.0, 137.4], [107.9, 158.2], [143.8, 157.9]]),
}


def data_section(ckpt: dict) -> dict:
    """The data section of a training checkpoint's config (``{}`` when it has none)."""
    return dict((ckpt.get("config") or {}).get("data") or {})


def model_crop(data: dict) -> tuple[str, FaceCrop]:
    """(dataset kind, FaceCrop) of a checkpoint's data section. A model whose checkpoint
    names no dataset is taken to be LFW-framed (the dataset default), with a warning."""
    ds = dict((data or {}).get("dataset") or {})
    if not ds:
        warnings.warn("the checkpoint names no dataset crop; aligning faces to the LFW crop (the default)",
                      stacklevel=3)
    kind = ds.get("kind", "lfw")
    if kind not in DEFAULT_CROPS:
        raise ValueError(f"the checkpoint's dataset kind {kind!r} is unknown; expected one of "
                         f"{', '.join(DEFAULT_CROPS)}")
    section = SimpleNamespace(kind=kind, crop=ds.get("crop"), crop_reference_size=ds.get("crop_reference_size"))
    return kind, face_crop(SimpleNamespace(dataset=section))


def crop_template(data: dict, image_size: int, detector: str | None = None) -> np.ndarray:
    """The five landmarks (5, 2) float64, in crop pixels of an ``image_size`` crop, that a
    face is aligned to for a model with data section ``data``."""
    kind, crop = model_crop(data)
    if kind == "lfw" and detector in DETECTOR_LFW_LANDMARKS:
        size = MEAN_LANDMARKS["lfw"][1]
        return landmarks_to_crop(DETECTOR_LFW_LANDMARKS[detector], crop.box_for(*size), image_size).astype(np.float64)
    return template_landmarks(kind, crop=crop, image_size=image_size).astype(np.float64)
