"""The files a command reads and the names it writes them under (``fsggan-deocclude``).

    collect_inputs(["photos/", "me.jpg"], out="out/")       # photos: folders searched recursively
    collect_inputs(["crops/"], recursive=False, keep_format=False)   # face crops: <stem>.png

A folder's files keep their path below the folder; a file given by itself is written by its
name. One rule for every input: a file is read when its suffix is one of
``fsggan.images.IMAGE_EXTENSIONS``; a file named by itself with another suffix (``.gif``,
``.txt``) is an error, a folder's other files are left alone. Symbolic links are followed
only when named by themselves: inside a folder, a linked file or folder is not read
(listed in ``skipped``), so a folder never pulls in files from elsewhere. With ``keep_format`` a JPEG or PNG keeps its suffix and any other format becomes PNG;
without it every output is PNG. Two inputs that would write the same output name are an
error, before anything is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fsggan.images import IMAGE_EXTENSIONS, is_image

__all__ = ["InputFile", "collect_inputs"]

KEPT_FORMATS = (".jpg", ".jpeg", ".png")


@dataclass
class InputFile:
    """One input file and the name it is written under (relative to the output folder)."""

    path: Path
    name: Path


def _output_name(name: Path, keep_format: bool) -> Path:
    return name if keep_format and name.suffix.lower() in KEPT_FORMATS else name.with_suffix(".png")


def collect_inputs(inputs: Sequence[str | Path], out: str | Path | None = None, *, recursive: bool = True,
                   keep_format: bool = True, skipped: list[Path] | None = None) -> list[InputFile]:
    """The image files of ``inputs`` (files, and the images in folders: searched recursively
    with ``recursive``, leaving out ``out`` when it lies inside one). Symbolic links inside a
    folder are not followed; they are appended to ``skipped`` when given. Raises
    FileNotFoundError for a missing input and ValueError for a named file that is not an
    image type or when two inputs would be written under one name."""
    skip = Path(out).resolve() if out is not None else None
    found: list[InputFile] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in _folder_images(p, recursive, skipped if skipped is not None else []):
                if skip is None or skip not in f.resolve().parents:
                    found.append(InputFile(f, _output_name(f.relative_to(p), keep_format)))
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{p}: not an image type fsggan reads ({' '.join(IMAGE_EXTENSIONS)}); convert it "
                                 "to PNG or JPEG (for an animated or multi-page image, the frame you want)")
            found.append(InputFile(p, _output_name(Path(p.name), keep_format)))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    seen: dict[Path, Path] = {}
    for f in found:
        if f.name in seen:
            raise ValueError(f"two inputs would write the same output {f.name}: {seen[f.name]} and {f.path}")
        seen[f.name] = f.path
    return found


def _folder_images(folder: Path, recursive: bool, skipped: list[Path]) -> list[Path]:
    """The image files below ``folder`` (only in it without ``recursive``), sorted; symbolic
    links (files or folders) are not followed but listed in ``skipped``."""
    images = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        skipped += sorted(here / d for d in dirs if (here / d).is_symlink())
        for name in files:
            f = here / name
            if f.is_symlink():
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    skipped.append(f)
            elif is_image(f):
                images.append(f)
        if not recursive:
            break
    return sorted(images)
