"""No command writes over what it reads: each output path is compared with the inputs,
with symbolic links and ``..`` resolved, before anything is loaded or written.

    problem = output_overlap("--out", args.out, targets, files=[...], folders=[...])

An output is refused (a one-line complaint naming both) when it resolves to an input file,
or lies in or below an input folder the command reads. There is no option to allow it:
give an output folder outside the inputs. Paths that do not exist yet are resolved as far
as they exist (``os.path.realpath``), so a symbolic link or ``..`` on the way counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["output_overlap", "folder_overlap", "holds_input"]

FIX = "give an output folder outside the inputs (inputs are never overwritten)"


def _real(path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def folder_overlap(option: str, out, folders: Iterable[tuple[str, object]]) -> str | None:
    """``out`` (an output folder given as ``option``) against the folders a command reads,
    ``(what, path)`` each: a complaint when ``out`` is one of them or lies below one."""
    if out is None:
        return None
    o = _real(out)
    for what, folder in folders:
        if folder is not None and _inside(o, _real(folder)):
            return f"{option} {out}: lies in {what} {folder}, which this command reads; {FIX}"
    return None


def output_overlap(option: str, out, targets: Iterable[Path], *, files: Iterable[Path] = (),
                   folders: Iterable[Path] = ()) -> str | None:
    """The files a command would write (``targets``, under ``out``; a name ending in ``*``
    stands for every file starting with it) against the input ``files`` and the input
    ``folders`` it reads: a one-line complaint naming the output and the input, or None."""
    problem = folder_overlap(option, out, (("the input folder", f) for f in folders))
    if problem:
        return problem
    real_files = {}
    for f in files:
        real_files.setdefault(_real(f), f)
    by_folder: dict[Path, list[tuple[str, Path]]] = {}
    for real, given in real_files.items():
        by_folder.setdefault(real.parent, []).append((real.name, given))
    real_folders = [(_real(d), d) for d in folders]
    for target in targets:
        t = Path(target)
        pattern = t.name.endswith("*")
        rt = _real(t.parent) / t.name.rstrip("*") if pattern else _real(t)
        hits = ([g for name, g in by_folder.get(rt.parent, []) if name.startswith(rt.name)] if pattern
                else [real_files[rt]] if rt in real_files else [])
        if hits:
            return f"{option} {out}: would write {t} over the input {hits[0]}; {FIX}"
        for real_dir, given in real_folders:
            if _inside(rt, real_dir):
                return f"{option} {out}: would write {t} into the input folder {given}; {FIX}"
    return None


def holds_input(option: str, out, inputs: Iterable[tuple[str, object]]) -> str | None:
    """``out`` (a folder a command may replace as a whole) against what it reads, ``(what,
    path)`` each: a complaint when an input is ``out`` or lies below it."""
    if out is None:
        return None
    o = _real(out)
    for what, path in inputs:
        if path is not None and _inside(_real(path), o):
            return f"{option} {out}: holds {what} {path}, which this command reads; {FIX}"
    return None
