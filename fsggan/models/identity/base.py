"""Common interface of the frozen face-recognition networks, and checkpoint loading.

Every embedder takes images as the rest of fsggan holds them - float (B, 3, H, W),
RGB in [-1, 1], any size - and does its own colour conversion, resizing and
normalisation before the network, so that each network sees exactly what its
published weights were trained on. The output is an L2-normalised feature (B, dim).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fsggan.images import LUMA


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable or does not fit the network.

    The message names the file, the expected format and where the official
    weights are published.
    """


class FaceEmbedder(nn.Module):
    """A frozen face-recognition network: [-1, 1] RGB images -> L2-normalised features.

    Subclasses set ``self.net`` (the bare network, whose ``forward`` returns raw
    features) and ``self.dim``, and implement :meth:`preprocess`.

    The module is frozen (no parameter requires grad) and always in eval mode:
    ``train()`` is a no-op for it, so a parent's ``model.train()`` never switches its
    BatchNorm / dropout layers. Gradients still flow to the input image, which is what
    an identity loss needs.
    """

    dim: int

    def __init__(self, net: nn.Module, dim: int):
        super().__init__()
        self.net = net
        self.dim = dim
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FaceEmbedder:
        """Keep eval mode whatever ``mode`` is (BatchNorm statistics stay frozen)."""
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map [-1, 1] RGB (B, 3, H, W) to the network's own input convention."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) features of an already preprocessed batch."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
        feats = self.features(self.preprocess(x))
        return F.normalize(feats.float(), dim=1)

    def place(self, device: torch.device | str) -> FaceEmbedder:
        """Move to ``device``; on a CPU also switch to channels_last memory, oneDNN's fast
        layout (MobileFaceNet inference about 1.5x on a 2-core CPU, benchmarks/identity_net.py)."""
        self.to(device)
        if torch.device(device).type == "cpu":
            self.to(memory_format=torch.channels_last)
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Same as calling the module: (B, 3, H, W) in [-1, 1] -> (B, dim), unit norm."""
        return self(x)


# --------------------------------------------------------------------- image helpers

def rgb_to_gray01(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB (B, 3, H, W) -> gray (B, 1, H, W) in [0, 1], ITU-R BT.601 luma
    (0.299 R + 0.587 G + 0.114 B, as PIL's ``convert('L')``)."""
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return ((x + 1.0) * 0.5 * w).sum(dim=1, keepdim=True)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size`` = (H, W); antialiased when shrinking; no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def center_crop_aspect(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the largest centred window with aspect ``height:width`` (no resizing)."""
    h, w = x.shape[-2:]
    if h * width > w * height:  # too tall: crop rows
        new_h, new_w = round(w * height / width), w
    else:  # too wide (or exact): crop columns
        new_h, new_w = h, round(h * width / height)
    top, left = (h - new_h) // 2, (w - new_w) // 2
    return x[..., top : top + new_h, left : left + new_w]


# Five landmarks (left eye, right eye, nose tip, left / right mouth corner) as fractions of
# the image width / height in fsggan's face crops (the mean LFW template measured with dlib,
# fsggan.data.landmarks.template_landmarks("lfw") / 128; a test keeps the two equal).
FSGGAN_CROP_TEMPLATE = ((0.3438, 0.3719), (0.6539, 0.3695), (0.5055, 0.5453), (0.3625, 0.7180), (0.6430, 0.7164))

# Where face recognisers trained on 5-point aligned faces expect them, in pixels of their
# input: the SphereFace / MobileFaceNet 112x96 template, and ArcFace's 112x112 one (the same
# points shifted by 8 px to the right).
REFERENCE_112x96 = ((30.2946, 51.6963), (65.5318, 51.5014), (48.0252, 71.7366), (33.5493, 92.3655),
                    (62.7299, 92.2041))
REFERENCE_112x112 = tuple((x + 8.0, y) for x, y in REFERENCE_112x96)


def align_to_reference(x: torch.Tensor, size: tuple[int, int], reference=REFERENCE_112x96,
                       source=FSGGAN_CROP_TEMPLATE) -> torch.Tensor:
    """Warp faces framed like ``source`` (fractions of W, H) to ``size`` = (H, W) so that the
    landmarks land on ``reference`` (pixels of the output).

    A least-squares scale + translation (the templates are upright and symmetric, so no
    rotation), sampled bilinearly; pixels from outside the input repeat its border. Without
    it a recogniser sees fsggan's crops about 10 px too high and too loose, which costs a
    lot of accuracy (MobileFaceNet clean rank-1 on LFW: docs/results.md, "Recognition protocol on
    real LFW").
    """
    h, w = x.shape[-2:]
    return _warp(x, size, *_reference_fit(h, w, _points(reference), _points(source)))


def _points(points) -> tuple:
    """Landmark points as a hashable tuple of (x, y) floats (the fits below are cached)."""
    return tuple((float(x), float(y)) for x, y in points)


@functools.lru_cache(maxsize=64)
def _reference_fit(h: int, w: int, reference: tuple, source: tuple) -> tuple[float, tuple[float, float]]:
    """(scale, shift) of :func:`align_to_reference` for ``h`` x ``w`` inputs, computed once."""
    src = torch.tensor(source, dtype=torch.float64) * torch.tensor([w, h], dtype=torch.float64)
    dst = torch.tensor(reference, dtype=torch.float64)
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    scale = float((src_c * dst_c).sum() / (dst_c ** 2).sum())   # input px per output px
    shift = src.mean(0) - scale * dst.mean(0)
    return scale, (float(shift[0]), float(shift[1]))


# The LightCNN authors' alignment (README of github AlfredXiangWu/LightCNN and its Caffe
# predecessor face_verification_experiment, code/face_db_align.m): from 5 facial points,
# rotate the eyes level, scale so that the mouth centre (midpoint of the mouth corners) lies
# ec_mc_y px below the eye centre (midpoint of the eyes), and crop so that the eye centre is
# ec_y px from the top and horizontally centred. Training faces: 144x144, ec_mc_y 48, ec_y
# 48, then random 128x128 crops; test faces: 128x128, ec_mc_y 48, ec_y 40 (the centre crop
# of the training frame).
LIGHTCNN_EC_MC_Y = 48.0
LIGHTCNN_EC_Y = 40.0


def align_eyes_mouth(x: torch.Tensor, size: tuple[int, int], ec_mc_y: float = LIGHTCNN_EC_MC_Y,
                     ec_y: float = LIGHTCNN_EC_Y, source=FSGGAN_CROP_TEMPLATE) -> torch.Tensor:
    """Warp faces framed like ``source`` (5 points as fractions of W, H) to ``size`` = (H, W)
    by the LightCNN authors' rule above: the eye centre lands on (W / 2, ec_y) and the mouth
    centre ec_mc_y px below it (pixel indices of the output, as their crop counts them).

    Scale and translation only: the rotation step of their procedure levels the eyes, and
    the eyes of ``source`` are already level (0.3 px apart at 128 px for fsggan's template).
    """
    h, w = x.shape[-2:]
    return _warp(x, size, *_eyes_mouth_fit(h, w, tuple(size), float(ec_mc_y), float(ec_y), _points(source)))


@functools.lru_cache(maxsize=64)
def _eyes_mouth_fit(h: int, w: int, size: tuple, ec_mc_y: float, ec_y: float,
                    source: tuple) -> tuple[float, tuple[float, float]]:
    """(scale, shift) of :func:`align_eyes_mouth` for ``h`` x ``w`` inputs, computed once."""
    pts = torch.tensor(source, dtype=torch.float64) * torch.tensor([w, h], dtype=torch.float64)
    eye, mouth = pts[:2].mean(0), pts[3:5].mean(0)
    scale = float((mouth[1] - eye[1]) / ec_mc_y)                 # input px per output px
    return scale, (float(eye[0] - scale * (size[1] / 2)), float(eye[1] - scale * ec_y))


def _warp(x: torch.Tensor, size: tuple[int, int], scale: float, shift: tuple[float, float]) -> torch.Tensor:
    """Sample ``x`` at input = scale * output + shift (pixels; (x, y) shift) into ``size`` = (H, W),
    bilinearly, repeating the border outside the input."""
    h, w = x.shape[-2:]
    grid = _grid(tuple(size), scale, shift, h, w, x.device, x.dtype).expand(x.shape[0], -1, -1, -1)
    if scale > 1.5:  # shrinking a lot: smooth first so that sampling does not alias
        x = resize(x, (round(h / scale * 1.5), round(w / scale * 1.5)))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


_GRIDS: dict[tuple, torch.Tensor] = {}


def _grid(size: tuple[int, int], scale: float, shift: tuple[float, float], h: int, w: int,
          device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The sampling grid of :func:`_warp`, (1, H, W, 2), computed once in float64 on the host
    and kept per device and dtype: built at every call it was a host-to-device copy (a wait
    for the GPU) in every identity-loss step. The same few grids serve a whole run (one per
    recogniser and input size), so the cache stays small."""
    key = (size, scale, shift, h, w, str(device), dtype)
    grid = _GRIDS.get(key)
    if grid is None:
        ys = (torch.arange(size[0], dtype=torch.float64) + 0.5) * scale + shift[1]
        xs = (torch.arange(size[1], dtype=torch.float64) + 0.5) * scale + shift[0]
        grid = torch.stack(torch.meshgrid(2 * xs / w - 1, 2 * ys / h - 1, indexing="xy"), dim=-1)
        grid = _GRIDS[key] = grid.to(device, dtype)[None]
    return grid


# ---------------------------------------------------------------- checkpoint loading

def read_state_dict(
    path: str | Path,
    *,
    expected: str,
    source: str,
    wrapper_keys: tuple[str, ...] = ("state_dict",),
    weights_only: bool = True,
) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its state dict with any ``module.`` prefix removed.

    ``expected`` describes the format and ``source`` where to get official weights;
    both go into the :class:`WeightsError` raised when anything is wrong. A dict
    holding one of ``wrapper_keys`` is unwrapped; otherwise the file must itself be a
    state dict. ``weights_only=False`` allows arbitrary pickles: only for files you trust.
    """
    path = Path(path)

    def fail(problem: str) -> WeightsError:
        return WeightsError(f"{path}: {problem}. Expected {expected}. Official weights: {source}")

    if not path.is_file():
        raise fail("no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # text file, truncated file, disallowed pickled objects, ...
        text = str(exc)
        if "Unsupported global" in text:  # a real pickle holding non-tensor objects
            detail = text[text.index("Unsupported global"):].split(" was not")[0]
            raise fail(f"holds objects that cannot be unpickled safely ({detail}); "
                       "if you trust this file, pass weights_only=False") from exc
        text = text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].strip()
        first = text.splitlines()[0] if text else ""
        raise fail(f"is not a readable PyTorch checkpoint ({type(exc).__name__}: {first})") from exc

    if isinstance(obj, Mapping):
        for key in wrapper_keys:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise fail(f"holds a {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        top = ", ".join(repr(k) for k in list(obj)[:5])
        raise fail(f"is a dict but not a state dict of tensors (top-level keys: {top})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_checked(
    net: nn.Module, state: Mapping[str, torch.Tensor], *, path: str | Path, expected: str, source: str
) -> None:
    """``net.load_state_dict(state, strict=True)``, but first compare keys and shapes and
    raise a :class:`WeightsError` that lists a few offending keys. Missing
    ``num_batches_tracked`` buffers (absent from some older checkpoints; unused in
    eval mode) are filled from the network."""
    own = net.state_dict()
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", wrong)):
        if keys:
            more = f", ... ({len(keys)} in all)" if len(keys) > 5 else ""
            problems.append(f"{label}: " + ", ".join(keys[:5]) + more)
    if problems:
        raise WeightsError(
            f"{path}: does not fit {type(net).__name__} - " + "; ".join(problems)
            + f". Expected {expected}. Official weights: {source}"
        )
    net.load_state_dict(state, strict=True)
