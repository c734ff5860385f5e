"""Checks a command makes when it starts, before it loads a model, reads a set or writes a
file: output folders, the device, and (``fsggan-eval --gan``) that the model works at the
size of the prepared sets' faces. Each returns a one-line complaint or None."""

from __future__ import annotations

import argparse
from pathlib import Path

from fsggan.cli import check_device, check_out_dir
from fsggan.cli.safety import folder_overlap

__all__ = ["eval_preflight", "model_image_size", "set_image_size"]


def eval_preflight(args: argparse.Namespace) -> str | None:
    """``fsggan-eval``: --out, --save-predictions (writable, outside every folder it reads),
    --device, and --gan against the sets."""
    read = [("the set", s) for s in args.sets] + [("the predictions folder", getattr(args, "predictions", None))]
    read += [("the results folder", c) for c in getattr(args, "compare", None) or []]
    problem = (check_out_dir(getattr(args, "out", None), "--out")
               or check_out_dir(getattr(args, "save_predictions", None), "--save-predictions")
               or folder_overlap("--out", getattr(args, "out", None), read)
               or folder_overlap("--save-predictions", getattr(args, "save_predictions", None), read)
               or check_device(args.device))
    if problem or not getattr(args, "gan", None) or getattr(args, "compare", None):
        return problem
    size = model_image_size(args.gan)
    for s in args.sets:
        found = set_image_size(s)
        if size is None or found is None:
            continue
        (w, h), first = found
        if (w, h) != (size, size):
            return (f"--gan {args.gan} works at {size}x{size} (its vae.image_size), but {s} holds {w}x{h} faces "
                    f"({first}); score it on sets prepared at {size} px (fsggan-prepare-data --set "
                    f"dataset.image_size={size}), or with a model trained at {w} px")
    return None


def model_image_size(gan) -> int | None:
    """The face size a Stage II checkpoint works at (None when it cannot be read here: the
    model loader reports that)."""
    from fsggan.checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(gan, stage="gan", mmap=True)
    except (OSError, ValueError):
        return None
    return int((ckpt["config"].get("vae") or {}).get("image_size", 128))


def set_image_size(set_dir) -> tuple[tuple[int, int], Path] | None:
    """((width, height), file) of the first clean face of a prepared set, or None."""
    from PIL import Image

    from fsggan.images import list_images

    clean = Path(set_dir) / "clean"
    try:
        first = list_images(clean)[0]
        with Image.open(first) as im:
            return im.size, first
    except (OSError, IndexError, ValueError):
        return None
