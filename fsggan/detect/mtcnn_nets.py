"""MTCNN's three networks (Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks", 2016), defined here in torch, and their weights.

The weights are the original Caffe models as converted by facenet-pytorch (MIT): three state
dicts ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (about 2 MB) in the ``facenet_pytorch/data`` folder
of its wheel. Their parameter names fix the names of the layers below. fsggan never imports
facenet-pytorch (it pins an old torch); :func:`weights_folder` finds its files with importlib.

Inputs are RGB in NCHW with pixels mapped by ``(p - 127.5) / 128``. Layouts the converted
weights imply: the conv layers see the image as it is (not transposed, as the Caffe originals
did); the first dense layer of RNet and ONet reads the last feature map flattened in
(width, height, channel) order, as TensorFlow stored it; box regressions are (dx0, dy0, dx1, dy1)
in units of the box size; ONet's ten landmark outputs are five x then five y, as fractions of
the box; channel 1 of each softmax is "face".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .base import DetectorError, package_folder

__all__ = ["PNet", "RNet", "ONet", "weights_folder", "load_nets", "ENV_VAR", "INSTALL"]

ENV_VAR = "FSGGAN_MTCNN_WEIGHTS"
INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"
FILES = ("pnet.pt", "rnet.pt", "onet.pt")


def _layers(net: nn.Module, convs: Sequence[tuple[int, int, int]], dense: Sequence[int] = ()) -> None:
    """Give ``net`` its layers under the weight files' names: ``conv<i>`` + ``prelu<i>`` for
    each (in, out, kernel) of ``convs``, then ``dense<j>`` + ``prelu<j>`` for each step of
    ``dense`` (sizes: first the flattened input, then each layer's width)."""
    for i, (cin, cout, k) in enumerate(convs, 1):
        setattr(net, f"conv{i}", nn.Conv2d(cin, cout, k))
        setattr(net, f"prelu{i}", nn.PReLU(cout))
    for j, (din, dout) in enumerate(zip(dense, dense[1:]), len(convs) + 1):
        setattr(net, f"dense{j}", nn.Linear(din, dout))
        setattr(net, f"prelu{j}", nn.PReLU(dout))


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, W*H*C), width slowest, channel fastest (TensorFlow's order, transposed)."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net, fully convolutional: 12x12 windows at stride 2. Returns
    (face probability (N, H', W'), box regression (N, 4, H', W'))."""

    def __init__(self):
        super().__init__()
        _layers(self, [(3, 10, 3), (10, 16, 3), (16, 32, 3)])
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on 24x24 crops. Returns (face probability (N,), box regression (N, 4))."""

    def __init__(self):
        super().__init__()
        _layers(self, [(3, 28, 3), (28, 48, 3), (48, 64, 2)], dense=[576, 128])
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool(self.prelu1(self.conv1(x)))
        x = self.pool(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 crops. Returns (face probability (N,), box regression (N, 4),
    landmarks (N, 10): five x then five y, fractions of the crop)."""

    def __init__(self):
        super().__init__()
        _layers(self, [(3, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 2)], dense=[1152, 256])
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool(self.prelu1(self.conv1(x)))
        x = self.pool(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def weights_folder(weights: str | Path | None = None) -> Path:
    """Where ``pnet.pt``, ``rnet.pt``, ``onet.pt`` are: ``weights``, else ``$FSGGAN_MTCNN_WEIGHTS``,
    else the installed facenet_pytorch's ``data/`` (found without importing it)."""
    if weights is None and os.environ.get(ENV_VAR):
        weights = os.environ[ENV_VAR]
    if weights is not None:
        folder = Path(weights)
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise DetectorError(f"MTCNN weights: {folder} lacks {', '.join(missing)}; give the folder holding "
                                f"{', '.join(FILES)} (facenet_pytorch/data), or {INSTALL}")
        return folder
    pkg = package_folder("facenet_pytorch")
    if pkg is None or not all((pkg / "data" / f).is_file() for f in FILES):
        raise DetectorError(f"MTCNN weights not found: {INSTALL} (weights only, fsggan does not import it), "
                            f"or set {ENV_VAR} to a folder holding {', '.join(FILES)}")
    return pkg / "data"


def load_nets(weights: str | Path | None = None) -> tuple[PNet, RNet, ONet]:
    """The three networks with their weights, in eval mode, gradients off."""
    folder = weights_folder(weights)
    nets = []
    for cls, name in zip((PNet, RNet, ONet), FILES):
        net = cls()
        try:
            state = torch.load(folder / name, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line fix
            raise DetectorError(f"MTCNN weights: {folder / name} does not load into {cls.__name__} "
                                f"({type(e).__name__}); reinstall with {INSTALL}") from None
        nets.append(net.eval().requires_grad_(False))
    return tuple(nets)
