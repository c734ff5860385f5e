"""Reading and writing images as fsggan tensors ((3, H, W) float in [-1, 1], RGB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image(p))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode) -> (3, H, W) float in [-1, 1]."""
    arr = np.array(img.convert("RGB"), dtype=np.uint8)
    return uint8_to_tensor(arr)


def uint8_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded (what a saved PNG holds)."""
    x = x.detach().float().cpu().clamp(-1, 1)
    return ((x + 1.0) * 127.5).round().byte().permute(1, 2, 0).numpy()


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to the 256 levels a PNG can hold (same shape, same range)."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().div(127.5).sub(1.0)


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file -> (3, H, W) float in [-1, 1]. Raises ``OSError`` naming the file."""
    try:
        with Image.open(path) as img:
            return pil_to_tensor(img)
    except Exception as exc:
        raise OSError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Write a (3, H, W) [-1, 1] tensor as an 8-bit image (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tensor_to_uint8(x)).save(path)
