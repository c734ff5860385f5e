"""Face datasets on disk: records, readers (LFW, CelebA, image folders) and the face crop.

A reader returns a sorted list of `FaceRecord`; nothing is decoded until `load_face`.
Landmarks are 5 points in ORIGINAL image pixels, in this order (left/right as seen in
the image): left eye, right eye, nose tip, left mouth corner, right mouth corner.

Face crop: a square box in source pixels, resized to `image_size` (128). Per-dataset
defaults (`DEFAULT_CROPS`) were measured on the real data:
- LFW (250x250, unaligned, face roughly centred): dlib's 68-point landmarks on 337 LFW
  images give mean eye centres (105, 114) and (145, 113), mouth corners (107, 158) and
  (143, 158), chin (126, 191), jaw from x=76 to x=173. The box (61, 66, 189, 194) - 128 px
  centred at (125, 130) - keeps the whole face from forehead to chin with a little margin.
- CelebA aligned (178x218): eyes at about (69, 111) and (107, 111), mouth at y=152; the
  box (26, 68, 150, 192) gives the same face scale and framing as the LFW box.
- plain folders: the largest centred square.
A config can replace any of them (`dataset.crop: [left, top, right, bottom]`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsggan.images import IMAGE_EXTENSIONS, crop_resize, read_rgb


__all__ = [
    "DatasetError",
    "FaceRecord",
    "FaceCrop",
    "DEFAULT_CROPS",
    "read_lfw",
    "read_celeba",
    "read_celeba_partition",
    "read_image_folder",
    "read_dataset",
    "load_face",
    "landmarks_to_crop",
]


class DatasetError(ValueError):
    """A dataset folder or label file is missing or malformed; the message says what to do."""


@dataclass
class FaceRecord:
    """One face image: `path`, `identity` (a string) and optional 5-point `landmarks` (5, 2) in source px."""

    path: Path
    identity: str
    landmarks: np.ndarray | None = None


@dataclass(frozen=True)
class FaceCrop:
    """Square crop box `(left, top, right, bottom)` in pixels of an image of `reference_size` (W, H).

    Images of another size get the box scaled to their size. `box=None` means the largest
    centred square of each image.
    """

    box: tuple[float, float, float, float] | None = None
    reference_size: tuple[int, int] | None = None

    def box_for(self, width: int, height: int) -> tuple[float, float, float, float]:
        if self.box is None:
            s = min(width, height)
            return ((width - s) / 2, (height - s) / 2, (width + s) / 2, (height + s) / 2)
        left, top, right, bottom = (float(v) for v in self.box)
        if self.reference_size is not None and tuple(self.reference_size) != (width, height):
            sx, sy = width / self.reference_size[0], height / self.reference_size[1]
            cx, cy = (left + right) / 2 * sx, (top + bottom) / 2 * sy
            side = ((right - left) * sx + (bottom - top) * sy) / 2
            return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        return (left, top, right, bottom)


DEFAULT_CROPS: dict[str, FaceCrop] = {
    "lfw": FaceCrop(box=(61.0, 66.0, 189.0, 194.0), reference_size=(250, 250)),
    "celeba": FaceCrop(box=(26.0, 68.0, 150.0, 192.0), reference_size=(178, 218)),
    "folder": FaceCrop(box=None, reference_size=None),
}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# ---------------------------------------------------------------- LFW
def read_lfw(root: str | Path) -> list[FaceRecord]:
    """Read LFW: `root/<Person>/<Person>_NNNN.jpg` (the `lfw` or `lfw-deepfunneled` folder).

    `root` may also be the folder that contains `lfw/` or `lfw-deepfunneled/`. Identity is
    the person folder name. LFW has no landmarks (records get `landmarks=None`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"LFW folder {root} does not exist; set dataset.root to the folder holding <Person>/<Person>_0001.jpg")
    for sub in ("lfw", "lfw-deepfunneled", "lfw_funneled"):
        if (root / sub).is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in (root / sub).glob("*")):
            root = root / sub
            break
    records = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in _images_in(person):
            records.append(FaceRecord(path=img, identity=person.name))
    if not records:
        raise DatasetError(f"no images found under {root}; expected LFW layout <Person>/<Person>_0001.jpg")
    return records


# ---------------------------------------------------------------- CelebA
def _celeba_root(root: Path) -> Path:
    for cand in (root, root / "celeba", root / "CelebA"):
        if (cand / "img_align_celeba").is_dir() or (cand / "identity_CelebA.txt").is_file():
            return cand
    raise DatasetError(
        f"{root} does not look like CelebA: expected img_align_celeba/ and identity_CelebA.txt "
        "(torchvision layout; the folder may also be <root>/celeba)"
    )


def _read_table(path: Path, ncols: int, skip_header: bool) -> list[list[str]]:
    rows = []
    lines = path.read_text().splitlines()
    start = 0
    if skip_header:
        # list_landmarks_align_celeba.txt: a count line, then a header line
        start = 2 if lines and lines[0].strip().isdigit() else 1
    for i, line in enumerate(lines[start:], start=start + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != ncols:
            raise DatasetError(f"{path}, line {i}: expected {ncols} columns, got {len(parts)}: {line!r}")
        rows.append(parts)
    return rows


def read_celeba(root: str | Path, *, landmarks: bool = True) -> list[FaceRecord]:
    """Read CelebA in torchvision's layout.

    `root` (or `root/celeba`) holds `img_align_celeba/`, `identity_CelebA.txt` (required),
    `list_landmarks_align_celeba.txt` (optional: without it records have no landmarks and a
    warning says so) and optionally `list_eval_partition.txt` (see `read_celeba_partition`).
    Images listed in the label file but absent from `img_align_celeba/` are left out with a
    warning that gives the count.
    """
    root = _celeba_root(Path(root))
    img_dir = root / "img_align_celeba"
    if (img_dir / "img_align_celeba").is_dir():  # the Kaggle zip nests the folder
        img_dir = img_dir / "img_align_celeba"
    if not img_dir.is_dir():
        raise DatasetError(f"{img_dir} is missing; download img_align_celeba.zip from the CelebA page and unzip it in {root}")
    ident_file = root / "identity_CelebA.txt"
    if not ident_file.is_file():
        raise DatasetError(
            f"{ident_file} is missing: identity labels are needed for identity-disjoint splits; "
            "download Anno/identity_CelebA.txt from the CelebA page into that folder"
        )
    identities = {name: ident for name, ident in _read_table(ident_file, 2, skip_header=False)}
    marks: dict[str, np.ndarray] = {}
    lm_file = root / "list_landmarks_align_celeba.txt"
    if landmarks:
        if lm_file.is_file():
            for row in _read_table(lm_file, 11, skip_header=True):
                try:
                    marks[row[0]] = np.array([float(v) for v in row[1:]], dtype=np.float32).reshape(5, 2)
                except ValueError:
                    raise DatasetError(f"{lm_file}: non-numeric landmark values for {row[0]}") from None
        else:
            warnings.warn(f"{lm_file} not found: CelebA records have no landmarks (the mean template will be used)")
    present = {e.name for e in os.scandir(img_dir) if e.is_file()}
    records, missing = [], 0
    for name in sorted(identities):
        if name not in present:
            missing += 1
            continue
        records.append(FaceRecord(path=img_dir / name, identity=identities[name], landmarks=marks.get(name)))
    if missing:
        warnings.warn(f"{missing} images listed in {ident_file} are not in {img_dir}; they are left out")
    if not records:
        raise DatasetError(f"no CelebA images found in {img_dir} that are listed in {ident_file}")
    return records


def read_celeba_partition(root: str | Path) -> dict[str, int] | None:
    """`list_eval_partition.txt` as {file name: 0 train / 1 val / 2 test}, or None if absent."""
    root = _celeba_root(Path(root))
    path = root / "list_eval_partition.txt"
    if not path.is_file():
        return None
    out = {}
    for name, part in _read_table(path, 2, skip_header=False):
        if part not in ("0", "1", "2"):
            raise DatasetError(f"{path}: partition for {name} must be 0, 1 or 2, got {part!r}")
        out[name] = int(part)
    return out


# ---------------------------------------------------------------- folders
def read_image_folder(root: str | Path) -> list[FaceRecord]:
    """Every image under `root` (recursive). Identity: the first sub-folder below `root`,
    or the file stem for images directly in `root` (each its own identity)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    records = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = p.relative_to(root)
            ident = rel.parts[0] if len(rel.parts) > 1 else p.stem
            records.append(FaceRecord(path=p, identity=ident))
    if not records:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return records


def read_dataset(kind: str, root: str | Path) -> list[FaceRecord]:
    """Dispatch on `kind`: "lfw", "celeba" or "folder"."""
    readers = {"lfw": read_lfw, "celeba": read_celeba, "folder": read_image_folder}
    if kind not in readers:
        raise DatasetError(f"unknown dataset kind {kind!r}; use one of {', '.join(readers)}")
    return readers[kind](root)


# ---------------------------------------------------------------- loading
def landmarks_to_crop(landmarks: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Map landmarks from source pixels into the `size` x `size` crop of `box`."""
    left, top, right, bottom = box
    lm = np.asarray(landmarks, dtype=np.float32)
    scale = np.array([size / (right - left), size / (bottom - top)], dtype=np.float32)
    return (lm - np.array([left, top], dtype=np.float32)) * scale


def load_face(
    record: FaceRecord, *, crop: FaceCrop, image_size: int = 128, min_size: int = 32, landmarker=None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Read, crop and resize one face.

    Returns `(image uint8 (S, S, 3), landmarks (5, 2) in crop px or None, note)`; `note`
    names a colour conversion that was made ("" if none). Records without landmarks get
    them from `landmarker(source_image)` when one is given (e.g. `DlibLandmarker()`).
    Raises `ImageError` for bad files.
    """
    img, note = read_rgb(record.path, min_size=min_size)
    h, w = img.shape[:2]
    box = crop.box_for(w, h)
    face = crop_resize(img, box, image_size)
    src_lm = record.landmarks
    if src_lm is None and landmarker is not None:
        src_lm = landmarker(img)
    lm = None if src_lm is None else landmarks_to_crop(src_lm, box, image_size)
    return face, lm, note
