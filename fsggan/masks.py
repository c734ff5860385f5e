"""The user's own occlusion masks: white (1) = occluded, black (0) = keep.

A mask tells G which pixels to fill (:meth:`fsggan.models.UNetGenerator.forward`,
``fill_mask``): ``"replace"`` fills exactly the mask (pixels outside it come back as they
went in), ``"union"`` fills the mask and whatever G's blend head judges occluded.

    mask_array(mask)                 one mask (PIL, array, tensor) -> (H, W) float32 in [0, 1]
    to_mask_batch(mask, (B, H, W))   notebook API masks -> (B, 1, H, W) float32 in [0, 1]
    read_mask(path)                  a mask file -> (H, W) float32 in [0, 1] (upright)
    find_mask(folder, name)          the mask file of one input (same stem), or None
    pair_masks(folder, files, ...)   every input's mask file, checked (fsggan-deocclude --mask)
    fit_mask(mask, (H, W), path)     a photo's mask at the photo's size (documented resize)

Grey levels are kept (a soft edge stays soft); a colour mask counts by its luminance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fsggan.images import IMAGE_EXTENSIONS, ImageError, read_rgb

__all__ = ["MaskError", "mask_array", "to_mask_batch", "read_mask", "find_mask", "fit_mask", "pair_masks",
           "MAX_ASPECT_CHANGE"]

# A photo's mask of another size is resized to the photo (it was drawn on a scaled copy) when
# the two aspect ratios differ by at most this much; otherwise it belongs to another picture.
MAX_ASPECT_CHANGE = 0.02


class MaskError(ValueError):
    """A mask that cannot be used; the message names the file (or the argument) and the fix."""


def _as_array(mask) -> np.ndarray:
    """One mask or a batch as float32 (..., H, W) in [0, 1]."""
    if isinstance(mask, Image.Image):
        return np.asarray(mask.convert("L"), np.float32) / 255.0
    if isinstance(mask, torch.Tensor):
        arr = mask.detach().cpu()
        if arr.dtype == torch.uint8:
            return arr.numpy().astype(np.float32) / 255.0
        arr = arr.float().numpy()
    else:
        arr = np.asarray(mask)
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / 255.0
        arr = arr.astype(np.float32)
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise MaskError(f"mask values lie in [{arr.min():g}, {arr.max():g}]; give uint8 in [0, 255] or "
                        "floats / booleans in [0, 1] (1 = occluded)")
    return arr


def mask_array(mask, name: str = "mask") -> np.ndarray:
    """One mask (PIL image, array or tensor (H, W) or (1, H, W); uint8 or [0, 1]) -> (H, W)
    float32 in [0, 1]; ``name`` is what a MaskError calls it."""
    arr = _as_array(mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise MaskError(f"{name}: a mask is one grey image (H, W), got shape {arr.shape}")
    return arr


def to_mask_batch(mask, shape: tuple[int, int, int]) -> torch.Tensor:
    """Masks for a batch of ``shape`` (B, H, W) -> (B, 1, H, W) float32 in [0, 1].

    mask: one mask for every image or one per image: a PIL image or a list of them, an array
    or tensor (H, W), (1, H, W), (B, H, W) or (B, 1, H, W) (uint8 in [0, 255]; float or bool
    in [0, 1]), or a list of (H, W) arrays. Its size must be the images' (H, W)."""
    b, h, w = shape
    if isinstance(mask, (list, tuple)):
        arr = np.stack([_as_array(m) for m in mask])
    else:
        arr = _as_array(mask)
    arr = arr.reshape((-1,) + arr.shape[-2:]) if arr.ndim >= 2 else arr
    if arr.ndim != 3 or tuple(arr.shape[-2:]) != (h, w):
        raise MaskError(f"mask of shape {tuple(np.shape(arr))}: expected the images' size {h}x{w} "
                        "((H, W) or one (H, W) per image)")
    if arr.shape[0] not in (1, b):
        raise MaskError(f"{arr.shape[0]} masks for {b} images: give one mask, or one per image")
    t = torch.from_numpy(np.ascontiguousarray(arr, np.float32)).unsqueeze(1)
    return t.expand(b, 1, h, w).contiguous()


def read_mask(path: str | Path, *, upright: bool = True) -> np.ndarray:
    """A mask file -> (H, W) float32 in [0, 1] (luminance / 255), EXIF orientation applied
    as for the photo it belongs to. Raises MaskError naming the file."""
    try:
        rgb, _ = read_rgb(path, upright=upright)
    except ImageError as exc:
        raise MaskError(f"mask {exc}") from None
    return np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255.0


def find_mask(folder: str | Path, name: str | Path) -> Path | None:
    """The mask in ``folder`` for an input written as ``name`` (its path below the input
    folder): ``folder/<same sub-folder>/<stem>.<ext>``, else ``folder/<stem>.<ext>``, for
    the image extensions, PNG first. None when there is none."""
    folder, name = Path(folder), Path(name)
    exts = sorted(IMAGE_EXTENSIONS, key=lambda e: e != ".png")
    for base in dict.fromkeys((folder / name.parent, folder)):
        for ext in exts:
            for cand in (base / f"{name.stem}{ext}", base / f"{name.stem}{ext.upper()}"):
                if cand.is_file():
                    return cand
    return None


def _check_shape(shape: tuple[int, int], size: tuple[int, int], path) -> None:
    h, w = shape
    if abs((w / h) / (size[1] / size[0]) - 1.0) > MAX_ASPECT_CHANGE:
        raise MaskError(f"{path}: mask is {w}x{h}, its image {size[1]}x{size[0]} (another shape); "
                        "give a mask of the image's size")


def fit_mask(mask: np.ndarray, size: tuple[int, int], path: str | Path) -> np.ndarray:
    """``mask`` (h, w) at ``size`` (H, W): as it is when the sizes agree, resized bilinearly
    when only the scale differs (aspect ratios within :data:`MAX_ASPECT_CHANGE`), else a
    MaskError naming ``path``."""
    if tuple(mask.shape) == tuple(size):
        return mask
    _check_shape(mask.shape, size, path)
    im = Image.fromarray(mask.astype(np.float32), mode="F").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(im, np.float32), 0.0, 1.0)


def _size(path: Path, upright: bool) -> tuple[int, int]:
    """(height, width) from the header, turned as EXIF orientation turns it when ``upright``."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = upright and im.getexif().get(0x0112) in (5, 6, 7, 8)
    except (OSError, ValueError) as exc:
        raise MaskError(f"{path}: not a readable image ({exc}); give a mask image (white = occluded)") from None
    return (w, h) if turned else (h, w)


def pair_masks(folder: str | Path, files, *, photos: bool) -> dict[Path, Path]:
    """``{input path: mask path}`` for ``files`` (``fsggan.inputs.InputFile``: ``path``,
    ``name``), each mask found by :func:`find_mask` and its size checked from the headers:
    a face crop's mask has the crop's size; a photo's the photo's (upright), or a scaled
    copy of it (:func:`fit_mask`). A MaskError names the first input without a usable mask."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskError(f"--mask {folder}: no such folder; give the folder of mask images (one per input, same stem)")
    pairs = {}
    for f in files:
        mask = find_mask(folder, f.name)
        if mask is None:
            raise MaskError(f"{f.path}: no mask for it in {folder} (looked for {Path(f.name).with_suffix('.png')} "
                            f"and {Path(f.name).stem}.png, or another image suffix); give one mask per input")
        mh, mw = _size(mask, upright=photos)
        ih, iw = _size(f.path, upright=photos)
        if not photos and (mh, mw) != (ih, iw):
            raise MaskError(f"{mask}: mask is {mw}x{mh}, its input {f.path} {iw}x{ih}; give a mask of the "
                            "input's size")
        if photos:
            _check_shape((mh, mw), (ih, iw), mask)
        pairs[f.path] = mask
    return pairs
