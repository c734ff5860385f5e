"""ArcFace iResNet-50 / 100 (512-d embedding, 112x112 RGB input).

J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for
Deep Face Recognition", CVPR 2019; improved residual units (BN-conv-BN-PReLU-conv-BN)
after I. C. Duta et al., "Improved Residual Networks for Image and Video
Recognition", ICPR 2020.

Parameter names follow insightface's ``recognition/arcface_torch/backbones/iresnet.py``
so that its model-zoo ``backbone.pth`` files (plain state dicts: ``conv1.weight``,
``bn1.*``, ``prelu.weight``, ``layerK.N.{bn1,conv1,bn2,prelu,conv2,bn3}``,
``layerK.0.downsample.{0,1}``, ``bn2.*``, ``fc.*``, ``features.*``) load with
``strict=True``. Input: 112x112 RGB scaled as (p / 255 - 0.5) / 0.5, i.e. [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import REFERENCE_112x112, FaceEmbedder, align_to_reference, load_checked, read_state_dict, resize

SOURCE = ("the insightface arcface_torch model zoo, "
          "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch (backbone.pth)")
LAYERS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=1e-5)


class IBasicBlock(nn.Module):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN, plus (downsampled) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = _bn(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = _bn(out_ch)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = _bn(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), _bn(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """iResNet trunk + ``fc`` to ``num_features`` + ``features`` (BatchNorm1d); 112x112 input."""

    def __init__(self, layers: tuple[int, int, int, int] = LAYERS[50], num_features: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = _bn(64)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for i, (n, ch) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            blocks = [IBasicBlock(in_ch, ch, stride=2)] + [IBasicBlock(ch, ch) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            in_ch = ch
        self.bn2 = _bn(512)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))


def iresnet50(num_features: int = 512) -> IResNet:
    return IResNet(LAYERS[50], num_features)


def iresnet100(num_features: int = 512) -> IResNet:
    return IResNet(LAYERS[100], num_features)


class ArcFaceEmbedder(FaceEmbedder):
    """Frozen ArcFace iResNet embedding (512-d): [-1, 1] RGB resized to 112x112.

    arcface_torch's (p / 255 - 0.5) / 0.5 normalisation is exactly fsggan's [-1, 1]
    range, so only the framing changes. The weights expect faces aligned by 5 landmarks
    to insightface's 112x112 template: ``align=True`` (default) warps faces framed like
    fsggan's crops onto it (:func:`align_to_reference`); ``align=False`` only resizes
    (for faces already aligned the insightface way).
    """

    input_size = (112, 112)

    def __init__(self, depth: int = 50, weights: str | Path | None = None, align: bool = True,
                 weights_only: bool = True):
        if depth not in LAYERS:
            raise ValueError(f"ArcFace iResNet depth must be one of {sorted(LAYERS)}, got {depth}")
        net = IResNet(LAYERS[depth])
        if weights is not None:
            expected = (f"an arcface_torch iresnet{depth} backbone.pth: a plain state dict with keys "
                        "conv1.weight, bn1.*, prelu.weight, layer1.0.bn1.*, ..., bn2.*, fc.*, features.*")
            state = read_state_dict(weights, expected=expected, source=SOURCE,
                                    wrapper_keys=("state_dict", "model"), weights_only=weights_only)
            load_checked(net, state, path=weights, expected=expected, source=SOURCE)
        super().__init__(net, dim=512)
        self.depth, self.align = depth, align

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.align:
            return align_to_reference(x, self.input_size, REFERENCE_112x112)
        return resize(x, self.input_size)
