"""Image-quality metrics, defined once (docs/design.md, Metrics).

* PSNR: ``skimage.metrics.peak_signal_noise_ratio`` on float RGB images in [0, 1],
  ``data_range=1``.
* SSIM: ``skimage.metrics.structural_similarity`` on [0, 1] RGB, ``channel_axis=-1``,
  ``data_range=1``, ``gaussian_weights=True``, ``sigma=1.5``,
  ``use_sample_covariance=False``.
* The FSG-GAN authors' code computes ``10 log10(1 / MSE)`` on [-1, 1] tensors; that is
  the standard PSNR minus ``20 log10(2)`` (about 6.02 dB). :func:`psnr_pm1` gives it,
  only so that our numbers can be put beside the paper's Table 2; it is always
  reported labelled as such.

What a person sees of an occluder is measured apart from PSNR, which rewards tinting an
occluder towards skin colour as much as removing it:

* occluder residue (:func:`occluder_residue`): inside the synthesis mask, the share of
  the occluder's difference from the clean face still in the output,
  ``r = <out - clean, occ - clean> / |occ - clean|^2``: 1 for the occluded input
  itself, 0 for the clean face; a tinted ghost sits in between;
* changed pixels (:func:`changed_share`): the share of pixels whose largest channel
  difference exceeds 8/255, for the model run on a face with nothing over it.

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
    """SSIM of two RGB images on [0, 1] with the settings of docs/design.md, Metrics
    (Gaussian window sigma 1.5, population covariance, data_range 1)."""
    a, b = to_unit_numpy(pred), to_unit_numpy(target)
    _check_same_shape(a, b)
    return float(structural_similarity(b, a, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def image_metrics(pred, target) -> dict[str, float]:
    """``{"psnr", "psnr_pm1", "ssim"}`` for one image pair."""
    p = psnr(pred, target)
    return {"psnr": p, "psnr_pm1": p - PSNR_PM1_OFFSET, "ssim": ssim(pred, target)}


def image_metrics_batch(pred: np.ndarray, target: np.ndarray) -> list[dict[str, float]]:
    """:func:`image_metrics` of a batch at once: ``pred``, ``target`` uint8 (B, H, W, 3).

    The same numbers as the per-image functions (to float rounding, ~1e-12; tested against
    scikit-image), 10x faster: SSIM's Gaussian filtering is done for the whole batch as
    separable float64 convolutions with scipy's 'reflect' border.
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"expected two (B, H, W, 3) batches of one shape, got {pred.shape} and {target.shape}")
    a = torch.from_numpy(np.ascontiguousarray(pred)).to(torch.float64).div_(255.0).permute(0, 3, 1, 2).contiguous()
    b = torch.from_numpy(np.ascontiguousarray(target)).to(torch.float64).div_(255.0).permute(0, 3, 1, 2).contiguous()
    if min(a.shape[-2:]) < 2 * _SSIM_RADIUS + 1:  # too small for the window: the reference raises its error
        return [image_metrics(p, t) for p, t in zip(pred, target)]
    mse = (a - b).square().mean(dim=(1, 2, 3))
    ssims = _ssim_gaussian(b, a)
    out = []
    for m, s in zip(mse.tolist(), ssims.tolist()):
        p = math.inf if m == 0 else 10.0 * math.log10(1.0 / m)
        out.append({"psnr": p, "psnr_pm1": p - PSNR_PM1_OFFSET, "ssim": s})
    return out


def psnr_ssim_batch(pred: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float]]:
    """:func:`psnr` and :func:`ssim` of each pair of two (B, 3, H, W) tensor batches in [-1, 1]
    (no quantisation), at once: the same numbers as the per-image functions to float rounding."""
    a, b = ((t.detach().cpu().to(torch.float64).clamp(-1, 1) + 1.0) / 2.0 for t in (pred, target))
    if min(a.shape[-2:]) < 2 * _SSIM_RADIUS + 1:
        return [psnr(p, t) for p, t in zip(pred, target)], [ssim(p, t) for p, t in zip(pred, target)]
    mse = (a - b).square().mean(dim=(1, 2, 3)).tolist()
    return [math.inf if m == 0 else 10.0 * math.log10(1.0 / m) for m in mse], _ssim_gaussian(b, a).tolist()


_SSIM_SIGMA, _SSIM_TRUNCATE = 1.5, 3.5
_SSIM_RADIUS = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)  # 5: an 11x11 window, as scikit-image


def _ssim_gaussian(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of (B, C, H, W) float64 batches in [0, 1], averaged over channels,
    exactly as ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)`` computes it."""
    r = _SSIM_RADIUS
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (k / _SSIM_SIGMA) ** 2)
    taps = (k / k.sum()).tolist()

    def blur1d(t: torch.Tensor, dim: int) -> torch.Tensor:
        # scipy.ndimage.gaussian_filter1d, mode='reflect' (d c b a | a b c d), as a sum of
        # shifted copies: float64 elementwise work, 3x faster than a grouped float64 conv2d
        n = t.shape[dim]
        idx = torch.cat([torch.arange(r - 1, -1, -1), torch.arange(n), torch.arange(n - 1, n - 1 - r, -1)])
        t = t.index_select(dim, idx)
        out = t.narrow(dim, 0, n) * taps[0]
        for i in range(1, 2 * r + 1):
            out.add_(t.narrow(dim, i, n), alpha=taps[i])
        return out

    # the five local statistics blurred together: means, second moments, cross moment
    ux, uy, xx, yy, xy = blur1d(blur1d(torch.stack([x, y, x * x, y * y, x * y]), -2), -1)
    vx, vy, vxy = xx - ux * ux, yy - uy * uy, xy - ux * uy
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s[..., r:-r, r:-r].mean(dim=(2, 3)).mean(dim=1)


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


def occluder_residue(pred: np.ndarray, occluded: np.ndarray, clean: np.ndarray,
                     mask: np.ndarray) -> np.ndarray:
    """Per image, how much of the occluder is left in ``pred`` (see the module docstring).

    pred, occluded, clean: uint8 (B, H, W, 3); mask: (B, H, W) or (B, 1, H, W), nonzero
    where the occluder was placed. Returns (B,) float64: 1 = the occluder untouched,
    0 = the clean face; ``nan`` where the mask is empty or the occluder equals the face.
    """
    p, o, c = (np.asarray(a, dtype=np.float64) for a in (pred, occluded, clean))
    m = np.asarray(mask).reshape(p.shape[:3]).astype(bool)[..., None]
    d_occ, d_out = (o - c) * m, (p - c) * m
    den = (d_occ * d_occ).sum(axis=(1, 2, 3))
    num = (d_out * d_occ).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / np.maximum(den, 1e-12), np.nan)


def changed_share(pred: np.ndarray, reference: np.ndarray, threshold: int = 8) -> np.ndarray:
    """Per image, the share of pixels whose largest channel difference from ``reference``
    exceeds ``threshold`` (uint8 levels; both uint8 (B, H, W, 3)) -> (B,) in [0, 1]."""
    diff = np.abs(np.asarray(pred, dtype=np.int16) - np.asarray(reference, dtype=np.int16)).max(axis=-1)
    return (diff > threshold).mean(axis=(1, 2))


def spread(values: Iterable[float]) -> dict[str, float | int]:
    """Median, 5th and 95th percentiles and mean of the non-NaN values (infinite ones
    included: a percentile is always one of the values, never interpolated), with the
    count ``n``. All ``nan`` when there is none."""
    vals = np.asarray(list(values), dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return {"median": math.nan, "p5": math.nan, "p95": math.nan, "mean": math.nan, "n": 0}
    q = np.quantile(vals, [0.5, 0.05, 0.95], method="inverted_cdf")
    finite = vals[np.isfinite(vals)]
    return {"median": float(q[0]), "p5": float(q[1]), "p95": float(q[2]),
            "mean": float(finite.mean()) if finite.size else math.nan, "n": int(vals.size)}


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
