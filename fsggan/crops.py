"""Face crops in, face crops out: ``fsggan-deocclude --aligned`` (aligned crops, only resized)
and ``--crop NAME`` (a fixed face box cut as ``fsggan-prepare-data`` does). Whole photos, with
detection and paste-back, are :mod:`fsggan.photos`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fsggan.images import (MIN_FACE_SIZE, ImageError, crop_resize, pil_to_rgb, read_rgb, resize_batch, save_image,
                           to_tensor)
from fsggan.inputs import InputFile

__all__ = ["crop_faces", "read_input", "read_input_mask", "deocclude_files"]


def crop_faces(images: Sequence, image_size: int = 128, crop: str = "lfw") -> list[torch.Tensor]:
    """Crop photos to face crops exactly as the data pipeline does -> (3, S, S) in [-1, 1].

    images: PIL images or uint8 (H, W, 3) arrays.
    crop: a key of ``fsggan.data.DEFAULT_CROPS``: "lfw" (LFW-like framing, 250x250
        reference box scaled to the photo's size), "celeba" (CelebA aligned 178x218),
        "folder" (the largest centred square).
    """
    from fsggan.data import DEFAULT_CROPS

    if crop not in DEFAULT_CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose from {', '.join(DEFAULT_CROPS)}")
    box_of = DEFAULT_CROPS[crop]
    out = []
    for img in images:
        arr = pil_to_rgb(img)[0] if isinstance(img, Image.Image) else np.asarray(img)
        h, w = arr.shape[:2]
        out.append(to_tensor(crop_resize(arr, box_of.box_for(w, h), image_size)))
    return out


def read_input(path: Path, *, aligned: bool, crop: str, image_size: int) -> torch.Tensor:
    """One input file -> (3, S, S) in [-1, 1]: an aligned crop resized, or a photo cropped
    like the data pipeline (raises ImageError naming the file when it is unreadable or its
    shorter side is under MIN_FACE_SIZE = 32 px, the limit of fsggan-prepare-data)."""
    arr, _ = read_rgb(path, min_size=MIN_FACE_SIZE)
    if aligned:
        return resize_batch(to_tensor(arr).unsqueeze(0), (image_size, image_size))[0]
    return crop_faces([arr], image_size, crop)[0]


def read_input_mask(path: Path, *, aligned: bool, crop: str, image_size: int) -> torch.Tensor:
    """A mask file (white = occluded) -> (1, S, S) in [0, 1], cut and resized as
    :func:`read_input` cuts and resizes its image (at 8 bits, as a grey RGB image)."""
    from fsggan.masks import read_mask

    u8 = np.rint(read_mask(path, upright=False) * 255.0).astype(np.uint8)
    rgb = np.repeat(u8[..., None], 3, axis=2)
    t = resize_batch(to_tensor(rgb).unsqueeze(0), (image_size, image_size))[0] if aligned \
        else crop_faces([rgb], image_size, crop)[0]
    return ((t[:1] + 1.0) / 2.0).clamp(0.0, 1.0)


def deocclude_files(
    model,                       # an fsggan.api.FSGGAN
    files: Sequence[InputFile],  # fsggan.inputs.collect_inputs(..., recursive=False, keep_format=False)
    out: str | Path,
    *,
    aligned: bool = False,       # inputs are aligned face crops (only resized); else cropped as the data pipeline
    crop: str = "lfw",           # face box for uncropped photos (see crop_faces)
    structure: bool = False,     # also write g = V(x) to out/structure/
    strip: bool = False,         # also write input | g | output strips to out/strip/
    batch_size: int = 32,
    progress: bool = True,       # tqdm progress bar
    masks: Mapping[Path, Path] | None = None,  # input path -> its mask file (white = the region G fills)
    mask_mode: str = "replace",  # "replace" or "union" (with G's own map): fsggan.api.FSGGAN.run
) -> list[str]:
    """Write ``out/<name>`` per input file, each whole or not at all; returns "<file>: <error>"
    for each input that could not be read (the others are written). Nothing is created for
    an input that is not written."""
    from tqdm import tqdm

    out = Path(out)  # made with the first file written into it (fsggan.images.save_image)
    failed = []
    with tqdm(total=len(files), desc="de-occluding", unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            xs, ok, ms = [], [], []
            for f in chunk:
                try:
                    x = read_input(f.path, aligned=aligned, crop=crop, image_size=model.image_size)
                    if masks is not None:
                        ms.append(read_input_mask(masks[f.path], aligned=aligned, crop=crop,
                                                  image_size=model.image_size))
                except Exception as exc:  # report, go on with the rest
                    failed.append(str(exc) if isinstance(exc, ImageError) else f"{f.path}: {exc}")  # named once
                    continue
                xs.append(x)
                ok.append(f)
            if xs:
                x = torch.stack(xs)
                y, g = model.run(x, torch.stack(ms), mask_mode) if masks is not None else model.run(x)
                for i, f in enumerate(ok):
                    save_image(y[i], out / f.name)
                    if structure and g is not None:
                        save_image(g[i], out / "structure" / f.name)
                    if strip:
                        parts = [x[i].to(y.device)] + ([g[i]] if g is not None else []) + [y[i]]
                        save_image(torch.cat(parts, dim=-1), out / "strip" / f.name)
            bar.update(len(chunk))
    return failed
