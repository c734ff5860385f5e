"""Frozen face-recognition networks behind one interface (identity loss and evaluation).

``build_embedder(name, weights)`` returns a :class:`FaceEmbedder`: (B, 3, H, W) RGB in
[-1, 1], any size -> (B, dim) L2-normalised features, frozen, always in eval mode,
differentiable with respect to its input.
"""

from .base import FaceEmbedder, WeightsError
from .build import EMBEDDER_NAMES, build_embedder
from .dlib_resnet import DLIB_NAME, DlibResNetEmbedder
from .iresnet import ArcFaceEmbedder, IResNet, iresnet50, iresnet100
from .lightcnn import LightCNN9, LightCNN29, LightCNN29v2, LightCNNEmbedder
from .mobilefacenet import MobileFaceNet, MobileFaceNetEmbedder

__all__ = [
    "EMBEDDER_NAMES", "FaceEmbedder", "WeightsError", "build_embedder",
    "LightCNN9", "LightCNN29", "LightCNN29v2", "LightCNNEmbedder",
    "MobileFaceNet", "MobileFaceNetEmbedder",
    "IResNet", "iresnet50", "iresnet100", "ArcFaceEmbedder",
    "DLIB_NAME", "DlibResNetEmbedder",
]
