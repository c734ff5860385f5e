"""Light CNN-9 / 29 / 29v2 face recognition networks.

X. Wu, R. He, Z. Sun, T. Tan, "A Light CNN for Deep Face Representation with Noisy
Labels", IEEE TIFS 2018 (arXiv:1511.02683). The building block is Max-Feature-Map
(MFM): a convolution (or linear layer) with 2n outputs followed by an element-wise
max of its two halves.

Module and parameter names follow the authors' release (github AlfredXiangWu/LightCNN)
so that their checkpoints load unchanged: a dict with ``state_dict`` whose keys carry
DataParallel's ``module.`` prefix, classifier ``fc2`` included (79077 classes for
LightCNN-9 / 29, 80013 for 29v2). Input: 128x128 gray in [0, 1]; four 2x poolings give
8x8x128 = 8192 inputs to the 256-d feature layer. ``forward`` returns that 256-d
feature; ``classify(feature)`` applies ``fc2``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceEmbedder, align_eyes_mouth, load_checked, read_state_dict, resize, rgb_to_gray01

SOURCE = "the links in the README of https://github.com/AlfredXiangWu/LightCNN"
NUM_CLASSES = {"lightcnn9": 79077, "lightcnn29": 79077, "lightcnn29v2": 80013}
OFFICIAL_FILES = {
    "lightcnn9": "LightCNN_9Layers_checkpoint.pth.tar",
    "lightcnn29": "LightCNN_29Layers_checkpoint.pth.tar",
    "lightcnn29v2": "LightCNN_29Layers_V2_checkpoint.pth.tar",
}


class MFM(nn.Module):
    """Max-Feature-Map: ``filter`` makes 2*out channels; keep the max of the two halves."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 linear: bool = False):
        super().__init__()
        self.out_ch = out_ch
        self.filter = (nn.Linear(in_ch, 2 * out_ch) if linear
                       else nn.Conv2d(in_ch, 2 * out_ch, kernel_size, stride, padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.filter(x), self.out_ch, dim=1)
        return torch.maximum(a, b)


class Group(nn.Module):
    """1x1 MFM (``conv_a``) followed by a kxk MFM (``conv``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv_a = MFM(in_ch, in_ch, 1, 1, 0)
        self.conv = MFM(in_ch, out_ch, kernel_size, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv_a(x))


class ResBlock(nn.Module):
    """Two 3x3 MFM convolutions with an identity shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MFM(channels, channels)
        self.conv2 = MFM(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


class LightCNN9(nn.Module):
    """LightCNN-9: ``features`` (MFM conv, 4 Groups, 4 max-pools), ``fc1`` (MFM linear), ``fc2``."""

    def __init__(self, num_classes: int = NUM_CLASSES["lightcnn9"]):
        super().__init__()
        pool = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)
        self.features = nn.Sequential(
            MFM(1, 48, 5, 1, 2), pool,
            Group(48, 96), pool,
            Group(96, 192), pool,
            Group(192, 128), Group(128, 128), pool,
        )
        self.fc1 = MFM(8 * 8 * 128, 256, linear=True)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(torch.flatten(self.features(x), 1))

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        return self.fc2(feature)


class LightCNN29(nn.Module):
    """LightCNN-29: MFM conv, then (ResBlocks, Group) x4 with 1/2/3/4 ResBlocks, MFM fc, fc2.

    ``v2=True`` gives LightCNN-29v2: each pooling is max-pool + avg-pool, ``fc`` is a
    plain Linear and ``fc2`` has no bias.
    """

    def __init__(self, num_classes: int = NUM_CLASSES["lightcnn29"], v2: bool = False):
        super().__init__()
        self.v2 = v2
        self.conv1 = MFM(1, 48, 5, 1, 2)
        self.block1 = nn.Sequential(ResBlock(48))
        self.group1 = Group(48, 96)
        self.block2 = nn.Sequential(*[ResBlock(96) for _ in range(2)])
        self.group2 = Group(96, 192)
        self.block3 = nn.Sequential(*[ResBlock(192) for _ in range(3)])
        self.group3 = Group(192, 128)
        self.block4 = nn.Sequential(*[ResBlock(128) for _ in range(4)])
        self.group4 = Group(128, 128)
        self.fc = nn.Linear(8 * 8 * 128, 256) if v2 else MFM(8 * 8 * 128, 256, linear=True)
        self.fc2 = nn.Linear(256, num_classes, bias=not v2)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2) if self.v2 else _max_pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pool(self.conv1(x))
        x = self._pool(self.group1(self.block1(x)))
        x = self._pool(self.group2(self.block2(x)))
        x = self.group3(self.block3(x))
        x = self._pool(self.group4(self.block4(x)))
        return self.fc(torch.flatten(x, 1))

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        return self.fc2(feature)


class LightCNN29v2(LightCNN29):
    """LightCNN-29v2 (see :class:`LightCNN29`)."""

    def __init__(self, num_classes: int = NUM_CLASSES["lightcnn29v2"]):
        super().__init__(num_classes, v2=True)


NETWORKS = {"lightcnn9": LightCNN9, "lightcnn29": LightCNN29, "lightcnn29v2": LightCNN29v2}


class LightCNNEmbedder(FaceEmbedder):
    """Frozen LightCNN feature (256-d): [-1, 1] RGB -> gray [0, 1] (BT.601) -> aligned 128x128.

    The authors' test-time input: 128x128 gray faces read with PIL ``'L'`` and
    ``ToTensor`` (no mean subtraction), aligned by their 5-point procedure (training used
    random 128x128 crops of 144x144 faces aligned the same way; the forward pass itself
    does not crop). ``align=True`` (default) warps faces framed like fsggan's crops so that
    the eye centre lands at (64, 40) and the mouth centre 48 px below it, as their test
    faces are (:func:`~fsggan.models.identity.base.align_eyes_mouth`); fsggan's crops
    otherwise show it the eyes 7 px too low and the face 8 % too small. ``align=False``
    only resizes (for faces already aligned the LightCNN way).

    ``weights``: the authors' checkpoint (e.g. ``LightCNN_29Layers_V2_checkpoint.pth.tar``),
    or a bare state dict with or without ``module.``; ``None`` keeps random weights.
    The number of classes of ``fc2`` is read from the checkpoint, so fine-tuned
    checkpoints with another classifier size load too.
    """

    input_size = (128, 128)

    def __init__(self, variant: str = "lightcnn29v2", weights: str | Path | None = None, align: bool = True,
                 weights_only: bool = True):
        if variant not in NETWORKS:
            raise ValueError(f"unknown LightCNN variant {variant!r}; choose from {sorted(NETWORKS)}")
        state, num_classes = None, NUM_CLASSES[variant]
        expected = (f"the authors' {variant} checkpoint ({OFFICIAL_FILES[variant]}): a dict with "
                    f"'state_dict' whose keys start with 'module.' (a bare state dict also works)")
        if weights is not None:
            state = read_state_dict(weights, expected=expected, source=SOURCE, weights_only=weights_only)
            if "fc2.weight" in state:
                num_classes = state["fc2.weight"].shape[0]
        net = NETWORKS[variant](num_classes=num_classes)
        if state is not None:
            load_checked(net, state, path=weights, expected=expected, source=SOURCE)
        super().__init__(net, dim=256)
        self.variant, self.align = variant, align

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        gray = rgb_to_gray01(x)  # a per-pixel linear map: converting before warping saves two channels
        return align_eyes_mouth(gray, self.input_size) if self.align else resize(gray, self.input_size)
