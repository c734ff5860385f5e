"""Where fsggan looks for the data it does not ship, the one place that decides it.

    data_root() / "lfw"          LFW photos, <Person>/<Person>_NNNN.jpg
    data_root() / "occluders"    occluder cut-outs (fsg/seen, fsg/new, ocfr: configs/data/lfw.yaml)
    data_root() / "weights"      recognisers' weights (mobilefacenet_casia_068.ckpt, LightCNN, ...)

:func:`data_root`: the folder named by the environment variable ``FSGGAN_DATA`` when it is
set; otherwise ``data/`` in the current directory when it holds one of those folders;
otherwise ``../shared/data`` when that exists (a data folder beside the clone, where the YAML
files under configs/ name their data); otherwise ``data/``, whose absence the command that
needs a file then reports. Only defaults come from here: a path given on the command line or
in a config file is used as it is. No torch here: ``--help`` reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV", "DATA_FOLDERS", "data_root", "in_data_root"]

ENV = "FSGGAN_DATA"
DATA_FOLDERS = ("lfw", "occluders", "weights")
_HERE, _BESIDE = Path("data"), Path("..") / "shared" / "data"


def data_root() -> Path:
    """The data folder (see the module docstring), relative to the current directory unless
    ``FSGGAN_DATA`` is absolute."""
    named = os.environ.get(ENV, "").strip()
    if named:
        return Path(named).expanduser()
    if any((_HERE / f).is_dir() for f in DATA_FOLDERS):
        return _HERE
    return _BESIDE if _BESIDE.is_dir() else _HERE


def in_data_root(path: str | Path, root: Path | None = None) -> Path:
    """``path`` (a config's path to data, e.g. ``../shared/data/occluders/fsg/seen``) at the
    same place under ``root`` (default :func:`data_root`): its part from the first component
    named in :data:`DATA_FOLDERS` on (``<root>/occluders/fsg/seen``). A path with no such
    component is returned unchanged."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part in DATA_FOLDERS:
            return (data_root() if root is None else Path(root)).joinpath(*parts[i:])
    return Path(path)
