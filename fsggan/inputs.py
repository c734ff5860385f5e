"""The files a command reads and the names it writes them under (``fsggan-deocclude``).

    collect_inputs(["photos/", "me.jpg"], out="out/")       # photos: folders searched recursively
    collect_inputs(["crops/"], recursive=False, keep_format=False)   # face crops: <stem>.png

A folder's files keep their path below the folder; a file given by itself is written by its
name. With ``keep_format`` a JPEG or PNG keeps its suffix and any other format becomes PNG;
without it every output is PNG. Two inputs that would write the same output name are an
error, before anything is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fsggan.images import is_image

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
                   keep_format: bool = True) -> list[InputFile]:
    """The image files of ``inputs`` (files, and the images in folders: searched recursively
    with ``recursive``, leaving out ``out`` when it lies inside one). Raises FileNotFoundError
    for a missing input and ValueError when two inputs would be written under one name."""
    skip = Path(out).resolve() if out is not None else None
    found: list[InputFile] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = p.rglob("*") if recursive else p.iterdir()
            for f in sorted(q for q in files if is_image(q)):
                if skip is None or skip not in f.resolve().parents:
                    found.append(InputFile(f, _output_name(f.relative_to(p), keep_format)))
        elif p.is_file():
            found.append(InputFile(p, _output_name(Path(p.name), keep_format)))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    seen: dict[Path, Path] = {}
    for f in found:
        if f.name in seen:
            raise ValueError(f"two inputs would write the same output {f.name}: {seen[f.name]} and {f.path}")
        seen[f.name] = f.path
    return found
