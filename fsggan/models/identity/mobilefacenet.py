"""MobileFaceNet face recognition network (128-d embedding, 112x96 input).

S. Chen, Y. Liu, X. Gao, Z. Han, "MobileFaceNets: Efficient CNNs for Accurate
Real-Time Face Verification on Mobile Devices", CCBR 2018 (arXiv:1804.07573).
Inverted-residual bottlenecks (1x1 expand, 3x3 depthwise, 1x1 linear projection)
with PReLU, a 7x6 global depthwise convolution instead of average pooling, and a
linear 1x1 convolution to the embedding.

Module names follow the checkpoint of github Xiaoccer/MobileFaceNet_Pytorch
(``{'epoch', 'net_state_dict'}``, CASIA-WebFace, ArcFace loss, 99.3% on LFW), whose
input is a 112x96 (H x W) aligned RGB face scaled as (pixel - 127.5) / 128.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .base import FaceEmbedder, align_to_reference, center_crop_aspect, load_checked, read_state_dict, resize

SOURCE = "https://github.com/Xiaoccer/MobileFaceNet_Pytorch (model/best/068.ckpt)"
EXPECTED = ("a MobileFaceNet checkpoint of Xiaoccer/MobileFaceNet_Pytorch: a dict with 'net_state_dict' "
            "(keys conv1.conv.weight, dw_conv1.*, blocks.N.conv.M.*, conv2.*, linear7.*, linear1.*)")

# (expansion t, output channels c, repeats n, first stride s) per stage, from the paper's Table 1
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class ConvBlock(nn.Module):
    """conv (no bias) -> BatchNorm -> PReLU (PReLU left out when ``linear``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride: int = 1, padding: int = 0,
                 depthwise: bool = False, linear: bool = False):
        super().__init__()
        groups = in_ch if depthwise else 1
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.prelu = None if linear else nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 project; shortcut when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        mid = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, mid, 1, 1, 0, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
            nn.Conv2d(mid, out_ch, 1, 1, 0, bias=False), nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet for 112x96 input; ``forward`` returns the 128-d embedding."""

    def __init__(self, embedding_dim: int = 128):
        super().__init__()
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBlock(64, 64, 3, 1, 1, depthwise=True)
        blocks, in_ch = [], 64
        for t, c, n, s in BOTTLENECKS:
            for i in range(n):
                blocks.append(Bottleneck(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = ConvBlock(128, 512, 1)
        self.linear7 = ConvBlock(512, 512, (7, 6), depthwise=True, linear=True)  # global depthwise conv
        self.linear1 = ConvBlock(512, embedding_dim, 1, linear=True)

    def fold_batchnorm(self) -> MobileFaceNet:
        """Fold every (frozen, eval-mode) BatchNorm into the convolution before it; same
        function up to float rounding, about 1.25x faster on CPU. For a frozen network only:
        the BatchNorm modules become ``nn.Identity`` (their state_dict keys disappear)."""
        for block in list(self.modules()):
            names = list(block._modules)
            for conv_name, bn_name in zip(names, names[1:]):  # children are registered in forward order
                conv, bn = block._modules[conv_name], block._modules[bn_name]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    block._modules[conv_name] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                    block._modules[bn_name] = nn.Identity()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.dw_conv1(self.conv1(x)))
        x = self.linear1(self.linear7(self.conv2(x)))
        return torch.flatten(x, 1)


class MobileFaceNetEmbedder(FaceEmbedder):
    """Frozen MobileFaceNet embedding: [-1, 1] RGB -> 112x96 RGB scaled as (p - 127.5) / 128.

    The network was trained on faces aligned by 5 landmarks into 112x96; give it
    roughly aligned, tightly cropped faces (e.g. fsggan's 128x128 face crops).
    ``align=True`` (default) warps faces framed like fsggan's crops onto the network's own
    5-point alignment (:func:`align_to_reference`). ``align=False`` is for faces that are
    already aligned the SphereFace way: then ``aspect="crop"`` cuts the central window with
    the 112:96 aspect (for a 128x128 crop: 128x110) and resizes, so the face is not
    squashed, and ``aspect="resize"`` resizes the whole image to 112x96.
    ``flip=True`` concatenates the embeddings of the image and of its horizontal
    mirror (dim 256), as the Xiaoccer repository does at evaluation time.
    """

    input_size = (112, 96)

    def __init__(self, weights: str | Path | None = None, align: bool = True, aspect: str = "crop",
                 flip: bool = False, weights_only: bool = True):
        if aspect not in ("crop", "resize"):
            raise ValueError(f"aspect must be 'crop' or 'resize', got {aspect!r}")
        net = MobileFaceNet()
        if weights is not None:
            state = read_state_dict(weights, expected=EXPECTED, source=SOURCE,
                                    wrapper_keys=("net_state_dict", "state_dict"), weights_only=weights_only)
            load_checked(net, state, path=weights, expected=EXPECTED, source=SOURCE)
        super().__init__(net.fold_batchnorm(), dim=256 if flip else 128)
        self.align, self.aspect, self.flip = align, aspect, flip

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.align:
            x = align_to_reference(x, self.input_size)
        elif self.aspect == "crop":
            x = center_crop_aspect(x, *self.input_size)
        # [-1, 1] -> pixels p in [0, 255] -> (p - 127.5) / 128
        return resize(x, self.input_size) * (127.5 / 128.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.flip:
            return self.net(x)
        f = self.net(torch.cat([x, x.flip(-1)]))
        return torch.cat(f.chunk(2), dim=1)
