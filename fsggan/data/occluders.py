"""Occluder library: RGBA cut-outs, where they sit on a face, and a tensor bank for compositing.

An `Occluder` is an RGBA image plus a placement `category` and optional `anchors`: pixel
positions in the cut-out that should land on face landmarks (names from
`fsggan.data.landmarks.LANDMARK_NAMES`). With two or more anchors the object is placed by
a least-squares similarity fit of its anchors onto the face's landmarks; without them
the category decides (see `fsggan.data.synthesis`).

Categories: eyes, upper_face, nose, mouth, lower_face, forehead, vertical, anywhere.

Anchor files (`OccluderLibrary.from_folder(..., anchors=...)`; found automatically as
`occlusions.csv` or `anchors.yaml` in the folder):

* OCFR-2022 `occlusions.csv`, no header, one row per object:
  `file, group, width, height, left_eye, right_eye, nose, left_mouth, right_mouth`, each
  point a quoted "x,y" in the cut-out ("0,0" or empty: unused). The group is the
  sub-folder (eye, upper_face, lower_face, top_face, vertical); rows are matched on
  (group, file), so a file name that appears in two groups is two objects, and files
  with no row get their group's category without anchors. A group written `!top_face!`
  marks rows that OCFR's own generator skips (it selects rows whose group is exactly
  "top_face"); their points are unusable (beanie_2's "eyes" lie 100 px inside the hat),
  so those objects keep their category (forehead) but no anchors. For top_face only the
  eye points are used: the CSV's "nose" for hats sits 13-20 px under the eyes for eyes
  140-160 px apart, i.e. it is not a nose position, and fitting it would shrink the hat.
  When the CSV's width and height differ from the PNG's, the points are scaled to the PNG.
* our YAML (`anchors.yaml`, or any .yaml/.yml path):

      default: {category: anywhere}          # optional, for files not listed
      files:
        sun_glass.png: {category: eyes, left_eye: [38, 38], right_eye: [103, 38]}
        SC-11.png: {category: lower_face}    # category only: placed by the category default
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from fsggan.images import ImageError, read_rgba

from .landmarks import LANDMARK_NAMES

__all__ = [
    "CATEGORIES",
    "Occluder",
    "OccluderBank",
    "OccluderLibrary",
    "OccluderError",
    "read_ocfr_csv",
    "read_anchor_yaml",
    "check_pools_disjoint",
]

CATEGORIES = ("eyes", "upper_face", "nose", "mouth", "lower_face", "forehead", "vertical", "anywhere")

OCFR_GROUPS = {
    "eye": "eyes",
    "upper_face": "upper_face",
    "lower_face": "lower_face",
    "top_face": "forehead",
    "vertical": "vertical",
}
_OCFR_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class OccluderError(ValueError):
    """An occluder folder or anchor file is missing or malformed."""


@dataclass
class Occluder:
    """One occluding object.

    name:     unique name within its library (relative path, or "procedural/<kind>_<i>").
    rgba:     uint8 (H, W, 4), straight (not premultiplied) alpha.
    category: one of CATEGORIES.
    anchors:  {landmark name: (x, y)} in `rgba` pixels, or empty.
    source:   file path, or "procedural".
    """

    name: str
    rgba: np.ndarray
    category: str = "anywhere"
    anchors: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise OccluderError(f"occluder {self.name}: unknown category {self.category!r}; use one of {', '.join(CATEGORIES)}")
        bad = set(self.anchors) - set(LANDMARK_NAMES)
        if bad:
            raise OccluderError(f"occluder {self.name}: unknown anchor names {sorted(bad)}; use {', '.join(LANDMARK_NAMES)}")

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the visible (alpha > 0) pixels, x1/y1 exclusive."""
        ys, xs = np.nonzero(self.rgba[..., 3] > 0)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    def fingerprint(self) -> str:
        return hashlib.sha1(np.ascontiguousarray(self.rgba).tobytes()).hexdigest()


# ---------------------------------------------------------------- anchor files
def _point(text: str, where: str) -> tuple[float, float] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise OccluderError(f"{where}: point {text!r} is not 'x,y'") from None
    if x == 0 and y == 0:
        return None
    return (x, y)


def read_ocfr_csv(path: str | Path) -> dict[tuple[str, str], dict]:
    """Parse an OCFR-2022 occlusions.csv: {(group, file): {"category", "anchors", "size"}}."""
    path = Path(path)
    out: dict[tuple[str, str], dict] = {}
    with path.open(newline="") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or not row[0].strip() or row[0].strip().startswith("#"):
                continue
            if len(row) < 2:
                raise OccluderError(f"{path}, line {i}: expected 'file,group,width,height,points...', got {row!r}")
            row = row + [""] * (9 - len(row))
            fname, group = row[0].strip(), row[1].strip().strip("!").strip()
            if group not in OCFR_GROUPS:
                raise OccluderError(f"{path}, line {i}: unknown group {row[1]!r}; expected one of {', '.join(OCFR_GROUPS)}")
            size = None
            if row[2].strip() and row[3].strip():
                try:
                    size = (float(row[2]), float(row[3]))
                except ValueError:
                    raise OccluderError(f"{path}, line {i}: width/height must be numbers, got {row[2:4]!r}") from None
            anchors = {}
            for name, text in zip(_OCFR_POINTS, row[4:9]):
                p = _point(text, f"{path}, line {i}")
                if p is not None:
                    anchors[name] = p
            if group == "top_face":  # see module docstring: the hats' "nose" is not a nose position
                anchors = {k: v for k, v in anchors.items() if k in ("left_eye", "right_eye")}
            if row[1].strip().startswith("!"):  # rows OCFR disabled: category only
                anchors = {}
            out[(group, fname)] = {"category": OCFR_GROUPS[group], "anchors": anchors, "size": size}
    return out


def read_anchor_yaml(path: str | Path) -> tuple[dict, dict[str, dict]]:
    """Parse our anchor YAML: returns (default entry, {file name or glob: entry})."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise OccluderError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or set(data) - {"default", "files"}:
        raise OccluderError(f"{path}: top level must have only 'default' and 'files'")
    default = data.get("default") or {}
    files = data.get("files") or {}

    def entry(name: str, e: dict) -> dict:
        if not isinstance(e, dict):
            raise OccluderError(f"{path}: entry {name} must be a mapping")
        unknown = set(e) - {"category", *LANDMARK_NAMES}
        if unknown:
            raise OccluderError(f"{path}: entry {name}: unknown keys {sorted(unknown)}; valid: category, {', '.join(LANDMARK_NAMES)}")
        anchors = {}
        for k in LANDMARK_NAMES:
            if k in e:
                v = e[k]
                if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(c, (int, float)) for c in v)):
                    raise OccluderError(f"{path}: entry {name}: {k} must be [x, y], got {v!r}")
                anchors[k] = (float(v[0]), float(v[1]))
        cat = e.get("category")
        if cat is not None and cat not in CATEGORIES:
            raise OccluderError(f"{path}: entry {name}: unknown category {cat!r}; use one of {', '.join(CATEGORIES)}")
        return {"category": cat, "anchors": anchors, "size": None}

    return entry("default", default), {str(k): entry(str(k), v) for k, v in files.items()}


# ---------------------------------------------------------------- loading a folder
_ANCHOR_FILE_NAMES = ("occlusions.csv", "anchors.yaml", "anchors.yml")


def _anchor_file(folder: Path, anchors: str | Path | None) -> Path | None:
    """The anchor file to read: `anchors` when given, else the first of `_ANCHOR_FILE_NAMES`
    present in `folder`, else None."""
    if anchors is not None:
        return Path(anchors)
    for name in _ANCHOR_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _selected_pngs(folder: Path, include: Sequence[str], exclude: Sequence[str]) -> Iterator[tuple[Path, str]]:
    """The PNG files under `folder` (recursively, sorted) that match an `include` pattern (all
    when there is none) and no `exclude` pattern, with their paths relative to `folder`."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() != ".png":
            continue
        rel = path.relative_to(folder).as_posix()
        if include and not any(fnmatch.fnmatch(rel, p) for p in include):
            continue
        if any(fnmatch.fnmatch(rel, p) for p in exclude):
            continue
        yield path, rel


@dataclass
class _AnchorTable:
    """The entries of a folder's anchor file: OCFR rows by (group, file name), or our YAML's
    entries by relative path, file name or glob, with its default for the files it does not
    list. Empty when the folder has no anchor file."""

    csv_rows: dict = field(default_factory=dict)
    yaml_default: dict = field(default_factory=dict)
    yaml_files: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path | None) -> "_AnchorTable":
        if path is None:
            return cls()
        if not path.is_file():
            raise OccluderError(f"anchor file {path} does not exist")
        if path.suffix.lower() == ".csv":
            return cls(csv_rows=read_ocfr_csv(path))
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml_default, yaml_files = read_anchor_yaml(path)
            return cls(yaml_default=yaml_default, yaml_files=yaml_files)
        raise OccluderError(f"anchor file {path}: use an OCFR-style .csv or a .yaml file")

    def entry(self, group: str, rel: str) -> dict | None:
        """The entry of the cut-out at `rel` (in OCFR group sub-folder `group`), or None."""
        name = Path(rel).name
        info = self.csv_rows.get((group, name))
        if info is None and self.yaml_files:
            info = self.yaml_files.get(rel) or self.yaml_files.get(name)
            if info is None:
                for pat, e in self.yaml_files.items():
                    if fnmatch.fnmatch(rel, pat):
                        info = e
                        break
        if info is None and self.yaml_default:
            info = self.yaml_default
        return info

    def category_and_anchors(self, rel: str, rgba: np.ndarray, category: str) -> tuple[str, dict]:
        """Category and anchors (in the PNG's pixels) of the cut-out `rgba` at `rel`: its
        entry's, else its OCFR group's category (else `category`) and no anchors."""
        group = Path(rel).parent.name if "/" in rel else ""
        cat = OCFR_GROUPS.get(group, category)
        pts: dict = {}
        info = self.entry(group, rel)
        if info is not None:
            cat = info["category"] or cat
            pts = dict(info["anchors"])
            if info.get("size"):  # the file's points are for another size of the picture
                sx, sy = rgba.shape[1] / info["size"][0], rgba.shape[0] / info["size"][1]
                pts = {k: (x * sx, y * sy) for k, (x, y) in pts.items()}
        return cat, pts


# ---------------------------------------------------------------- bank
@dataclass
class OccluderBank:
    """All occluders of a library on one square canvas each, as one tensor.

    rgba:   float (N, 4, S, S): premultiplied RGB in [0, 1] and alpha, object centred and
            scaled to fit the canvas (aspect kept).
    scale:  (N,) canvas pixels per cut-out pixel.
    offset: (N, 2) canvas position of the cut-out's (0, 0).
    """

    rgba: torch.Tensor
    scale: np.ndarray
    offset: np.ndarray

    @property
    def canvas_size(self) -> int:
        return int(self.rgba.shape[-1])

    def to(self, device) -> "OccluderBank":
        return OccluderBank(self.rgba.to(device), self.scale, self.offset)


def _make_bank(occluders: Sequence[Occluder], canvas: int) -> OccluderBank:
    n = len(occluders)
    rgba = np.zeros((n, canvas, canvas, 4), np.float32)
    scale = np.zeros(n, np.float64)
    offset = np.zeros((n, 2), np.float64)
    for i, occ in enumerate(occluders):
        x0, y0, x1, y1 = occ.bbox
        crop = occ.rgba[y0:y1, x0:x1]
        w, h = x1 - x0, y1 - y0
        k = (canvas - 2) / max(w, h)  # 1 px transparent border so edges fade to zero
        nw, nh = max(1, round(w * k)), max(1, round(h * k))
        im = Image.fromarray(crop, "RGBA").convert("RGBa")  # premultiply before resampling
        im = im.resize((nw, nh), Image.Resampling.LANCZOS)
        arr = np.asarray(im, np.float32) / 255.0
        ox, oy = (canvas - nw) // 2, (canvas - nh) // 2
        rgba[i, oy : oy + nh, ox : ox + nw] = arr
        sx, sy = nw / w, nh / h
        scale[i] = (sx + sy) / 2
        offset[i] = (ox - x0 * sx, oy - y0 * sy)
    t = torch.from_numpy(rgba).permute(0, 3, 1, 2).contiguous()
    return OccluderBank(rgba=t, scale=scale, offset=offset)


# ---------------------------------------------------------------- library
class OccluderLibrary:
    """A pool of occluders (e.g. "seen" or "new").

    OccluderLibrary(occluders, skipped=())   from a list
    OccluderLibrary.from_folder(folder, anchors=None, category="anywhere", include=(), exclude=(), strict=False)
    OccluderLibrary(procedural_occluders(count=24, seed=0))   drawn ones (fsggan.data.procedural)
    a + b                                     concatenation
    `skipped` lists (path, reason key, message) for files left out; `unanchored` names the
    objects that got only a category default.
    """

    def __init__(self, occluders: Iterable[Occluder], skipped: Iterable[tuple[str, str, str]] = ()):
        self.occluders = list(occluders)
        self.skipped = list(skipped)
        names = [o.name for o in self.occluders]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise OccluderError(f"occluder names must be unique within a library: {dup[:5]}")
        self._banks: dict[tuple[int, str], OccluderBank] = {}

    def __len__(self) -> int:
        return len(self.occluders)

    def __getitem__(self, i: int) -> Occluder:
        return self.occluders[i]

    def __iter__(self):
        return iter(self.occluders)

    def __add__(self, other: "OccluderLibrary") -> "OccluderLibrary":
        return OccluderLibrary(self.occluders + other.occluders, self.skipped + other.skipped)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.occluders]

    @property
    def unanchored(self) -> list[str]:
        return [o.name for o in self.occluders if len(o.anchors) < 2]

    def bank(self, canvas_size: int = 128, device: str | torch.device = "cpu") -> OccluderBank:
        """The occluders as an `OccluderBank` on `device` (built once per size and device)."""
        if not self.occluders:
            raise OccluderError("occluder library is empty: nothing to composite")
        key = (canvas_size, str(torch.device(device)))
        if key not in self._banks:
            cpu_key = (canvas_size, "cpu")
            if cpu_key not in self._banks:
                self._banks[cpu_key] = _make_bank(self.occluders, canvas_size)
            self._banks[key] = self._banks[cpu_key].to(device)
        return self._banks[key]

    def __getstate__(self):  # DataLoader workers: do not pickle device banks
        state = dict(self.__dict__)
        state["_banks"] = {}
        return state

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        *,
        anchors: str | Path | None = None,
        category: str = "anywhere",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        strict: bool = False,
        prefix: str | None = None,
    ) -> "OccluderLibrary":
        """Load every PNG under `folder` (recursively, sorted).

        anchors:  anchor file (OCFR .csv or our .yaml); None: `occlusions.csv` or
                  `anchors.yaml` in `folder` when present.
        category: category of objects the anchor file does not describe (an OCFR-style
                  group sub-folder such as eye/ or lower_face/ sets it too).
        include / exclude: glob patterns on the path relative to `folder` ("eye/*.png").
        strict:   raise ImageError on a bad PNG (no alpha, corrupt) instead of skipping it.
        prefix:   name prefix (default: the folder's name), names are "<prefix>/<relative path>".
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise OccluderError(f"occluder folder {folder} does not exist (check occluders.*.path in the config)")
        if category not in CATEGORIES:
            raise OccluderError(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
        table = _AnchorTable.read(_anchor_file(folder, anchors))
        prefix = folder.name if prefix is None else prefix
        occluders, skipped = [], []
        for path, rel in _selected_pngs(folder, include, exclude):
            try:
                rgba = read_rgba(path)
            except ImageError as e:
                if strict:
                    raise
                skipped.append((str(path), e.reason, str(e)))
                continue
            cat, pts = table.category_and_anchors(rel, rgba, category)
            if min(rgba.shape[:2]) < 4:
                skipped.append((str(path), "too_small", f"{path}: occluder is smaller than 4 px"))
                continue
            occluders.append(Occluder(name=f"{prefix}/{rel}" if prefix else rel, rgba=rgba, category=cat, anchors=pts, source=str(path)))
        return cls(occluders, skipped)


def check_pools_disjoint(seen: OccluderLibrary, new: OccluderLibrary, other: str = "new") -> None:
    """Raise OccluderError if the same cut-out (identical pixels) is in the seen pool and in
    the `other` pool ("new": Set2, "unseen": Set3)."""
    a = {o.fingerprint(): o.name for o in seen}
    both = [(a[o.fingerprint()], o.name) for o in new if o.fingerprint() in a]
    if both:
        raise OccluderError(
            f"{len(both)} occluders are in both the seen and the {other} pool, e.g. {both[0][0]} = {both[0][1]}; "
            "the test sets' pools must hold occluders never used in training"
        )
