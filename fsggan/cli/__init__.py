"""The command line: every console entry point, one module per command.

    fsggan-prepare-data  fsggan.cli.prepare_data:main  -> fsggan.data.prepare.prepare_data
    fsggan-train-vae     fsggan.cli.train_vae:main     -> fsggan.train.vae.train_vae
    fsggan-train-gan     fsggan.cli.train_gan:main     -> fsggan.train.gan.train_gan
    fsggan-eval          fsggan.cli.evaluate:main      -> fsggan.eval.evaluate.evaluate_sets
    fsggan-deocclude     fsggan.cli.deocclude:main     -> fsggan.photos.deocclude_photo_files (photos),
                                                        fsggan.crops.deocclude_files (--aligned, --crop)
    fsggan-quickstart    fsggan.cli.quickstart:main    -> fsggan.quickstart.run_quickstart

Each ``main(argv=None)`` parses its arguments, loads the config, calls one library
function and turns the known errors (bad config, missing file, wrong checkpoint, ...)
into a one-line message on stderr and an exit status. Nothing below this package
imports it.
"""

from __future__ import annotations

import sys


def fail(prog: str, error: BaseException | str, status: int = 2) -> int:
    """Print ``<prog>: error: <error>`` on stderr and return ``status`` (the exit status)."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return status


def check_out_dir(path, option: str) -> str | None:
    """A one-line complaint when ``path`` (an output folder, given as ``option``) cannot be
    one: an existing file, a file on its way, or a folder that cannot be written; None when
    fine (or not given). Checked when a command starts, before anything is read or written."""
    import os
    from pathlib import Path

    if path is None:
        return None
    p = Path(path)
    if p.exists() and not p.is_dir():
        return f"{option} {path}: a file, not a folder; give a folder (new or existing)"
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent != p and parent.exists() and not parent.is_dir():
        return f"{option} {path}: {parent} is a file, so no folder can be made there; give another folder"
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        return f"{option} {path}: {parent} is not writable; give a folder you can write to"
    return None


def check_device(device) -> str | None:
    """A one-line complaint about ``--device`` (unknown, or absent on this machine), or None."""
    from fsggan.device import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        return f"--{exc}"
    return None
