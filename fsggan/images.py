"""Image files and conversions, for every part of fsggan.

fsggan holds an image as a float tensor (3, H, W) - or a batch (B, 3, H, W) - RGB in
[-1, 1]. One name per conversion:

    to_tensor(image)      uint8 / float [0, 1] array (H, W[, C]) or PIL image -> (3, H, W) in [-1, 1]
    to_uint8(tensor)      (..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8, rounded (what a PNG holds)
    to_float01(tensor)    (3, H, W) in [-1, 1] -> (H, W, 3) float array in [0, 1]
    quantize(tensor)      round to the 256 levels of a PNG, staying a [-1, 1] tensor
    to_batch(images)      what the notebook API accepts (PIL image(s), uint8 / float arrays,
                          tensors) -> ((B, 3, H, W) in [-1, 1], the kind to give back);
                          ValueError naming the range expected for out-of-range values
    from_batch(out, kind) the batch back in that kind

Files:

    read_rgb(path)        any image -> RGB uint8 (H, W, 3) + a note naming any conversion;
                          raises ImageError (reason key + a message naming the file)
    pil_to_rgb(image)     the same conversions for a PIL image in memory (to_tensor uses it,
                          so the notebook API reads a PIL image as read_rgb reads its file)
    read_rgba(path)       an occluder cut-out -> RGBA uint8 (H, W, 4)
    load_image(path)      an image file -> tensor (raises OSError naming the file)
    save_image(t, path)   a tensor -> 8-bit image file (format from the suffix)
    save_png(path, arr)   uint8 array -> PNG, byte-identical for identical input
    write_atomic(path, w) any file written whole or not at all (temporary file, then rename);
                          save_png and save_image write through it
    list_images(folder)   the files with an IMAGE_EXTENSIONS suffix, sorted

`read_rgb` is what the data pipeline uses: a bad file never ends in a traceback from deep
inside PIL; callers that prefer to skip bad files catch `ImageError` and count
`error.reason` (a short key such as ``"corrupt"``). Conversions it makes on purpose
(documented, never silent-but-wrong):
- grayscale (L, 1, I;16, I) -> RGB by repeating the channel; 16/32-bit values are scaled
  by their bit depth, not clipped at 255;
- palette (P) -> RGB(A) through the palette;
- CMYK / YCbCr / LAB -> RGB with PIL's converter;
- RGBA / LA face images are composited over white (a transparent background would
  otherwise become black).
`load_image` reads method outputs and prepared sets for scoring: read_rgb's conversions
(an alpha channel is dropped, not composited).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MIN_FACE_SIZE",
    "ImageError",
    "read_rgb",
    "read_rgba",
    "pil_to_rgb",
    "crop_resize",
    "save_png",
    "to_tensor",
    "to_uint8",
    "to_float01",
    "quantize",
    "is_image",
    "list_images",
    "load_image",
    "save_image",
    "write_atomic",
    "to_batch",
    "from_batch",
    "resize_batch",
    "LUMA",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# The smallest source image (shorter side, px) a face is cropped from: fsggan-prepare-data's
# default dataset.min_source_size and fsggan-deocclude's limit.
MIN_FACE_SIZE = 32
# ITU-R BT.601 luma weights of R, G, B (PIL's convert("L")): every grey made from a colour image.
LUMA = (0.299, 0.587, 0.114)

# Never decode a truncated file silently into a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_ALPHA_MODES = ("RGBA", "LA", "RGBa", "La", "PA")


class ImageError(ValueError):
    """An image file cannot be used. `path` is the file, `reason` a short key for summaries."""

    def __init__(self, path: str | Path, reason: str, message: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {message}")


# ---------------------------------------------------------------- conversions

def to_tensor(image) -> torch.Tensor:
    """An image -> float (3, H, W) in [-1, 1].

    image: uint8 array (H, W, 3) (pixels / 127.5 - 1), a float array in [0, 1] (x 2 - 1),
    (H, W) / (H, W, 1) gray (repeated to RGB), (H, W, 4) (alpha dropped), or a PIL image.
    """
    if isinstance(image, Image.Image):  # read as read_rgb reads a file (16-bit, palette, alpha, ...)
        image = pil_to_rgb(image)[0]
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image array must be (H, W, 3), got {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
        return t.div_(127.5).sub_(1.0)
    if np.issubdtype(arr.dtype, np.floating):
        return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True)).permute(2, 0, 1).mul_(2.0).sub_(1.0)
    raise ValueError(f"an image array must be uint8 or float in [0, 1], got {arr.dtype}")


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (C, H, W) or (B, C, H, W) in [-1, 1] -> uint8 (H, W, C) / (B, H, W, C), rounded."""
    t = tensor.detach().float().cpu().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)
    return t.permute(*range(t.dim() - 3), -2, -1, -3).numpy()


def to_float01(tensor: torch.Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) array in [0, 1], computed in ``dtype``."""
    return ((tensor.detach().cpu().to(dtype).clamp(-1, 1) + 1.0) / 2.0).permute(1, 2, 0).numpy()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to the 256 levels a PNG can hold (same shape, same range)."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().div(127.5).sub(1.0)


# ---------------------------------------------------------------- reading (data pipeline)

def _open(path: Path) -> Image.Image:
    """Open and fully decode `path`, translating every PIL failure into ImageError."""
    if not path.exists():
        raise ImageError(path, "missing", "file does not exist (check the dataset root and label files)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(path, "unreadable", f"cannot read the file ({e.strerror or e}); check permissions") from None
    if not data:
        raise ImageError(path, "empty", "file is empty (0 bytes); re-download it or delete it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            im.load()
    except UnidentifiedImageError:
        if data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n":
            raise ImageError(path, "corrupt", "corrupt image (valid header, unreadable data); re-download the file or delete it") from None
        raise ImageError(path, "not_an_image", "not a readable image format; delete or replace the file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(path, "too_large", "image is implausibly large for a face (decompression-bomb guard); resize it") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise ImageError(
            path, "corrupt", f"corrupt or truncated image ({e}); re-download the file or delete it"
        ) from None
    return im


def _gray_to_uint8(arr: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """8-bit, 1-bit and 16-bit grayscale -> uint8 (16-bit values are scaled, not clipped)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if mode.startswith("I") and arr.size and 0 <= arr.min() and arr.max() <= 65535:
        # 16-bit data (PIL opens 16-bit PNG/TIFF as I;16 or I): 0..65535 -> 0..255
        return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    raise ImageError(path, "unsupported_mode", f"pixel format {mode} ({arr.dtype}) is not supported; save it as 8-bit RGB")


def read_rgb(path: str | Path, *, min_size: int = 1, background: int = 255,
             upright: bool = False) -> tuple[np.ndarray, str]:
    """Read any image as RGB uint8 (H, W, 3).

    Returns `(array, note)` where `note` names a conversion that was made ("" when the
    file was already 8-bit RGB; e.g. "grayscale", "cmyk", "16bit", "alpha").
    Raises `ImageError` for missing, empty, corrupt, truncated, unsupported or too small
    (shorter side < `min_size`) files. `upright`: turn the image as its EXIF orientation
    tag says (camera photos); an unreadable tag leaves it as stored.
    """
    path = Path(path)
    im = _open(path)
    if upright:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a damaged EXIF block: the pixels are still good
            pass
    arr, note = pil_to_rgb(im, path, background=background)
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise ImageError(
            path, "too_small", f"image is {w}x{h}, smaller than the {min_size} px needed to crop a face; "
            "replace it with a larger image"
        )
    return arr, note


def pil_to_rgb(im: Image.Image, path: str | Path = "<image>", *, background: int = 255) -> tuple[np.ndarray, str]:
    """A decoded PIL image -> (RGB uint8 (H, W, 3), note): the conversions of :func:`read_rgb`
    (16-bit gray scaled, palette expanded, alpha composited over ``background``, ...), the
    one reader of files and of PIL images given to the API. Raises ImageError naming
    ``path`` for a pixel format without an 8-bit meaning (e.g. "F", float)."""
    path = Path(path)
    mode, note = im.mode, ""
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode, note = im.mode, "palette"
    if mode in _ALPHA_MODES:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        a = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * a + background * (1.0 - a)
        arr = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        note = "alpha" if (a < 1).any() else (note or "")
    elif mode == "RGB":
        arr = np.asarray(im, dtype=np.uint8)
    elif mode in ("L", "1") or mode.startswith("I"):
        arr = _gray_to_uint8(np.asarray(im), mode, path)
        arr = np.repeat(arr[..., None], 3, axis=2)
        note = "16bit" if mode.startswith("I") else "grayscale"
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        note = mode.lower()
    else:  # "F" (float) and other exotic modes have no unambiguous 8-bit meaning
        raise ImageError(path, "unsupported_mode", f"pixel format {mode} is not supported; save it as 8-bit RGB (JPEG or PNG)")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(path, "unsupported_mode", f"unexpected pixel layout {arr.shape}; save it as 8-bit RGB")
    return np.ascontiguousarray(arr), note


def read_rgba(path: str | Path) -> np.ndarray:
    """Read an occluder cut-out as RGBA uint8 (H, W, 4).

    Raises `ImageError` (reason "no_alpha") when the file has no alpha channel or its
    alpha is fully opaque, since such a file would paste a rectangle over the face.
    """
    path = Path(path)
    im = _open(path)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode not in _ALPHA_MODES:
        raise ImageError(
            path, "no_alpha", f"occluder has no alpha channel (mode {im.mode}); save it as an RGBA PNG "
            "with a transparent background"
        )
    arr = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    alpha = arr[..., 3]
    if alpha.min() == 255:
        raise ImageError(
            path, "no_alpha", "occluder alpha channel is fully opaque (no transparent background); "
            "cut the object out or make the background transparent"
        )
    if alpha.max() < 128:
        raise ImageError(path, "empty_alpha", "occluder is (almost) fully transparent; nothing to paste")
    return np.ascontiguousarray(arr)


def crop_resize(image: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Crop `box` (left, top, right, bottom; source pixels, may be fractional) and resize to size x size.

    Parts of the box outside the image (a face box of a very elongated photo) are filled by
    edge replication, so the result is always defined; a box inside the image is cropped
    from the image as it is.
    """
    h, w = image.shape[:2]
    left, top, right, bottom = (float(v) for v in box)
    pad = [max(0, math.ceil(v)) for v in (-top, bottom - h, -left, right - w)]
    if any(pad):
        image = np.pad(image, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0))[:image.ndim], mode="edge")
        left, top, right, bottom = left + pad[2], top + pad[0], right + pad[2], bottom + pad[0]
    im = Image.fromarray(image)
    out = im.resize((size, size), resample=Image.Resampling.BICUBIC, box=(left, top, right, bottom))
    return np.asarray(out, dtype=np.uint8)


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Write uint8 (H, W), (H, W, 1) or (H, W, 3) as PNG, byte-identical for identical input."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        raise TypeError(f"save_png expects uint8, got {arr.dtype}")
    write_atomic(path, lambda f: Image.fromarray(arr).save(f, format="PNG", optimize=False, compress_level=6))


PART_SUFFIX = ".part"


def write_atomic(path: str | Path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path`` (``.<name>.<random>.part``),
    then rename it onto ``path`` (os.replace): a run stopped at any point leaves the whole
    file or none. A killed process may leave its ``.part`` file, which no reader takes for
    an image (no image suffix). A symlink at ``path`` is replaced, never written through."""
    import os
    import secrets

    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:  # named after the file asked for, not the temporary one
        tmp.unlink(missing_ok=True)
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- tensors <-> files

def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image(p))


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file -> (3, H, W) float in [-1, 1]. Raises ``OSError`` naming the file."""
    try:
        with Image.open(path) as img:
            return to_tensor(img.convert("RGB") if img.mode in _ALPHA_MODES else img)  # alpha dropped
    except Exception as exc:
        raise OSError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Write a (3, H, W) [-1, 1] tensor as an 8-bit image (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}; use .png or .jpg")
    write_atomic(path, lambda f: Image.fromarray(to_uint8(x)).save(f, format=fmt))


# ---------------------------------------------------------------- image kinds of the notebook API

def to_batch(images) -> tuple[torch.Tensor, dict]:
    """Any supported input -> ((B, 3, H, W) float in [-1, 1] on CPU or the input's device,
    info needed to give the output back in the same kind)."""
    if isinstance(images, torch.Tensor):
        if images.dim() not in (3, 4) or images.shape[-3] != 3:
            raise ValueError(f"tensor input must be (3, H, W) or (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        if not images.is_floating_point():  # uint8 / bool / int / complex: not fsggan's convention
            raise ValueError(f"a tensor input must be a float tensor in [-1, 1], got {images.dtype} (from uint8 "
                             "[0, 255] use x.float() / 127.5 - 1)")
        _check_size(tuple(images.shape), "tensor")
        _check_range(images, -1.0, 1.0, "a tensor input", "fsggan's convention; from [0, 1] use x * 2 - 1, "
                     "from [0, 255] x / 127.5 - 1")
        info = {"kind": "tensor", "single": images.dim() == 3, "device": images.device}
        return (images.unsqueeze(0) if images.dim() == 3 else images).float(), info
    if isinstance(images, Image.Image):  # read as the file path reads its file (fsggan.images.pil_to_rgb)
        return to_tensor(images).unsqueeze(0), {"kind": "pil", "single": True}
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            batch, info = to_batch(list(images))
            info["kind"] = "ndarray_batch"
            return batch, info
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"an image array must be uint8 in [0, 255] or float in [0, 1], got {images.dtype}")
        _check_size(images.shape[:2] if images.ndim >= 2 else images.shape, "array")
        if np.issubdtype(images.dtype, np.floating):
            _check_range(torch.from_numpy(np.asarray(images)), 0.0, 1.0, "a float array",
                         "for [0, 255] pass uint8 arrays")
        return to_tensor(images).unsqueeze(0), {"kind": "ndarray", "single": True, "dtype": images.dtype}
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("empty list of images")
        items = [to_batch(im) for im in images]
        kinds = {info["kind"] for _, info in items}
        if len(kinds) > 1:
            raise ValueError(f"mixed image kinds in one list: {sorted(kinds)}")
        first = items[0][1]
        sizes = {tuple(t.shape[-2:]) for t, _ in items}
        tensors = [t for t, _ in items]
        if len(sizes) > 1:  # the model resizes anyway; stack at the first size
            tensors = [resize_batch(t, items[0][0].shape[-2:]) for t in tensors]
        return torch.cat(tensors), {**first, "single": False}
    raise TypeError(f"unsupported image input {type(images).__name__}: give PIL images, "
                    "numpy arrays (H, W, 3) or tensors (B, 3, H, W) in [-1, 1]")


def _check_size(shape: tuple, what: str) -> None:
    """ValueError for a batch of no images, or images without pixels."""
    if len(shape) == 4 and shape[0] == 0:
        raise ValueError(f"a {what} batch of 0 images {shape}: nothing to de-occlude")
    if any(int(s) == 0 for s in shape[-2:]):
        raise ValueError(f"a {what} input of shape {shape}: images need at least one pixel (H, W >= 1)")


def _check_range(x: torch.Tensor, lo: float, hi: float, what: str, hint: str, tol: float = 1e-3) -> None:
    """ValueError naming the range when ``x`` holds values outside [lo, hi] (or NaN / inf)."""
    if x.numel() == 0:
        return
    vmin, vmax = float(x.min()), float(x.max())
    if not (lo - tol <= vmin and vmax <= hi + tol):  # also false for NaN
        raise ValueError(f"{what} must hold values in [{lo:g}, {hi:g}] ({hint}); got values in "
                         f"[{vmin:g}, {vmax:g}]")


def from_batch(out: torch.Tensor, info: dict):
    """The inverse of :func:`to_batch`: a (B, 3, H, W) [-1, 1] batch -> the kind ``info`` records."""
    kind = info["kind"]
    if kind == "tensor":
        out = out.to(info["device"])
        return out[0] if info["single"] else out
    if kind == "pil":
        imgs = [Image.fromarray(to_uint8(o)) for o in out]
        return imgs[0] if info["single"] else imgs
    arrays = [to_uint8(o) if info["dtype"] == np.uint8 else to_float01(o) for o in out]
    if info["single"]:
        return arrays[0]
    return np.stack(arrays) if kind == "ndarray_batch" else arrays


def resize_batch(x: torch.Tensor, size) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, *size), bilinear (antialiased when shrinking)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
