"""Photo files in, photo files out: what ``fsggan-deocclude`` does without ``--aligned``.

For each photo under the inputs (files, and folders searched recursively), in order:
read it upright (EXIF orientation), find and align its faces, and, once a batch's worth of
faces (or of pixels) is waiting, de-occlude them together, paste them back and write

    OUT/<relative path>                     the full-size photo (a JPEG stays a JPEG, quality
                                            95; PNG and other formats are written as PNG)
    OUT/<relative path>.json                the sidecar: size, detector, every face's box,
                                            landmarks and detector score
    OUT/faces/<relative path>.face<k>.{input,structure,output}.png   with ``save_faces``

The photos are :func:`fsggan.inputs.collect_inputs`'s (a folder input's files keep their path
below that folder; a file input is written by its name). Photos without a face are not
written (nor their sidecar) and are listed; unreadable photos (corrupt, truncated, under
32 px, implausibly large, several frames, ...) are listed with a one-line reason naming the
file, as for face crops, and the rest go on. Nothing is created for a photo that is not
written: the output folder and its subfolders appear with the first file written into them.

Every file is written whole or not at all (:func:`fsggan.images.write_atomic`: a temporary
``.<name>.<random>.part`` next to it, then a rename), the photo before its sidecar, so a run
stopped at any point leaves only complete files. A file that cannot be written stops the
run with :class:`OutputError` naming it.

:func:`probe_inputs` checks the inputs before a model is loaded (their header: readable,
an image, one frame, large enough), and :func:`output_paths` names the files a photo will
be written to, so that a command can refuse outputs that would land on its inputs.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fsggan.images import MIN_FACE_SIZE, ImageError, read_rgb, save_png, write_atomic
from fsggan.inputs import InputFile

from .deocclude import (PhotoFace, align_faces, default_detector, face_finder, model_template, paste_faces,
                        read_photo_mask, run_faces)
from .paste import feather_mask

__all__ = ["PhotoSummary", "OutputError", "deocclude_photo_files", "output_paths", "probe_inputs"]

JPEG_QUALITY = 95
MAX_PENDING_PIXELS = 60_000_000  # photos held in memory before their faces are run


@dataclass
class PhotoSummary:
    """What a run did: photos written, faces de-occluded, photos without a face, and
    "<file>: <reason>" for each photo that could not be read."""

    written: int = 0
    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class OutputError(OSError):
    """An output file cannot be written (the message names it and the reason)."""


def _write(path: Path, write) -> None:
    """``write(file)`` into ``path`` atomically, its folder made first; OutputError naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, write)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write it ({exc.strerror or exc}); give an output folder you can "
                          "write to") from None


def _write_photo(path: Path, photo: np.ndarray) -> None:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        _write(path, lambda f: Image.fromarray(photo).save(f, format="JPEG", quality=JPEG_QUALITY, subsampling=0))
    else:
        _write(path, lambda f: Image.fromarray(photo).save(f, format="PNG", optimize=False, compress_level=6))


def _write_sidecar(path: Path, job: InputFile, shape: tuple, detector: str | None, faces: Sequence[PhotoFace]) -> None:
    record = {"source": str(job.path), "width": int(shape[1]), "height": int(shape[0]),
              "detector": detector, "faces": [f.to_json() for f in faces]}
    text = (json.dumps(record, indent=1) + "\n").encode()
    _write(path, lambda f: f.write(text))


def _write_faces(folder: Path, name: Path, faces: Sequence[PhotoFace]) -> None:
    for k, f in enumerate(faces):
        for kind in ("input", "structure", "output"):
            crop = getattr(f, kind)
            if crop is not None:
                target = folder / name.parent / f"{name.name}.face{k}.{kind}.png"
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    save_png(target, crop)
                except OSError as exc:
                    raise OutputError(f"{target}: cannot write it ({exc.strerror or exc})") from None


def output_paths(job: InputFile, out: str | Path, save_faces: bool = False) -> list[Path]:
    """The files ``job`` is written to under ``out``: the photo, its sidecar and, with
    ``save_faces``, the face crops as one pattern ``OUT/faces/<name>.face*``."""
    out = Path(out)
    paths = [out / job.name, out / f"{job.name}.json"]
    if save_faces:
        paths.append(out / "faces" / job.name.parent / f"{job.name.name}.face*")
    return paths


def probe_inputs(jobs: Sequence[InputFile], min_size: int = MIN_FACE_SIZE) -> tuple[list[InputFile], list[str]]:
    """``(usable, problems)``: the inputs whose header is that of a one-frame image at least
    ``min_size`` px on its shorter side, and "<file>: <reason>" for the others. Only the
    header is read (a truncated file is found when it is decoded)."""
    usable, problems = [], []
    for job in jobs:
        reason = _probe(Path(job.path), min_size)
        if reason is None:
            usable.append(job)
        else:
            problems.append(f"{job.path}: {reason}")
    return usable, problems


def _probe(path: Path, min_size: int) -> str | None:
    try:
        if path.stat().st_size == 0:
            return "file is empty (0 bytes); re-download it or delete it"
        with warnings.catch_warnings():  # a large photo is judged when it is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                (w, h), frames = im.size, getattr(im, "n_frames", 1)
    except OSError as exc:
        if isinstance(exc, Image.UnidentifiedImageError):
            return "not a readable image (not a known image format); delete or replace the file"
        return f"cannot read the file ({exc.strerror or exc})"
    except (SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return f"corrupt or implausibly large image ({exc}); replace it"
    if frames > 1:
        return (f"holds {frames} frames (animated or multi-page); fsggan reads single images: save the frame you "
                "want as PNG or JPEG")
    if min(w, h) < min_size:
        return f"image is {w}x{h}, smaller than the {min_size} px needed to crop a face; replace it with a larger image"
    return None


class _Writer:
    """Runs the waiting photos' faces through the model, pastes them back, writes them."""

    def __init__(self, model, out: Path, *, detector, batch_size: int, save_faces: bool, keep_detail: bool,
                 summary: PhotoSummary, mask_mode: str = "replace"):
        self.model, self.out, self.detector, self.mask_mode = model, out, detector, mask_mode
        self.batch_size, self.save_faces, self.keep_detail, self.summary = batch_size, save_faces, keep_detail, summary
        self.mask = feather_mask(model.image_size)
        self.pending: list[tuple[InputFile, np.ndarray, list[PhotoFace]]] = []

    def add(self, job: InputFile, photo: np.ndarray, faces: list[PhotoFace]) -> None:
        if not faces:
            self.summary.no_face.append(str(job.path))
            return
        self.pending.append((job, photo, faces))
        waiting = sum(len(f) for _, _, f in self.pending)
        if waiting >= self.batch_size or sum(p.size // 3 for _, p, _ in self.pending) >= MAX_PENDING_PIXELS:
            self.flush()

    def flush(self) -> None:
        run_faces(self.model, [f for _, _, faces in self.pending for f in faces], self.batch_size, self.mask_mode)
        for job, photo, faces in self.pending:
            _write_photo(self.out / job.name, paste_faces(photo, faces, self.mask, self.keep_detail))
            _write_sidecar(self.out / f"{job.name}.json", job, photo.shape, self.detector, faces)
            if self.save_faces:
                _write_faces(self.out / "faces", job.name, faces)
            self.summary.written += 1
            self.summary.faces += len(faces)
        self.pending = []


def deocclude_photo_files(model, jobs: Sequence[InputFile], out: str | Path, *, detector: str | None = None,
                          min_face: int = 20, batch_size: int = 32, save_faces: bool = False,
                          keep_detail: bool = True, progress: bool = True,
                          detect: Callable | None = None, masks: Mapping[Path, Path] | None = None,
                          mask_mode: str = "replace") -> PhotoSummary:
    """De-occlude every face of every photo of ``jobs`` and write them under ``out``
    (module docstring). ``detect``: a callable ``image -> faces`` instead of the detector;
    ``keep_detail``: see :func:`fsggan.photos.deocclude.paste_faces`; ``masks``: each photo's
    mask file (input path -> mask path), the region G fills (``mask_mode``,
    :func:`fsggan.photos.deocclude.read_photo_mask`)."""
    from tqdm import tqdm

    out = Path(out)
    detect = detect or face_finder(detector, min_face)
    template = model_template(model, detector)
    summary = PhotoSummary()
    writer = _Writer(model, out, detector=detector or default_detector(), batch_size=batch_size, save_faces=save_faces,
                     keep_detail=keep_detail, summary=summary, mask_mode=mask_mode)
    for job in tqdm(jobs, desc="de-occluding photos", unit="photo", disable=not progress):
        try:
            photo, _ = read_rgb(job.path, min_size=MIN_FACE_SIZE, upright=True)
            fill = None if masks is None else read_photo_mask(masks[job.path], photo.shape[:2])
            faces = align_faces(photo, detect, template, model.image_size, fill)
        except ImageError as exc:
            summary.failed.append(str(exc))
            continue
        except Exception as exc:  # one bad photo (a detector failure) does not stop the others
            summary.failed.append(f"{job.path}: {type(exc).__name__}: {exc}")
            continue
        writer.add(job, photo, faces)
    if writer.pending:
        writer.flush()
    return summary
