"""Image-quality metrics, defined once (DESIGN.md section 5).

* PSNR: ``skimage.metrics.peak_signal_noise_ratio`` on float RGB images in [0, 1],
  ``data_range=1``.
* SSIM: ``skimage.metrics.structural_similarity`` on [0, 1] RGB, ``channel_axis=-1``,
  ``data_range=1``, ``gaussian_weights=True``, ``sigma=1.5``,
  ``use_sample_covariance=False``.
* The FSG-GAN authors' code computes ``10 log10(1 / MSE)`` on [-1, 1] tensors; that is
  the standard PSNR minus ``20 log10(2)`` (about 6.02 dB). :func:`psnr_pm1` gives it,
  only so that our numbers can be put beside the paper's Table 2; it is always
  reported labelled as such.

Identical images have an infinite PSNR. Per-image values keep ``inf``;
:func:`summarize` leaves infinite values out of the mean and std and counts them
(``n_inf``), and :func:`json_number` writes them as the string ``"inf"`` (JSON has no
infinity).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fsggan.images import to_float01

PSNR_PM1_OFFSET = 20.0 * math.log10(2.0)  # standard PSNR - this = PSNR of [-1, 1] images with peak 1


def to_unit_numpy(image) -> np.ndarray:
    """One image -> float64 (H, W, 3) in [0, 1].

    Accepts a uint8 HxWx3 array (pixels / 255), a float HxWx3 array (taken as [0, 1]),
    or a torch tensor (3, H, W) in [-1, 1] (the fsggan convention).
    """
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) tensor in [-1, 1], got shape {tuple(image.shape)}")
        return to_float01(image, torch.float64)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def psnr(pred, target) -> float:
    """Standard PSNR in dB of two RGB images (see :func:`to_unit_numpy` for the kinds
    accepted), on [0, 1] with ``data_range=1``; ``inf`` when the images are identical."""
    a, b = to_unit_numpy(pred), to_unit_numpy(target)
    _check_same_shape(a, b)
    if np.array_equal(a, b):
        return math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # divide by zero for MSE == 0 after rounding
        return float(peak_signal_noise_ratio(b, a, data_range=1.0))


def psnr_pm1(pred, target) -> float:
    """PSNR under the FSG-GAN code's [-1, 1] convention: :func:`psnr` - 20 log10(2) (6.02 dB)."""
    return psnr(pred, target) - PSNR_PM1_OFFSET


def ssim(pred, target) -> float:
    """SSIM of two RGB images on [0, 1] with the settings of DESIGN.md section 5
    (Gaussian window sigma 1.5, population covariance, data_range 1)."""
    a, b = to_unit_numpy(pred), to_unit_numpy(target)
    _check_same_shape(a, b)
    return float(structural_similarity(b, a, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def image_metrics(pred, target) -> dict[str, float]:
    """``{"psnr", "psnr_pm1", "ssim"}`` for one image pair."""
    p = psnr(pred, target)
    return {"psnr": p, "psnr_pm1": p - PSNR_PM1_OFFSET, "ssim": ssim(pred, target)}


def summarize(values: Iterable[float]) -> dict[str, float | int]:
    """Mean and (population) std of the finite values, with counts.

    Returns ``{"mean", "std", "n", "n_inf"}``: ``n`` finite values were averaged,
    ``n_inf`` infinite ones (identical images for PSNR) were left out. With no finite
    value, mean and std are ``nan``.
    """
    vals = np.asarray(list(values), dtype=np.float64)
    finite = vals[np.isfinite(vals)]
    n_inf = int(np.isinf(vals).sum())
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0, "n_inf": n_inf}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "n": int(finite.size), "n_inf": n_inf}


def json_number(x):
    """A float made JSON-safe: ``inf`` -> ``"inf"``, ``-inf`` -> ``"-inf"``, ``nan`` -> ``None``."""
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def from_json_number(x) -> float:
    """Inverse of :func:`json_number`."""
    if x is None:
        return math.nan
    return float(x)


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
